// Which parameters a run trains (`solver.train_only`).
import DCNConfig
import DCNModels
import DCNRun
import DCNTensor

/// Freezes every parameter that `solver.train_only` leaves out (they keep their values and get no
/// gradient); an error when the choice selects nothing trainable in this model.
public func restrictTraining(_ parameters: ParameterList, to choice: TrainedParameters, task: TaskChoice) throws {
    let trains: (Parameter) -> Bool
    switch choice {
    case .all: return
    case .offsets:
        // Deformable convolutions' `<conv>_offset.*` and the deformable RoI pooling's `offset_fc*`.
        trains = { $0.name.contains("_offset.") || $0.name.contains("pooler.offset_fc") }
    case .normsAndClassifier:
        guard task == .classification else {
            throw TrainingError("solver.train_only: norms_and_classifier is for classification (model.task: classification)", exitCode: 2)
        }
        // Norm weights and biases are the parameters without weight decay of their own.
        trains = { !$0.decays || $0.name == "fc.weight" || $0.name == "fc.bias" }
    }
    var kept = 0
    for p in parameters.all where p.trainable {
        if trains(p) { kept += 1 } else { p.trainable = false }
    }
    if kept == 0 {
        throw TrainingError("solver.train_only: \(choice.rawValue) selects no trainable parameter of this model"
                            + (choice == .offsets ? " (it has no deformable layer: set backbone.deformable_stages and conv_type)" : ""), exitCode: 2)
    }
}
