import ChainCore
import Foundation
import Libvirt

#if canImport(Glibc)
    import Glibc
#endif

/// An error observing the host, naming the domain and disk where there is one.
public struct ObserveError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var hint: String?
    public var description: String { hint.map { "\(message)\nhint: \($0)" } ?? message }
    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }
}

/// Builds an `Inventory` from a live libvirt connection or from XML dumps.
public enum InventoryReader {
    // MARK: Completing chains

    /// Completes one disk's chain: probes below an unterminated XML chain and fills sizes, formats and bitmaps of
    /// every local layer from its image header.
    /// `fromTop`: ignore what the XML lists below the active image and follow the image headers instead (shut-off
    /// guests: their inactive XML is only a hint).
    public static func complete(_ disk: inout Disk, fromTop: Bool = false) {
        guard var chain = disk.chain else { return }
        defer { disk.chain = chain }
        if fromTop, chain.problems.isEmpty, chain.layers.count >= 1, chain.layers[0].source.isLocal {
            chain.layers.removeSubrange(1...)
            chain.complete = chain.layers[0].format == "raw"
        }
        // Probe below the last listed layer when the XML chain is not terminated.
        if !chain.complete, chain.problems.isEmpty, let last = chain.layers.last, last.source.isLocal,
            let path = last.source.path
        {
            let known = Set(chain.layers.dropLast().map(\.key))
            let probed = ImageProbe.chain(
                from: path, format: last.format, formatRecorded: last.formatRecorded, index: last.index,
                kind: last.source.kind, written: last.source.written, known: known)
            if !probed.layers.isEmpty {
                chain.layers.removeLast()
                chain.layers.append(contentsOf: probed.layers)
            }
            chain.problems.append(contentsOf: probed.problems)
            chain.origin = chain.layers.count == probed.layers.count ? .probe : .mixed
            chain.complete = probed.problems.isEmpty
            return
        }
        if !chain.complete, chain.problems.isEmpty {
            chain.problems.append(.unterminated(after: chain.layers.last?.key ?? "?"))
        }
        // Fill facts for layers listed in the XML.
        for i in chain.layers.indices {
            guard chain.layers[i].source.isLocal, let path = chain.layers[i].source.path else { continue }
            guard access(path, F_OK) == 0 else {
                let by = i == 0 ? "the domain XML" : (chain.layers[i - 1].key)
                chain.problems.append(.missing(path: path, referencedBy: by))
                continue
            }
            do {
                let h = try ImageProbe.header(path: path)
                chain.layers[i].virtualSize = h.virtualSize
                chain.layers[i].dataBytes = h.allocatedBytes
                chain.layers[i].fileSize = h.fileSize
                chain.layers[i].mtime = h.mtime
                chain.layers[i].bitmaps = h.bitmaps
                chain.layers[i].encrypted = chain.layers[i].encrypted || h.encrypted
                chain.layers[i].dataFile = h.dataFile
                chain.layers[i].backingWritten = h.backing
                if chain.layers[i].format == nil { chain.layers[i].format = h.format }
                if i + 1 < chain.layers.count, h.backingFormat != nil {
                    chain.layers[i + 1].formatRecorded = true
                }
            } catch {
                chain.problems.append(.unreadable(path: path, message: error.message))
            }
        }
    }

