// The observed state of one host: domains, disks, their backing chains, snapshots and block jobs.
// Pure value types; produced by ChainOps (libvirt + image probing) or by parsing XML dumps.

import Dispatch

/// Where an image lives. `file` and `block` carry a canonical absolute path.
public enum SourceKind: String, Codable, Sendable, Hashable {
    case file, block, network, volume, nvme, vhostuser, unknown
}

/// A value kept out of line, copy on write, and not stored at all while it equals `T()` — for fields that most of
/// hundreds of thousands of instances leave unset (keeps `Layer` and `ImageSource` small).
struct OutOfLine<T: Hashable & Codable & Sendable & Defaultable>: Hashable, Codable, Sendable {
    private final class Box: @unchecked Sendable {  // mutated only while uniquely referenced
        var value: T
        init(_ value: T) { self.value = value }
    }
    private var box: Box?

    init(_ value: T = T()) {
        box = value == T() ? nil : Box(value)
    }

    /// Reads through `body` without copying the value out.
    @inline(__always) func read<V>(_ body: (borrowing T) -> V, default fallback: @autoclosure () -> V) -> V {
        guard let box else { return fallback() }
        return body(box.value)
    }

    mutating func update(_ change: (inout T) -> Void) {
        if box == nil {
            box = Box(T())
        } else if !isKnownUniquelyReferenced(&box!) {
            box = Box(box!.value)
        }
        change(&box!.value)
        if box!.value == T() { box = nil }
    }

    var value: T { box?.value ?? T() }
    static func == (a: OutOfLine, b: OutOfLine) -> Bool { a.value == b.value }
    func hash(into h: inout Hasher) { h.combine(value) }
    init(from decoder: Decoder) throws { self.init(try T(from: decoder)) }
    func encode(to encoder: Encoder) throws { try value.encode(to: encoder) }
}

/// A type with an all-default value (`T()`).
protocol Defaultable { init() }

/// One image of a chain, as libvirt or the image header names it.
public struct ImageSource: Hashable, Codable, Sendable {
    public var kind: SourceKind
    /// Canonical absolute path (`file`, `block`); nil for other kinds or an empty drive.
    public var path: String?
    /// The name exactly as written in the XML or image header (may be relative, may contain `..`).
    public var written: String?
    /// Network, volume and other non-file details.
    private var remote: OutOfLine<Remote>

    struct Remote: Hashable, Codable, Sendable, Defaultable {
        var networkProtocol: String?
        var name: String?
        var hosts: [String] = []
        var pool: String?
        var volume: String?
    }

    /// Network sources.
    public var networkProtocol: String? {
        get { remote.read({ $0.networkProtocol }, default: nil) }
        set { remote.update { $0.networkProtocol = newValue } }
    }
    public var name: String? {
        get { remote.read({ $0.name }, default: nil) }
        set { remote.update { $0.name = newValue } }
    }
    public var hosts: [String] {
        get { remote.read({ $0.hosts }, default: []) }
        set { remote.update { $0.hosts = newValue } }
    }
    /// Volume sources.
    public var pool: String? {
        get { remote.read({ $0.pool }, default: nil) }
        set { remote.update { $0.pool = newValue } }
    }
    public var volume: String? {
        get { remote.read({ $0.volume }, default: nil) }
        set { remote.update { $0.volume = newValue } }
    }

    public init(
        kind: SourceKind, path: String? = nil, written: String? = nil, networkProtocol: String? = nil,
        name: String? = nil, hosts: [String] = [], pool: String? = nil, volume: String? = nil
    ) {
        self.kind = kind
        self.path = path
        self.written = written
        remote = OutOfLine(
            Remote(networkProtocol: networkProtocol, name: name, hosts: hosts, pool: pool, volume: volume))
    }

    public static func file(_ path: String, written: String? = nil) -> ImageSource {
        ImageSource(kind: .file, path: path, written: written ?? path)
    }

