// Builders, a deterministic PRNG and an exhaustive search used by the planner tests.

@testable import ChainCore

/// SplitMix64: small, fast, deterministic.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
}

enum PT {
    static let root = "/var/lib/libvirt/images"
    static let cluster: UInt64 = 65536
    static let clusters: UInt64 = 64
    static var virtualSize: UInt64 { cluster * clusters }

    /// Extents from cluster ranges (`[0..<4, 10..<12]` = clusters 0-3 and 10-11).
    static func extents(_ clusterRanges: [Range<UInt64>]) -> ExtentSet {
        ExtentSet(clusterRanges.map { ($0.lowerBound * cluster)..<($0.upperBound * cluster) })
    }

    static func layer(
        _ path: String, format: String? = "qcow2", clusters: [Range<UInt64>]? = nil, dataBytes: UInt64? = nil,
        formatRecorded: Bool = true, kind: SourceKind = .file, encrypted: Bool = false, bitmaps: [String] = [],
        virtualSize: UInt64? = nil
    ) -> Layer {
        let allocation = clusters.map(extents)
        var source = ImageSource.file(path)
        source.kind = kind
        return Layer(
            source: source, format: format, formatRecorded: formatRecorded, virtualSize: virtualSize ?? PT.virtualSize,
            dataBytes: dataBytes ?? allocation?.byteCount ?? 0,
            fileSize: (dataBytes ?? allocation?.byteCount ?? 0) + 196_608,
            mtime: 1_700_000_000, encrypted: encrypted, bitmaps: bitmaps, allocation: allocation)
    }

    static func disk(_ target: String = "vda", _ layers: [Layer], job: BlockJob? = nil) -> Disk {
        Disk(target: target, driverType: layers.first?.format, chain: Chain(layers: layers), job: job)
    }

    static func domain(
        _ name: String, state: DomainState = .running, disks: [Disk], snapshots: [Snapshot] = []
    ) -> Domain {
        Domain(name: name, uuid: "uuid-\(name)", state: state, disks: disks, snapshots: snapshots)
    }

    static func policy(
        _ name: String = "test", maxDepth: Int? = nil, flatten: Flatten = .none, protect: [String] = [],
        activeDir: String? = nil, snapshotMetadata: SnapshotMetadataMode = .prune, shutoff: ShutoffMode = .offline,
        retired: RetiredMode = .keep
    ) -> Policy {
        Policy(
            name: name, maxDepth: maxDepth, flatten: flatten, protect: protect, activeDir: activeDir,
            snapshotMetadata: snapshotMetadata, shutoff: shutoff, retired: retired,
            location: SourceLocation(file: "policies/test.json", line: 4, column: 5))
    }

    /// Plans `domains`, assigning `policy` to every (domain, disk) in `managed` (default: all disks).
    static func plan(
        _ domains: [Domain], policy: Policy, managed: [DiskKey]? = nil, config: HostConfig = HostConfig(),
        freeSpace: [String: UInt64] = [:]
    ) -> Plan {
        let inventory = Inventory(host: "qemu:///system", domains: domains)
        var assignments: [DiskKey: Policy] = [:]
        let keys = managed ?? domains.flatMap { d in d.disks.map { DiskKey(domain: d.name, disk: $0.target) } }
        for key in keys { assignments[key] = policy }
        return Planner.plan(
            PlannerInput(inventory: inventory, assignments: assignments, config: config, freeSpace: freeSpace))
    }

    static func path(_ name: String, dir: String = "vm") -> String { "\(root)/\(dir)/\(name)" }
}

// MARK: - Policy goal and exhaustive search

struct Goal {
    var maxDepth: Int?
    var flatten: Flatten
    var activeDir: String?
    var originalBase: String
    var originalCount: Int

    init(policy: Policy, original: [String]) {
        maxDepth = policy.effectiveMaxDepth
        flatten = policy.flatten
        activeDir = policy.activeDir
        originalBase = original.last ?? ""
        originalCount = original.count
    }

