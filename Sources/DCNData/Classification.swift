// Classification data: torchvision's ImageFolder layout and its ImageNet transforms.
// Training: RandomResizedCrop (a random area fraction and aspect ratio, 10 tries, then the
// central fallback), horizontal flip, normalisation. Evaluation: the shorter side resized to
// `resizeSize`, the centre `cropSize` square. Resizing is PIL's bilinear filter (antialiased when
// shrinking), as torchvision applies it to PIL images; rounding follows Python's round
// (half to even), as torchvision's code does.
import DCNTensor
import Foundation

// MARK: - ImageFolder

extension Dataset {
    /// File extensions the decoder reads (torchvision also lists .ppm .bmp .pgm .tif .tiff .webp;
    /// those files are skipped with a warning).
    static let imageFolderExtensions: Set<String> = ["jpg", "jpeg", "png"]
    static let imageFolderOtherExtensions: Set<String> = ["ppm", "bmp", "pgm", "tif", "tiff", "webp"]

    /// The classes every split of a run must have (a label is a position among them), and where they
    /// come from, for messages ("the training split data/train", "the checkpoint run/latest").
    public struct ClassList: Sendable {
        public var names: [String]
        public var source: String
        public init(names: [String], source: String) { self.names = names; self.source = source }
    }

    /// torchvision's ImageFolder: the classes are the sorted names of `root`'s sub-folders; the
    /// samples are the image files under each (searched recursively, sorted by path), labelled
    /// with their class's index (`classLabel`, 0-based). `id` is the sample's position.
    /// `expected`: the class list the folders must match (another split's, a checkpoint's); the
    /// error names the first folder that differs.
    public static func imageFolder(root: String, expected: ClassList? = nil) throws -> Dataset {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isFolder), isFolder.boolValue else {
            throw DatasetError(file: root, "not a folder; expected an ImageFolder split (one sub-folder of images per class)")
        }
        let classes = try fm.contentsOfDirectory(atPath: root).filter { name in
            var folder: ObjCBool = false
            return !name.hasPrefix(".") && fm.fileExists(atPath: root + "/" + name, isDirectory: &folder) && folder.boolValue
        }.sorted()
        guard !classes.isEmpty else { throw DatasetError(file: root, "no class folders; expected \(root)/<class>/<image>.jpg") }
        if let expected {
            let why = "expected exactly the class folders of \(expected.source) (\(expected.names.joined(separator: ", "))), since a class's label is its place among them"
            if let extra = classes.first(where: { !expected.names.contains($0) }) {
                throw DatasetError(file: root + "/" + extra, "an extra class folder; \(why)")
            }
            if let missing = expected.names.first(where: { !classes.contains($0) }) {
                throw DatasetError(file: root, "no folder for the class '\(missing)'; \(why)")
            }
        }
        var images: [DatasetImage] = [], warnings: [String] = []
        for (label, name) in classes.enumerated() {
            let folder = root + "/" + name
            let files = (fm.enumerator(atPath: folder)?.allObjects as? [String] ?? []).sorted()
            var found = 0
            for file in files {
                let ext = (file as NSString).pathExtension.lowercased()
                if imageFolderExtensions.contains(ext) {
                    images.append(DatasetImage(id: images.count, name: name + "/" + file, path: folder + "/" + file, width: 0, height: 0,
                                               objects: [], classLabel: label))
                    found += 1
                } else if imageFolderOtherExtensions.contains(ext) {
                    warnings.append("\(folder)/\(file): skipped (only JPEG and PNG images are read)")
                }
            }
            if found == 0 { throw DatasetError(file: folder, "class '\(name)' has no JPEG or PNG images") }
        }
        return Dataset(images: images, classNames: classes, categoryIDs: Array(0..<classes.count), warnings: warnings)
    }
}

// MARK: - Transforms

/// Where random crop parameters come from: a seeded generator in training, recorded draws in
/// the tests against torchvision.
public protocol CropDraws {
    /// Uniform in [low, high).
    mutating func drawUniform(_ low: Double, _ high: Double) -> Double
    /// Uniform integer in 0 ..< count.
    mutating func drawInteger(below count: Int) -> Int
}

extension SeededGenerator: CropDraws {
    public mutating func drawUniform(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * Double(next() >> 11) / Double(1 << 53)
    }
    public mutating func drawInteger(below count: Int) -> Int { Int(next() % UInt64(max(1, count))) }
}

/// A crop: rows `top ..< top + height`, columns `left ..< left + width`.
public struct CropBox: Sendable, Equatable, CustomStringConvertible {
    public var top: Int, left: Int, height: Int, width: Int
    public init(top: Int, left: Int, height: Int, width: Int) { self.top = top; self.left = left; self.height = height; self.width = width }
    public var description: String { "(top \(top), left \(left), height \(height), width \(width))" }
}

/// Python's round(): to the nearest integer, halves to even.
@inline(__always) func pythonRound(_ x: Double) -> Int { Int(x.rounded(.toNearestOrEven)) }

/// torchvision's RandomResizedCrop.
public struct RandomResizedCrop: Sendable, Equatable {
    public var size: Int
    /// Range of the crop's area / the image's.
    public var scale: (Double, Double)
    /// Range of the crop's width / height.
    public var ratio: (Double, Double)