    /// Identity used by the reverse index. Two sources with the same key are the same image.
    public var key: String {
        switch kind {
        case .file, .block: return path ?? "\(kind.rawValue):?"
        case .network:
            return "\(networkProtocol ?? "network")://\(hosts.joined(separator: ","))/\(name ?? "")"
        case .volume: return "volume:\(pool ?? "")/\(volume ?? "")"
        default: return "\(kind.rawValue):\(name ?? path ?? "")"
        }
    }

    /// Short human name: the path, or protocol://host/name, or pool/volume.
    public var display: String { key }

    /// True for local sources virt-chain can read and write as files or devices.
    public var isLocal: Bool { (kind == .file || kind == .block) && path != nil }
}

/// One image in a chain. `chain.layers[0]` is the active image; the last layer is the base.
public struct Layer: Hashable, Codable, Sendable {
    public var source: ImageSource
    /// Image format (`qcow2`, `raw`, …); nil when unknown.
    public var format: String?
    /// Whether the format of this layer is recorded by whoever references it (the overlay's header
    /// `backing format`, or the XML `<format>`/`<driver type>`). A qcow2 overlay with an unrecorded backing
    /// format makes libvirt ≥ 6.0 refuse to start the guest.
    public var formatRecorded: Bool
    public var encrypted: Bool
    /// libvirt's `index` attribute: a stable ID, not a position. nil when not from live XML.
    public var index: Int?
    /// What probing the image file found (unset for the layers of XML dumps).
    private var facts: OutOfLine<Facts>

    struct Facts: Hashable, Codable, Sendable, Defaultable {
        var virtualSize: UInt64?
        var dataBytes: UInt64?
        var fileSize: UInt64?
        var mtime: Double?
        var bitmaps: [String] = []
        var dataFile: String?
        var backingWritten: String?
        var allocation: ExtentSet?
    }

    /// Guest-visible size in bytes.
    public var virtualSize: UInt64? {
        get { facts.read({ $0.virtualSize }, default: nil) }
        set { facts.update { $0.virtualSize = newValue } }
    }
    /// Host bytes allocated to this image (like `du`).
    public var dataBytes: UInt64? {
        get { facts.read({ $0.dataBytes }, default: nil) }
        set { facts.update { $0.dataBytes = newValue } }
    }
    /// Host file size (st_size) for files.
    public var fileSize: UInt64? {
        get { facts.read({ $0.fileSize }, default: nil) }
        set { facts.update { $0.fileSize = newValue } }
    }
    /// Modification time, seconds since the epoch (for fingerprints).
    public var mtime: Double? {
        get { facts.read({ $0.mtime }, default: nil) }
        set { facts.update { $0.mtime = newValue } }
    }
    /// Names of persistent dirty bitmaps stored in the image.
    public var bitmaps: [String] {
        get { facts.read({ $0.bitmaps }, default: []) }
        set { facts.update { $0.bitmaps = newValue } }
    }
    /// qcow2 external data file, if any.
    public var dataFile: String? {
        get { facts.read({ $0.dataFile }, default: nil) }
        set { facts.update { $0.dataFile = newValue } }
    }
    /// Backing name as written in this layer's header (may be relative); nil for a base.
    public var backingWritten: String? {
        get { facts.read({ $0.backingWritten }, default: nil) }
        set { facts.update { $0.backingWritten = newValue } }
    }
    /// Guest ranges whose data this layer holds on its own (measured only for disks that need a change).
    public var allocation: ExtentSet? {
        get { facts.read({ $0.allocation }, default: nil) }
        set { facts.update { $0.allocation = newValue } }
    }

