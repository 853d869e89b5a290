// The planner: a pure function from observed state, the policy of each disk and the host configuration to a Plan.

import Dispatch

public struct PlannerInput: Sendable {
    public var inventory: Inventory
    /// Policy for each (domain name, disk target) that has exactly one matching policy.
    public var assignments: [DiskKey: Policy]
    public var config: HostConfig
    /// Free bytes of the filesystem holding each directory (canonical path); missing = unknown (never blocks).
    public var freeSpace: [String: UInt64]

    public init(
        inventory: Inventory, assignments: [DiskKey: Policy], config: HostConfig = .defaults,
        freeSpace: [String: UInt64] = [:]
    ) {
        self.inventory = inventory
        self.assignments = assignments
        self.config = config
        self.freeSpace = freeSpace
    }
}

/// The planned change of one disk (steps numbered 0; `Planner.plan` numbers them).
public struct DiskChange: Sendable, Hashable {
    public var domain: String
    public var disk: String
    public var policy: String
    /// In execution order: rebase, non-active commits bottom-up, active commit, pull, (the commit of the gap below
    /// the last pulled image, when that image is protected or shared,) copy, delete-image.
    /// (metadata-delete steps are decided per domain by `Planner.plan`.)
    public var steps: [Step]
    /// Chain before and after (canonical paths, active first).
    public var before: [String]
    public var after: [String]
    /// Image keys of the chain after the plan (for snapshot metadata decisions).
    public var afterKeys: [String]
    /// The chosen target shape; nil when the shape needs no change.
    public var solution: ShapeSolution?

    public var isCompliant: Bool { steps.isEmpty }
    public var estimatedBytes: UInt64 { steps.reduce(0) { $0 + $1.estimatedBytes } }
}

public enum DiskOutcome: Sendable, Hashable {
    /// Not a managed chain disk, or a shut-off domain whose policy says `shutoff: skip`.
    case skipped
    /// Cannot be brought to its policy now; one entry per reason.
    case blocked([Blocked])
    /// Steps to run (possibly none: compliant).
    case planned(DiskChange)

    public var blocked: [Blocked] {
        if case .blocked(let reasons) = self { return reasons }
        return []
    }

    public var change: DiskChange? {
        if case .planned(let change) = self { return change }
        return nil
    }
}

/// The planned outcome of one managed disk (positions in `Inventory.domains`).
struct JobResult: Sendable {
    var domain: Int
    var disk: Int
    var outcome: DiskOutcome
    /// Steps of a planned change (0 otherwise).
    var stepCount: Int
    /// On the last planned disk of a domain with snapshots: the domain's `metadata-delete` steps (ids 0).
    var metadata: [Step] = []
}

/// `Plan.fingerprints` entry of one disk.
struct FingerprintEntry: Sendable {
    var key: String
    var value: String
}

/// What phase 1 produced for one chunk of domains (the fingerprints are kept apart: phase 3 reads them while it
/// consumes the results).
struct ChunkOutput: Sendable {
    var results: [JobResult] = []
    /// The steps of all the chunk's planned disks, in order (`JobResult.stepCount` each).
    var stepSink: StepSink?
    var steps = 0
    var disks = 0
    var blocked = 0
}

/// Memory written by the parallel workers; every worker writes only its own slots.
struct SharedSlots<T>: @unchecked Sendable {
    let base: UnsafeMutablePointer<T>
}

/// Policy names in a plan's assignments.
enum PolicyNames {
    /// Whether two different policies of `assignments` have the same name (never for a validated policy set).
    static func areAmbiguous(_ assignments: [DiskKey: Policy]) -> Bool {
        var seen: [Policy] = []
        for policy in assignments.values where !seen.contains(where: { $0 == policy }) {
            if seen.contains(where: { $0.name == policy.name }) { return true }
            seen.append(policy)
        }
        return false
    }
}

/// One worker's policy contexts, each made on first use. The contexts are the worker's own (not shared with other
/// threads), so the reference counts of the contexts and of the texts every step shares never bounce between
/// processors. Policies are told apart by name, which is unique in a validated set: reading only the name of an
/// assignment copies nothing reference-counted for the usual short names. `byName` false: compare whole
/// policies (when two different policies share a name).
struct PolicyCache {
    let roots: AllowedRoots
    let byName: Bool
    private var known: [(name: String, context: PolicyContext)] = []

