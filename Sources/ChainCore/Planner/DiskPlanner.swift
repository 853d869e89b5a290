// Planning one disk: checks, the shape optimisation, safety checks on the chosen steps, and the steps themselves.

/// What a plan computes once and every disk uses; read-only, shared by the planning threads.
final class PlanContext: @unchecked Sendable {
    let inventory: Inventory
    let config: HostConfig
    let freeSpace: [String: UInt64]
    let roots: AllowedRoots
    /// nil: look every layer up in the reference index.
    let filter: ReferenceFilter?

    init(inventory: Inventory, config: HostConfig, freeSpace: [String: UInt64], filter: ReferenceFilter? = nil) {
        self.inventory = inventory
        self.config = config
        self.freeSpace = freeSpace
        self.filter = filter
        roots = AllowedRoots(config)
    }

    deinit {
        roots.free()
        filter?.free()
    }
}

/// The images with more than one reference, as a bit filter over a hash of their keys' bytes (false positives,
/// never false negatives). A layer the filter rules out has exactly one reference, its own chain's: it is neither
/// shared nor named twice, and needs no index lookup (which hashes the whole path and misses the cache three times).
/// Trivially copyable; call `free()` when done.
struct ReferenceFilter: @unchecked Sendable {
    private let bits: UnsafeMutablePointer<UInt64>
    private let mask: UInt64

    init(_ inventory: Inventory) {
        var hashes: [UInt64] = []
        inventory.forEachKeyWithSeveralReferences { key in hashes.append(PlanBytes.withBytes(key, PlanBytes.hash)) }
        var size = 1 << 12
        while size < hashes.count * 64 && size < 1 << 26 { size <<= 1 }
        let words = size / 64
        bits = .allocate(capacity: words)
        bits.initialize(repeating: 0, count: words)
        mask = UInt64(size - 1)
        for h in hashes {
            let bit = h & mask
            bits[Int(bit >> 6)] |= 1 << (bit & 63)
        }
    }

    func free() { bits.deallocate() }

    /// Whether the image whose key has the hash `hash` (`PlanBytes.hash`) may have several references.
    @inline(__always) func mayHaveSeveral(_ hash: UInt64) -> Bool {
        let bit = hash & mask
        return bits[Int(bit >> 6)] & (1 << (bit & 63)) != 0
    }
}

/// What a plan computes once per policy (and planning thread): the protect matcher, the normalised
/// storage.activeDir and the texts its steps share (one string for many steps, instead of one per step). Not
/// thread-safe (the depth texts are made on first use).
final class PolicyContext {
    let policy: Policy
    let protect: ProtectMatcher
    let activeDir: String?
    /// `FILE:LINE` of the policy.
    let location: String
    /// `depth N > maxDepth M` for N = maxDepth+1 …, made on first use.
    private var depthRules: [String?] = []
    /// `active image not in storage.activeDir DIR`
    let activeDirRule: String

    /// Whether `activeDir` lies inside the allowed roots (true when there is none).
    let activeDirAllowed: Bool

    init(_ policy: Policy, roots: AllowedRoots) {
        self.policy = policy
        protect = ProtectMatcher(policy.protect)
        activeDir = policy.activeDir.map(PlanPath.normalizedDir)
        activeDirAllowed = activeDir.map { roots.allows($0) } ?? true
        location = policy.location.fileLine
        activeDirRule = "active image not in storage.activeDir \(activeDir ?? "")"
    }

    deinit { protect.free() }

    /// `depth n > maxDepth M` (n > M).
    func depthRule(_ n: Int, maxDepth: Int) -> String {
        let k = n - maxDepth - 1
        guard k >= 0 && k < 256 else { return "depth \(n) > maxDepth \(maxDepth)" }
        if k >= depthRules.count { depthRules.append(contentsOf: repeatElement(nil, count: k + 1 - depthRules.count)) }
        if let rule = depthRules[k] { return rule }
        let rule = "depth \(n) > maxDepth \(maxDepth)"
        depthRules[k] = rule
        return rule
    }
}

/// UTF-8 bytes in memory that the owner frees: trivially copyable, so the planning threads read them without
/// reference counting (they would contend on the counts of shared strings).
struct RawBytes: @unchecked Sendable {
    let base: UnsafeMutablePointer<UInt8>
    let count: Int

    init(_ s: String) {
        let bytes = Array(s.utf8)
        count = bytes.count
        base = .allocate(capacity: max(count, 1))
        base.initialize(from: bytes, count: count)
    }

    func free() { base.deallocate() }

    /// The bytes as a String (for the rare slow paths).
    var string: String { String(decoding: UnsafeBufferPointer(start: base, count: count), as: UTF8.self) }

    /// Whether `bytes` starts with these bytes.
    @inline(__always) func isPrefix(of bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        bytes.count >= count && PlanBytes.equalBytes(bytes.baseAddress, UnsafePointer(base), count)
    }

    /// Whether `bytes` equals these bytes.
    @inline(__always) func equals(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        bytes.count == count && PlanBytes.equalBytes(bytes.baseAddress, UnsafePointer(base), count)
    }
}

/// `HostConfig.allows(path:)` with the roots normalised once per plan. Trivially copyable (no reference counting
/// when the planning threads use it); call `free()` when done.
struct AllowedRoots: @unchecked Sendable {
    /// Each root without trailing slashes (`exact`) and with one (`prefix`; `/` stays `/`).
    private let raw: UnsafeMutableBufferPointer<(exact: RawBytes, prefix: RawBytes)>
    /// Whether every root is ASCII (then ASCII paths are compared byte by byte).
    private let ascii: Bool

    init(_ config: HostConfig) {
        let exact = config.allowedRoots.map { root in
            var r = Substring(root)
            while r.count > 1 && r.hasSuffix("/") { r = r.dropLast() }
            return String(r)
        }
        raw = .allocate(capacity: exact.count)
        for (k, root) in exact.enumerated() {
            (raw.baseAddress! + k).initialize(to: (RawBytes(root), RawBytes(root == "/" ? "/" : root + "/")))
        }
        ascii = exact.allSatisfy { PlanBytes.isASCII($0) }
    }

