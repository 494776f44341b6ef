// PASCAL VOC annotations: Annotations/<id>.xml read with a real XML parser (FoundationXML),
// ImageSets/Main/<split>.txt, and errors that name the file and the element.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A VOC input problem, naming the file (and element or line) at fault.
public struct VOCError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) { self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}

/// One annotated object: class name, box in VOC pixels (1-based, inclusive), difficult flag.
public struct VOCObject: Codable, Equatable, Sendable {
    public var name: String
    public var box: VOCBox
    public var difficult: Bool
    public init(name: String, box: VOCBox, difficult: Bool) { self.name = name; self.box = box; self.difficult = difficult }
}

/// `[xmin, ymin, xmax, ymax]` in VOC's 1-based inclusive pixel coordinates.
public struct VOCBox: Codable, Equatable, Sendable {
    public var xmin: Double, ymin: Double, xmax: Double, ymax: Double
    public init(xmin: Double, ymin: Double, xmax: Double, ymax: Double) {
        self.xmin = xmin; self.ymin = ymin; self.xmax = xmax; self.ymax = ymax
    }
    /// From a COCO box `[x, y, w, h]` (0-based, continuous): `xmin = x + 1`, `xmax = x + w`,
    /// the conversion detectron2's VOC evaluator uses.
    public init(coco b: COCOBox) { self.init(xmin: b.x + 1, ymin: b.y + 1, xmax: b.x + b.width, ymax: b.y + b.height) }
}

/// A tiny element tree: enough for VOC's and ILSVRC's annotation files.
final class XMLElementNode {
    let name: String
    var text = ""
    var children: [XMLElementNode] = []
    init(name: String) { self.name = name }
    func child(_ n: String) -> XMLElementNode? { children.first { $0.name == n } }
}

private final class TreeBuilder: NSObject, XMLParserDelegate {
    /// VOC nests 5 levels at most (`<annotation><object><part><bndbox><xmin>`). Deeper documents
    /// are refused while parsing: a tree tens of thousands of levels deep overflows the stack
    /// when its nodes are freed (each node's deinit frees its children recursively).
    static let maxDepth = 64
    var stack: [XMLElementNode] = []
    var root: XMLElementNode?
    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        guard stack.count < TreeBuilder.maxDepth else {
            if nestingError == nil {
                let path = stack.prefix(3).map { "<\($0.name)>" }.joined()
                nestingError = "elements nested more than \(TreeBuilder.maxDepth) levels deep at line \(parser.lineNumber) (inside \(path)...); expected a VOC annotation (about 4 levels)"
            }
            parser.abortParsing()
            return
        }
        let node = XMLElementNode(name: elementName)
        if let parent = stack.last { parent.children.append(node) } else if root == nil { root = node }
        stack.append(node)
    }
    /// Set when the document breaks nesting or nests too deep (the Linux parser recovers from
    /// some broken nesting).
    var nestingError: String?
    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let open = stack.last, open.name == elementName else {
            if nestingError == nil {
                let inside = stack.last.map { "<\($0.name)> is still open" } ?? "no element is open"
                nestingError = "malformed XML at line \(parser.lineNumber): closing tag </\(elementName)> but \(inside)"
            }
            parser.abortParsing()
            return
        }
        stack.removeLast()
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) {
        stack.last?.text += string
    }
    /// `<name><![CDATA[arrow]]></name>` is the text "arrow" (the parser reports CDATA apart).
    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        stack.last?.text += String(decoding: CDATABlock, as: UTF8.self)
    }
}

/// The offset of the first byte of `data` that is not valid UTF-8, or nil when it all is.
func firstInvalidUTF8Offset(_ data: Data) -> Int? {
    var decoder = UTF8()
    var bytes = data.makeIterator()
    var offset = 0
    while true {
        switch decoder.decode(&bytes) {
        case .scalarValue(let scalar): offset += UTF8.width(scalar)
        case .emptyInput: return nil
        case .error: return offset
        }
    }
}

/// Parses an annotation XML file into its element tree, checking that the root is `<rootName>`;
/// errors name the file and the line (`expected` says what the file should be). The file must be
/// UTF-8 (or ASCII) text: FoundationXML on Linux traps on element names that are not valid UTF-8.
func parseAnnotationTree(data: Data, file: String, rootName: String = "annotation",
                         expected: String = "a VOC annotation XML file") throws -> XMLElementNode {
    if let offset = firstInvalidUTF8Offset(data) {
        throw VOCError(file: file, "byte \(offset) (0x\(String(data[data.startIndex + offset], radix: 16))) is not UTF-8 text; expected \(expected)")
    }
    let parser = XMLParser(data: data)
    let builder = TreeBuilder()
    parser.delegate = builder
    let parsed = parser.parse()
    if let nesting = builder.nestingError { throw VOCError(file: file, nesting) }
    if parsed, !builder.stack.isEmpty {
        let path = builder.stack.map { "<\($0.name)>" }.joined()
        throw VOCError(file: file, "malformed XML: \(path) is not closed properly at line \(parser.lineNumber) (mismatched or missing closing tag, or the file ends early)")
    }
    guard parsed, let root = builder.root else {
        let open = builder.stack.last.map { " inside <\($0.name)>" } ?? ""
        let reason = parser.parserError.map { " (\(($0 as NSError).domain) code \(($0 as NSError).code))" } ?? ""
        throw VOCError(file: file, "malformed XML at line \(parser.lineNumber), column \(parser.columnNumber)\(open)\(reason)")
    }
    guard root.name == rootName else { throw VOCError(file: file, "the root element is <\(root.name)>, expected <\(rootName)>") }
    return root
}