    public init(
        source: ImageSource, format: String? = nil, formatRecorded: Bool = true, index: Int? = nil,
        virtualSize: UInt64? = nil, dataBytes: UInt64? = nil, fileSize: UInt64? = nil, mtime: Double? = nil,
        encrypted: Bool = false, bitmaps: [String] = [], dataFile: String? = nil, backingWritten: String? = nil,
        allocation: ExtentSet? = nil
    ) {
        self.source = source
        self.format = format
        self.formatRecorded = formatRecorded
        self.index = index
        self.encrypted = encrypted
        facts = OutOfLine(
            Facts(
                virtualSize: virtualSize, dataBytes: dataBytes, fileSize: fileSize, mtime: mtime, bitmaps: bitmaps,
                dataFile: dataFile, backingWritten: backingWritten, allocation: allocation))
    }

    public var key: String { source.key }
}

/// A problem that makes a disk's chain unknown or unsafe to touch.
public enum ChainProblem: Hashable, Codable, Sendable, CustomStringConvertible {
    /// A backing file that does not exist.
    case missing(path: String, referencedBy: String)
    /// The chain refers back to an image already in it.
    case loop(path: String)
    /// The image header could not be read (message from the prober or qemu-img).
    case unreadable(path: String, message: String)
    /// The XML chain is not terminated and probing was not possible.
    case unterminated(after: String)
    /// Something else, with a message.
    case other(String)

    public var description: String {
        switch self {
        case .missing(let path, let by): return "backing file \(path) (named by \(by)) does not exist"
        case .loop(let path): return "backing chain loops: \(path) appears twice"
        case .unreadable(let path, let message): return "cannot read image header of \(path): \(message)"
        case .unterminated(let after): return "chain below \(after) is not known (XML not terminated, image not probed)"
        case .other(let message): return message
        }
    }
}

/// How the chain was learned.
public enum ChainOrigin: String, Codable, Sendable, Hashable {
    /// Entirely from the domain XML (terminated by `<backingStore/>` or by a raw/backing-less image).
    case xml
    /// From probing image headers (qemu-img or the native reader).
    case probe
    /// XML prefix, completed by probing.
    case mixed
}

public struct Chain: Hashable, Codable, Sendable {
    /// `layers[0]` is the active image, `layers.last` the base.
    public var layers: [Layer]
    public var origin: ChainOrigin
    /// Whether the chain is known to end at `layers.last` (no further backing).
    public var complete: Bool
    public var problems: [ChainProblem]

    public init(layers: [Layer], origin: ChainOrigin = .xml, complete: Bool = true, problems: [ChainProblem] = []) {
        self.layers = layers
        self.origin = origin
        self.complete = complete
        self.problems = problems
    }

    public var depth: Int { layers.count }
    public var active: Layer? { layers.first }
    public var base: Layer? { layers.last }
}

public enum DomainState: String, Codable, Sendable, Hashable {
    case running, paused, shutoff, crashed, suspended, blocked, shutdown, other
    /// Whether block jobs run against this domain (it has a QEMU process).
    public var isActive: Bool { self == .running || self == .paused || self == .blocked || self == .shutdown }
}

public enum BlockJobType: String, Codable, Sendable, Hashable {
    case pull, copy, commit, activeCommit = "active-commit", backup, unknown
}

public struct BlockJob: Hashable, Codable, Sendable {
    public var type: BlockJobType
    public var cur: UInt64
    public var end: UInt64
    public var bandwidth: UInt64
    /// `<mirror ready='yes'>` in the live XML.
    public var ready: Bool
    public init(type: BlockJobType, cur: UInt64 = 0, end: UInt64 = 0, bandwidth: UInt64 = 0, ready: Bool = false) {
        self.type = type
        self.cur = cur
        self.end = end
        self.bandwidth = bandwidth
        self.ready = ready
    }
}

/// The `<mirror>` element of a disk in a running job.
public struct Mirror: Hashable, Codable, Sendable {
    public var job: String
    public var ready: Bool
    public var source: ImageSource?
}

