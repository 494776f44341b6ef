// Outputs never replace inputs. A tool lists the files it reads; an output path that is one of
// them is refused before anything is written. "The same file" is the same device and inode after
// following symlinks, so a symlink (a run's `latest`), a hard link or another spelling of the path
// (`./x`, `a/../x`) counts as the file it names.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The files a command reads, each with what it is ("the checkpoint given to --checkpoint").
public struct ReadFiles: Sendable {
    private struct Identity: Hashable, Sendable {
        let device: UInt64
        let inode: UInt64
    }

    private var roles: [Identity: String] = [:]

    public init() {}

    /// Adds the file at `path` (a missing path adds nothing: there is nothing to overwrite).
    public mutating func add(_ path: String, as role: String) {
        if let identity = Self.identity(path), roles[identity] == nil { roles[identity] = role }
    }

    /// Adds the files directly inside `folder` (e.g. a folder of result files), each as
    /// "<role>'s file <name>".
    public mutating func addFiles(in folder: String, as role: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names.sorted() { add(folder + "/" + name, as: "\(role)'s file \(name)") }
    }

    /// Why writing `output` would replace a file read, or nil when it replaces none.
    public func overwriteProblem(_ output: String) -> String? {
        guard let identity = Self.identity(output), let role = roles[identity] else { return nil }
        return "is \(role); an output never replaces a file that is read: give another path"
    }

    /// Device and inode of the file `path` names, symlinks followed; nil when there is none.
    private static func identity(_ path: String) -> Identity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Identity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }
}

/// Whether two output paths name the same file, existing or not (the folder's symlinks resolved):
/// `a.json` and `./a.json` do.
public func sameOutputPath(_ a: String, _ b: String) -> Bool {
    func canonical(_ path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        guard let resolved = realpath(folder, nil) else { return url.standardizedFileURL.path }
        defer { free(resolved) }
        return String(cString: resolved) + "/" + url.lastPathComponent
    }
    return canonical(a) == canonical(b)
}