    init(roots: AllowedRoots, byName: Bool) {
        self.roots = roots
        self.byName = byName
    }

    /// The context of the policy `assignments[key]`, or nil when the disk is not managed.
    mutating func context(_ assignments: [DiskKey: Policy], _ key: DiskKey) -> PolicyContext? {
        if byName {
            guard let name = assignments[key]?.name else { return nil }
            for k in known.indices where known[k].name == name { return known[k].context }
        }
        guard let policy = assignments[key] else { return nil }
        if !byName {
            for k in known.indices where known[k].context.policy == policy { return known[k].context }
        }
        let context = PolicyContext(policy, roots: roots)
        known.append((policy.name, context))
        return context
    }
}

public enum Planner {
    /// Domains per chunk of parallel work (a chunk holds whole domains, so that each domain's snapshot metadata is
    /// decided by the worker that planned its disks).
    static let domainsPerChunk = 128

    public static func plan(_ input: PlannerInput) -> Plan {
        let inventory = input.inventory
        let assignments = input.assignments
        let domainCount = inventory.domains.count
        let chunks = (domainCount + domainsPerChunk - 1) / domainsPerChunk
        let parallel = chunks >= 4
        func forEachChunk(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
            if parallel {
                DispatchQueue.concurrentPerform(iterations: count, execute: body)
            } else {
                for c in 0..<count { body(c) }
            }
        }

        // 0. Side by side: the filter of images with several references, and whether two different policies share
        //    a name (then policies are told apart by comparing them whole, else by name).
        let filterSlot = SharedSlots(base: UnsafeMutablePointer<ReferenceFilter?>.allocate(capacity: 1))
        let ambiguousSlot = SharedSlots(base: UnsafeMutablePointer<Bool>.allocate(capacity: 1))
        filterSlot.base.initialize(to: nil)
        ambiguousSlot.base.initialize(to: false)
        forEachChunk(2) { task in
            if task == 0 {
                filterSlot.base.pointee = ReferenceFilter(inventory)
            } else {
                ambiguousSlot.base.pointee = PolicyNames.areAmbiguous(assignments)
            }
        }
        let byName = !ambiguousSlot.base.move()
        let context = PlanContext(
            inventory: inventory, config: input.config, freeSpace: input.freeSpace, filter: filterSlot.base.move())
        filterSlot.base.deallocate()
        ambiguousSlot.base.deallocate()

        // (Capacities are at least 1, so that every buffer has an address.)
        let outputSlots = SharedSlots(base: UnsafeMutablePointer<ChunkOutput>.allocate(capacity: max(chunks, 1)))
        let fingerprintSlots = SharedSlots(
            base: UnsafeMutablePointer<[FingerprintEntry]>.allocate(capacity: max(chunks, 1)))
        outputSlots.base.initialize(repeating: ChunkOutput(), count: chunks)
        fingerprintSlots.base.initialize(repeating: [], count: chunks)
        defer {
            outputSlots.base.deinitialize(count: chunks)
            outputSlots.base.deallocate()
            fingerprintSlots.base.deinitialize(count: chunks)
            fingerprintSlots.base.deallocate()
        }
        var plan = Plan(host: inventory.host)
        withExtendedLifetime(context) {
            // 1. Each chunk of domains: every managed disk, in inventory order, planned independently (each chunk's
            //    results land in its own slot, so the plan does not depend on scheduling), then the snapshot
            //    metadata of its domains.
            forEachChunk(chunks) { c in
                let domains = (c * domainsPerChunk)..<min(domainCount, (c + 1) * domainsPerChunk)
                (outputSlots.base[c], fingerprintSlots.base[c]) = planChunk(
                    domains, assignments, context, byName: byName)
            }

            // 2. Where each chunk's steps, disk plans and blocked reasons go; step ids follow.
            var stepStart = [Int](repeating: 0, count: chunks + 1)
            var diskStart = stepStart
            var blockedStart = stepStart
            for c in 0..<chunks {
                stepStart[c + 1] = stepStart[c] + outputSlots.base[c].steps
                diskStart[c + 1] = diskStart[c] + outputSlots.base[c].disks
                blockedStart[c + 1] = blockedStart[c] + outputSlots.base[c].blocked
            }

            // 3. Each chunk moves its steps (numbered), disk plans and blocked reasons into place; one more
            //    task fills the fingerprints meanwhile. (Capacities are at least 1, so that every buffer has
            //    an address.)
            let table = SharedSlots(base: UnsafeMutablePointer<[String: String]>.allocate(capacity: 1))
            table.base.initialize(to: [:])
            defer { table.base.deallocate() }
            var disksOut: [DiskPlan] = []
            var blockedOut: [Blocked] = []
            let stepsOut = [Step](unsafeUninitializedCapacity: max(stepStart[chunks], 1)) { stepBuffer, stepCount in
                disksOut = [DiskPlan](unsafeUninitializedCapacity: max(diskStart[chunks], 1)) {
                    diskBuffer, diskCount in
                    blockedOut = [Blocked](unsafeUninitializedCapacity: max(blockedStart[chunks], 1)) {
                        blockedBuffer, blockedCount in
                        let stepSlots = SharedSlots(base: stepBuffer.baseAddress!)
                        let diskSlots = SharedSlots(base: diskBuffer.baseAddress!)
                        let blockedSlots = SharedSlots(base: blockedBuffer.baseAddress!)
                        let starts = (stepStart, diskStart, blockedStart)
                        // (The fingerprints first: they are the longest task, and would otherwise run alone at
                        // the end.)
                        forEachChunk(chunks + 1) { task in
                            if task == 0 {
                                table.base.pointee = fingerprintDictionary(fingerprintSlots, chunks)
                                return
                            }
                            let c = task - 1
                            emitChunk(
                                outputSlots, c, inventory.domains, steps: stepSlots.base + starts.0[c],
                                firstID: starts.0[c] + 1, disks: diskSlots.base + starts.1[c],
                                blocked: blockedSlots.base + starts.2[c])
                        }
                        blockedCount = blockedStart[chunks]
                    }
                    diskCount = diskStart[chunks]
                }
                stepCount = stepStart[chunks]
            }
            plan.steps = stepsOut
            plan.disks = disksOut
            plan.blocked = blockedOut
            plan.fingerprints = table.base.move()
        }
        return plan
    }

