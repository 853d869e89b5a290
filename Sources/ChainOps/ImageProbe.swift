import ChainCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What one image header says.
public struct ImageHeader: Sendable, Hashable {
    public var format: String
    public var virtualSize: UInt64?
    /// Backing name as written in the header (may be relative).
    public var backing: String?
    /// Backing format recorded in the header (qcow2 extension 0xE2792ACA); nil = not recorded.
    public var backingFormat: String?
    public var encrypted: Bool
    public var bitmaps: [String]
    public var dataFile: String?
    public var clusterSize: UInt64?
    public var corrupt: Bool
    /// Host file facts.
    public var fileSize: UInt64
    public var allocatedBytes: UInt64
    public var mtime: Double
}

public struct ProbeError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// Reads image headers natively (qcow2 and raw), falling back to `qemu-img info` for every other format or for
/// qcow2 features the native reader does not handle (external data files, extended L2 for allocation maps).
public enum ImageProbe {
    static let qcow2Magic: UInt32 = 0x5146_49FB

    /// Canonical absolute path: lexically normalised, then `realpath` when the file exists.
    public static func canonical(_ path: String, relativeTo dir: String? = nil) -> String {
        let normal = PathUtil.normalize(path, relativeTo: dir)
        guard let resolved = realpath(normal, nil) else { return normal }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Canonicalises paths through a cache of canonical directories: one `realpath` per directory, then one
    /// `lstat` per file (to follow a symlinked file); no syscall at all for files in directories that do not exist
    /// (XML dumps reviewed on another machine).
    public static let resolver: PathResolver = { CanonicalCache.shared.canonical($0) }

    /// A resolver with its own unsynchronised cache, for one thread at a time.
    /// `realpath` of a directory, or nil when it does not exist or is not a directory.
    static func realDirectory(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        var st = stat()
        guard stat(r, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
        return String(cString: r)
    }

    public static func makeResolver() -> PathResolver {
        let cache = CanonicalCache(locking: false)
        return { cache.canonical($0) }
    }

    static func fileFacts(_ fd: Int32, path: String) throws(ProbeError) -> (size: UInt64, alloc: UInt64, mtime: Double, block: Bool) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ProbeError(path: path, message: String(cString: strerror(errno))) }
        let isBlock = (st.st_mode & S_IFMT) == S_IFBLK
        var size = UInt64(max(0, st.st_size))
        if isBlock {
            let end = lseek(fd, 0, SEEK_END)
            if end > 0 { size = UInt64(end) }
        }
        let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        return (size, isBlock ? size : UInt64(st.st_blocks) * 512, mtime, isBlock)
    }

