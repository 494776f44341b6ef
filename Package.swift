// swift-tools-version: 6.0
// DCNv2 on the CPU: deformable convolution networks trained and evaluated with OpenBLAS.
import PackageDescription

let package = Package(
    name: "DCNv2CPU",
    products: [
        .library(name: "DCNTensor", targets: ["DCNTensor"]),
        .library(name: "DCNOps", targets: ["DCNOps"]),
        .library(name: "DCNAnnotations", targets: ["DCNAnnotations"]),
        .library(name: "DCNEval", targets: ["DCNEval"]),
        .library(name: "DCNData", targets: ["DCNData"]),
        .library(name: "DCNModels", targets: ["DCNModels"]),
        .library(name: "DCNConfig", targets: ["DCNConfig"]),
        .library(name: "DCNDistributed", targets: ["DCNDistributed"]),
        .library(name: "DCNTensorBoard", targets: ["DCNTensorBoard"]),
        .library(name: "DCNExport", targets: ["DCNExport"]),
        .executable(name: "dcn-bench", targets: ["dcn-bench"]),
        .executable(name: "dcn-eval", targets: ["dcn-eval"]),
        .executable(name: "dcn-train", targets: ["dcn-train"]),
        .executable(name: "dcn-data", targets: ["dcn-data"]),
        .executable(name: "dcn-vis", targets: ["dcn-vis"]),
        .executable(name: "dcn-detect", targets: ["dcn-detect"]),
        .executable(name: "dcn-export", targets: ["dcn-export"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C shim: OpenBLAS's CBLAS + LAPACKE. Only DCNTensor/BLAS.swift imports it.
        .systemLibrary(
            name: "CBLAS",
            path: "Sources/CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]
        ),
        // glibc's mallopt (no library to link). Only DCNTensor/Parallel.swift imports it.
        .systemLibrary(name: "CMalloc", path: "Sources/CMalloc"),
        // Our matrix product for forward convolutions (AVX2 / AVX-512 kernels, im2col packed on the fly).
        // Only DCNTensor/OwnProduct.swift imports it.
        .target(name: "CGemm", path: "Sources/CGemm"),
        // Layer 1: tensors, BLAS wrapper, threading, safetensors files.
        .target(name: "DCNTensor", dependencies: ["CBLAS", "CMalloc", "CGemm"]),
        // Layer 2: every op's forward and backward (conv, deformable conv, norms, RoI ops, NMS, losses).
        .target(name: "DCNOps", dependencies: ["DCNTensor", "CGemm"]),
        // C shim over libjpeg-turbo and libpng whose error handlers return instead of exiting.
        .target(
            name: "CImageCodec",
            path: "Sources/CImageCodec",
            linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]
        ),
        // Annotation and result files: COCO JSON (with RLE/polygon masks), VOC XML, and the checks
        // that turn unreadable files into clear messages. Read by the data loaders and the evaluators.
        .target(name: "DCNAnnotations"),
        // Data: images, datasets from annotations, transforms, loader, synthetic dataset.
        .target(name: "DCNData", dependencies: ["DCNTensor", "CImageCodec", "DCNAnnotations"]),
        // Models: parameters, layers with caches, ResNet backbones, the detector.
        .target(name: "DCNModels", dependencies: ["DCNOps", "DCNTensor", "DCNAnnotations"]),
        // Evaluation: COCO (bbox/segm) and PASCAL VOC, number for number with the reference tools.
        .target(name: "DCNEval", dependencies: ["DCNAnnotations"]),
        // C shim over MPI (Open MPI from Debian). Only DCNDistributed/MPI.swift imports it.
        .systemLibrary(
            name: "CMPI",
            path: "Sources/CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]
        ),
        // Processes: the MPI world (one rank without a launcher) and data-parallel gradient sums.
        .target(name: "DCNDistributed", dependencies: ["CMPI", "DCNModels", "DCNTensor"]),
        // Configs: strict, documented YAML experiment configs (base: inheritance, --set overrides); the
        // choices are the models' own enums.
        .target(name: "DCNConfig", dependencies: ["DCNModels", .product(name: "Yams", package: "Yams")]),
        // TensorBoard event files (TFRecord framing, CRC32C) with the Event/Summary messages generated
        // once from tensorboard_event.proto and committed.
        .target(name: "DCNTensorBoard", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["tensorboard_event.proto"]),
        // What a run of any tool starts from and shares: the datasets and the model its config names,
        // checkpoints, its errors and exit statuses, stop requests (signals), the output folder it
        // locks and the files it must not overwrite, line-buffered output, the metrics.jsonl records.
        .target(name: "DCNRun", dependencies: ["DCNAnnotations", "DCNConfig", "DCNData", "DCNDistributed", "DCNEval", "DCNModels", "DCNTensor"]),
        // Inference and evaluation of a trained model: sharded and multi-view inference, mask pasting,
        // results files, the MPI codec of detections, detectors' / classifiers' / segmenters'
        // evaluations, dcn-detect's runs and the resolution sweep.
        .target(name: "DCNInference", dependencies: ["DCNPictures", "DCNRun", "DCNAnnotations", "DCNConfig", "DCNData", "DCNDistributed", "DCNEval", "DCNModels", "DCNOps", "DCNTensor"]),
        // Pictures and charts a person looks at: drawing on RGB images (rectangles, masks, a bitmap
        // font), detections next to the ground truth, a node's spatial support, SVG line charts and
        // the training curves.
        .target(name: "DCNPictures", dependencies: ["DCNAnnotations", "DCNData", "DCNModels", "DCNRun", "DCNTensor"]),
        // Training: the optimiser and its schedule, the training loaders, the loop and its hooks,
        // replicas, the training log.
        .target(name: "DCNTraining", dependencies: ["DCNInference", "DCNPictures", "DCNRun", "DCNDistributed", "DCNTensorBoard", "DCNModels", "DCNData", "DCNConfig", "DCNTensor", "DCNOps"]),
        // The options every tool shares (config, --set, checkpoint, threads, --scales/--flip): one declaration, one default.
        .target(name: "DCNCommandLine", dependencies: ["DCNConfig", "DCNDistributed", "DCNTensor", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(
            name: "dcn-train",
            dependencies: ["DCNRun", "DCNCommandLine", "DCNAnnotations", "DCNTraining", "DCNConfig", "DCNModels", "DCNTensor", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The spatial support of network nodes (the paper's Section 2.1): effective receptive fields,
        // effective sampling locations, error-bounded saliency regions, and what dcn-vis reports of
        // them (how a trained detector or classifier is analysed, a node's pictures and numbers,
        // focus, effective dilation of detectors and of classifiers on synth-cls sets, the nodes and
        // cells a figure picks); DCNPictures draws the pictures.
        .target(name: "DCNAnalysis", dependencies: ["DCNConfig", "DCNData", "DCNModels", "DCNOps", "DCNPictures", "DCNTensor"]),
        .executableTarget(
            name: "dcn-vis",
            dependencies: ["DCNInference", "DCNPictures", "DCNRun", "DCNCommandLine", "DCNAnalysis", "DCNAnnotations", "DCNConfig", "DCNData", "DCNModels", "DCNOps", "DCNTensor",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Fixture verification behind `dcn-bench verify` and the op tests: each fixture's op run on its
        // inputs and compared with the reference outputs and gradients.
        .target(name: "DCNVerify", dependencies: ["DCNModels", "DCNOps", "DCNTensor"]),
        // Benchmarks behind `dcn-bench`.
        .target(name: "DCNBench", dependencies: ["DCNRun", "DCNDistributed", "DCNExport", "DCNAnnotations", "DCNOps", "DCNTensor", "DCNEval", "DCNModels", "DCNData", "DCNTraining", "DCNConfig"]),
        .executableTarget(
            name: "dcn-bench",
            dependencies: ["DCNRun", "DCNCommandLine", "DCNBench", "DCNVerify", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "dcn-eval",
            dependencies: ["DCNInference", "DCNPictures", "DCNRun", "DCNCommandLine", "DCNAnnotations", "DCNData", "DCNEval", "DCNConfig", "DCNModels", "DCNTensor",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // A trained detector on any images: COCO-format detections with file names, pictures, mask PNGs.
        .executableTarget(
            name: "dcn-detect",
            dependencies: ["DCNInference", "DCNRun", "DCNCommandLine", "DCNAnnotations", "DCNData", "DCNDistributed", "DCNConfig", "DCNTensor",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // ONNX export: the models as ONNX graphs (opset 19, DeformConv) with the ModelProto messages
        // generated once from onnx.proto (Apache-2.0, from the onnx package) and committed.
        .target(name: "DCNExport", dependencies: ["DCNModels", "DCNOps", "DCNTensor", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["onnx.proto"]),
        // A trained model as ONNX, and what scripts/check_onnx.py compares it with.
        .executableTarget(
            name: "dcn-export",
            dependencies: ["DCNRun", "DCNCommandLine", "DCNAnnotations", "DCNData", "DCNExport", "DCNConfig", "DCNModels", "DCNOps", "DCNTensor",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "dcn-data",
            dependencies: ["DCNAnnotations", "DCNData", "DCNEval", "DCNTensor", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // What every test target shares: repository and fixture paths, temporary folders, the tools
        // run as child processes, and the tiny training runs the process tests start from.
        .target(name: "TestSupport", dependencies: ["DCNConfig", "DCNData", "DCNTensor", "DCNTraining"], path: "Tests/TestSupport"),
        .testTarget(name: "DCNTensorTests", dependencies: ["DCNTensor", "TestSupport"]),
        .testTarget(name: "DCNOpsTests", dependencies: ["DCNOps", "DCNTensor", "DCNVerify", "DCNBench", "TestSupport"]),
        .testTarget(name: "DCNEvalTests", dependencies: ["DCNEval", "DCNAnnotations", "DCNData", "TestSupport"]),
        .testTarget(name: "DCNDataTests", dependencies: ["DCNData", "DCNAnnotations", "DCNEval", "DCNTensor", "TestSupport"]),
        .testTarget(name: "DCNModelsTests", dependencies: ["DCNConfig", "DCNModels", "DCNOps", "DCNTensor", "DCNVerify", "TestSupport"]),
        .testTarget(name: "DCNConfigTests", dependencies: ["DCNConfig", "DCNModels", "TestSupport"]),
        .testTarget(name: "DCNAnalysisTests", dependencies: ["DCNPictures", "DCNAnalysis", "DCNConfig", "DCNModels", "DCNOps", "DCNTensor", "DCNData", "TestSupport"]),
        .testTarget(name: "DCNExportTests", dependencies: ["DCNBench", "DCNConfig", "DCNExport", "DCNModels", "DCNTensor", "TestSupport"]),
        .testTarget(name: "DCNTensorBoardTests", dependencies: ["DCNPictures", "DCNTensorBoard", "DCNData", "TestSupport"]),
        .testTarget(name: "DCNDistributedTests", dependencies: ["DCNRun", "DCNTraining", "DCNConfig", "DCNModels", "DCNData", "DCNTensor", "TestSupport"]),
        .testTarget(name: "DCNInferenceTests", dependencies: ["DCNInference", "DCNAnnotations", "DCNRun", "DCNTraining", "DCNConfig", "DCNData", "DCNModels", "DCNOps", "DCNTensor", "TestSupport"]),
        .testTarget(name: "DCNPicturesTests", dependencies: ["DCNPictures", "DCNData", "DCNModels", "DCNTensor"]),
        .testTarget(name: "DCNTrainingTests", dependencies: ["DCNInference", "DCNPictures", "DCNRun", "DCNTraining", "DCNBench", "DCNTensorBoard", "DCNConfig", "DCNModels", "DCNData", "DCNTensor", "DCNEval", "DCNAnnotations", "TestSupport"]),
    ]
)
