// Domain and snapshot XML (as `virsh dumpxml` / `virsh snapshot-dumpxml` write them) → model.

/// Lexical path helpers. Real canonicalisation (symlinks) needs the file system and is done by the caller through a
/// `PathResolver`; these only make a path absolute and remove `.`, `..` and repeated slashes.
public enum PathUtil {
    public static func normalize(_ path: String, relativeTo dir: String? = nil) -> String {
        if isNormalAbsolute(path) { return path }
        var full = path
        if !path.hasPrefix("/"), let dir {
            full = dir + "/" + path
        }
        let absolute = full.hasPrefix("/")
        var parts: [Substring] = []
        for comp in full.split(separator: "/", omittingEmptySubsequences: true) {
            if comp == "." { continue }
            if comp == ".." {
                if !parts.isEmpty && parts.last != ".." {
                    parts.removeLast()
                } else if !absolute {
                    parts.append(comp)
                }
                continue
            }
            parts.append(comp)
        }
        let joined = parts.joined(separator: "/")
        return absolute ? "/" + joined : (joined.isEmpty ? "." : joined)
    }

    /// Absolute, no `//`, no `.` or `..` component, no trailing slash: already normal.
    static func isNormalAbsolute(_ path: String) -> Bool {
        path.utf8.withContiguousStorageIfAvailable { b -> Bool in
            guard b.count > 1, b[0] == 0x2F, b[b.count - 1] != 0x2F else { return b.count == 1 && b[0] == 0x2F }
            var i = 1
            while i < b.count {
                if b[i] == 0x2F {
                    // A component starts at i+1.
                    if b[i - 1] == 0x2F { return false }
                } else if b[i] == 0x2E && b[i - 1] == 0x2F {
                    let next = i + 1 < b.count ? b[i + 1] : 0x2F
                    if next == 0x2F { return false }
                    if next == 0x2E && (i + 2 >= b.count || b[i + 2] == 0x2F) { return false }
                }
                i += 1
            }
            return true
        } ?? false
    }

    /// Byte offset of the last `/`, or nil.
    static func lastSlash(_ path: String) -> Int? {
        var path = path
        return path.withUTF8 { b -> Int? in
            var i = b.count - 1
            while i >= 0 {
                if b[i] == 0x2F { return i }
                i -= 1
            }
            return nil
        }
    }

    public static func dirname(_ path: String) -> String {
        guard let slash = lastSlash(path) else { return "." }
        if slash == 0 { return "/" }
        let u = path.utf8
        return String(path[..<u.index(u.startIndex, offsetBy: slash)])
    }

    public static func basename(_ path: String) -> String {
        guard let slash = lastSlash(path) else { return path }
        let u = path.utf8
        return String(path[u.index(u.startIndex, offsetBy: slash + 1)...])
    }
}

/// Turns a lexically normalised absolute path into the canonical one (`realpath`). Identity in pure contexts.
public typealias PathResolver = @Sendable (String) -> String

public struct DomainXMLError: Error, CustomStringConvertible, Sendable {
    public var file: String?
    public var message: String
    public var description: String { file.map { "\($0): \(message)" } ?? message }
}

/// A domain parsed from XML, before probing: disks may carry unterminated chains.
public struct ParsedDomain: Sendable {
    public var domain: Domain
    /// Whether the XML looked like a live dump (`<domain id='N'>`).
    public var live: Bool
}

public enum DomainXML {
    public static func domainKeepForBench(_ path: [String]) -> XMLKeep { domainKeep(path) }

    /// Element paths kept when parsing a domain: name, uuid, the disks (whole), everything else skipped.
    static func domainKeep(_ path: [String]) -> XMLKeep {
        switch path.count {
        case 1: return .container
        case 2:
            switch path[1] {
            case "name", "uuid": return .whole
            case "devices": return .container
            default: return .skip
            }
        case 3: return path[2] == "disk" ? .whole : .skip
        default: return .skip
        }
    }

    /// Parses a `<domain>` document. `state` overrides what the XML suggests (live XML has `id`).
    public static func parseDomain(
        _ bytes: [UInt8], file: String? = nil, state: DomainState? = nil, resolve: PathResolver = { $0 }
    ) throws(DomainXMLError) -> ParsedDomain {
        let root: XMLNode
        do {
            root = try XMLReader.document(bytes, keep: domainKeep)
        } catch {
            throw DomainXMLError(file: file, message: "\(error.line):\(error.column): \(error.message)")
        }
        guard root.isNamed("domain") else {
            throw DomainXMLError(file: file, message: "root element is <\(root.name)>, expected <domain>")
        }
        return try domain(from: root, file: file, state: state, resolve: resolve)
    }

