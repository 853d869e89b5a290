// Planning one disk: checks, the shape optimisation, safety checks on the chosen steps, and the steps themselves.

/// What a plan computes once and every disk uses.
struct PlanContext: Sendable {
    let roots: AllowedRoots
    /// nil: consult the reverse index for every layer.
    let shared: SharedKeyFilter?
}

/// A small bit filter over the images with more than one reference. A layer of a disk's chain can be shared (or
/// named twice by that chain) only if its index entry holds several references, so layers the filter rules out
/// need no index lookup (which hashes the whole path). Built once per plan from the index; false positives only
/// cost a lookup.
struct SharedKeyFilter: Sendable {
    private var bits: [UInt64]
    private let mask: Int

    init(_ view: Inventory.ReferenceView) {
        var multi = 0
        for (_, list) in view.index {
            if case .many = list { multi += 1 }
        }
        var size = 1 << 12
        while size < multi * 16 && size < 1 << 24 { size <<= 1 }
        bits = [UInt64](repeating: 0, count: size / 64)
        mask = size - 1
        for (key, list) in view.index {
            guard case .many = list else { continue }
            let h = SharedKeyFilter.quickHash(key) & mask
            bits[h >> 6] |= 1 << UInt64(h & 63)
        }
    }

    func mayContain(_ key: String) -> Bool {
        let h = SharedKeyFilter.quickHash(key) & mask
        return bits[h >> 6] & (1 << UInt64(h & 63)) != 0
    }

    /// Length and the last 16 bytes (where image paths differ), mixed.
    static func quickHash(_ key: String) -> Int {
        var key = key
        let h: UInt64 = key.withUTF8 { bytes in
            let n = bytes.count
            var h = UInt64(n) &* 0x9e37_79b9_7f4a_7c15
            if n >= 16 {
                let raw = UnsafeRawBufferPointer(bytes)
                h ^= raw.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
                h = (h ^ (h >> 31)) &* 0xff51_afd7_ed55_8ccd
                h ^= raw.loadUnaligned(fromByteOffset: n - 16, as: UInt64.self)
            } else {
                for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
            }
            h = (h ^ (h >> 33)) &* 0xc4ce_b9fe_1a85_ec53
            return h ^ (h >> 29)
        }
        return Int(truncatingIfNeeded: h)
    }
}

/// `HostConfig.allows(path:)` with the roots normalised once per plan.
struct AllowedRoots: Sendable {
    let prefixes: [String]
    let exact: [String]

    init(_ config: HostConfig) {
        exact = config.allowedRoots.map { root in
            var r = Substring(root)
            while r.count > 1 && r.hasSuffix("/") { r = r.dropLast() }
            return String(r)
        }
        prefixes = exact.map { $0 == "/" ? "/" : $0 + "/" }
    }

    func allows(_ path: String) -> Bool {
        for (root, prefix) in zip(exact, prefixes) where path == root || path.hasPrefix(prefix) { return true }
        return false
    }
}

/// `Policy.protects(path:)` with a cheap pre-check: a glob can only match paths that start with its literal prefix
/// (the text before its first `*`, `?`, `[` or `\\`).
struct ProtectMatcher {
    struct Entry {
        var pattern: String
        var prefix: String
    }
    let entries: [Entry]

    init(_ globs: [String]) {
        entries = globs.map { glob in
            let cut = glob.utf8.firstIndex { $0 == 0x2a || $0 == 0x3f || $0 == 0x5b || $0 == 0x5c }  // * ? [ \\
            return Entry(pattern: glob, prefix: cut.map { String(glob[..<$0]) } ?? glob)
        }
    }