/// Parses one VOC annotation file into its objects (see `parseAnnotationTree` for the checks).
public func parseVOCAnnotation(data: Data, file: String) throws -> [VOCObject] {
    let root = try parseAnnotationTree(data: data, file: file)
    var objects = [VOCObject]()
    for (n, obj) in root.children.enumerated() where obj.name == "object" {
        let index = root.children[0..<n].filter { $0.name == "object" }.count
        let path = "<annotation><object> #\(index + 1)"
        guard let nameNode = obj.child("name") else { throw VOCError(file: file, "\(path) has no <name> element") }
        let name = nameNode.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty else { throw VOCError(file: file, "\(path) <name> is empty") }
        var difficult = false
        if let d = obj.child("difficult") {
            guard let v = Int(d.text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw VOCError(file: file, "\(path) <difficult> is '\(d.text)', expected 0 or 1")
            }
            difficult = v != 0
        }
        objects.append(VOCObject(name: name, box: try boundingBox(of: obj, path: "\(path) (\(name))", file: file), difficult: difficult))
    }
    return objects
}

/// The `<bndbox>` of an `<object>` element (`path` names the object in errors): its four
/// coordinates must be finite numbers.
func boundingBox(of obj: XMLElementNode, path: String, file: String) throws -> VOCBox {
    guard let bb = obj.child("bndbox") else { throw VOCError(file: file, "\(path) has no <bndbox> element") }
    func coordinate(_ tag: String) throws -> Double {
        guard let node = bb.child(tag) else { throw VOCError(file: file, "\(path) <bndbox> has no <\(tag)> element") }
        let text = node.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let v = Double(text), v.isFinite else { throw VOCError(file: file, "\(path) <bndbox><\(tag)> is '\(text)', expected a number") }
        return v
    }
    return VOCBox(xmin: try coordinate("xmin"), ymin: try coordinate("ymin"), xmax: try coordinate("xmax"), ymax: try coordinate("ymax"))
}

/// A VOC devkit year folder (`.../VOC2007`): the split's image ids and their objects.
public struct VOCDataset: Sendable {
    public var imageIDs: [String]
    public var objects: [String: [VOCObject]]

    public init(imageIDs: [String], objects: [String: [VOCObject]]) { self.imageIDs = imageIDs; self.objects = objects }

    /// Reads `ImageSets/Main/<split>.txt` and every listed `Annotations/<id>.xml` (ids that lead
    /// outside the devkit folder are refused unless `allowOutsideRoot`, see `vocSplitImageIDs`).
    public static func load(devkit: String, split: String, allowOutsideRoot: Bool = false) throws -> VOCDataset {
        let ids = try vocSplitImageIDs(devkit: devkit, split: split, allowOutsideRoot: allowOutsideRoot)
        var objects = [String: [VOCObject]]()
        for id in ids {
            let path = vocAnnotationPath(devkit: devkit, imageID: id)
            objects[id] = try parseVOCAnnotation(data: readFileContents(path, expected: "the annotation XML of image \(id)"), file: path)
        }
        return VOCDataset(imageIDs: ids, objects: objects)
    }

    /// Class names present in the split: the 20 VOC classes in their usual order first, then
    /// any others alphabetically.
    public var classNames: [String] {
        let present = Set(objects.values.flatMap { $0.map(\.name) })
        return vocClassNames.filter(present.contains) + present.subtracting(vocClassNames).sorted()
    }
}

/// The image ids listed in `<devkit>/ImageSets/<imageSet>/<split>.txt` (`Main` for detection,
/// `Segmentation` for segmentation), in file order (blank lines skipped; LF or CRLF line ends).
/// An id that can lead outside the devkit folder (absolute, or with a `..` component:
/// `outsideFolderProblem`) is an error naming the line, unless `allowOutsideRoot` (the config's
/// `data.allow_outside_root`).
public func vocSplitImageIDs(devkit: String, split: String, imageSet: String = "Main", allowOutsideRoot: Bool = false) throws -> [String] {
    let path = URL(fileURLWithPath: devkit).appendingPathComponent("ImageSets/\(imageSet)/\(split).txt").path
    let data = try readFileContents(path, expected: "the split list of a devkit folder such as VOCdevkit/VOC2007 (ImageSets/\(imageSet)/\(split).txt)")
    var ids = [String]()
    // Empty lines are kept while splitting so that `n` counts lines ("\r\n" is one Character).
    for (n, line) in String(decoding: data, as: UTF8.self).split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
        let id = line.trimmingCharacters(in: .whitespaces)
        if id.isEmpty { continue }
        if !allowOutsideRoot, let problem = outsideFolderProblem(id) {
            throw VOCError(file: path, "line \(n + 1): image id '\(id)' \(problem), so its files can lie outside the devkit folder \(devkit); expected a plain id such as 000005 (\(outsideFolderRemedy))")
        }
        ids.append(id)
    }
    return ids
}

/// `<devkit>/Annotations/<imageID>.xml`.
public func vocAnnotationPath(devkit: String, imageID: String) -> String {
    URL(fileURLWithPath: devkit).appendingPathComponent("Annotations/\(imageID).xml").path
}

/// Class names from a comma-separated list (`--classes a,b`): blanks around names trimmed,
/// empty names dropped.
public func parseClassList(_ list: String) -> [String] {
    list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// The 20 PASCAL VOC classes in the devkit's order.
public let vocClassNames = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                            "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