    public static func domain(
        from root: XMLNode, file: String? = nil, state: DomainState? = nil, resolve: PathResolver = { $0 }
    ) throws(DomainXMLError) -> ParsedDomain {
        guard let name = root.child("name")?.text.trimmed, !name.isEmpty else {
            throw DomainXMLError(file: file, message: "domain has no <name>")
        }
        let uuid = root.child("uuid")?.text.trimmed ?? ""
        let live = root[attribute: "id"].map { $0 != "-1" } ?? false
        var disks: [Disk] = []
        for el in root.child("devices")?.children("disk") ?? [] {
            disks.append(disk(from: el, resolve: resolve))
        }
        let d = Domain(name: name, uuid: uuid, state: state ?? (live ? .running : .shutoff), disks: disks)
        return ParsedDomain(domain: d, live: live)
    }

    /// One `<disk>` element.
    public static func disk(from el: XMLNode, resolve: PathResolver = { $0 }) -> Disk {
        let target = el.child("target")?[attribute: "dev"] ?? "?"
        let device = el[attribute: "device"] ?? "disk"
        let driverType = el.child("driver")?[attribute: "type"]
        var disk = Disk(
            target: target, device: device, bus: el.child("target")?[attribute: "bus"],
            alias: el.child("alias")?[attribute: "name"], readonly: el.child("readonly") != nil,
            shareable: el.child("shareable") != nil, driverType: driverType)
        if let mirror = el.child("mirror") {
            let src = mirror.child("source").flatMap {
                source(type: mirror[attribute: "type"] ?? "file", element: $0, base: nil, resolve: resolve).0
            }
            disk.mirror = Mirror(job: mirror[attribute: "job"] ?? "copy", ready: mirror[attribute: "ready"] == "yes",
                                 source: src)
        }
        disk.chain = chain(from: el, driverType: driverType, resolve: resolve)
        return disk
    }

    /// Builds the chain from `<source>` and nested `<backingStore>` elements.
    static func chain(from diskEl: XMLNode, driverType: String?, resolve: PathResolver) -> Chain? {
        let type = diskEl[attribute: "type"] ?? "file"
        guard let srcEl = diskEl.child("source") else { return nil }
        let (topSource, topIndex) = source(type: type, element: srcEl, base: nil, resolve: resolve)
        guard let topSource else { return nil }  // empty cdrom etc.
        var layers: [Layer] = []
        var problems: [ChainProblem] = []
        var top = Layer(source: topSource, format: driverType, formatRecorded: driverType != nil, index: topIndex)
        top.encrypted = diskEl.child("encryption") != nil || srcEl.child("encryption") != nil
        layers.append(top)
        var current = diskEl
        var complete = false
        var currentDir = topSource.path.map(PathUtil.dirname)
        while true {
            guard let bs = current.child("backingStore") else {
                // No element: unknown below (probe). A raw image has no backing, so the chain is complete.
                complete = layers.last?.format == "raw"
                break
            }
            guard let bsSrc = bs.child("source") else {
                complete = true  // <backingStore/> terminator
                break
            }
            let fmt = bs.child("format")?[attribute: "type"]
            let (src, index) = source(
                type: bs[attribute: "type"] ?? "file", element: bsSrc, base: currentDir, resolve: resolve,
                indexFrom: bs)
            guard let src else {
                problems.append(.other("backingStore without a usable source below \(layers.last?.key ?? "?")"))
                break
            }
            let key = src.key
            if layers.contains(where: { $0.key == key }) {
                problems.append(.loop(path: key))
                complete = true
                break
            }
            var layer = Layer(source: src, format: fmt, formatRecorded: fmt != nil, index: index)
            layer.encrypted = bs.child("encryption") != nil || bsSrc.child("encryption") != nil
            layers.append(layer)
            currentDir = src.path.map(PathUtil.dirname)
            current = bs
        }
        return Chain(layers: layers, origin: .xml, complete: complete, problems: problems)
    }