    func matches(_ path: String) -> Bool {
        for entry in entries where path.hasPrefix(entry.prefix) {
            if Glob.match(entry.pattern, path, pathMode: true) { return true }
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

/// What each layer of a disk's chain may undergo.
struct LayerAnalysis {
    /// Matched by a `protect` glob of the policy.
    var protected: [Bool]
    /// Has a reference other than this disk's chain (another chain, or a snapshot's saved state); only the first
    /// such layer is marked (everything below it is effectively shared anyway).
    var directlyShared: [Bool]
    /// Directly shared, or below a directly shared layer (whoever references it needs its whole backing chain).
    var effectivelyShared: [Bool]
    /// Neither protected nor effectively shared.
    var writable: [Bool]
    /// A writable local image inside `HostConfig.allowedRoots` (false for every layer that is not writable).
    var inRoots: [Bool]
    /// Whether a copy of position i to storage.activeDir may use its destination; optimistic (true) until the
    /// solver picks a copy and the destination is found taken.
    var destinationFree: [Bool]
    /// A layer the chain names twice (seen in the reverse index above the first shared layer).
    var loop: String?
}

struct DiskPlanner {
    let domain: Domain
    let disk: Disk
    let chain: Chain
    let policy: Policy
    let inventory: Inventory
    let config: HostConfig
    let freeSpace: [String: UInt64]
    let roots: AllowedRoots
    let shared: SharedKeyFilter?
    let layers: [Layer]
    let paths: [String]
    let activeDir: String?
    var blocked: [Blocked] = []

    init(
        domain: Domain, disk: Disk, chain: Chain, policy: Policy, inventory: Inventory, config: HostConfig,
        freeSpace: [String: UInt64], context: PlanContext
    ) {
        self.roots = context.roots
        self.shared = context.shared
        self.domain = domain
        self.disk = disk
        self.chain = chain
        self.policy = policy
        self.inventory = inventory
        self.config = config
        self.freeSpace = freeSpace
        self.layers = chain.layers
        self.paths = chain.layers.map { $0.source.path ?? $0.key }
        self.activeDir = policy.activeDir.map(PlanPath.normalizedDir)
    }

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
        if let activeDir, !roots.allows(activeDir) {
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

        let survivors = solution?.survivors ?? Array(0..<n)
        let copy = solution?.copy
        var rebases: [RebasePair] = []
        if domain.state == .shutoff && copy != .full && survivors.count >= 2 {
            let pulledThrough = solution?.pulledThrough ?? survivors[0]
            for index in 0..<(survivors.count - 1) {
                let upper = survivors[index]
                let lower = survivors[index + 1]
                // Pairs rewritten by a commit, pull or copy get their backing format recorded by that step.
                guard lower == upper + 1, !layers[lower].formatRecorded else { continue }
                if index == 0 && (copy != nil || pulledThrough > upper) { continue }
                rebases.append(RebasePair(upper: upper, lower: lower))
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

    /// Whether nothing uses the copy destination of position i yet.
    func isDestinationFree(_ i: Int) -> Bool {
        guard let dest = destination(i) else { return false }
        return inventory.references(of: dest).isEmpty && !paths.contains(dest)
    }

    /// Whether the image `key` has a reference other than this disk's chain (another chain, or a snapshot's saved
    /// state). Reads the reference index without materialising arrays (hot path: one lookup per layer).
    /// (foreign: the image has a reference other than this disk's chain — another chain, or a snapshot's saved
    /// state; twice: this chain names it twice, a loop the prober did not report). Stops at the first foreign
    /// reference: a shared image is never written, and golden bases have hundreds of references.
    func referenceState(_ key: String, in index: Inventory.ReferenceView) -> (foreign: Bool, twice: Bool) {
        switch index.index[key] {
        case nil:
            return (false, false)
        case .one(let ref):
            return (isForeign(ref), false)
        case .many(let refs):
            var own = 0
            for k in refs.indices {
                if isForeign(refs[k]) { return (true, own >= 2) }
                if case .chain = refs[k].kind { own += 1 }
            }
            return (false, own >= 2)
        }
    }

    @inline(__always) func isForeign(_ ref: ImageReference) -> Bool {
        switch ref.kind {
        case .chain: return ref.disk != disk.target || ref.domain != domain.name
        case .snapshotState: return true
        case .snapshotOverlay: return false
        }
    }

    func analyze() -> LayerAnalysis {
        var protected = [Bool](repeating: false, count: n)
        var direct = [Bool](repeating: false, count: n)
        var effective = [Bool](repeating: false, count: n)
        var writable = [Bool](repeating: false, count: n)
        var inRoots = [Bool](repeating: false, count: n)
        let destinationFree = [Bool](repeating: activeDir != nil, count: n)
        var shared = false
        let protect = ProtectMatcher(policy.protect)
        let index = inventory.references
        var loop: String?
        for i in 0..<n {
            protected[i] = protect.matches(paths[i])
            // Below a shared layer everything is shared; the index is consulted only until then.
            if !shared, self.shared?.mayContain(key(i)) ?? true {
                let state = referenceState(key(i), in: index)
                direct[i] = state.foreign
                if state.twice && loop == nil { loop = paths[i] }
            }
            shared = shared || direct[i]
            effective[i] = shared
            writable[i] = !protected[i] && !shared
            // Only writable layers can be written, so only they need the (string) check.
            inRoots[i] = writable[i] && isLocal(i) && roots.allows(paths[i])
        }
        return LayerAnalysis(
            protected: protected, directlyShared: direct, effectivelyShared: effective, writable: writable,
            inRoots: inRoots, destinationFree: destinationFree, loop: loop)
    }

    /// The shape problem. `strict` applies allowed roots and source kinds; `relaxActive` pretends a protected
    /// active image is writable; `relaxDestination` pretends copy destinations are free (both for diagnosis only).
    func problem(_ a: LayerAnalysis, strict: Bool, relaxActive: Bool = false, relaxDestination: Bool = false)
        -> ShapeProblem
    {
        var w = a.writable
        if relaxActive && !a.effectivelyShared[0] { w[0] = true }
        var commitTarget = w
        var pullTarget = w
        var canCopy = w
        var needs = [Bool](repeating: false, count: n)
        for i in 0..<n {
            let kind = layers[i].source.kind
            if strict {
                commitTarget[i] = w[i] && a.inRoots[i] && kind == .file
                pullTarget[i] = w[i] && a.inRoots[i]
                canCopy[i] = w[i] && kind == .file
            }
            needs[i] = needsCopy(i)
            canCopy[i] = canCopy[i] && (relaxDestination || a.destinationFree[i])
        }
        return ShapeProblem(
            count: n, maxDepth: policy.effectiveMaxDepth, flatten: policy.flatten, removable: w,
            commitTarget: commitTarget, pullTarget: pullTarget, needsCopy: needs, canCopy: canCopy,
            canFullCopy: canCopy[0] && policy.flatten != .keepBase)
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
        while let solution = ShapeSolver.solve(problem(a, strict: true), costs: costs) {
            // Destinations are checked lazily: only the one a chosen copy would use.
            guard let copy = solution.operations.last, case .copy(_, let from, _, _) = copy, !isDestinationFree(from)
            else { return solution }
            a.destinationFree[from] = false
        }
        if let loose = ShapeSolver.solve(problem(a, strict: false), costs: costs) {
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
        if a.protected[0], ShapeSolver.solve(problem(a, strict: false, relaxActive: true), costs: costs) != nil {
            let others = constraintCauses(a, from: 1)
            let closed = others.isEmpty ? "" : " (the other ways are closed: \(others.joined(separator: "; ")))"
            block(
                .protectedActive,
                "\(name): \(shapeRule) needs to write or move the active image \(paths[0]), which is protected by "
                    + "\(protectingGlob(0)) in \(policyRef)\(closed); remove that protect glob or exclude this disk.")
            return nil
        }
        if activeDir != nil,
            ShapeSolver.solve(problem(a, strict: false, relaxActive: false, relaxDestination: true), costs: costs)
                != nil
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
        if let first = a.effectivelyShared.firstIndex(of: true), first >= from, first < n - 1 {
            causes.append("the images below \(paths[first]) are part of its shared backing chain")
        }
        return causes
    }

    func impossibleReason(_ a: LayerAnalysis, _ costs: CostModel) -> String {
        let causes = constraintCauses(a, from: 0)
        let limit = policy.effectiveMaxDepth ?? n
        var shortest = ShapeSolver.shortestReachable(problem(a, strict: false), costs: costs)
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
            if let maxDepth = policy.effectiveMaxDepth, n > maxDepth { return "depth \(n) > maxDepth \(maxDepth)" }
            if needsCopy(0), let activeDir { return "active image not in storage.activeDir \(activeDir)" }
            return "policy shape"
        }
    }

    var shapeViolated: Bool { n > (policy.effectiveMaxDepth ?? n) || (policy.flatten == .full && n > 1) }

    func copyRule(_ kind: CopyKind) -> String {
        let base = "active image not in storage.activeDir \(activeDir ?? "")"
        return kind == .full && shapeViolated ? base + "; " + shapeRule : base
    }

    // MARK: - Checks on the chosen steps

    mutating func checkSolution(_ solution: ShapeSolution, _ a: LayerAnalysis, _ costs: CostModel) {
        var anyEncrypted = false
        for i in 0..<n where layers[i].encrypted { anyEncrypted = true }
        var touched = [Bool](repeating: false, count: anyEncrypted ? n : 0)
        func touch<S: Sequence>(_ positions: S) where S.Element == Int {
            if anyEncrypted { for i in positions { touched[i] = true } }
        }
        let checkSpace = !freeSpace.isEmpty
        var writes: [PlannedWrite] = []
        for op in solution.operations {
            switch op {
            case .commit(_, let base), .activeCommit(_, _, let base):
                touch(op.removed)
                touch(CollectionOfOne(base))
                if checkSpace {
                    let bytes = ShapeSolver.bytes(of: op, costs)
                    let what = "commit into \(paths[base])"
                    writes.append(PlannedWrite(dir: PlanPath.dirname(paths[base]), bytes: bytes, what: what))
                }
                checkRawBase(base, committed: op.removed)
            case .pull(let into, let after, let through, _):
                touch(CollectionOfOne(into))
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
        let encrypted = (0..<touched.count).filter { touched[$0] && layers[$0].encrypted }
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

    mutating func checkRawBase(_ base: Int, committed: [Int]) {
        guard layers[base].format == "raw", let size = layers[base].virtualSize else { return }
        for i in committed {
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
        let location = policy.location.fileLine
        var current = paths
        /// Original positions of `current`; -1 = the copy destination.
        var positions = Array(0..<n)
        func add(
            _ action: StepAction, top: String?, base: String?, destination: String? = nil, bytes: UInt64,
            rule: String, backingFormat: String? = nil, after: [String]
        ) {
            steps.append(
                Step(
                    id: 0, host: inventory.host, domain: domain.name, disk: disk.target, action: action, mode: mode,
                    top: top, base: base, destination: destination, estimatedBytes: bytes,
                    reason: StepReason(rule: rule, policy: policy.name, location: location),
                    backingFormat: backingFormat, expectBefore: current, expectAfter: after))
            current = after
        }
        func without(_ removed: [Int]) -> [String] {
            positions.removeAll { removed.contains($0) }
            return positions.map { $0 >= 0 ? paths[$0] : current[0] }
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
            for op in solution.operations {
                let bytes = ShapeSolver.bytes(of: op, costs)
                switch op {
                case .commit(let top, let base), .activeCommit(let top, _, let base):
                    add(.commit, top: paths[top], base: paths[base], bytes: bytes, rule: rule,
                        after: without(op.removed))
                case .pull(let into, _, _, let base):
                    add(.pull, top: paths[into], base: base.map { paths[$0] }, bytes: bytes, rule: rule,
                        after: without(op.removed))
                case .copy(let kind, let from, _, let base):
                    let dest = destination(from) ?? paths[from]
                    let after = kind == .full ? [dest] : [dest] + current.dropFirst()
                    positions = kind == .full ? [-1] : [-1] + positions.dropFirst()
                    add(.copy, top: paths[from], base: kind == .full ? nil : base.map { paths[$0] },
                        destination: dest, bytes: bytes, rule: copyRule(kind), after: after)
                }
            }
            if policy.retired == .delete {
                var kept = [Bool](repeating: false, count: n)
                for position in positions where position >= 0 { kept[position] = true }
                for i in 0..<n where !kept[i] && deletable(i, a) {
                    add(.deleteImage, top: paths[i], base: nil, bytes: 0, rule: "retired: delete", after: current)
                }
            }
        }
        // Keys of the final chain: the paths, except for non-local layers (copy destinations are local files).
        let finalKeys = keysEqualPaths ? current : positions.map { $0 >= 0 ? key($0) : current[0] }
        return DiskChange(
            domain: domain.name, disk: disk.target, policy: policy.name, steps: steps, before: paths, after: current,
            afterKeys: finalKeys, solution: solution)
    }

    /// An image that left the chain may be deleted only if nothing else references it or needs it as a backing
    /// file, it is not protected, it is a file, and it lies inside the allowed roots.
    func deletable(_ i: Int, _ a: LayerAnalysis) -> Bool {
        guard layers[i].source.kind == .file, layers[i].source.path != nil, !a.protected[i],
            !a.effectivelyShared[i], a.inRoots[i]
        else { return false }
        for ref in inventory.references(of: layers[i].key) {
            guard case .chain = ref.kind, ref.domain == domain.name, ref.disk == disk.target else { return false }
        }
        return true
    }
}
