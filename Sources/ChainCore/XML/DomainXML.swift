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
            let n = b.count
            guard n > 1, let p = b.baseAddress else { return n == 1 && b[0] == 0x2F }
            guard p[0] == 0x2F, p[n - 1] != 0x2F else { return false }
            var prev: UInt8 = 0x2F
            var i = 1
            while i < n {
                let c = p[i]
                if prev == 0x2F {  // a component starts at i
                    if c == 0x2F { return false }
                    if c == 0x2E {
                        let next = i + 1 < n ? p[i + 1] : 0x2F
                        if next == 0x2F { return false }
                        if next == 0x2E && (i + 2 >= n || p[i + 2] == 0x2F) { return false }
                    }
                }
                prev = c
                i += 1
            }
            return true
        } ?? false
    }

    /// Byte offset of the last `/`, or nil.
    public static func lastSlash(_ path: String) -> Int? {
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
        guard root.doc.withCursor({ $0.isNamed(root.index, "domain") }) else {
            throw DomainXMLError(file: file, message: "root element is <\(root.name)>, expected <domain>")
        }
        return try domain(from: root, file: file, state: state, resolve: resolve)
    }

    public static func domain(
        from root: XMLNode, file: String? = nil, state: DomainState? = nil, resolve: PathResolver = { $0 }
    ) throws(DomainXMLError) -> ParsedDomain {
        try root.doc.withCursor { (c) throws(DomainXMLError) -> ParsedDomain in
            try domain(c, root.index, file: file, state: state, resolve: resolve)
        }
    }

    static func domain(
        _ c: XMLCursor, _ root: Int32, file: String?, state: DomainState?, resolve: PathResolver
    ) throws(DomainXMLError) -> ParsedDomain {
        let nameEl = c.child(root, "name")
        let name = c.text(nameEl).trimmed
        guard nameEl >= 0, !name.isEmpty else {
            throw DomainXMLError(file: file, message: "domain has no <name>")
        }
        let uuid = c.text(c.child(root, "uuid")).trimmed
        let live = c.attrIndex(root, "id") != nil && !c.attr(root, "id", is: "-1")
        var disks: [Disk] = []
        var el = c.child(c.child(root, "devices"), "disk")
        while el >= 0 {
            disks.append(disk(c, el, resolve: resolve))
            el = c.next(el, "disk")
        }
        let d = Domain(name: name, uuid: uuid, state: state ?? (live ? .running : .shutoff), disks: disks)
        return ParsedDomain(domain: d, live: live)
    }

    /// One `<disk>` element.
    public static func disk(from el: XMLNode, resolve: PathResolver = { $0 }) -> Disk {
        el.doc.withCursor { c in disk(c, el.index, resolve: resolve) }
    }

    static func disk(_ c: XMLCursor, _ el: Int32, resolve: PathResolver) -> Disk {
        let targetEl = c.child(el, "target")
        let driverType = c.attr(c.child(el, "driver"), "type")
        var disk = Disk(
            target: c.attr(targetEl, "dev") ?? "?", device: c.attr(el, "device") ?? "disk",
            bus: c.attr(targetEl, "bus"), alias: c.attr(c.child(el, "alias"), "name"),
            readonly: c.hasChild(el, "readonly"), shareable: c.hasChild(el, "shareable"), driverType: driverType)
        let mirror = c.child(el, "mirror")
        if mirror >= 0 {
            let srcEl = c.child(mirror, "source")
            let src = srcEl >= 0
                ? source(c, type: c.attr(mirror, "type") ?? "file", element: srcEl, referencedBy: nil, resolve: resolve).0
                : nil
            disk.mirror = Mirror(job: c.attr(mirror, "job") ?? "copy", ready: c.attr(mirror, "ready", is: "yes"),
                                 source: src)
        }
        disk.chain = chain(c, el, driverType: driverType, resolve: resolve)
        return disk
    }

    /// Builds the chain from `<source>` and nested `<backingStore>` elements.
    static func chain(_ c: XMLCursor, _ diskEl: Int32, driverType: String?, resolve: PathResolver) -> Chain? {
        let srcEl = c.child(diskEl, "source")
        guard srcEl >= 0 else { return nil }
        let (topSource, topIndex) = source(
            c, type: c.attr(diskEl, "type") ?? "file", element: srcEl, referencedBy: nil, resolve: resolve)
        guard let topSource else { return nil }  // empty cdrom etc.
        // Exactly as many layers as the XML nests (arrays grown by doubling would carry up to half again as much
        // unused space for every chain of a large inventory).
        var depth = 1
        var nested = c.child(diskEl, "backingStore")
        while nested >= 0 && depth < 4096 {
            depth += 1
            nested = c.child(nested, "backingStore")
        }
        var layers: [Layer] = []
        layers.reserveCapacity(depth)
        var keys: [String] = [topSource.key]  // for loop detection (chains are short: no Set)
        keys.reserveCapacity(depth)
        var problems: [ChainProblem] = []
        var top = Layer(source: topSource, format: driverType, formatRecorded: driverType != nil, index: topIndex)
        top.encrypted = c.hasChild(diskEl, "encryption") || c.hasChild(srcEl, "encryption")
        layers.append(top)
        var current = diskEl
        var complete = false
        var lastFormat = driverType
        var lastPath = topSource.path
        while true {
            let bs = c.child(current, "backingStore")
            guard bs >= 0 else {
                // No element: unknown below (probe). A raw image has no backing, so the chain is complete.
                complete = lastFormat == "raw"
                break
            }
            let bsSrc = c.child(bs, "source")
            guard bsSrc >= 0 else {
                complete = true  // <backingStore/> terminator
                break
            }
            let fmt = c.attr(c.child(bs, "format"), "type")
            let (src, index) = source(
                c, type: c.attr(bs, "type") ?? "file", element: bsSrc, referencedBy: lastPath, resolve: resolve,
                indexFrom: bs)
            guard let src else {
                problems.append(.other("backingStore without a usable source below \(keys.last ?? "?")"))
                break
            }
            let key = src.key
            if keys.contains(where: { PlanBytes.equal($0, key) }) {  // file names are bytes
                problems.append(.loop(path: key))
                complete = true
                break
            }
            var layer = Layer(source: src, format: fmt, formatRecorded: fmt != nil, index: index)
            layer.encrypted = c.hasChild(bs, "encryption") || c.hasChild(bsSrc, "encryption")
            layers.append(layer)
            keys.append(key)
            lastFormat = fmt
            lastPath = src.path
            current = bs
        }
        return Chain(layers: layers, origin: .xml, complete: complete, problems: problems)
    }

    /// Parses a `<source>` element of the given disk/backingStore type. A relative file name is resolved against
    /// the directory of the image that names it (`referencedBy`).
    static func source(
        _ c: XMLCursor, type: String, element: Int32, referencedBy: String?, resolve: PathResolver,
        indexFrom: Int32 = -1
    ) -> (ImageSource?, Int?) {
        // libvirt writes `index` on <backingStore> (and on the top <source>); a non-numeric one is no index.
        let index = c.intAttr(c.attrIndex(indexFrom, "index") != nil ? indexFrom : element, "index")
        switch type {
        case "file", "block":
            let written = (type == "file" ? c.attr(element, "file") : c.attr(element, "dev")) ?? c.attr(element, "file")
            guard let written, !written.isEmpty else { return (nil, index) }
            let normal = PathUtil.normalize(
                written, relativeTo: written.utf8.first == 0x2F ? nil : referencedBy.map(PathUtil.dirname))
            return (
                ImageSource(kind: type == "file" ? .file : .block, path: resolve(normal), written: written), index
            )
        case "network":
            var hosts: [String] = []
            var h = c.child(element, "host")
            while h >= 0 {
                if let socket = c.attr(h, "socket") {
                    hosts.append("unix:" + socket)
                } else {
                    let name = c.attr(h, "name") ?? ""
                    hosts.append(c.attr(h, "port").map { "\(name):\($0)" } ?? name)
                }
                h = c.next(h, "host")
            }
            return (
                ImageSource(
                    kind: .network, written: c.attr(element, "name"), networkProtocol: c.attr(element, "protocol"),
                    name: c.attr(element, "name"), hosts: hosts),
                index
            )
        case "volume":
            return (ImageSource(kind: .volume, pool: c.attr(element, "pool"), volume: c.attr(element, "volume")), index)
        case "nvme":
            let a = c.child(element, "address")
            let addr = a < 0 ? nil
                : "\(c.attr(a, "domain") ?? ""):\(c.attr(a, "bus") ?? ""):\(c.attr(a, "slot") ?? "")"
                    + ".\(c.attr(a, "function") ?? "")"
            return (ImageSource(kind: .nvme, name: "\(addr ?? "?")/ns\(c.attr(element, "namespace") ?? "1")"), index)
        case "vhostuser":
            return (ImageSource(kind: .vhostuser, name: c.attr(element, "path")), index)
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
        try root.doc.withCursor { (c) throws(DomainXMLError) -> ParsedSnapshot in
            try snapshot(c, root.index, file: file, resolve: resolve)
        }
    }

    static func snapshot(
        _ c: XMLCursor, _ root: Int32, file: String?, resolve: PathResolver
    ) throws(DomainXMLError) -> ParsedSnapshot {
        guard c.isNamed(root, "domainsnapshot") else {
            throw DomainXMLError(file: file, message: "root element is <\(c.name(root))>, expected <domainsnapshot>")
        }
        let nameEl = c.child(root, "name")
        let name = c.text(nameEl).trimmed
        guard nameEl >= 0, !name.isEmpty else {
            throw DomainXMLError(file: file, message: "snapshot has no <name>")
        }
        let domainEl = c.child(root, "domain")
        let saved = domainEl >= 0 ? domainEl : c.child(root, "inactiveDomain")
        var stateByTarget: [String: [ImageSource]] = [:]
        var el = c.child(c.child(saved, "devices"), "disk")
        while el >= 0 {
            let d = disk(c, el, resolve: resolve)
            if let chain = d.chain { stateByTarget[d.target] = chain.layers.map(\.source) }
            el = c.next(el, "disk")
        }
        var refs: [Snapshot.DiskRef] = []
        el = c.child(c.child(root, "disks"), "disk")
        while el >= 0 {
            let target = c.attr(el, "name") ?? "?"
            let kind = c.attr(el, "snapshot") ?? "external"
            var overlay: ImageSource?
            let src = c.child(el, "source")
            if kind == "external", src >= 0 {
                overlay = source(c, type: c.attr(el, "type") ?? "file", element: src, referencedBy: nil, resolve: resolve).0
            }
            refs.append(Snapshot.DiskRef(target: target, kind: kind, overlay: overlay,
                                         stateSources: kind == "no" ? [] : stateByTarget[target] ?? []))
            el = c.next(el, "disk")
        }
        func text(_ el: Int32) -> String? { el >= 0 ? c.text(el).trimmed : nil }
        let snap = Snapshot(
            name: name, parent: text(c.child(c.child(root, "parent"), "name")), state: text(c.child(root, "state")),
            isCurrent: text(c.child(root, "active")) == "1", disks: refs)
        return ParsedSnapshot(
            snapshot: snap, domainName: text(c.child(saved, "name")), domainUUID: text(c.child(saved, "uuid")))
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
