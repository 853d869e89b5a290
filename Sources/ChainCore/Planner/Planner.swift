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
    /// In execution order: rebase, non-active commits bottom-up, active commit, pull, copy, delete-image.
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

/// One managed disk to plan: positions in `Inventory.domains` and its policy.
struct PlanJob: Sendable {
    var domain: Int
    var disk: Int
    var policy: Policy
}

struct JobResult: Sendable {
    var outcome: DiskOutcome
    var fingerprint: String?
}

/// Result slots written by the parallel workers, one slot per job (never the same slot twice).
struct ResultSlots: @unchecked Sendable {
    let base: UnsafeMutablePointer<JobResult?>
}

public enum Planner {
    public static func plan(_ input: PlannerInput) -> Plan {
        let inventory = input.inventory
        let context = PlanContext(
            roots: AllowedRoots(input.config), shared: SharedKeyFilter(inventory.references))

        // 1. Every managed disk, in inventory order, planned independently (in parallel for large inventories;
        //    each result lands in its own slot, so the plan does not depend on scheduling).
        var jobs: [PlanJob] = []
        jobs.reserveCapacity(input.assignments.count)
        for (d, domain) in inventory.domains.enumerated() {
            for (k, disk) in domain.disks.enumerated() {
                if let policy = input.assignments[DiskKey(domain: domain.name, disk: disk.target)] {
                    jobs.append(PlanJob(domain: d, disk: k, policy: policy))
                }
            }
        }
        var results = [JobResult?](repeating: nil, count: jobs.count)
        let chunk = 256
        let chunks = (jobs.count + chunk - 1) / chunk
        if chunks >= 4 {
            results.withUnsafeMutableBufferPointer { buffer in
                guard let base = buffer.baseAddress else { return }
                let slots = ResultSlots(base: base)
                let work = jobs
                DispatchQueue.concurrentPerform(iterations: chunks) { c in
                    for i in (c * chunk)..<min(work.count, (c + 1) * chunk) {
                        slots.base[i] = run(work[i], input, context)
                    }
                }
            }
        } else {
            for i in jobs.indices { results[i] = run(jobs[i], input, context) }
        }

        // 2. Assembly in order: step ids, disk plans, fingerprints, then per domain the snapshot metadata.
        var plan = Plan(host: inventory.host)
        plan.disks.reserveCapacity(jobs.count)
        var nextID = 1
        var j = 0
        while j < jobs.count {
            let d = jobs[j].domain
            let domain = inventory.domains[d]
            let hasSnapshots = !domain.snapshots.isEmpty
            var changes: [String: DiskChange] = [:]
            var policies: [String: Policy] = [:]
            var diskPlanIndex: [String: Int] = [:]
            while j < jobs.count && jobs[j].domain == d {
                let job = jobs[j]
                j += 1
                guard let result = results[j - 1] else { continue }
                let disk = domain.disks[job.disk]
                if let fingerprint = result.fingerprint {
                    plan.fingerprints[Fingerprint.key(domain, disk)] = fingerprint
                }
                switch result.outcome {
                case .skipped:
                    continue
                case .blocked(let reasons):
                    plan.blocked.append(contentsOf: reasons)
                case .planned(let change):
                    var ids: [Int] = []
                    ids.reserveCapacity(change.steps.count)
                    for var step in change.steps {
                        step.id = nextID
                        nextID += 1
                        ids.append(step.id)
                        plan.steps.append(step)
                    }
                    if hasSnapshots {
                        diskPlanIndex[disk.target] = plan.disks.count
                        changes[disk.target] = change
                        policies[disk.target] = job.policy
                    }
                    plan.disks.append(
                        DiskPlan(
                            domain: domain.name, disk: disk.target, policy: job.policy.name, before: change.before,
                            after: change.after, stepIDs: ids))
                }
            }
            guard hasSnapshots else { continue }
            for var step in metadataSteps(domain: domain, changes: changes, policies: policies, host: inventory.host) {
                step.id = nextID
                nextID += 1
                plan.steps.append(step)
                if let index = diskPlanIndex[step.disk] { plan.disks[index].stepIDs.append(step.id) }
                if let disk = domain.disks.first(where: { $0.target == step.disk }) {
                    plan.fingerprints[Fingerprint.key(domain, disk)] = Fingerprint.disk(domain, disk)
                }
            }
        }
        return plan
    }

    private static func run(_ job: PlanJob, _ input: PlannerInput, _ context: PlanContext) -> JobResult {
        let domain = input.inventory.domains[job.domain]
        let disk = domain.disks[job.disk]
        let outcome = planDisk(
            domain: domain, disk: disk, policy: job.policy, inventory: input.inventory, config: input.config,
            freeSpace: input.freeSpace, context: context)
        var fingerprint: String?
        switch outcome {
        case .blocked: fingerprint = Fingerprint.disk(domain, disk)
        case .planned(let change) where !change.steps.isEmpty: fingerprint = Fingerprint.disk(domain, disk)
        default: break
        }
        return JobResult(outcome: outcome, fingerprint: fingerprint)
    }

    /// The plan of one disk under `policy`, ignoring snapshot metadata (decided per domain by `plan`).
    public static func planDisk(
        domain: Domain, disk: Disk, policy: Policy, inventory: Inventory, config: HostConfig = .defaults,
        freeSpace: [String: UInt64] = [:]
    ) -> DiskOutcome {
        planDisk(
            domain: domain, disk: disk, policy: policy, inventory: inventory, config: config, freeSpace: freeSpace,
            context: PlanContext(roots: AllowedRoots(config), shared: nil))
    }

    static func planDisk(
        domain: Domain, disk: Disk, policy: Policy, inventory: Inventory, config: HostConfig,
        freeSpace: [String: UInt64], context: PlanContext
    ) -> DiskOutcome {
        guard disk.isChainDisk, let chain = disk.chain else { return .skipped }
        if domain.state == .shutoff && policy.shutoff == .skip { return .skipped }
        var planner = DiskPlanner(
            domain: domain, disk: disk, chain: chain, policy: policy, inventory: inventory, config: config,
            freeSpace: freeSpace, context: context)
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