    /// Phase 1 for one chunk of domains.
    private static func planChunk(
        _ range: Range<Int>, _ assignments: [DiskKey: Policy], _ context: PlanContext, byName: Bool
    ) -> (ChunkOutput, [FingerprintEntry]) {
        let scratch = SolverScratch()
        let sink = StepSink()
        scratch.steps = sink
        var policies = PolicyCache(roots: context.roots, byName: byName)
        let domains = context.inventory.domains
        var out = ChunkOutput()
        out.results.reserveCapacity(range.count * 2)
        /// The disks whose fingerprint the plan carries: keys now, values hashed together at the end.
        var keys: [String] = []
        var batch = Fingerprint.Batch()
        out.stepSink = sink
        var warm = 0
        for d in range {
            let domain = domains[d]
            warm &+= warmUp(domain)
            let first = out.results.count
            for k in domain.disks.indices {
                let key = DiskKey(domain: domain.name, disk: domain.disks[k].target)
                guard let policy = policies.context(assignments, key) else { continue }
                let sinkBefore = sink.count
                let outcome = withExtendedLifetime(policy) {
                    planDisk(domain: domain, disk: domain.disks[k], policy: policy, context: context, scratch: scratch)
                }
                var stepCount = 0
                var touched = false
                switch outcome {
                case .skipped:
                    break
                case .blocked(let reasons):
                    out.blocked += reasons.count
                    touched = true
                case .planned:
                    // (Its steps went to the sink.)
                    out.disks += 1
                    stepCount = sink.count - sinkBefore
                    touched = stepCount > 0
                }
                out.steps += stepCount
                out.results.append(JobResult(domain: d, disk: k, outcome: outcome, stepCount: stepCount))
                if touched {
                    keys.append(Fingerprint.key(domain, domain.disks[k]))
                    batch.add(domain, domain.disks[k])
                }
            }
            // Snapshot metadata of the domain, decided on all its planned disks.
            guard !domain.snapshots.isEmpty, out.results.count > first else { continue }
            var changes: [String: DiskChange] = [:]
            var diskPolicies: [String: Policy] = [:]
            var diskIndex: [String: Int] = [:]
            for r in first..<out.results.count {
                guard case .planned(let change) = out.results[r].outcome else { continue }
                changes[change.disk] = change
                diskIndex[change.disk] = out.results[r].disk
                if let policy = assignments[DiskKey(domain: domain.name, disk: change.disk)] {
                    diskPolicies[change.disk] = policy
                }
            }
            let metadata = metadataSteps(
                domain: domain, changes: changes, policies: diskPolicies, host: context.inventory.host)
            guard !metadata.isEmpty else { continue }
            out.steps += metadata.count
            out.results[out.results.count - 1].metadata = metadata
            for step in metadata {
                guard let k = diskIndex[step.disk] else { continue }
                keys.append(Fingerprint.key(domain, domain.disks[k]))
                batch.add(domain, domain.disks[k])
            }
        }
        scratch.sink = warm  // keeps the loads of `warmUp`
        let values = batch.finish()
        var fingerprints: [FingerprintEntry] = []
        fingerprints.reserveCapacity(values.count)
        for (key, value) in zip(keys, values) { fingerprints.append(FingerprintEntry(key: key, value: value)) }
        return (out, fingerprints)
    }