    /// Reads `count` bytes at `offset`; short reads at end of file return what is there.
    static func pread(_ fd: Int32, _ offset: UInt64, _ count: Int) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buf.withUnsafeMutableBytes { p in
                Glibc.pread(fd, p.baseAddress.map { $0 + done }, count - done, off_t(offset) + off_t(done))
            }
            if n <= 0 { break }
            done += n
        }
        if done < count { buf.removeLast(count - done) }
        return buf
    }

    @inline(__always) static func be32(_ b: [UInt8], _ o: Int) -> UInt32 {
        guard o + 4 <= b.count else { return 0 }
        return UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }

    @inline(__always) static func be64(_ b: [UInt8], _ o: Int) -> UInt64 {
        UInt64(be32(b, o)) << 32 | UInt64(be32(b, o + 4))
    }

    /// Magics of formats the native reader leaves to qemu-img.
    static let otherMagics: [(String, [UInt8])] = [
        ("vmdk", Array("KDMV".utf8)), ("qed", [0x51, 0x45, 0x44, 0x00]), ("luks", [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]),
        ("vhdx", Array("vhdxfile".utf8)), ("vpc", Array("conectix".utf8)), ("cloop", Array("#!/bin/sh".utf8)),
    ]

    /// Probes one image header. Returns nil for formats the native reader does not understand.
    public static func nativeHeader(path: String) throws(ProbeError) -> ImageHeader? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ProbeError(path: path, message: String(cString: strerror(errno))) }
        defer { close(fd) }
        let facts = try fileFacts(fd, path: path)
        let head = pread(fd, 0, 4096)
        if head.count >= 72 && be32(head, 0) == qcow2Magic {
            return try qcow2Header(fd: fd, head: head, path: path, facts: facts)
        }
        for (_, magic) in otherMagics where head.starts(with: magic) { return nil }
        if head.count >= 0x20 && Array(head[0..<4]) == Array("vdi ".utf8) { return nil }
        if head.count > 0x44 && be32(head, 0x40) == 0xBEDA_107F { return nil }  // vdi signature
        return ImageHeader(
            format: "raw", virtualSize: facts.size, backing: nil, backingFormat: nil, encrypted: false, bitmaps: [],
            dataFile: nil, clusterSize: nil, corrupt: false, fileSize: facts.size, allocatedBytes: facts.alloc,
            mtime: facts.mtime)
    }

    static func qcow2Header(
        fd: Int32, head: [UInt8], path: String, facts: (size: UInt64, alloc: UInt64, mtime: Double, block: Bool)
    ) throws(ProbeError) -> ImageHeader? {
        let version = be32(head, 4)
        guard version == 2 || version == 3 else { return nil }
        let backingOffset = be64(head, 8)
        let backingSize = Int(be32(head, 16))
        let clusterBits = be32(head, 20)
        let size = be64(head, 24)
        let cryptMethod = be32(head, 32)
        var incompatible: UInt64 = 0
        var headerLength = 72
        if version == 3 {
            incompatible = be64(head, 72)
            headerLength = Int(be32(head, 100))
        }
        var backing: String?
        if backingOffset != 0 && backingSize > 0 && backingSize <= 1023 {
            let b = pread(fd, backingOffset, backingSize)
            backing = String(decoding: b, as: UTF8.self)
        }
        var backingFormat: String?
        var bitmaps: [String] = []
        var dataFile: String?
        var encrypted = cryptMethod != 0
        // Header extensions.
        let clusterSize = UInt64(1) << UInt64(min(clusterBits, 31))
        let extArea = pread(fd, 0, Int(min(clusterSize, 65536)))
        var o = headerLength
        while o + 8 <= extArea.count {
            let type = be32(extArea, o)
            let len = Int(be32(extArea, o + 4))
            let data = o + 8
            if type == 0 || data + len > extArea.count { break }
            switch type {
            case 0xE279_2ACA:
                backingFormat = String(decoding: extArea[data..<(data + len)], as: UTF8.self)
            case 0x4441_5441:
                dataFile = String(decoding: extArea[data..<(data + len)], as: UTF8.self)
            case 0x0537_BE77:
                encrypted = true
            case 0x2385_2875 where len >= 24:
                let count = Int(be32(extArea, data))
                let dirSize = be64(extArea, data + 8)
                let dirOffset = be64(extArea, data + 16)
                if count > 0 && dirSize <= 64 << 20 {
                    bitmaps = bitmapNames(fd: fd, offset: dirOffset, size: Int(dirSize), count: count)
                }
            default: break
            }
            o = data + ((len + 7) & ~7)
        }
        if incompatible & 0x4 != 0 && dataFile == nil { dataFile = "(external data file)" }
        return ImageHeader(
            format: "qcow2", virtualSize: size, backing: backing, backingFormat: backingFormat, encrypted: encrypted,
            bitmaps: bitmaps, dataFile: dataFile, clusterSize: clusterSize, corrupt: incompatible & 0x2 != 0,
            fileSize: facts.size, allocatedBytes: facts.alloc, mtime: facts.mtime)
    }

    static func bitmapNames(fd: Int32, offset: UInt64, size: Int, count: Int) -> [String] {
        let dir = pread(fd, offset, size)
        var names: [String] = []
        var o = 0
        for _ in 0..<count {
            guard o + 24 <= dir.count else { break }
            let nameSize = Int(UInt16(dir[o + 18]) << 8 | UInt16(dir[o + 19]))
            let extra = Int(be32(dir, o + 20))
            let nameStart = o + 24 + extra
            guard nameStart + nameSize <= dir.count else { break }
            names.append(String(decoding: dir[nameStart..<(nameStart + nameSize)], as: UTF8.self))
            o = (nameStart + nameSize + 7) & ~7
        }
        return names
    }

    // MARK: qemu-img fallback

    /// `qemu-img info --output=json -U PATH` for one image (no chain).
    public static func qemuImgHeader(path: String) throws(ProbeError) -> ImageHeader {
        let result: CommandResult
        do {
            result = try Command.run(["qemu-img", "info", "--output=json", "-U", path])
        } catch {
            throw ProbeError(path: path, message: error.description)
        }
        guard result.succeeded else {
            throw ProbeError(path: path, message: "qemu-img info: " + result.stderrString.trimmed)
        }
        guard let obj = try? JSONSerialization.jsonObject(with: result.stdout) as? [String: Any] else {
            throw ProbeError(path: path, message: "qemu-img info printed no JSON object")
        }
        var facts: (size: UInt64, alloc: UInt64, mtime: Double, block: Bool) = (0, 0, 0, false)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            if let f = try? fileFacts(fd, path: path) { facts = f }
            close(fd)
        }
        let specific = (obj["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        let bitmaps = (specific?["bitmaps"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        return ImageHeader(
            format: obj["format"] as? String ?? "unknown",
            virtualSize: (obj["virtual-size"] as? NSNumber)?.uint64Value,
            backing: obj["backing-filename"] as? String,
            backingFormat: obj["backing-filename-format"] as? String,
            encrypted: (obj["encrypted"] as? Bool) ?? false,
            bitmaps: bitmaps,
            dataFile: specific?["data-file"] as? String,
            clusterSize: (obj["cluster-size"] as? NSNumber)?.uint64Value,
            corrupt: (specific?["corrupt"] as? Bool) ?? false,
            fileSize: facts.size,
            allocatedBytes: (obj["actual-size"] as? NSNumber)?.uint64Value ?? facts.alloc,
            mtime: facts.mtime)
    }

    /// Native reader first, qemu-img for anything else.
    public static func header(path: String) throws(ProbeError) -> ImageHeader {
        if let h = try nativeHeader(path: path) { return h }
        return try qemuImgHeader(path: path)
    }

    /// Follows the backing chain from `path` (canonical absolute). `known` holds layers already listed (from XML)
    /// above it, for loop detection.
    public static func chain(from path: String, format: String? = nil, formatRecorded: Bool = true,
                             index: Int? = nil, kind: SourceKind = .file, written: String? = nil,
                             known: Set<String> = []) -> (layers: [Layer], problems: [ChainProblem]) {
        var layers: [Layer] = []
        var problems: [ChainProblem] = []
        var seen = known
        var current = path
        var currentWritten = written ?? path
        var recorded = formatRecorded
        var expectedFormat = format
        var currentIndex = index
        var currentKind = kind
        var referencedBy: String?
        while true {
            if seen.contains(current) {
                problems.append(.loop(path: current))
                break
            }
            seen.insert(current)
            guard access(current, F_OK) == 0 else {
                problems.append(.missing(path: current, referencedBy: referencedBy ?? "the domain XML"))
                break
            }
            let header: ImageHeader
            do {
                header = try ImageProbe.header(path: current)
            } catch {
                problems.append(.unreadable(path: current, message: error.message))
                break
            }
            var layer = Layer(
                source: ImageSource(kind: currentKind, path: current, written: currentWritten),
                format: expectedFormat ?? header.format, formatRecorded: recorded, index: currentIndex,
                virtualSize: header.virtualSize, dataBytes: header.allocatedBytes, fileSize: header.fileSize,
                mtime: header.mtime, encrypted: header.encrypted, bitmaps: header.bitmaps, dataFile: header.dataFile,
                backingWritten: header.backing)
            if let expectedFormat, expectedFormat != header.format, !(expectedFormat == "raw") {
                problems.append(
                    .other("\(current) is recorded as \(expectedFormat) but its header says \(header.format)"))
            }
            if header.corrupt { problems.append(.unreadable(path: current, message: "qcow2 image is marked corrupt")) }
            layer.format = expectedFormat ?? header.format
            layers.append(layer)
            // A raw image recorded as raw has no backing even if its bytes look like a header.
            guard layer.format != "raw", let backing = header.backing, !backing.isEmpty else { break }
            if backing.hasPrefix("json:") || backing.contains("://") {
                problems.append(.other("backing \(backing) of \(current) is not a local file; not followed"))
                break
            }
            let next = canonical(backing, relativeTo: PathUtil.dirname(current))
            referencedBy = current
            currentWritten = backing
            expectedFormat = header.backingFormat
            recorded = header.backingFormat != nil
            currentIndex = nil
            currentKind = .file
            current = next
            if !recorded {
                // Probe the format but remember it was not recorded.
                expectedFormat = nil
            }
        }
        return (layers, problems)
    }
}


