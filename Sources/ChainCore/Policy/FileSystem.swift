// The little file access the loaders need (stat, read, list a directory), behind a protocol so that callers can
// substitute their own (tests use `InMemoryFileSystem`). `LocalFileSystem` is the only code in ChainCore that
// touches the host, and only to read.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a path names (after following symbolic links).
public enum FileStatus: Hashable, Sendable {
    case file
    case directory
    case missing
    /// `stat` failed for another reason (message from the system, e.g. `Permission denied`).
    case inaccessible(String)
}

/// A file operation failed; `message` is the system's reason, e.g. `Permission denied`.
public struct FileSystemError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Read-only access to files, as the policy and configuration loaders need it.
public protocol ReadOnlyFileSystem: Sendable {
    func status(of path: String) -> FileStatus
    /// The whole file.
    func read(_ path: String) throws(FileSystemError) -> [UInt8]
    /// The names of the entries of a directory (without `.` and `..`), in any order.
    func entries(of directory: String) throws(FileSystemError) -> [String]
    /// A canonical name for the file or directory (symbolic links resolved), used to load a file only once and to
    /// stop at directory loops; nil when it cannot be determined.
    func canonicalPath(_ path: String) -> String?
}

/// The host's file system.
public struct LocalFileSystem: ReadOnlyFileSystem {
    public init() {}

    public func status(of path: String) -> FileStatus {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return .missing }
            return .inaccessible(Self.message(code))
        }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        default: return .file
        }
    }

    public func read(_ path: String) throws(FileSystemError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError(Self.message(errno)) }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                posixRead(fd, buffer.baseAddress, buffer.count)
            }
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                throw FileSystemError(Self.message(code))
            }
            if count == 0 { break }
            result.append(contentsOf: chunk[0..<count])
        }
        return result
    }

    public func entries(of directory: String) throws(FileSystemError) -> [String] {
        guard let dir = opendir(directory) else { throw FileSystemError(Self.message(errno)) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                    String(cString: $0)
                }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func canonicalPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private static func message(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}

/// `read(2)`, named so that it does not clash with `ReadOnlyFileSystem.read`.
private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}

/// Files held in memory, keyed by path. Directories are implied by the paths of the files in them
/// (`"policies/web.json"` makes `policies` a directory). For tests and for callers that already have the bytes.
public struct InMemoryFileSystem: ReadOnlyFileSystem {
    public var files: [String: [UInt8]]
    /// Paths whose `read` fails with this message (as if permission were denied).
    public var unreadable: [String: String]

    public init(files: [String: [UInt8]] = [:], unreadable: [String: String] = [:]) {
        self.files = files
        self.unreadable = unreadable
    }

    public init(texts: [String: String]) {
        self.init(files: texts.mapValues { Array($0.utf8) })
    }

    public func status(of path: String) -> FileStatus {
        let path = Self.clean(path)
        if files[path] != nil || unreadable[path] != nil { return .file }
        let prefix = path.isEmpty || path == "/" ? path : path + "/"
        if (Array(files.keys) + Array(unreadable.keys)).contains(where: { $0.hasPrefix(prefix) }) { return .directory }
        return .missing
    }

    public func read(_ path: String) throws(FileSystemError) -> [UInt8] {
        let path = Self.clean(path)
        if let message = unreadable[path] { throw FileSystemError(message) }
        guard let bytes = files[path] else {
            throw FileSystemError(status(of: path) == .directory ? "Is a directory" : "No such file or directory")
        }
        return bytes
    }

    public func entries(of directory: String) throws(FileSystemError) -> [String] {
        let directory = Self.clean(directory)
        let prefix = directory.isEmpty || directory == "/" ? directory : directory + "/"
        var names = Set<String>()
        for path in Array(files.keys) + Array(unreadable.keys) where path.hasPrefix(prefix) {
            let rest = path.dropFirst(prefix.count)
            if let name = rest.split(separator: "/", omittingEmptySubsequences: true).first {
                names.insert(String(name))
            }
        }
        guard !names.isEmpty else { throw FileSystemError("No such file or directory") }
        return Array(names)
    }

    public func canonicalPath(_ path: String) -> String? { Self.clean(path) }

    /// Drops a trailing `/` and `./` prefixes so that `policies/` and `./policies` name `policies`.
    private static func clean(_ path: String) -> String {
        var p = path
        while p.hasPrefix("./") { p.removeFirst(2) }
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }
}