    /// Reads a word from each of the five cache lines every layer of the domain's chains spans (and the first byte
    /// of each path), in one tight loop. The inventory is far larger than the caches; loads that do not depend on
    /// each other miss the cache side by side here, instead of one after another in the analysis, the costs and
    /// the fingerprint.
    @inline(never)
    private static func warmUp(_ domain: Domain) -> Int {
        var sum = 0
        for k in domain.disks.indices {
            guard let chain = domain.disks[k].chain else { continue }
            chain.layers.withUnsafeBufferPointer { layers in
                for i in layers.indices {
                    sum &+= layers[i].format?.utf8.count ?? 0
                    sum &+= Int(truncatingIfNeeded: layers[i].fileSize ?? 0)
                    sum &+= layers[i].bitmaps.count
                    sum &+= layers[i].encrypted ? 1 : 0
                    sum &+= layers[i].allocation == nil ? 0 : 1
                    if let path = layers[i].source.path {
                        sum &+= path.utf8.withContiguousStorageIfAvailable { Int($0.first ?? 0) } ?? 0
                    }
                }
            }
        }
        return sum
    }

    private static func fingerprintDictionary(_ slots: SharedSlots<[FingerprintEntry]>, _ chunks: Int)
        -> [String: String]
    {
        var count = 0
        for c in 0..<chunks { count += slots.base[c].count }
        var table: [String: String] = [:]
        table.reserveCapacity(count)
        for c in 0..<chunks {
            for entry in slots.base[c] { table[entry.key] = entry.value }
        }
        return table
    }

    /// Phase 3 for one chunk: its steps (numbered from `firstID`), disk plans and blocked reasons, moved out of the
    /// results into the plan's arrays (initialising `steps`, `disks`, `blocked` onwards).
    private static func emitChunk(
        _ outputs: SharedSlots<ChunkOutput>, _ c: Int, _ domains: [Domain], steps: UnsafeMutablePointer<Step>,
        firstID: Int, disks: UnsafeMutablePointer<DiskPlan>, blocked: UnsafeMutablePointer<Blocked>
    ) {
        var results: [JobResult] = []
        swap(&results, &outputs.base[c].results)
        guard let sink = outputs.base[c].stepSink else { return }
        var stepOut = steps
        var diskOut = disks
        var blockedOut = blocked
        var nextID = firstID
        var i = 0
        while i < results.count {
            let d = results[i].domain
            let hasSnapshots = !domains[d].snapshots.isEmpty
            var pending: [DiskPlan] = []
            var pendingIndex: [String: Int] = [:]
            var metadata: [Step] = []
            while i < results.count && results[i].domain == d {
                if !results[i].metadata.isEmpty { swap(&metadata, &results[i].metadata) }
                // Take the outcome out of the results (no copy of its arrays); its steps are in the chunk's sink.
                var outcome = DiskOutcome.skipped
                swap(&outcome, &results[i].outcome)
                switch consume outcome {
                case .skipped:
                    break
                case .blocked(let reasons):
                    for reason in reasons {
                        blockedOut.initialize(to: reason)
                        blockedOut += 1
                    }
                case .planned(let change):
                    let count = results[i].stepCount
                    if count > 0 {
                        sink.move(count, to: stepOut)
                        for k in 0..<count { stepOut[k].id = nextID + k }
                        stepOut += count
                    }
                    let diskPlan = DiskPlan(
                        domain: change.domain, disk: change.disk, policy: change.policy, before: change.before,
                        after: change.after, stepIDs: Array(nextID..<(nextID + count)))
                    nextID += count
                    if hasSnapshots {
                        pendingIndex[change.disk] = pending.count
                        pending.append(diskPlan)
                    } else {
                        diskOut.initialize(to: diskPlan)
                        diskOut += 1
                    }
                }
                i += 1
            }
            guard hasSnapshots else { continue }
            for var step in metadata {
                step.id = nextID
                nextID += 1
                if let index = pendingIndex[step.disk] { pending[index].stepIDs.append(step.id) }
                stepOut.initialize(to: step)
                stepOut += 1
            }
            for diskPlan in pending {
                diskOut.initialize(to: diskPlan)
                diskOut += 1
            }
        }
    }