/// Thread-safe cache of canonical directory paths.
final class CanonicalCache: @unchecked Sendable {
    static let shared = CanonicalCache(locking: true)
    private let lock: NSLock?
    init(locking: Bool) { lock = locking ? NSLock() : nil }
    /// normalised directory → canonical directory, or nil when it does not exist.
    private var dirs: [String: String?] = [:]

    /// The last few directories seen and their canonical forms, most recent first: the images of one chain
    /// usually share a directory, and chains alternate between a guest's directory and a base directory, so most
    /// paths need neither a dictionary lookup nor a new string. (Only without the lock: one thread per cache.)
    private var recent: [(dir: [UInt8], canonical: String?)] = []
    private static let recentLimit = 4

    /// The canonical form of the directory `normal[..<slash]` (nil: it does not exist).
    private func directory(of normal: inout String, slash: Int) -> String? {
        if lock == nil {
            let hit = normal.withUTF8 { b -> Int? in
                for (k, entry) in recent.enumerated() where entry.dir.count == slash {
                    if slash == 0 { return k }  // "/"
                    if entry.dir.withUnsafeBytes({ memcmp($0.baseAddress!, b.baseAddress!, slash) }) == 0 { return k }
                }
                return nil
            }
            if let hit {
                if hit > 0 { recent.swapAt(hit, hit - 1) }  // keep frequent ones in front
                return recent[max(0, hit - 1)].canonical
            }
        }
        let canonical = lookup(PathUtil.dirname(normal))
        if lock == nil {
            if recent.count == Self.recentLimit { recent.removeLast() }
            recent.insert((normal.withUTF8 { Array($0[..<slash]) }, canonical), at: 0)
        }
        return canonical
    }