    /// Parses a `<source>` element of the given disk/backingStore type.
    static func source(
        type: String, element: XMLNode, base: String?, resolve: PathResolver, indexFrom: XMLNode? = nil
    ) -> (ImageSource?, Int?) {
        let index = (indexFrom?[attribute: "index"] ?? element[attribute: "index"]).flatMap { Int($0) }
        switch type {
        case "file", "block":
            let attr = type == "file" ? "file" : "dev"
            guard let written = element[attribute: attr] ?? element[attribute: "file"], !written.isEmpty else {
                return (nil, index)
            }
            let normal = PathUtil.normalize(written, relativeTo: base)
            return (
                ImageSource(kind: type == "file" ? .file : .block, path: resolve(normal), written: written), index
            )
        case "network":
            let hosts = element.children("host").map { h -> String in
                if let socket = h[attribute: "socket"] { return "unix:" + socket }
                let name = h[attribute: "name"] ?? ""
                return h[attribute: "port"].map { "\(name):\($0)" } ?? name
            }
            return (
                ImageSource(
                    kind: .network, written: element[attribute: "name"],
                    networkProtocol: element[attribute: "protocol"], name: element[attribute: "name"], hosts: hosts),
                index
            )
        case "volume":
            return (
                ImageSource(kind: .volume, pool: element[attribute: "pool"], volume: element[attribute: "volume"]),
                index
            )
        case "nvme":
            let addr = element.child("address").map {
                "\($0[attribute: "domain"] ?? ""):\($0[attribute: "bus"] ?? ""):\($0[attribute: "slot"] ?? "")"
                    + ".\($0[attribute: "function"] ?? "")"
            }
            return (ImageSource(kind: .nvme, name: "\(addr ?? "?")/ns\(element[attribute: "namespace"] ?? "1")"), index)
        case "vhostuser":
            return (ImageSource(kind: .vhostuser, name: element[attribute: "path"]), index)
        default:
            return (ImageSource(kind: .unknown, name: type), index)
        }
    }

    // MARK: Snapshots

    static func snapshotKeep(_ path: [String]) -> XMLKeep {
        switch path.count {
        case 1: return .container
        case 2:
            switch path[1] {
            case "name", "state", "parent", "disks", "active", "creationTime": return .whole
            case "domain", "inactiveDomain": return .container
            default: return .skip
            }
        case 3:
            if path[1] == "domain" || path[1] == "inactiveDomain" {
                return ["name", "uuid"].contains(path[2]) ? .whole : (path[2] == "devices" ? .container : .skip)
            }
            return .skip
        case 4: return path[3] == "disk" ? .whole : .skip
        default: return .skip
        }
    }

    /// A parsed `<domainsnapshot>` with the domain it belongs to (name/uuid from its saved `<domain>`).
    public struct ParsedSnapshot: Sendable {
        public var snapshot: Snapshot
        public var domainName: String?
        public var domainUUID: String?
    }

    public static func parseSnapshot(
        _ bytes: [UInt8], file: String? = nil, resolve: PathResolver = { $0 }
    ) throws(DomainXMLError) -> ParsedSnapshot {
        let root: XMLNode
        do {
            root = try XMLReader.document(bytes, keep: snapshotKeep)
        } catch {
            throw DomainXMLError(file: file, message: "\(error.line):\(error.column): \(error.message)")
        }
        return try snapshot(from: root, file: file, resolve: resolve)
    }

    public static func snapshot(
        from root: XMLNode, file: String? = nil, resolve: PathResolver = { $0 }
    ) throws(DomainXMLError) -> ParsedSnapshot {
        guard root.isNamed("domainsnapshot") else {
            throw DomainXMLError(file: file, message: "root element is <\(root.name)>, expected <domainsnapshot>")
        }
        guard let name = root.child("name")?.text.trimmed, !name.isEmpty else {
            throw DomainXMLError(file: file, message: "snapshot has no <name>")
        }
        let saved = root.child("domain") ?? root.child("inactiveDomain")
        var stateByTarget: [String: [ImageSource]] = [:]
        if let saved {
            for el in saved.child("devices")?.children("disk") ?? [] {
                let d = disk(from: el, resolve: resolve)
                if let chain = d.chain { stateByTarget[d.target] = chain.layers.map(\.source) }
            }
        }
        var refs: [Snapshot.DiskRef] = []
        var named: Set<String> = []
        for el in root.child("disks")?.children("disk") ?? [] {
            let target = el[attribute: "name"] ?? "?"
            let kind = el[attribute: "snapshot"] ?? "external"
            var overlay: ImageSource?
            if kind == "external", let src = el.child("source") {
                overlay = source(type: el[attribute: "type"] ?? "file", element: src, base: nil, resolve: resolve).0
            }
            named.insert(target)
            refs.append(Snapshot.DiskRef(target: target, kind: kind, overlay: overlay,
                                         stateSources: kind == "no" ? [] : stateByTarget[target] ?? []))
        }
        let snap = Snapshot(
            name: name, parent: root.child("parent")?.child("name")?.text.trimmed,
            state: root.child("state")?.text.trimmed, isCurrent: root.child("active")?.text.trimmed == "1",
            disks: refs)
        return ParsedSnapshot(
            snapshot: snap, domainName: saved?.child("name")?.text.trimmed,
            domainUUID: saved?.child("uuid")?.text.trimmed)
    }
}

extension String {
    /// The string without leading and trailing white space.
    public var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
