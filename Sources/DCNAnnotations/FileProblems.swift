// File-system problems in plain words ("is a directory", "no such file"), for every tool that
// reads or writes a user's path, so that no message shows a raw `Error Domain=... "(null)"`.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A file or folder that cannot be read, written or created; the description names the path.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
}

/// Why `path` cannot be read as a file, or nil when it can: "no such file", "is a directory",
/// or the system's reason (e.g. "Permission denied").
public func fileReadProblem(_ path: String) -> String? {
    var st = stat()
    guard stat(path, &st) == 0 else { return errno == ENOENT ? "no such file" : String(cString: strerror(errno)) }
    if (st.st_mode & S_IFMT) == S_IFDIR { return "is a directory" }
    if access(path, R_OK) != 0 { return String(cString: strerror(errno)) }
    return nil
}

/// Why `path` is not an existing folder, or nil when it is: "no such folder" or "is a file".
public func folderProblem(_ path: String) -> String? {
    var st = stat()
    guard stat(path, &st) == 0 else { return errno == ENOENT ? "no such folder" : String(cString: strerror(errno)) }
    return (st.st_mode & S_IFMT) == S_IFDIR ? nil : "is a file, not a folder"
}

/// Why the dataset-relative `path` (a COCO `file_name`, a VOC image id) can lead outside its
/// dataset folder, or nil when it cannot: it is absolute, or has a `..` component. Judged on the
/// text, so that a missing file gets the same answer and `a/../b` cannot escape through a
/// symbolic link `a`; symbolic links inside the folder are followed (whoever put them in the
/// folder chose their targets, while a `file_name` is only text in a file).
public func outsideFolderProblem(_ path: String) -> String? {
    if path.hasPrefix("/") { return "is an absolute path" }
    if path.split(separator: "/").contains("..") { return "has a '..' component" }
    return nil
}

/// How to accept the paths `outsideFolderProblem` refuses, for the messages that refuse them.
public let outsideFolderRemedy = "the config's data.allow_outside_root: true, or the tools' --allow-outside-root, allows it"

/// Why a file cannot be written at `path`, or nil when it can: the path is a directory, or its
/// folder is missing, not a folder or not writable.
public func fileWriteProblem(_ path: String) -> String? {
    var st = stat()
    if stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { return "is a directory" }
    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
    guard stat(folder, &st) == 0 else { return "the folder \(folder) does not exist" }
    if (st.st_mode & S_IFMT) != S_IFDIR { return "\(folder) is not a folder" }
    if access(folder, W_OK) != 0 { return "cannot write in \(folder) (\(String(cString: strerror(errno))))" }
    return nil
}

/// Why the folder `path` cannot be created, or nil when nothing in the way is known: an existing
/// file at the path or at one of its parents, or a symbolic link there to nothing (Foundation would
/// say "A file with the same name already exists").
public func folderCreateProblem(_ path: String) -> String? {
    var url = URL(fileURLWithPath: path).standardizedFileURL
    while url.path != "/" {
        var st = stat()
        if stat(url.path, &st) == 0 {
            return (st.st_mode & S_IFMT) == S_IFDIR ? nil : "\(url.path) is a file, not a folder"
        }
        if lstat(url.path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)) ?? "?"
            return "\(url.path) is a dangling symbolic link: it points to \(target), which does not exist"
        }
        url = url.deletingLastPathComponent()
    }
    return nil
}

/// An error thrown by Foundation while reading or writing a file, in words: the underlying
/// system reason when there is one (e.g. "Is a directory"), otherwise the localized description.
public func describeFileError(_ error: Error) -> String {
    let ns = error as NSError
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if let described = ns.userInfo[NSLocalizedDescriptionKey] as? String { return described }
    return ns.localizedDescription
}

/// Reads a whole file; the error names the path, says why and what was expected
/// (`expected` e.g. "a JSON file").
public func readFileContents(_ path: String, expected: String) throws -> Data {
    if let problem = fileReadProblem(path) { throw FileError(path: path, "\(problem); expected \(expected)") }
    do {
        var st = stat()
        let regular = stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        let url = URL(fileURLWithPath: path)
        // Pipes and devices (e.g. `--results <(zcat dets.json.gz)`) have no size to read up to.
        return regular ? try Data(contentsOf: url) : try FileHandle(forReadingFrom: url).readToEnd() ?? Data()
    } catch {
        throw FileError(path: path, "cannot read the file (\(describeFileError(error))); expected \(expected)")
    }
}

/// Creates the folder `path` and any missing parents; the error names the path and the reason.
public func createFolder(_ path: String) throws {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        throw FileError(path: path, "cannot create the folder (\(folderCreateProblem(path) ?? describeFileError(error)))")
    }
}