public struct Disk: Hashable, Codable, Sendable {
    /// `vda`, `sdb`, …
    public var target: String
    /// `disk`, `cdrom`, `floppy`, `lun`.
    public var device: String
    public var bus: String?
    /// QEMU device alias (`virtio-disk0`), live XML only.
    public var alias: String?
    public var readonly: Bool
    public var shareable: Bool
    /// `<driver type=…>` of the top image.
    public var driverType: String?
    /// nil for an empty drive (cdrom without media).
    public var chain: Chain?
    public var mirror: Mirror?
    public var job: BlockJob?

    public init(
        target: String, device: String = "disk", bus: String? = nil, alias: String? = nil, readonly: Bool = false,
        shareable: Bool = false, driverType: String? = nil, chain: Chain? = nil, mirror: Mirror? = nil,
        job: BlockJob? = nil
    ) {
        self.target = target
        self.device = device
        self.bus = bus
        self.alias = alias
        self.readonly = readonly
        self.shareable = shareable
        self.driverType = driverType
        self.chain = chain
        self.mirror = mirror
        self.job = job
    }

    /// A cdrom, floppy or empty drive is not a chain virt-chain manages.
    public var isChainDisk: Bool { (device == "disk" || device == "lun") && chain != nil }
}

/// A libvirt snapshot (metadata) and the images it names.
public struct Snapshot: Hashable, Codable, Sendable {
    public struct DiskRef: Hashable, Codable, Sendable {
        public var target: String
        /// `external`, `internal`, `no`, `manual`.
        public var kind: String
        /// For external snapshots: the overlay created by the snapshot.
        public var overlay: ImageSource?
        /// The image that held the disk when the snapshot was taken (from the saved domain XML); its chain
        /// is the snapshot's point-in-time content.
        public var stateSources: [ImageSource]
        public init(target: String, kind: String, overlay: ImageSource? = nil, stateSources: [ImageSource] = []) {
            self.target = target
            self.kind = kind
            self.overlay = overlay
            self.stateSources = stateSources
        }
    }
    public var name: String
    public var parent: String?
    public var state: String?
    public var isCurrent: Bool
    public var disks: [DiskRef]
    public init(name: String, parent: String? = nil, state: String? = nil, isCurrent: Bool = false, disks: [DiskRef] = []) {
        self.name = name
        self.parent = parent
        self.state = state
        self.isCurrent = isCurrent
        self.disks = disks
    }
}

public struct Domain: Hashable, Codable, Sendable {
    public var name: String
    public var uuid: String
    public var state: DomainState
    public var persistent: Bool
    public var disks: [Disk]
    public var snapshots: [Snapshot]
    public init(
        name: String, uuid: String, state: DomainState, persistent: Bool = true, disks: [Disk] = [],
        snapshots: [Snapshot] = []
    ) {
        self.name = name
        self.uuid = uuid
        self.state = state
        self.persistent = persistent
        self.disks = disks
        self.snapshots = snapshots
    }
}

/// Who references an image.
public struct ImageReference: Hashable, Codable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Codable, Sendable {
        /// In a disk's chain at this position (0 = active).
        case chain(position: Int)
        /// Named by a snapshot: as its overlay, or as part of its saved state.
        case snapshotOverlay(snapshot: String)
        case snapshotState(snapshot: String)
    }
    public var domain: String
    public var disk: String
    public var kind: Kind
    public init(domain: String, disk: String, kind: Kind) {
        self.domain = domain
        self.disk = disk
        self.kind = kind
    }
    public var description: String {
        switch kind {
        case .chain(let position): return "\(domain)/\(disk) (chain position \(position))"
        case .snapshotOverlay(let name): return "\(domain) snapshot \(name) (overlay of \(disk))"
        case .snapshotState(let name): return "\(domain) snapshot \(name) (state of \(disk))"
        }
    }
}

/// A value handed to other threads whose safety the caller guarantees (each is used by one thread at a time).
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// An image key with its hash computed once (`PlanBytes.hash`): the reference index picks a shard with it and its
/// dictionaries hash only these eight bytes, not the whole path again.
struct PathKey: Hashable, Sendable, Codable {
    let string: String
    let hash: UInt64