    /// Runs `body` for each index on up to `ProcessInfo.activeProcessorCount` threads.
    static func parallel(_ count: Int, _ body: @Sendable (Int) -> Void) {
        if count < 2 {
            for i in 0..<count { body(i) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: count, execute: body)
    }

    // MARK: XML files

    /// Lists `*.xml` files under `paths` (directories recursively, sorted).
    public static func xmlFiles(_ paths: [String]) throws(ObserveError) -> [String] {
        var out: [String] = []
        for path in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                throw ObserveError("\(path): no such file or directory", hint: "give a domain XML file or a directory of them (virsh dumpxml DOMAIN > DIR/DOMAIN.xml)")
            }
            if isDir.boolValue {
                var found: [String] = []
                listXML(path.hasSuffix("/") ? String(path.dropLast()) : path, into: &found)
                out.append(contentsOf: found.sorted())
            } else {
                out.append(path)
            }
        }
        return out
    }

    /// Appends every `*.xml` entry under `dir` (subdirectories too; symlinked directories are not followed).
    static func listXML(_ dir: String, into found: inout [String]) {
        guard let d = opendir(dir) else { return }
        defer { closedir(d) }
        while let e = readdir(d) {
            let (name, type) = withUnsafeBytes(of: e.pointee.d_name) { raw in
                (String(cString: raw.bindMemory(to: CChar.self).baseAddress!), e.pointee.d_type)
            }
            if name == "." || name == ".." { continue }
            let full = dir + "/" + name
            var isDir = type == UInt8(DT_DIR)
            if type == UInt8(DT_UNKNOWN) {
                var st = stat()
                isDir = lstat(full, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
            }
            if isDir {
                listXML(full, into: &found)
            } else if name.hasSuffix(".xml") {
                found.append(full)
            }
        }
    }

    public static func readFile(_ path: String) throws(ObserveError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ObserveError("\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = max(0, Int(st.st_size))
        // Not zero-filled first: read() fills what it returns, and only that is kept.
        return [UInt8](unsafeUninitializedCapacity: size) { buf, initialized in
            var done = 0
            while done < size {
                let n = read(fd, buf.baseAddress! + done, size - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                done += n
            }
            initialized = done
        }
    }

    /// Reads domain XML (and snapshot XML) files. Errors in one file are collected, the others still read.
    /// `probe`: complete unterminated chains and read image facts from local image files.
    public static func fromXMLFiles(
        _ paths: [String], probe: Bool = true, resolve customResolve: PathResolver? = nil, indexed: Bool = true
    ) throws(ObserveError) -> (inventory: Inventory, errors: [String]) {
        let files = try xmlFiles(paths)
        final class Slots: @unchecked Sendable {
            var domains: [ParsedDomain?]
            var snapshots: [DomainXML.ParsedSnapshot?]
            var errors: [String?]
            init(_ n: Int) {
                domains = Array(repeating: nil, count: n)
                snapshots = Array(repeating: nil, count: n)
                errors = Array(repeating: nil, count: n)
            }
        }
        let slots = Slots(files.count)
        // Chunks of consecutive files, handed out to the processors as they become free (a processor that is
        // slowed down by other work does not hold the others up); each chunk has its own path cache, so no lock is
        // taken per file or per path.
        let perChunk = 64
        parallel((files.count + perChunk - 1) / perChunk) { c in
            let cache = CanonicalCache(locking: false)
            let resolve = customResolve ?? { cache.canonical($0) }
            for i in (c * perChunk)..<min(files.count, (c + 1) * perChunk) {
                parseOne(i, resolve, cache)
            }
        }
        @Sendable func parseOne(_ i: Int, _ resolve: PathResolver, _ cache: CanonicalCache) {
            let file = files[i]
            var dom: ParsedDomain?
            var snap: DomainXML.ParsedSnapshot?
            var err: String?
            do {
                let bytes = try readFile(file)
                if isSnapshot(bytes) {
                    snap = try DomainXML.parseSnapshot(bytes, file: file, resolve: resolve)
                } else {
                    var parsed = try DomainXML.parseDomain(bytes, file: file, resolve: resolve)
                    if probe {
                        // Dumps reviewed on another machine name images that are not here: keep the XML's view
                        // and probe only where the active image exists locally.
                        for d in parsed.domain.disks.indices where parsed.domain.disks[d].isChainDisk {
                            guard let top = parsed.domain.disks[d].chain?.active?.source.path,
                                cache.directoryExists(of: top), access(top, F_OK) == 0
                            else { continue }
                            complete(&parsed.domain.disks[d], fromTop: !parsed.live)
                        }
                    }
                    dom = parsed
                }
            } catch let e as DomainXMLError {
                err = e.description
            } catch let e as ObserveError {
                err = e.description
            } catch {
                err = "\(file): \(error)"
            }
            // Each index is written by exactly one worker.
            slots.domains[i] = dom
            slots.snapshots[i] = snap
            slots.errors[i] = err
        }
        // One domain per name: a second dump of the same domain would make its images look shared with itself.
        var domains: [ChainCore.Domain] = []
        var firstFile: [String: String] = [:]
        var errors = slots.errors.compactMap { $0 }
        for (i, parsed) in slots.domains.enumerated() {
            guard let d = parsed?.domain else { continue }
            if let first = firstFile[d.name] {
                errors.append("\(files[i]): domain \(d.name) was already read from \(first); this file is ignored")
                continue
            }
            firstFile[d.name] = files[i]
            domains.append(d)
        }
        for snap in slots.snapshots.compactMap({ $0 }) {
            if let i = domains.firstIndex(where: {
                (snap.domainUUID != nil && $0.uuid == snap.domainUUID) || $0.name == snap.domainName
            }) {
                domains[i].snapshots.append(snap.snapshot)
            }
        }
        let host = paths.count == 1 ? "xml:" + paths[0] : "xml:" + paths.joined(separator: ",")
        return (Inventory(host: host, domains: domains, indexed: indexed), errors)
    }

    static func isSnapshot(_ bytes: [UInt8]) -> Bool {
        // Find the first element name after any prolog.
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "<"), i + 1 < bytes.count, bytes[i + 1] != UInt8(ascii: "?"),
                bytes[i + 1] != UInt8(ascii: "!")
            {
                let tag = Array("<domainsnapshot".utf8)
                return bytes.count >= i + tag.count && Array(bytes[i..<(i + tag.count)]) == tag
            }
            i += 1
        }
        return false
    }

    // MARK: libvirt

    static func state(_ code: DomainStateCode) -> DomainState {
        switch code {
        case .running: return .running
        case .paused: return .paused
        case .shutoff: return .shutoff
        case .crashed: return .crashed
        case .pmsuspended: return .suspended
        case .blocked: return .blocked
        case .shutdown: return .shutdown
        default: return .other
        }
    }

    /// Observes every domain of `connection` (or only `names`), running and shut off.
    public static func fromLibvirt(
        _ connection: Connection, names: [String] = [], resolve: @escaping PathResolver = ImageProbe.resolver,
        indexed: Bool = true
    ) throws(ObserveError) -> Inventory {
        let all: [Libvirt.Domain]
        do {
            all = try connection.listAllDomains()
        } catch {
            throw ObserveError(
                "cannot list domains on \(connection.uri): \(error)", hint: "check that libvirtd runs and that you may connect (virsh -c \(connection.uri) list --all)")
        }
        var chosen = all
        if !names.isEmpty {
            chosen = []
            for name in names {
                guard let d = all.first(where: { $0.name == name }) else {
                    throw ObserveError("domain \(name) not found on \(connection.uri)", hint: "virsh -c \(connection.uri) list --all shows the domains")
                }
                chosen.append(d)
            }
        }
        let selected = chosen
        final class Results: @unchecked Sendable {
            var domains: [ChainCore.Domain?]
            var errors: [String?]
            init(_ n: Int) {
                domains = Array(repeating: nil, count: n)
                errors = Array(repeating: nil, count: n)
            }
        }
        let results = Results(selected.count)
        let lock = NSLock()
        parallel(selected.count) { i in
            let d = selected[i]
            var out: ChainCore.Domain?
            var err: String?
            do {
                out = try observe(d, resolve: resolve)
            } catch {
                err = "\(error)"
            }
            lock.lock()
            results.domains[i] = out
            results.errors[i] = err
            lock.unlock()
        }
        if let firstError = results.errors.compactMap({ $0 }).first {
            throw ObserveError(firstError)
        }
        return Inventory(host: connection.uri, domains: results.domains.compactMap { $0 }, indexed: indexed)
    }

    /// Observes one libvirt domain: state, disks and chains, snapshots, block jobs.
    public static func observe(_ d: Libvirt.Domain, resolve: @escaping PathResolver) throws(ObserveError) -> ChainCore.Domain {
        let name = d.name
        do {
            let (code, _) = try d.state()
            let st = state(code)
            let xml = try d.xml(inactive: false)
            var parsed = try DomainXML.parseDomain(Array(xml.utf8), file: "domain \(name)", state: st, resolve: resolve)
            parsed.domain.persistent = (try? d.isPersistent) ?? true
            for i in parsed.domain.disks.indices where parsed.domain.disks[i].isChainDisk {
                complete(&parsed.domain.disks[i], fromTop: !st.isActive)
                if st.isActive {
                    if let info = try blockJobInfo(d, disk: parsed.domain.disks[i].target) {
                        parsed.domain.disks[i].job = ChainCore.BlockJob(
                            type: jobType(info.type), cur: info.cur, end: info.end, bandwidth: info.bandwidth,
                            ready: parsed.domain.disks[i].mirror?.ready ?? false)
                    }
                }
            }
            for snap in try d.snapshots() {
                let sx = try snap.xml()
                var parsedSnap = try DomainXML.parseSnapshot(Array(sx.utf8), file: "snapshot \(snap.name) of \(name)",
                                                             resolve: resolve)
                parsedSnap.snapshot.isCurrent = (try? snap.isCurrent()) ?? parsedSnap.snapshot.isCurrent
                parsed.domain.snapshots.append(parsedSnap.snapshot)
            }
            return parsed.domain
        } catch let e as DomainXMLError {
            throw ObserveError("domain \(name): cannot parse its XML: \(e.message)")
        } catch let e as LibvirtError {
            throw ObserveError("domain \(name): \(e)", hint: "the domain may have been undefined or stopped meanwhile; run again")
        } catch {
            throw ObserveError("domain \(name): \(error)")
        }
    }

    /// Block job of a disk; nil when there is none or the driver cannot tell (e.g. libvirt's test driver).
    static func blockJobInfo(_ d: Libvirt.Domain, disk: String) throws(LibvirtError) -> BlockJobInfo? {
        do {
            return try d.blockJobInfo(disk: disk)
        } catch where error.code == LibvirtError.Code.noSupport {
            return nil
        }
    }

    static func jobType(_ t: Libvirt.BlockJobType) -> ChainCore.BlockJobType {
        switch t {
        case .pull: return .pull
        case .copy: return .copy
        case .commit: return .commit
        case .activeCommit: return .activeCommit
        case .backup: return .backup
        default: return .unknown
        }
    }

    /// Fills `allocation` for every local layer of the given disks (only disks that need a change).
    public static func measureAllocation(_ inventory: inout Inventory, disks: Set<DiskKey>) {
        for di in inventory.domains.indices {
            let dname = inventory.domains[di].name
            for ki in inventory.domains[di].disks.indices {
                let target = inventory.domains[di].disks[ki].target
                guard disks.contains(DiskKey(domain: dname, disk: target)),
                    var chain = inventory.domains[di].disks[ki].chain
                else { continue }
                for li in chain.layers.indices {
                    let layer = chain.layers[li]
                    guard layer.source.isLocal, let path = layer.source.path, let fmt = layer.format else { continue }
                    chain.layers[li].allocation = try? Allocation.measure(path: path, format: fmt)
                }
                inventory.domains[di].disks[ki].chain = chain
            }
        }
    }
}