    /// The plan of one disk under `policy`, ignoring snapshot metadata (decided per domain by `plan`).
    public static func planDisk(
        domain: Domain, disk: Disk, policy: Policy, inventory: Inventory, config: HostConfig = .defaults,
        freeSpace: [String: UInt64] = [:]
    ) -> DiskOutcome {
        let context = PlanContext(inventory: inventory, config: config, freeSpace: freeSpace)
        let policyContext = PolicyContext(policy, roots: context.roots)
        let scratch = SolverScratch()
        return withExtendedLifetime((context, policyContext, scratch)) {
            planDisk(domain: domain, disk: disk, policy: policyContext, context: context, scratch: scratch)
        }
    }

    static func planDisk(
        domain: Domain, disk: Disk, policy: PolicyContext, context: PlanContext, scratch: SolverScratch
    ) -> DiskOutcome {
        guard disk.isChainDisk, let chain = disk.chain else { return .skipped }
        if domain.state == .shutoff && policy.policy.shutoff == .skip { return .skipped }
        var planner = DiskPlanner(
            domain: domain, disk: disk, chain: chain, context: context, policy: policy, scratch: scratch)
        return planner.run()
    }

    /// `metadata-delete` steps (ids 0) for snapshots of `domain` that name an image which, after the planned
    /// changes, is in no chain of any disk of the domain. Each is attributed to a planned disk the snapshot names
    /// whose policy says `snapshotMetadata: prune` (a disk that left the chain first).
    public static func metadataSteps(
        domain: Domain, changes: [String: DiskChange], policies: [String: Policy], host: String
    ) -> [Step] {
        var inChains = Set<String>()
        for disk in domain.disks {
            if let change = changes[disk.target] {
                inChains.formUnion(change.afterKeys)
            } else if let chain = disk.chain {
                for layer in chain.layers { inChains.insert(layer.key) }
            }
        }
        var steps: [Step] = []
        for snapshot in domain.snapshots {
            var stale: [String] = []
            for ref in snapshot.disks {
                let named = (ref.overlay.map { [$0] } ?? []) + ref.stateSources
                if named.contains(where: { !inChains.contains($0.key) }) { stale.append(ref.target) }
            }
            guard !stale.isEmpty else { continue }
            let candidates = stale + snapshot.disks.map(\.target)
            let eligible = candidates.first { target in
                guard let change = changes[target], let policy = policies[target], policy.snapshotMetadata == .prune,
                    let disk = domain.disks.first(where: { $0.target == target }), disk.job == nil,
                    disk.mirror == nil
                else { return false }
                _ = change
                return true
            }
            guard let target = eligible, let change = changes[target], let policy = policies[target] else { continue }
            steps.append(
                Step(
                    id: 0, host: host, domain: domain.name, disk: target, action: .metadataDelete,
                    mode: domain.state.isActive ? .live : .offline, top: nil, base: nil, destination: nil,
                    estimatedBytes: 0,
                    reason: StepReason(
                        rule: "snapshot \(snapshot.name) names images no longer in any chain", policy: policy.name,
                        location: policy.location.fileLine),
                    snapshot: snapshot.name, expectBefore: change.after, expectAfter: change.after))
        }
        return steps
    }
}