    init(_ string: String) {
        self.string = string
        hash = PlanBytes.withBytes(string, PlanBytes.hash)
    }

    static func == (a: PathKey, b: PathKey) -> Bool { a.hash == b.hash && a.string == b.string }

    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

/// image key → references, split into shards by a hash of the key so that several threads can build it at once.
struct ReferenceIndex: Sendable, Codable, Hashable {
    var shards: [[PathKey: Inventory.RefList]]

    @inline(__always) static func shard(of key: PathKey, _ count: Int) -> Int {
        Int((key.hash >> 32) % UInt64(count))
    }

    /// Shards of a large inventory's index (work items for `concurrentPerform`). Two: every shard walks the whole
    /// inventory, and more shards measured slower on two processors (the walks contend for the same objects).
    static let parallelShards = 2

    subscript(key: String) -> Inventory.RefList? {
        let k = PathKey(key)
        return shards.count == 1 ? shards[0][k] : shards[ReferenceIndex.shard(of: k, shards.count)][k]
    }

    var count: Int { shards.reduce(0) { $0 + $1.count } }
}

/// Everything observed on one host.
public struct Inventory: Sendable, Codable, Hashable {
    /// libvirt URI or the XML directory the inventory was read from.
    public var host: String
    /// The domains. After changing which images a chain holds, call `reindex()`.
    public var domains: [Domain]
    /// image key → every chain and snapshot that references it (most images have exactly one reference, so the
    /// common case is stored without an array).
    private var index: ReferenceIndex

    /// One reference, as positions in `domains` (16 bytes; the names are read from the domains when asked).
    struct CompactRef: Hashable, Codable, Sendable {
        enum Kind: UInt8, Hashable, Codable, Sendable { case chain, snapshotOverlay, snapshotState }
        var domain: Int32
        /// Chain: the disk's index in `Domain.disks`; snapshot: the snapshot's index in `Domain.snapshots`.
        var item: Int32
        /// Chain: the position in the chain; snapshot: the index in `Snapshot.disks`.
        var sub: Int32
        var kind: Kind
    }

    /// The references of one image (most have exactly one: stored without an array).
    enum RefList: Sendable, Codable, Hashable {
        case one(CompactRef)
        case many([CompactRef])
        mutating func append(_ r: CompactRef) {
            switch self {
            case .one(let first): self = .many([first, r])
            case .many(var rs):
                self = .one(r)  // release the array's storage before appending (keeps it uniquely referenced)
                rs.append(r)
                self = .many(rs)
            }
        }
        func forEach(_ body: (CompactRef) -> Bool) {
            switch self {
            case .one(let r): _ = body(r)
            case .many(let rs):
                for k in rs.indices where !body(rs[k]) { return }
            }
        }
    }

    /// The reference `c` with names.
    func reference(_ c: CompactRef) -> ImageReference {
        let d = domains[Int(c.domain)]
        switch c.kind {
        case .chain:
            return ImageReference(domain: d.name, disk: d.disks[Int(c.item)].target, kind: .chain(position: Int(c.sub)))
        case .snapshotOverlay, .snapshotState:
            let snapshot = d.snapshots[Int(c.item)]
            let target = snapshot.disks[Int(c.sub)].target
            return ImageReference(
                domain: d.name, disk: target,
                kind: c.kind == .snapshotState
                    ? .snapshotState(snapshot: snapshot.name) : .snapshotOverlay(snapshot: snapshot.name))
        }
    }

    /// Whether `c` is the chain of (`domain`, `disk`), without building the reference.
    func isChain(_ c: CompactRef, domain: String, disk: String) -> Bool {
        c.kind == .chain && domains[Int(c.domain)].disks[Int(c.item)].target == disk
            && domains[Int(c.domain)].name == domain
    }

    func all(_ list: RefList) -> [ImageReference] {
        var out: [ImageReference] = []
        list.forEach {
            out.append(reference($0))
            return true
        }
        return out
    }