    func isMet(_ paths: [String]) -> Bool {
        if let maxDepth, paths.count > maxDepth { return false }
        switch flatten {
        case .full: if paths.count != 1 { return false }
        case .keepBase:
            // The base stays, unless it is the whole chain (then it may move to storage.activeDir).
            if paths.count > 2 || (paths.last != originalBase && originalCount > 1) { return false }
        case .none: break
        }
        if let activeDir, let active = paths.first, PlanPath.dirname(active) != activeDir { return false }
        return true
    }
}

enum BruteForce {
    struct Best: Equatable {
        var bytes: UInt64
        var steps: Int
    }

    private struct State: Hashable {
        var chain: SimChain
        var copied: Bool
    }

    /// Every commit (active or not), pull and copy applicable to `chain`; a copy only while the active image is
    /// outside `activeDir`.
    static func candidates(_ chain: SimChain, activeDir: String?) -> [Step] {
        let p = chain.paths
        let m = p.count
        var out: [Step] = []
        func step(_ action: StepAction, _ top: String, _ base: String?, _ destination: String? = nil) -> Step {
            Step(
                id: 0, host: "h", domain: "d", disk: "vda", action: action, mode: .live, top: top, base: base,
                destination: destination, estimatedBytes: 0, reason: StepReason(rule: "", policy: "", location: ""))
        }
        for t in 0..<m {
            for b in (t + 1)..<max(m, t + 1) { out.append(step(.commit, p[t], p[b])) }
        }
        if m >= 2 {
            for b in 2..<max(m, 2) { out.append(step(.pull, p[0], p[b])) }
            out.append(step(.pull, p[0], nil))
        }
        if let activeDir, PlanPath.dirname(p[0]) != activeDir {
            let destination = PlanPath.join(activeDir, PlanPath.basename(p[0]))
            if m >= 2 { out.append(step(.copy, p[0], p[1], destination)) }
            out.append(step(.copy, p[0], nil, destination))
        }
        return out
    }

    /// The least (bytes, steps) of any sequence of commits, pulls and a final copy reaching `goal`; nil if none.
    static func optimum(_ start: SimChain, goal: Goal) -> Best? {
        var frontier: [(cost: Best, state: State)] = [(Best(bytes: 0, steps: 0), State(chain: start, copied: false))]
        var settled = Set<State>()
        var bestSeen: [State: Best] = [:]
        while !frontier.isEmpty {
            var index = 0
            for i in 1..<frontier.count where less(frontier[i].cost, frontier[index].cost) { index = i }
            let (cost, state) = frontier.remove(at: index)
            if settled.contains(state) { continue }
            settled.insert(state)
            if goal.isMet(state.chain.paths) { return cost }
            if state.copied { continue }
            for step in candidates(state.chain, activeDir: goal.activeDir) {
                guard let (next, bytes) = ChainSimulator.transition(step, state.chain) else { continue }
                let nextState = State(chain: next, copied: step.action == .copy)
                if settled.contains(nextState) { continue }
                let nextCost = Best(bytes: cost.bytes + bytes, steps: cost.steps + 1)
                if let seen = bestSeen[nextState], !less(nextCost, seen) { continue }
                bestSeen[nextState] = nextCost
                frontier.append((nextCost, nextState))
            }
        }
        return nil
    }

    static func less(_ a: Best, _ b: Best) -> Bool { a.bytes != b.bytes ? a.bytes < b.bytes : a.steps < b.steps }
}

extension Plan {
    func steps(for domain: String, _ disk: String = "vda") -> [Step] {
        steps.filter { $0.domain == domain && $0.disk == disk }
    }
    func blocked(for domain: String, _ disk: String = "vda") -> [Blocked] {
        blocked.filter { $0.domain == domain && $0.disk == disk }
    }
    func diskPlan(for domain: String, _ disk: String = "vda") -> DiskPlan? {
        disks.first { $0.domain == domain && $0.disk == disk }
    }
}
