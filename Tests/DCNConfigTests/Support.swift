import Foundation
import DCNConfig
import TestSupport

/// The repository root (TestSupport's) as a URL.
let repositoryURL = URL(fileURLWithPath: repositoryRoot)

/// Tests/Fixtures/configs/
let fixtureDirectory = repositoryURL.appendingPathComponent("Tests/Fixtures/configs").path

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
    let root = repositoryURL.appendingPathComponent("configs")
    guard let walker = FileManager.default.enumerator(atPath: root.path) else { return [] }
    return walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".yaml") }.sorted().map { "configs/" + $0 }
}
