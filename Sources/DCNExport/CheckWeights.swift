// Weights for checking an export without training: every parameter of a freshly initialised model
// made non-trivial, so that a wrong layout cannot hide behind a zero or a one. The offset branches
// start at zero (their offsets would all be 0 and every DeformConv a plain Conv) and the norms
// start as identities (weight 1, bias 0, running mean 0, variance 1).
import DCNModels
import DCNTensor

/// Fills the parameters with seeded values of the right scale for a forward pass to stay finite
/// and non-trivial:
/// - offset branches (`*_offset.weight`): normal with std 1 / sqrt(fan-in), so offsets and
///   modulation logits are about one unit (a pixel); their biases uniform in [-1, 1];
/// - norm weights uniform in [0.5, 1.5], norm biases and running means in [-0.2, 0.2], running
///   variances in [0.5, 2];
/// - the box predictor: class-score weights normal with std 2 / sqrt(fan-in) and biases in [-1, 1]
///   (scores spread out, not all near 1 / (C+1)), box-delta weights with std 0.5 / sqrt(fan-in);
/// - the (m)dpool offset fcs (`pooler.offset_fc*`, the last of which starts at zero): normal with
///   std 1 / sqrt(fan-in), biases in [-1, 1], so bins move by about gamma times the RoI's size;
/// - the mask predictor: weights normal with std 4 / sqrt(fan-in), biases in [-1, 1], so mask
///   probabilities spread over (0, 1) and the pasted masks have shapes (at its initial std of
///   0.001 every probability is about 0.5 and every pasted mask empty);
/// - other biases uniform in [-0.1, 0.1]; other weights keep their (random) initialisation.
public func randomizeForExportCheck(_ parameters: ParameterList, seed: UInt64) {
    var rng = SeededGenerator(seed: seed)
    for p in parameters.all {
        let n = p.count
        func fill(_ f: (inout SeededGenerator) -> Float) { for i in 0..<n { p.value.data[i] = f(&rng) } }
        if p.name.hasSuffix("box_predictor.cls_score.weight") || p.name.hasSuffix("box_predictor.bbox_pred.weight") {
            // Spread-out class scores (not all near 1 / (C+1)) and deltas that move the boxes.
            let std = (p.name.contains("cls_score") ? 2 : 0.5) / Float(max(1, p.shape[1])).squareRoot()
            fill { $0.normal() * std }
        } else if p.name.hasSuffix("box_predictor.cls_score.bias") {
            fill { $0.uniform(-1, 1) }
        } else if p.name.contains("pooler.offset_fc") || p.name.contains("mask_head.predictor.") {
            if p.name.hasSuffix(".bias") {
                fill { $0.uniform(-1, 1) }
            } else {
                let std = (p.name.contains("mask_head") ? 4 : 1) / Float(max(1, n / max(1, p.shape[0]))).squareRoot()
                fill { $0.normal() * std }
            }
        } else if p.name.hasSuffix("_offset.weight") {
            let std = 1 / Float(max(1, n / max(1, p.shape[0]))).squareRoot()
            fill { $0.normal() * std }
        } else if p.name.hasSuffix("_offset.bias") {
            fill { $0.uniform(-1, 1) }
        } else if p.isBuffer && p.name.hasSuffix(".running_var") {
            fill { $0.uniform(0.5, 2) }
        } else if p.isBuffer && p.name.hasSuffix(".running_mean") {
            fill { $0.uniform(-0.2, 0.2) }
        } else if !p.decays && p.name.hasSuffix(".weight") {
            fill { $0.uniform(0.5, 1.5) }
        } else if !p.decays && p.name.hasSuffix(".bias") {
            fill { $0.uniform(-0.2, 0.2) }
        } else if p.name.hasSuffix(".bias") {
            fill { $0.uniform(-0.1, 0.1) }
        }
    }
}
