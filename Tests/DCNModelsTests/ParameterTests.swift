// The gradient block: every trainable parameter's gradient is a slot of one buffer, in list order.
import Testing
import DCNModels
import DCNOps
import DCNTensor

@Test func trainableGradientsShareOneBlockInListOrder() throws {
    let a = Parameter(name: "a", value: Tensor(zeros: [2, 3]))
    let frozen = Parameter(name: "frozen", value: Tensor(zeros: [4]), trainable: false)
    let b = Parameter(name: "b", value: Tensor(zeros: [5]))
    var list = ParameterList()
    list.append(contentsOf: [a, frozen, b])
    #expect(list.gradientBlock == nil)
    list.zeroGrad()
    let block = try #require(list.gradientBlock)
    #expect(block.count == 11)
    #expect(a.gradient!.base == block.buffer.baseAddress!)
    #expect(b.gradient!.base == block.buffer.baseAddress! + 6)
    #expect(frozen.gradient == nil && frozen.grad.count == 0)
    // What a backward pass adds through a slot is what the block (and `grad`) holds.
    b.gradient!.base[4] += 2.5
    #expect(block.buffer[10] == 2.5 && b.grad.data == [0, 0, 0, 0, 2.5])
    // Zeroing keeps the layout; changing which parameters train lays the block out again.
    list.zeroGrad()
    #expect(list.gradientBlock === block && block.buffer.allSatisfy { $0 == 0 })
    frozen.trainable = true
    list.zeroGrad()
    let relaid = try #require(list.gradientBlock)
    #expect(relaid !== block && relaid.count == 15)
    #expect(frozen.gradient!.base == relaid.buffer.baseAddress! + 6)
}

@Test func aListBuiltFromAnotherGetsItsOwnBlock() throws {
    let a = Parameter(name: "a", value: Tensor(zeros: [3]))
    let b = Parameter(name: "b", value: Tensor(zeros: [2]))
    var part = ParameterList()
    part.append(a)
    part.zeroGrad()
    var whole = part
    whole.append(b)
    whole.zeroGrad()
    #expect(whole.gradientBlock!.count == 5 && part.gradientBlock!.count == 3)
    #expect(a.gradient!.base == whole.gradientBlock!.buffer.baseAddress!)
}

@Test func aDetectorTrainStepFillsItsOneGradientBlock() throws {
    // The block is the concatenation of the per-parameter gradients a train step produced.
    let model = try GeneralizedRCNN(spec: tinyDetectorSpec(extractor: .mdpool, mimic: .fg), seed: 3)
    let (images, sizes, targets) = tinyBatch()
    var rng = SeededGenerator(seed: 5)
    model.parameters.zeroGrad()
    _ = try model.trainStep(images: images, sizes: sizes, targets: targets, rng: &rng, Workspace())
    let block = try #require(model.parameters.gradientBlock)
    let joined = model.parameters.trainable.flatMap(\.grad.data)
    #expect(joined.count == block.count && joined == Array(block.buffer))
    #expect(block.buffer.contains { $0 != 0 })
}
