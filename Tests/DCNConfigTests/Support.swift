import Foundation
import DCNConfig

/// The repository root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Tests/Fixtures/configs/
let fixtureDirectory = repositoryRoot.appendingPathComponent("Tests/Fixtures/configs").path

func fixture(_ name: String) -> String { fixtureDirectory + "/" + name }

/// The error lines of a failed load, with the fixture folder stripped from file names
/// (nil if the config loaded).
func loadErrors(_ name: String, overrides: [String] = []) -> [String]? {
    do {
        _ = try loadConfig(path: fixture(name), overrides: overrides)
        return nil
    } catch let errors as ConfigErrors {
        return errors.errors.map { $0.description.replacingOccurrences(of: fixtureDirectory + "/", with: "") }
    } catch {
        return ["unexpected error type: \(error)"]
    }
}

/// Every YAML file under configs/, relative to the repository root.
func configFiles() -> [String] {
    let root = repositoryRoot.appendingPathComponent("configs")
    guard let walker = FileManager.default.enumerator(atPath: root.path) else { return [] }
    return walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".yaml") }.sorted().map { "configs/" + $0 }
}