    public init(host: String, domains: [Domain]) {
        self.init(host: host, domains: domains, indexed: true)
    }

    /// `indexed` false: no reference index yet (every image looks unreferenced) until `reindex()` — for callers
    /// that build it side by side with other work.
    public init(host: String, domains: [Domain], indexed: Bool) {
        self.host = host
        self.domains = domains
        self.index = indexed ? Inventory.buildIndex(domains) : ReferenceIndex(shards: [[:]])
    }

    /// Rebuilds the reference index from `domains`.
    public mutating func reindex() { index = Inventory.buildIndex(domains) }

    /// Read-only view of the reference index: `references[key]` is every reference to the image `key`.
    public struct ReferenceView: Sendable {
        let inventory: Inventory
        public subscript(key: String) -> [ImageReference]? { inventory.index[key].map(inventory.all) }
        public var count: Int { inventory.index.count }
    }

    public var references: ReferenceView { ReferenceView(inventory: self) }

    /// Every chain and snapshot that references the image `key`.
    public func references(of key: String) -> [ImageReference] { index[key].map(all) ?? [] }

    /// Number of distinct images referenced.
    public var imageCount: Int { index.count }


    /// Rebuilds the reference index while `work` runs alongside, on the processors the index leaves free.
    public mutating func reindex(alongside work: () -> Void) {
        let domains = self.domains
        index = withoutActuallyEscaping(work) { Inventory.buildIndex(domains, alongside: $0) }
    }

    static func buildIndex(_ domains: [Domain], alongside work: (() -> Void)? = nil) -> ReferenceIndex {
        // Large inventories are indexed on several threads, each taking the keys of its own shard; `work` is one
        // more task of the same batch.
        let shards = domains.count < 512 ? 1 : ReferenceIndex.parallelShards
        let slots = UnsafeMutablePointer<[PathKey: RefList]>.allocate(capacity: shards)
        slots.initialize(repeating: [:], count: shards)
        defer {
            slots.deinitialize(count: shards)
            slots.deallocate()
        }
        let out = SharedSlots(base: slots)
        let build = { @Sendable (shard: Int) in
            out.base[shard] = buildShard(domains, shard: shard, of: shards)
        }
        if let work {
            let extra = UncheckedBox(work)
            DispatchQueue.concurrentPerform(iterations: shards + 1) { task in
                if task == shards { extra.value() } else { build(task) }
            }
        } else if shards == 1 {
            build(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: shards, execute: build)
        }
        return ReferenceIndex(shards: Array(UnsafeBufferPointer(start: slots, count: shards)))
    }

    static func buildShard(_ domains: [Domain], shard: Int, of shards: Int) -> [PathKey: RefList] {
        var refs: [PathKey: RefList] = [:]
        refs.reserveCapacity(domains.count * 16 / shards)
        func add(_ path: String, _ ref: CompactRef) {
            let key = PathKey(path)
            guard shards == 1 || ReferenceIndex.shard(of: key, shards) == shard else { return }
            if let i = refs.index(forKey: key) {
                refs.values[i].append(ref)
            } else {
                refs[key] = .one(ref)
            }
        }
        for d in domains.indices {
            for k in domains[d].disks.indices {
                // Through a buffer pointer: only the fields read are loaded (no copy of each Layer).
                domains[d].disks[k].chain?.layers.withUnsafeBufferPointer { layers in
                    for position in layers.indices {
                        let kind = layers[position].source.kind
                        let key: String
                        if kind == .file || kind == .block, let path = layers[position].source.path {
                            key = path  // = source.key, without building it
                        } else {
                            key = layers[position].source.key
                        }
                        add(key, CompactRef(domain: Int32(d), item: Int32(k), sub: Int32(position), kind: .chain))
                    }
                }
            }
            for (si, snapshot) in domains[d].snapshots.enumerated() {
                for (ri, ref) in snapshot.disks.enumerated() {
                    if let overlay = ref.overlay {
                        add(overlay.key, CompactRef(domain: Int32(d), item: Int32(si), sub: Int32(ri), kind: .snapshotOverlay))
                    }
                    for state in ref.stateSources {
                        add(state.key, CompactRef(domain: Int32(d), item: Int32(si), sub: Int32(ri), kind: .snapshotState))
                    }
                }
            }
        }
        return refs
    }