    func free() {
        for entry in raw {
            entry.exact.free()
            entry.prefix.free()
        }
        raw.deallocate()
    }

    func allows(_ path: String) -> Bool {
        PlanBytes.withBytes(path) { allows(bytes: $0, path: path) }
    }

    /// `allows(path)`, given the UTF-8 of `path`.
    func allows(bytes: UnsafeBufferPointer<UInt8>, path: String) -> Bool {
        // For ASCII strings String's == and hasPrefix (Character-wise, canonical equivalence) are byte comparisons
        // (every prefix ends with `/`, so no grapheme spans its end).
        if ascii && PlanBytes.isASCII(bytes) {
            for entry in raw where entry.exact.equals(bytes) || entry.prefix.isPrefix(of: bytes) { return true }
            return false
        }
        for entry in raw where path == entry.exact.string || path.hasPrefix(entry.prefix.string) { return true }
        return false
    }
}

/// `Policy.protects(path:)` (`Glob.match` in path mode, on UTF-8 bytes) with a cheap pre-check: a glob can only match
/// paths that start with its literal prefix (the bytes before its first `*`, `?`, `[` or `\\`). The common globs —
/// a literal path, or a literal prefix followed by stars only — are decided without running the matcher.
/// Trivially copyable; call `free()` when done.
struct ProtectMatcher: @unchecked Sendable {
    enum Shape {
        /// No special character: the path must equal the pattern.
        case literal
        /// Prefix, then only `*`s: one `*` does not cross `/`, two or more do.
        case prefixStar(crossesSlash: Bool)
        /// Anything else: `Glob.match`.
        case general
    }
    struct Entry {
        var prefix: RawBytes
        var pattern: RawBytes
        var shape: Shape
    }
    private let entries: UnsafeMutableBufferPointer<Entry>

    init(_ globs: [String]) {
        entries = .allocate(capacity: globs.count)
        for (k, glob) in globs.enumerated() {
            let bytes = Array(glob.utf8)
            let special: (UInt8) -> Bool = { $0 == 0x2a || $0 == 0x3f || $0 == 0x5b || $0 == 0x5c }  // * ? [ \\
            let shape: Shape
            var prefix = glob
            if let cut = bytes.firstIndex(where: special) {
                prefix = String(decoding: bytes[..<cut], as: UTF8.self)
                let rest = bytes[cut...]
                shape = rest.allSatisfy { $0 == 0x2a } ? .prefixStar(crossesSlash: rest.count >= 2) : .general
            } else {
                shape = .literal
            }
            (entries.baseAddress! + k).initialize(
                to: Entry(prefix: RawBytes(prefix), pattern: RawBytes(glob), shape: shape))
        }
    }

    func free() {
        for entry in entries {
            entry.prefix.free()
            entry.pattern.free()
        }
        entries.deallocate()
    }

    func matches(_ path: String) -> Bool {
        PlanBytes.withBytes(path) { matches(bytes: $0, path: path) }
    }

    /// `matches(path)`, given the UTF-8 of `path`.
    func matches(bytes: UnsafeBufferPointer<UInt8>, path: String) -> Bool {
        for entry in entries where entry.prefix.isPrefix(of: bytes) {
            switch entry.shape {
            case .literal:
                if bytes.count == entry.prefix.count { return true }
            case .prefixStar(let crossesSlash):
                if crossesSlash || !PlanBytes.containsSlash(bytes, from: entry.prefix.count) { return true }
            case .general:
                if Glob.match(entry.pattern.string, path, pathMode: true) { return true }
            }
        }
        return false
    }
}

/// Byte-level string helpers for the hot path (no allocation, no Character iteration).
enum PlanBytes {
    @inline(__always) static func withBytes<R>(_ s: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let r = s.utf8.withContiguousStorageIfAvailable(body) { return r }
        let copy = Array(s.utf8)
        return copy.withUnsafeBufferPointer(body)
    }

    /// Whether the UTF-8 of `s` starts with that of `prefix`.
    static func hasPrefix(_ s: String, _ prefix: String) -> Bool {
        let m = prefix.utf8.count
        guard s.utf8.count >= m else { return false }
        return withBytes(s) { sb in withBytes(prefix) { pb in equalBytes(sb.baseAddress, pb.baseAddress, m) } }
    }

    /// Whether `a` and `b` have the same UTF-8.
    static func equal(_ a: String, _ b: String) -> Bool {
        let m = a.utf8.count
        guard b.utf8.count == m else { return false }
        return withBytes(a) { ab in withBytes(b) { bb in equalBytes(ab.baseAddress, bb.baseAddress, m) } }
    }