    func canonical(_ path: String) -> String {
        var normal = PathUtil.normalize(path)
        guard let slash = PathUtil.lastSlash(normal) else {  // a bare name: relative to the working directory
            guard let cwd = lookup(".") else { return normal }
            return cwd == "/" ? "/" + normal : cwd + "/" + normal
        }
        let canonicalDir = directory(of: &normal, slash: slash)
        guard let canonicalDir else { return normal }
        let full: String
        if canonicalDir.utf8.count == slash && normal.utf8.starts(with: canonicalDir.utf8) {
            full = normal  // the directory is canonical already: no new string
        } else {
            let name = PathUtil.basename(normal)
            full = canonicalDir == "/" ? "/" + name : canonicalDir + "/" + name
        }
        var st = stat()
        if lstat(full, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK {
            return ImageProbe.canonical(full)
        }
        return full
    }

    /// The canonical form of a normalised directory (nil: it does not exist), cached. Built from the parent's
    /// canonical form, one `lstat` per new directory (`realpath` would re-read every component: thousands of
    /// failing `readlink` calls for dumps whose directories are not on this machine).
    func lookup(_ dir: String) -> String? {
        lock?.lock()
        let cached = dirs[dir]
        lock?.unlock()
        if let cached { return cached }
        let resolved: String?
        if dir == "/" {
            resolved = "/"
        } else if !dir.hasPrefix("/") {
            resolved = ImageProbe.realDirectory(dir)  // relative (the working directory): rare
        } else if let parent = lookup(PathUtil.dirname(dir)) {
            let candidate = (parent == "/" ? "" : parent) + "/" + PathUtil.basename(dir)
            var st = stat()
            if lstat(candidate, &st) != 0 {
                resolved = nil
            } else if (st.st_mode & S_IFMT) == S_IFLNK {
                resolved = ImageProbe.realDirectory(candidate)
            } else {
                resolved = (st.st_mode & S_IFMT) == S_IFDIR ? candidate : nil
            }
        } else {
            resolved = nil  // the parent does not exist: nor does this
        }
        lock?.lock()
        dirs[dir] = .some(resolved)
        lock?.unlock()
        return resolved
    }

    /// Whether the directory of the normalised absolute `path` exists (from the cache; one `lstat` per new one).
    func directoryExists(of path: String) -> Bool {
        var path = path
        guard let slash = PathUtil.lastSlash(path) else { return lookup(".") != nil }
        return directory(of: &path, slash: slash) != nil
    }
}