    /// References to `key` other than the chain of (`domain`, `disk`) itself. An image with any such reference is
    /// *shared*: it must never be written, moved or deleted. A snapshot overlay reference is not counted: the
    /// overlay's content is not part of the snapshot's point-in-time state (the state sources are).
    public func foreignReferences(of key: String, domain: String, disk: String) -> [ImageReference] {
        foreignReferenceSample(of: key, domain: domain, disk: disk, limit: Int.max).sample
    }

    /// How many foreign references `key` has, and the first `limit` of them (without building the whole list).
    public func foreignReferenceSample(
        of key: String, domain: String, disk: String, limit: Int
    ) -> (count: Int, sample: [ImageReference]) {
        guard let list = index[key] else { return (0, []) }
        var count = 0
        var sample: [ImageReference] = []
        list.forEach { c in
            switch c.kind {
            case .chain: if isChain(c, domain: domain, disk: disk) { return true }
            case .snapshotState: break
            case .snapshotOverlay: return true
            }
            count += 1
            if sample.count < limit { sample.append(reference(c)) }
            return true
        }
        return (count, sample)
    }

    public func isShared(_ key: String, domain: String, disk: String) -> Bool {
        hasForeignReference(key: key, domain: domain, disk: disk)
    }

    /// Calls `body` with each reference to the image `key`, in index order, until it returns false.
    public func forEachReference(of key: String, _ body: (ImageReference) -> Bool) {
        index[key]?.forEach { body(reference($0)) }
    }

    /// `!foreignReferences(of: key, domain: domain, disk: disk).isEmpty` without building the array: whether the
    /// image has a reference other than the chain of (`domain`, `disk`) — another chain, or a snapshot's saved
    /// state. Stops at the first one. Allocates nothing (the planner's hot path).
    public func hasForeignReference(key: String, domain: String, disk: String) -> Bool {
        var foreign = false
        index[key]?.forEach { c in
            switch c.kind {
            case .chain: foreign = !isChain(c, domain: domain, disk: disk)
            case .snapshotState: foreign = true
            case .snapshotOverlay: foreign = false
            }
            return !foreign
        }
        return foreign
    }

    /// Whether every reference to `key` (if any) is the chain of (`domain`, `disk`): no other chain and no snapshot,
    /// not even as an overlay, names the image. Allocates nothing.
    public func isReferencedOnlyByChain(key: String, domain: String, disk: String) -> Bool {
        var only = true
        index[key]?.forEach { c in
            if isChain(c, domain: domain, disk: disk) { return true }
            only = false
            return false
        }
        return only
    }

    /// Calls `body` with the key of every image that has more than one reference (in index order). Only such an
    /// image can be shared by two chains, or named twice by one; the planner uses this to skip looking up the
    /// others. Allocates nothing.
    public func forEachKeyWithSeveralReferences(_ body: (String) -> Void) {
        for shard in index.shards {
            var i = shard.startIndex
            while i != shard.endIndex {
                if case .many = shard.values[i] { body(shard.keys[i].string) }
                shard.formIndex(after: &i)
            }
        }
    }

    public func domain(named name: String) -> Domain? { domains.first { $0.name == name } }
}

/// Identifies one disk of one domain.
public struct DiskKey: Hashable, Codable, Sendable, Comparable, CustomStringConvertible {
    public var domain: String
    public var disk: String
    public init(domain: String, disk: String) {
        self.domain = domain
        self.disk = disk
    }
    public static func < (a: DiskKey, b: DiskKey) -> Bool { (a.domain, a.disk) < (b.domain, b.disk) }
    public var description: String { "\(domain)/\(disk)" }
}
