// Where the tests find the repository's files and put their own: one definition for every test target.
import Foundation

/// The repository root (for configs/, docs/ and Tests/Fixtures/), found from this file's path.
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// Absolute path of a file under the repository root.
public func repositoryPath(_ relative: String) -> String {
    URL(fileURLWithPath: repositoryRoot).appendingPathComponent(relative).path
}

/// Absolute path of a file under Tests/Fixtures (works from any checkout, no ../shared needed).
public func fixturePath(_ relative: String) -> String {
    URL(fileURLWithPath: repositoryRoot).appendingPathComponent("Tests/Fixtures").appendingPathComponent(relative).path
}

/// The JSON value a file holds (an object, an array, ...).
public func readJSON(_ path: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
}

/// A fresh folder `name` of this test process (emptied if an earlier test left it).
public func temporaryDirectory(_ name: String) -> String {
    let path = NSTemporaryDirectory() + "dcn-training-\(getpid())-\(name)"
    try? FileManager.default.removeItem(atPath: path)
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A fresh temporary folder for one test, with a unique name.
public func temporaryFolder(_ name: String) throws -> String {
    let dir = NSTemporaryDirectory() + "dcn-tests-\(name)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}