    @inline(__always) static func equalBytes(_ a: UnsafePointer<UInt8>?, _ b: UnsafePointer<UInt8>?, _ m: Int) -> Bool {
        guard m > 0 else { return true }
        guard let a, let b else { return false }
        let ra = UnsafeRawPointer(a)
        let rb = UnsafeRawPointer(b)
        var i = 0
        while i + 8 <= m {
            let x = ra.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            if x != rb.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i += 8
        }
        while i < m {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    /// Whether every byte of `s` is ASCII.
    static func isASCII(_ s: String) -> Bool { withBytes(s) { isASCII($0) } }

    /// A 64-bit hash of the bytes (for `ReferenceFilter`; not for anything stored).
    @inline(__always) static func hash(_ b: UnsafeBufferPointer<UInt8>) -> UInt64 {
        let n = b.count
        var h = UInt64(truncatingIfNeeded: n) &* 0x9e37_79b9_7f4a_7c15
        guard let base = b.baseAddress else { return h }
        let raw = UnsafeRawPointer(base)
        var i = 0
        while i + 8 <= n {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xff51_afd7_ed55_8ccd
            h ^= h >> 29
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(base[i]) << shift
            shift += 8
            i += 1
        }
        h = (h ^ tail) &* 0xc4ce_b9fe_1a85_ec53
        return h ^ (h >> 32)
    }

    /// Whether every byte is ASCII.
    @inline(__always) static func isASCII(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = b.count
        guard let base = b.baseAddress else { return true }
        let raw = UnsafeRawPointer(base)
        var i = 0
        var acc: UInt64 = 0
        while i + 8 <= n {
            acc |= raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < n {
            acc |= UInt64(base[i])
            i += 1
        }
        return acc & 0x8080_8080_8080_8080 == 0
    }

    /// Whether there is a `/` at or after byte offset `from`.
    @inline(__always) static func containsSlash(_ b: UnsafeBufferPointer<UInt8>, from: Int) -> Bool {
        var i = from
        while i < b.count {
            if b[i] == 0x2f { return true }
            i += 1
        }
        return false
    }
}

/// A backing pair (upper above lower) whose lower format is not recorded in upper.
struct RebasePair {
    var upper: Int
    var lower: Int
}

/// Bytes a step writes into a directory.
struct PlannedWrite {
    var dir: String
    var bytes: UInt64
    var what: String
}

/// What each layer of a disk's chain may undergo (sets of positions).
struct LayerAnalysis {
    /// Matched by a `protect` glob of the policy.
    var protected: PositionSet
    /// Has a reference other than this disk's chain (another chain, or a snapshot's saved state); only the first
    /// such layer is marked (everything below it is effectively shared anyway).
    var directlyShared: PositionSet
    /// Directly shared, or below a directly shared layer (whoever references it needs its whole backing chain).
    var effectivelyShared: PositionSet
    /// Neither protected nor effectively shared.
    var writable: PositionSet
    /// A writable local image inside `HostConfig.allowedRoots` (false for every layer that is not writable).
    var inRoots: PositionSet
    /// Whether a copy of position i to storage.activeDir may use its destination; optimistic (true) until the
    /// solver picks a copy and the destination is found taken.
    var destinationFree: PositionSet
    /// A layer the chain names twice (seen in the reverse index above the first shared layer).
    var loop: String?
    /// Layers that are files.
    var files: PositionSet
    /// As the final active image, the layer is not in storage.activeDir and must be copied there.
    var needsCopy: PositionSet
}

struct DiskPlanner {
    let domain: Domain
    let disk: Disk
    let chain: Chain
    // The plan-wide and per-policy contexts outlive every DiskPlanner (the caller keeps them alive), so they are
    // held without reference counting: the threads planning disks do not contend on their counts.
    unowned(unsafe) let context: PlanContext
    unowned(unsafe) let policyContext: PolicyContext
    unowned(unsafe) let scratch: SolverScratch
    let layers: [Layer]
    let paths: [String]
    var blocked: [Blocked] = []
    /// The copy destination last checked by `isDestinationFree` (the chosen copy's).
    var chosenDestination: (from: Int, path: String)?

    init(
        domain: Domain, disk: Disk, chain: Chain, context: PlanContext, policy: PolicyContext, scratch: SolverScratch
    ) {
        self.context = context
        self.policyContext = policy
        self.scratch = scratch
        self.domain = domain
        self.disk = disk
        self.chain = chain
        self.layers = chain.layers
        let layers = chain.layers
        self.paths = Array(unsafeUninitializedCapacity: layers.count) { buffer, count in
            for i in layers.indices {
                (buffer.baseAddress! + i).initialize(to: layers[i].source.path ?? layers[i].key)
            }
            count = layers.count
        }
    }

    var policy: Policy { _read { yield policyContext.policy } }
    var inventory: Inventory { _read { yield context.inventory } }
    var config: HostConfig { _read { yield context.config } }
    var freeSpace: [String: UInt64] { _read { yield context.freeSpace } }
    var roots: AllowedRoots { _read { yield context.roots } }
    var activeDir: String? { _read { yield policyContext.activeDir } }

    var n: Int { layers.count }
    /// `ImageSource.isLocal` of layer i, without copying the source.
    @inline(__always) func isLocal(_ i: Int) -> Bool {
        let kind = layers[i].source.kind
        return (kind == .file || kind == .block) && layers[i].source.path != nil
    }

    /// The reverse-index key of layer i (its path for local images).
    @inline(__always) func key(_ i: Int) -> String { isLocal(i) ? paths[i] : layers[i].source.key }

    /// Whether every layer's reverse-index key is its path (true for local images).
    var keysEqualPaths: Bool {
        for i in 0..<n where !isLocal(i) { return false }
        return true
    }
    var name: String { "\(domain.name)/\(disk.target)" }
    var policyRef: String { "policy \(policy.name) (\(policy.location.fileLine))" }

    mutating func block(_ code: BlockedCode, _ reason: String) {
        blocked.append(Blocked(domain: domain.name, disk: disk.target, code: code, reason: reason, policy: policy.name))
    }

    func needsCopy(_ i: Int) -> Bool {
        guard let activeDir else { return false }
        return !PlanPath.isDirectChild(paths[i], of: activeDir)
    }

    // MARK: - Run

    mutating func run() -> DiskOutcome {
        if !chain.problems.isEmpty || !chain.complete || layers.isEmpty {
            blockChainProblems()
            return .blocked(blocked)
        }
        if let activeDir, !policyContext.activeDirAllowed {
            block(
                .outsideAllowedRoots,
                "\(name): storage.activeDir \(activeDir) of \(policyRef) is outside the allowed roots "
                    + "(\(config.allowedRoots.joined(separator: ", "))); virt-chain never creates images there. "
                    + "Add \(activeDir) to allowedRoots in \(PlanText.configHint), or change storage.activeDir.")
        }
        let limit = policy.effectiveMaxDepth
        let shapeOK = n <= (limit ?? n) && (policy.flatten != .full || n == 1) && !needsCopy(0)

        var analysis: LayerAnalysis?
        var solution: ShapeSolution?
        var costs: CostModel?
        if !shapeOK {
            var a = analyze()
            if let loop = a.loop {
                block(
                    .loop,
                    "\(name): the backing chain names \(loop) twice (a loop); fix the image headers "
                        + "(qemu-img rebase -u) before virt-chain can manage this disk.")
                return .blocked(blocked)
            }
            checkDataChangePreconditions(a)
            let c = CostModel(layers: layers)
            costs = c
            solution = solve(&a, c)
            analysis = a
            if let solution { checkSolution(solution, a, c) }
        }

        var rebases: [RebasePair] = []
        if domain.state == .shutoff {
            if let solution {
                rebases = rebasePairs(
                    count: solution.survivors.count, survivor: { solution.survivors[$0] },
                    pulledThrough: solution.pulledThrough, copy: solution.copy)
            } else {
                rebases = rebasePairs(count: n, survivor: { $0 }, pulledThrough: 0, copy: nil)
            }
        }
        if !rebases.isEmpty {
            let a = analysis ?? analyze()
            analysis = a
            checkRebases(rebases, a)
        }
        if !blocked.isEmpty { return .blocked(blocked) }
        return .planned(buildChange(solution: solution, costs: costs, rebases: rebases, analysis: analysis))
    }

    /// A commit that leaves the active image in place rewrites the backing reference in the header of the image
    /// right above what it merges: that is a write, so that image must lie inside the allowed roots too
    /// (invariant 7). The positions of such images outside the roots, following the operations in the order
    /// `buildChange` turns them into steps (the image above a commit is the nearest one still in the chain).
    func headerRewritesOutsideRoots(_ solution: ShapeSolution) -> [Int] {
        var alive = PositionSet(count: n, all: true)
        var outside: [Int] = []
        for op in solution.operations {
            if case .commit(let top, _) = op {
                var upper = top - 1
                while upper >= 0 && !alive[upper] { upper -= 1 }
                // No image left above: the copy destination in storage.activeDir (inside the roots, or the copy is
                // blocked) or none at all.
                if upper >= 0 && !outside.contains(upper) {
                    let path = paths[upper]
                    if !PlanBytes.withBytes(path, { context.roots.allows(bytes: $0, path: path) }) {
                        outside.append(upper)
                    }
                }
            }
            for i in 0..<n where op.removes(i) { alive[i] = false }
        }
        return outside
    }

    mutating func blockHeaderRewrites(_ outside: [String]) {
        block(
            .outsideAllowedRoots,
            "\(name): \(shapeRule) needs a commit that rewrites the backing reference in \(PlanText.list(outside)), "
                + "outside the allowed roots (\(config.allowedRoots.joined(separator: ", "))), and no plan leaves "
                + "\(outside.count == 1 ? "it" : "them") alone. Add \(PlanText.list(outside.map(PlanPath.dirname))) "
                + "to allowedRoots in \(PlanText.configHint), or change the policy.")
    }

    /// Adjacent surviving pairs (upper above lower) whose lower format is not recorded in upper and that no step
    /// rewrites (a commit, pull or copy records the backing format of the pair it rewrites).
    func rebasePairs(count: Int, survivor: (Int) -> Int, pulledThrough: Int, copy: CopyKind?) -> [RebasePair] {
        var rebases: [RebasePair] = []
        guard copy != .full && count >= 2 else { return rebases }
        for index in 0..<(count - 1) {
            let upper = survivor(index)
            let lower = survivor(index + 1)
            guard lower == upper + 1, !layers[lower].formatRecorded else { continue }
            if index == 0 && (copy != nil || pulledThrough > upper) { continue }
            rebases.append(RebasePair(upper: upper, lower: lower))
        }
        return rebases
    }

    // MARK: - Chain problems

    mutating func blockChainProblems() {
        for problem in chain.problems {
            switch problem {
            case .missing(let path, let by):
                block(
                    .missingImage,
                    "\(name): backing file \(path) (named by \(by)) does not exist; restore it or fix the backing "
                        + "reference (qemu-img rebase -u) before virt-chain can manage this disk.")
            case .loop(let path):
                block(
                    .loop,
                    "\(name): the backing chain loops (\(path) appears twice); fix the image headers "
                        + "(qemu-img rebase -u) before virt-chain can manage this disk.")
            default:
                block(
                    .unknownChain,
                    "\(name): the backing chain is not known (\(problem.description)); make the images readable "
                        + "or terminate the chain in the domain XML, then re-run.")
            }
        }
        if chain.problems.isEmpty {
            let below = layers.last.map { " below \($0.source.path ?? $0.key)" } ?? ""
            block(
                .unknownChain,
                "\(name): the backing chain\(below) is not known (incomplete and not probed); make the images "
                    + "readable or terminate the chain in the domain XML, then re-run.")
        }
    }

    // MARK: - Analysis

    /// Where a copy of position i to storage.activeDir goes.
    func destination(_ i: Int) -> String? {
        activeDir.map { PlanPath.join($0, PlanPath.basename(paths[i])) }
    }

    /// Whether nothing uses the copy destination of position i yet (remembered for the copy step).
    mutating func isDestinationFree(_ i: Int) -> Bool {
        guard let dest = destination(i) else { return false }
        chosenDestination = (i, dest)
        var referenced = false
        inventory.forEachReference(of: dest) { _ in
            referenced = true
            return false
        }
        return !referenced && !paths.contains(dest)
    }

    /// Whether the image `key` has a reference other than this disk's chain (another chain, or a snapshot's saved
    /// state), and whether this chain names it twice (a loop the prober did not report). Reads the reference index
    /// without materialising arrays (hot path: one lookup per layer), and stops at the first foreign reference: a
    /// shared image is never written, and golden bases have hundreds of references.
    func referenceState(_ key: String) -> (foreign: Bool, twice: Bool) {
        var foreign = false
        var own = 0
        let domainName = domain.name
        let target = disk.target
        inventory.forEachReference(of: key) { ref in
            switch ref.kind {
            case .chain:
                if ref.disk != target || ref.domain != domainName {
                    foreign = true
                    return false
                }
                own += 1
            case .snapshotState:
                foreign = true
                return false
            case .snapshotOverlay:
                break
            }
            return true
        }
        return (foreign, own >= 2)
    }

    func analyze() -> LayerAnalysis {
        var protected = PositionSet()
        var direct = PositionSet()
        var effective = PositionSet()
        var writable = PositionSet()
        var inRoots = PositionSet()
        let destinationFree = PositionSet(count: n, all: activeDir != nil)
        var shared = false
        var loop: String?
        let filter = context.filter
        for i in 0..<n {
            let path = paths[i]
            let local = isLocal(i)
            let (isProtected, inside, pathHash) = PlanBytes.withBytes(path) { bytes in
                (
                    policyContext.protect.matches(bytes: bytes, path: path),
                    context.roots.allows(bytes: bytes, path: path),
                    local && filter != nil && !shared ? PlanBytes.hash(bytes) : 0
                )
            }
            protected[i] = isProtected
            // Below a shared layer everything is shared; the index is consulted only until then, and only for
            // images the filter does not rule out.
            if !shared {
                var state = (foreign: false, twice: false)
                if let filter {
                    let keyHash = local ? pathHash : PlanBytes.withBytes(key(i), PlanBytes.hash)
                    if filter.mayHaveSeveral(keyHash) { state = referenceState(key(i)) }
                } else {
                    state = referenceState(key(i))
                }
                if state.foreign {
                    direct[i] = true
                    shared = true
                }
                if state.twice && loop == nil { loop = paths[i] }
            }
            effective[i] = shared
            let isWritable = !isProtected && !shared
            writable[i] = isWritable
            inRoots[i] = isWritable && isLocal(i) && inside
        }
        var files = PositionSet()
        var needs = PositionSet()
        let checkCopy = activeDir != nil
        for i in 0..<n {
            files[i] = layers[i].source.kind == .file
            if checkCopy { needs[i] = needsCopy(i) }
        }
        return LayerAnalysis(
            protected: protected, directlyShared: direct, effectivelyShared: effective, writable: writable,
            inRoots: inRoots, destinationFree: destinationFree, loop: loop, files: files, needsCopy: needs)
    }

    /// The shape problem. `strict` applies allowed roots and source kinds; `relaxActive` pretends a protected
    /// active image is writable; `relaxDestination` pretends copy destinations are free (both for diagnosis only).
    func problem(_ a: LayerAnalysis, strict: Bool, relaxActive: Bool = false, relaxDestination: Bool = false)
        -> ShapeMasks
    {
        var w = a.writable
        if relaxActive && !a.effectivelyShared[0] { w[0] = true }
        var commitTarget = w
        var pullTarget = w
        var canCopy = w
        if strict {
            commitTarget = w & a.inRoots & a.files
            pullTarget = w & a.inRoots
            canCopy = w & a.files
        }
        if !relaxDestination { canCopy = canCopy & a.destinationFree }
        return ShapeMasks(
            count: n, maxDepth: policy.effectiveMaxDepth, flatten: policy.flatten, removable: w,
            commitTarget: commitTarget, pullTarget: pullTarget, needsCopy: a.needsCopy, canCopy: canCopy,
            canFullCopy: canCopy[0] && policy.flatten != .keepBase)
    }

    func solveShape(_ problem: ShapeMasks, _ costs: CostModel) -> ShapeSolution? {
        ShapeSolver.solve(problem, costs: costs, scratch: scratch)
    }

    // MARK: - Preconditions of a data change

    mutating func checkDataChangePreconditions(_ a: LayerAnalysis) {
        if disk.job != nil || disk.mirror != nil {
            let job = disk.job?.type.rawValue ?? disk.mirror?.job ?? "block"
            block(
                .jobRunning,
                "\(name): a \(job) job is running on the disk; wait for it to finish or abort it "
                    + "(virsh blockjob \(domain.name) \(disk.target) --info), then re-run.")
        }
        switch domain.state {
        case .running, .shutoff:
            break
        case .paused:
            block(
                .paused,
                "\(name): domain \(domain.name) is paused, and block jobs on a paused domain can fail on read-only "
                    + "nodes; resume it (virsh resume \(domain.name)) or shut it off, then re-run.")
        default:
            block(
                .other,
                "\(name): domain \(domain.name) is \(domain.state.rawValue); virt-chain changes chains only of "
                    + "running or shut-off domains. Start or shut off the domain, then re-run.")
        }
        if disk.readonly {
            block(
                .other,
                "\(name): the disk is read-only in domain \(domain.name), so no image of its chain can be written; "
                    + "exclude it from \(policyRef).")
        }
        let remote = (0..<n).filter { !isLocal($0) }
        if !remote.isEmpty {
            let list = remote.map { "\(paths[$0]) (\(layers[$0].source.kind.rawValue))" }
            block(
                .unsupportedSource,
                "\(name): the chain contains \(PlanText.list(list)); virt-chain only changes chains of local files "
                    + "and block devices. Exclude this disk from \(policyRef).")
        }
        for i in 0..<n where !layers[i].bitmaps.isEmpty {
            block(
                .dirtyBitmaps,
                "\(name): image \(paths[i]) holds persistent dirty bitmaps "
                    + "(\(layers[i].bitmaps.joined(separator: ", ")))"
                    + " that a commit, pull or copy would invalidate for incremental backups; remove them "
                    + "(qemu-img bitmap --remove, or delete the checkpoints) or exclude this disk from \(policyRef).")
        }
        if let branch = branchedSnapshot() {
            block(
                .branchedSnapshots,
                "\(name): the snapshot tree of \(domain.name) branches at \(branch.parent) (children "
                    + "\(PlanText.list(branch.children))); merging layers would break one branch. Delete one branch "
                    + "(virsh snapshot-delete) or exclude this disk from \(policyRef).")
        }
    }

    func branchedSnapshot() -> (parent: String, children: [String])? {
        var children: [String: [String]] = [:]
        var order: [String] = []
        for snapshot in domain.snapshots {
            guard let parent = snapshot.parent,
                snapshot.disks.contains(where: { $0.target == disk.target && $0.kind != "no" })
            else { continue }
            if children[parent] == nil { order.append(parent) }
            children[parent, default: []].append(snapshot.name)
        }
        for parent in order {
            if let list = children[parent], list.count >= 2 { return (parent, list) }
        }
        return nil
    }

    // MARK: - Solving

    mutating func solve(_ a: inout LayerAnalysis, _ costs: CostModel) -> ShapeSolution? {
        var keptHeaders: [String] = []
        while let solution = solveShape(problem(a, strict: true), costs) {
            // Destinations are checked lazily: only the one a chosen copy would use.
            if let copy = solution.operations.last, case .copy(_, let from, _, _) = copy, !isDestinationFree(from) {
                a.destinationFree[from] = false
                continue
            }
            // A commit would rewrite the header of an image outside the allowed roots: solve again with that image
            // left alone (neither merged away by a commit nor rewritten), as if it were protected. So every
            // solution `solve` returns keeps invariant 7.
            if let upper = headerRewritesOutsideRoots(solution).first {
                a.writable[upper] = false
                a.inRoots[upper] = false
                keptHeaders.append(paths[upper])
                continue
            }
            return solution
        }
        if !keptHeaders.isEmpty {
            blockHeaderRewrites(keptHeaders)
            return nil
        }
        if let loose = solveShape(problem(a, strict: false), costs) {
            blockLooseSolution(loose, a)
            return nil
        }
        if a.effectivelyShared[0] {
            block(
                .sharedActive,
                "\(name): \(shapeRule) cannot be met because the active image \(paths[0]) is shared with "
                    + "\(referenceList(0)); it must not be written, merged away or moved. Stop sharing it, or "
                    + "exclude this disk from \(policyRef).")
            return nil
        }
        if a.protected[0], solveShape(problem(a, strict: false, relaxActive: true), costs) != nil {
            let others = constraintCauses(a, from: 1)
            let closed = others.isEmpty ? "" : " (the other ways are closed: \(others.joined(separator: "; ")))"
            block(
                .protectedActive,
                "\(name): \(shapeRule) needs to write or move the active image \(paths[0]), which is protected by "
                    + "\(protectingGlob(0)) in \(policyRef)\(closed); remove that protect glob or exclude this disk.")
            return nil
        }
        if activeDir != nil,
            solveShape(problem(a, strict: false, relaxActive: false, relaxDestination: true), costs) != nil
        {
            let taken = (0..<n).compactMap { a.destinationFree[$0] ? nil : destination($0) }
            block(
                .other,
                "\(name): moving the active image to storage.activeDir needs \(PlanText.list(taken)), which is "
                    + "already used by another image; rename or remove it, then re-run.")
            return nil
        }
        block(.impossible, impossibleReason(a, costs))
        return nil
    }

    /// A solution exists only when writing outside the allowed roots or into unsupported sources: say which.
    mutating func blockLooseSolution(_ solution: ShapeSolution, _ a: LayerAnalysis) {
        var outside: [String] = []
        var devices: [String] = []
        var remote = false
        func written(_ i: Int, commit: Bool) {
            // Network, volume, … sources are already reported by the preconditions (unsupported-source).
            guard isLocal(i) else {
                remote = true
                return
            }
            if !a.inRoots[i] && !outside.contains(paths[i]) { outside.append(paths[i]) }
            if commit && layers[i].source.kind == .block { devices.append("commit into \(paths[i])") }
        }
        for op in solution.operations {
            switch op {
            case .commit(_, let base), .activeCommit(_, _, let base): written(base, commit: true)
            case .pull(let into, _, _, _): written(into, commit: false)
            case .copy(_, let from, _, _):
                if !isLocal(from) {
                    remote = true
                } else if layers[from].source.kind == .block {
                    devices.append("copy of \(paths[from])")
                }
            }
        }
        if !outside.isEmpty {
            block(
                .outsideAllowedRoots,
                "\(name): \(shapeRule) needs to write \(PlanText.list(outside)), outside the allowed roots "
                    + "(\(config.allowedRoots.joined(separator: ", "))). "
                    + "Add \(PlanText.list(outside.map(PlanPath.dirname)))"
                    + " to allowedRoots in \(PlanText.configHint), or protect those images so that pull is used.")
        }
        if !devices.isEmpty {
            block(
                .unsupportedSource,
                "\(name): \(shapeRule) needs \(PlanText.list(devices)), a block device; virt-chain does not "
                    + "commit into or copy block devices. Merge by hand or exclude this disk from \(policyRef).")
        }
        if outside.isEmpty && devices.isEmpty && !remote {
            block(.impossible, "\(name): \(shapeRule) cannot be met within the allowed roots and source kinds.")
        }
    }

    /// Why layers `from...` can neither receive a commit nor be merged away by one.
    func constraintCauses(_ a: LayerAnalysis, from: Int) -> [String] {
        var causes: [String] = []
        for i in from..<max(n, from) {
            if a.protected[i] {
                causes.append("\(paths[i]) is protected by \(protectingGlob(i))")
            } else if a.directlyShared[i] {
                causes.append("\(paths[i]) is shared with \(referenceList(i))")
            }
        }
        if let first = a.effectivelyShared.first, first >= from, first < n - 1 {
            causes.append("the images below \(paths[first]) are part of its shared backing chain")
        }
        return causes
    }

    func impossibleReason(_ a: LayerAnalysis, _ costs: CostModel) -> String {
        let causes = constraintCauses(a, from: 0)
        let limit = policy.effectiveMaxDepth ?? n
        var shortest = ShapeSolver.shortestReachable(problem(a, strict: false), costs: costs, scratch: scratch)
        if let value = shortest, value <= limit { shortest = nil }
        var text = "\(name): \(shapeRule) cannot be met"
        if policy.flatten == .keepBase && limit == 1 && n > 1 {
            text += " (keep-base with maxDepth 1 needs every image merged into the base \(paths[n - 1]))"
        }
        if !causes.isEmpty { text += ": " + causes.joined(separator: "; ") }
        text += "; commit can neither write into nor merge away shared or protected images, and pull cannot remove "
            + "layers below the lowest surviving image"
        if let shortest { text += " (the shortest reachable chain has \(shortest) images)" }
        text += ". Fix: "
        if let shortest, policy.flatten == .none {
            text += "raise maxDepth to \(shortest) in \(policyRef), or stop sharing or protecting those images."
        } else {
            text += "relax flatten/maxDepth in \(policyRef), or stop sharing or protecting those images."
        }
        return text
    }

    func referenceList(_ i: Int) -> String {
        let refs = inventory.foreignReferences(of: layers[i].key, domain: domain.name, disk: disk.target)
        let shown = refs.prefix(3).map(\.description)
        let more = refs.count > 3 ? ["\(refs.count - 3) more"] : []
        return PlanText.list(shown + more)
    }

    func protectingGlob(_ i: Int) -> String {
        policy.protect.first { Glob.match($0, paths[i], pathMode: true) }.map { "protect glob \($0)" } ?? "protect"
    }

    /// The shape rule a commit or pull serves, e.g. `depth 5 > maxDepth 3`.
    var shapeRule: String {
        switch policy.flatten {
        case .full where n > 1: return "flatten full"
        case .keepBase where n > 2: return "flatten keep-base"
        default:
            if let maxDepth = policy.effectiveMaxDepth, n > maxDepth {
                return policyContext.depthRule(n, maxDepth: maxDepth)
            }
            if needsCopy(0), activeDir != nil { return policyContext.activeDirRule }
            return "policy shape"
        }
    }

    var shapeViolated: Bool { n > (policy.effectiveMaxDepth ?? n) || (policy.flatten == .full && n > 1) }

    func copyRule(_ kind: CopyKind) -> String {
        let base = policyContext.activeDirRule
        return kind == .full && shapeViolated ? base + "; " + shapeRule : base
    }

    // MARK: - Checks on the chosen steps

    mutating func checkSolution(_ solution: ShapeSolution, _ a: LayerAnalysis, _ costs: CostModel) {
        var anyEncrypted = false
        for i in 0..<n where layers[i].encrypted { anyEncrypted = true }
        var touched = PositionSet()
        func touch(_ op: ShapeOperation) {
            if anyEncrypted { for i in 0..<n where op.removes(i) { touched[i] = true } }
        }
        func touch(_ positions: ClosedRange<Int>) {
            if anyEncrypted { for i in positions { touched[i] = true } }
        }
        let checkSpace = !freeSpace.isEmpty
        var writes: [PlannedWrite] = []
        for op in solution.operations {
            switch op {
            case .commit(_, let base), .activeCommit(_, _, let base):
                touch(op)
                touch(base...base)
                if checkSpace {
                    let bytes = ShapeSolver.bytes(of: op, costs)
                    let what = "commit into \(paths[base])"
                    writes.append(PlannedWrite(dir: PlanPath.dirname(paths[base]), bytes: bytes, what: what))
                }
                checkRawBase(base, committed: op)
            case .pull(let into, let after, let through, _):
                touch(into...into)
                touch((after + 1)...through)
                if checkSpace {
                    let bytes = ShapeSolver.bytes(of: op, costs)
                    let what = "pull into \(paths[into])"
                    writes.append(PlannedWrite(dir: PlanPath.dirname(paths[into]), bytes: bytes, what: what))
                }
            case .copy(let kind, let from, let through, _):
                touch(kind == .full ? 0...(n - 1) : from...through)
                if checkSpace, let dest = destination(from) {
                    writes.append(
                        PlannedWrite(
                            dir: PlanPath.dirname(dest), bytes: ShapeSolver.bytes(of: op, costs),
                            what: "copy to \(dest)"))
                }
            }
        }
        let encrypted = anyEncrypted ? (0..<n).filter { touched[$0] && layers[$0].encrypted } : []
        if !encrypted.isEmpty {
            block(
                .encrypted,
                "\(name): \(PlanText.list(encrypted.map { paths[$0] })) "
                    + (encrypted.count == 1 ? "is" : "are")
                    + " encrypted, and virt-chain does not merge or copy encrypted images; merge by hand or "
                    + "exclude this disk from \(policyRef).")
        }
        var order: [String] = []
        var perDir: [String: (bytes: UInt64, what: [String])] = [:]
        for write in writes where write.bytes > 0 {
            if perDir[write.dir] == nil { order.append(write.dir) }
            perDir[write.dir, default: (0, [])].bytes += write.bytes
            perDir[write.dir, default: (0, [])].what.append(write.what)
        }
        for dir in order {
            guard let need = perDir[dir], let free = freeSpace[dir], free < need.bytes else { continue }
            block(
                .insufficientSpace,
                "\(name): \(dir) has \(PlanText.bytes(free)) free but the plan writes up to "
                    + "\(PlanText.bytes(need.bytes)) there (\(need.what.joined(separator: ", "))); free space on "
                    + "that filesystem, then re-run.")
        }
    }

    mutating func checkRawBase(_ base: Int, committed op: ShapeOperation) {
        guard layers[base].format == "raw", let size = layers[base].virtualSize else { return }
        for i in 0..<n where op.removes(i) {
            guard let top = layers[i].virtualSize, top > size else { continue }
            block(
                .rawBaseTooSmall,
                "\(name): committing \(paths[i]) (\(PlanText.bytes(top)) virtual) into raw \(paths[base]) "
                    + "(\(PlanText.bytes(size))) would have to grow the raw image; resize \(paths[base]) "
                    + "(qemu-img resize, or lvextend for a device) or protect it so that pull is used.")
            return
        }
    }

    mutating func checkRebases(_ rebases: [RebasePair], _ a: LayerAnalysis) {
        for pair in rebases {
            let (upper, lower) = (pair.upper, pair.lower)
            let what = "the backing format of \(paths[lower]) is not recorded in \(paths[upper])"
            if layers[lower].format == nil {
                block(
                    .other,
                    "\(name): \(what) and its format is unknown; record it by hand "
                        + "(qemu-img rebase -u -F FORMAT -b \(paths[lower]) \(paths[upper])), then re-run.")
            } else if !a.writable[upper] || layers[upper].source.kind != .file {
                let why = a.protected[upper] ? "protected by \(protectingGlob(upper))" : "shared or not a file"
                block(
                    .other,
                    "\(name): \(what), but \(paths[upper]) is \(why) and must not be rewritten; record the format "
                        + "by hand or stop protecting or sharing it.")
            } else if !a.inRoots[upper] {
                block(
                    .outsideAllowedRoots,
                    "\(name): \(what), but \(paths[upper]) is outside the allowed roots; add "
                        + "\(PlanPath.dirname(paths[upper])) to allowedRoots in \(PlanText.configHint).")
            }
        }
    }

    // MARK: - Steps

    func buildChange(
        solution: ShapeSolution?, costs: CostModel?, rebases: [RebasePair], analysis: LayerAnalysis?
    ) -> DiskChange {
        let mode: StepMode = domain.state == .running ? .live : .offline
        var steps: [Step] = []
        // Shared by every step: the host, names and the policy's location (one string each, not one per step).
        let host = inventory.host
        let domainName = domain.name
        let target = disk.target
        let policyName = policy.name
        let location = policyContext.location
        var current = paths
        /// Original positions still in the chain, below the copy destination `copied` (if any).
        var alive = PositionSet(count: n, all: true)
        var copied: String?
        func add(
            _ action: StepAction, top: String?, base: String?, destination: String? = nil, bytes: UInt64,
            rule: String, backingFormat: String? = nil, after: [String]
        ) {
            func make() -> Step {
                Step(
                    id: 0, host: host, domain: domainName, disk: target, action: action, mode: mode,
                    top: top, base: base, destination: destination, estimatedBytes: bytes,
                    reason: StepReason(rule: rule, policy: policyName, location: location),
                    backingFormat: backingFormat, expectBefore: current, expectAfter: after)
            }
            if let sink = scratch.steps {
                sink.append(make())
            } else {
                steps.append(make())
            }
            current = after
        }
        /// The chain now: the copy destination, then the surviving original layers.
        func chainNow() -> [String] {
            var count = copied == nil ? 0 : 1
            for i in 0..<n where alive[i] { count += 1 }
            return [String](unsafeUninitializedCapacity: count) { buffer, initialized in
                var next = buffer.baseAddress!
                if let copied {
                    next.initialize(to: copied)
                    next += 1
                }
                for i in 0..<n where alive[i] {
                    next.initialize(to: paths[i])
                    next += 1
                }
                initialized = count
            }
        }
        func without(_ op: ShapeOperation) -> [String] {
            for i in 0..<n where op.removes(i) { alive[i] = false }
            return chainNow()
        }

        for pair in rebases {
            let (upper, lower) = (pair.upper, pair.lower)
            add(
                .rebase, top: paths[upper], base: paths[lower], bytes: 0,
                rule: "backing format of \(PlanPath.basename(paths[lower])) not recorded in "
                    + PlanPath.basename(paths[upper]),
                backingFormat: layers[lower].format, after: current)
        }

        if let solution, let costs, let a = analysis {
            let rule = shapeRule
            if scratch.steps == nil { steps.reserveCapacity(rebases.count + solution.operations.count) }
            for op in solution.operations {
                let bytes = ShapeSolver.bytes(of: op, costs)
                switch op {
                case .commit(let top, let base), .activeCommit(let top, _, let base):
                    add(.commit, top: paths[top], base: paths[base], bytes: bytes, rule: rule, after: without(op))
                case .pull(let into, _, _, let base):
                    add(.pull, top: paths[into], base: base.map { paths[$0] }, bytes: bytes, rule: rule,
                        after: without(op))
                case .copy(let kind, let from, _, let base):
                    let checked = chosenDestination?.from == from ? chosenDestination?.path : nil
                    let dest = checked ?? destination(from) ?? paths[from]
                    if kind == .full {
                        alive = PositionSet()
                    } else if let first = alive.first {
                        alive[first] = false
                    }
                    copied = dest
                    add(.copy, top: paths[from], base: kind == .full ? nil : base.map { paths[$0] },
                        destination: dest, bytes: bytes, rule: copyRule(kind), after: chainNow())
                }
            }
            if policy.retired == .delete {
                for i in 0..<n where !alive[i] && deletable(i, a) {
                    add(.deleteImage, top: paths[i], base: nil, bytes: 0, rule: "retired: delete", after: current)
                }
            }
        }
        // Keys of the final chain: the paths, except for non-local layers (copy destinations are local files).
        var finalKeys = current
        if !keysEqualPaths {
            finalKeys = []
            if let copied { finalKeys.append(copied) }
            for i in 0..<n where alive[i] { finalKeys.append(key(i)) }
        }
        return DiskChange(
            domain: domainName, disk: target, policy: policyName, steps: steps, before: paths, after: current,
            afterKeys: finalKeys, solution: solution)
    }

    /// An image that left the chain may be deleted only if nothing else references it or needs it as a backing
    /// file, it is not protected, it is a file, and it lies inside the allowed roots.
    func deletable(_ i: Int, _ a: LayerAnalysis) -> Bool {
        guard layers[i].source.kind == .file, layers[i].source.path != nil, !a.protected[i],
            !a.effectivelyShared[i], a.inRoots[i]
        else { return false }
        // An image the filter rules out has one reference only: this chain.
        if let filter = context.filter, !filter.mayHaveSeveral(PlanBytes.withBytes(paths[i], PlanBytes.hash)) {
            return true
        }
        return inventory.isReferencedOnlyByChain(key: layers[i].key, domain: domain.name, disk: disk.target)
    }
}