    public init(size: Int, scale: (Double, Double) = (0.08, 1), ratio: (Double, Double) = (3.0 / 4.0, 4.0 / 3.0)) {
        self.size = size; self.scale = scale; self.ratio = ratio
    }

    public static func == (a: RandomResizedCrop, b: RandomResizedCrop) -> Bool {
        a.size == b.size && a.scale == b.scale && a.ratio == b.ratio
    }

    /// torchvision's get_params: up to 10 tries of an area fraction and a log-uniform aspect
    /// ratio (in Float, as torch draws them) whose rounded box fits; else the centre crop at the
    /// nearest allowed ratio.
    public func box(height: Int, width: Int, draws: inout some CropDraws) -> CropBox {
        let area = Double(height * width)
        let logLow = Float(log(Float(ratio.0))), logHigh = Float(log(Float(ratio.1)))
        for _ in 0..<10 {
            let targetArea = area * Double(Float(draws.drawUniform(scale.0, scale.1)))
            let aspect = Double(exp(Float(draws.drawUniform(Double(logLow), Double(logHigh)))))
            let w = pythonRound((targetArea * aspect).squareRoot())
            let h = pythonRound((targetArea / aspect).squareRoot())
            if w > 0 && w <= width && h > 0 && h <= height {
                let top = draws.drawInteger(below: height - h + 1)
                let left = draws.drawInteger(below: width - w + 1)
                return CropBox(top: top, left: left, height: h, width: w)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < min(ratio.0, ratio.1) {
            h = pythonRound(Double(w) / min(ratio.0, ratio.1))
        } else if inRatio > max(ratio.0, ratio.1) {
            w = pythonRound(Double(h) * max(ratio.0, ratio.1))
        }
        return CropBox(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w)
    }

    /// The crop resized to size x size.
    public func apply(_ image: RGBImage, box: CropBox) throws -> RGBImage {
        resizeBilinear(try crop(image, box), width: size, height: size)
    }
}

/// The pixels of `box` (which must lie inside the image).
public func crop(_ image: RGBImage, _ box: CropBox) throws -> RGBImage {
    guard box.top >= 0, box.left >= 0, box.height > 0, box.width > 0,
          box.top + box.height <= image.height, box.left + box.width <= image.width else {
        throw ShapeError("crop \(box) outside a \(image.width)x\(image.height) image")
    }
    var pixels = [UInt8](repeating: 0, count: box.width * box.height * 3)
    image.pixels.withUnsafeBufferPointer { src in
        pixels.withUnsafeMutableBufferPointer { dst in
            for y in 0..<box.height {
                let from = ((box.top + y) * image.width + box.left) * 3
                (dst.baseAddress! + y * box.width * 3).update(from: src.baseAddress! + from, count: box.width * 3)
            }
        }
    }
    return try RGBImage(width: box.width, height: box.height, pixels: pixels)
}

/// torchvision's evaluation transform: Resize(resizeSize) (shorter side to resizeSize, the longer
/// int(resizeSize * long / short)), then CenterCrop(cropSize).
public struct ResizeCenterCrop: Sendable, Equatable {
    public var resizeSize: Int
    public var cropSize: Int

    public init(resizeSize: Int, cropSize: Int) { self.resizeSize = resizeSize; self.cropSize = cropSize }

    public func resizedSize(height: Int, width: Int) -> ImageSize {
        if width <= height {
            return ImageSize(height: Int(Double(resizeSize) * Double(height) / Double(width)), width: resizeSize)
        }
        return ImageSize(height: resizeSize, width: Int(Double(resizeSize) * Double(width) / Double(height)))
    }

    /// The centre crop of the resized image (torchvision's rounding).
    public func cropBox(resized: ImageSize) -> CropBox {
        // torchvision pads an image smaller than the crop; with resizeSize >= cropSize it never is.
        CropBox(top: pythonRound(Double(resized.height - cropSize) / 2), left: pythonRound(Double(resized.width - cropSize) / 2),
                height: cropSize, width: cropSize)
    }

    public func apply(_ image: RGBImage) throws -> RGBImage {
        let size = resizedSize(height: image.height, width: image.width)
        let resized = size.height == image.height && size.width == image.width ? image : resizeBilinear(image, width: size.width, height: size.height)
        return try crop(resized, cropBox(resized: size))
    }
}

/// The training or evaluation transform of classification images.
public struct ClassificationTransform: Sendable, Equatable {
    public var train: RandomResizedCrop
    public var test: ResizeCenterCrop
    public var flipProbability: Double = 0.5

    public init(train: RandomResizedCrop, test: ResizeCenterCrop) { self.train = train; self.test = test }

    /// The training sample: random crop, then a flip with `flipProbability`.
    public func training(_ image: RGBImage, using rng: inout SeededGenerator) throws -> RGBImage {
        let box = train.box(height: image.height, width: image.width, draws: &rng)
        let cropped = try train.apply(image, box: box)
        return rng.drawUniform(0, 1) < flipProbability ? HFlipTransform(width: cropped.width).apply(image: cropped) : cropped
    }
}
