// The planner: a pure function from observed state, the policy of each disk and the host configuration to a Plan.

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

public enum Planner {
    public static func plan(_ input: PlannerInput) -> Plan {
        let inventory = input.inventory
        var plan = Plan(host: inventory.host)
        plan.disks.reserveCapacity(input.assignments.count)
        let roots = AllowedRoots(input.config)
        var nextID = 1
        for domain in inventory.domains {
            let hasSnapshots = !domain.snapshots.isEmpty
            var changes: [String: DiskChange] = [:]
            var policies: [String: Policy] = [:]
            var diskPlanIndex: [String: Int] = [:]
            for disk in domain.disks {
                guard let policy = input.assignments[DiskKey(domain: domain.name, disk: disk.target)] else {
                    continue
                }
                let outcome = planDisk(
                    domain: domain, disk: disk, policy: policy, inventory: inventory, config: input.config,
                    freeSpace: input.freeSpace, roots: roots)
                switch outcome {
                case .skipped:
                    continue
                case .blocked(let reasons):
                    plan.blocked.append(contentsOf: reasons)
                    plan.fingerprints[Fingerprint.key(domain, disk)] = Fingerprint.disk(domain, disk)
                case .planned(let change):
                    var ids: [Int] = []
                    ids.reserveCapacity(change.steps.count)
                    for var step in change.steps {
                        step.id = nextID
                        nextID += 1
                        ids.append(step.id)
                        plan.steps.append(step)
                    }
                    if hasSnapshots { diskPlanIndex[disk.target] = plan.disks.count }
                    plan.disks.append(
                        DiskPlan(
                            domain: domain.name, disk: disk.target, policy: policy.name, before: change.before,
                            after: change.after, stepIDs: ids))
                    if !ids.isEmpty {
                        plan.fingerprints[Fingerprint.key(domain, disk)] = Fingerprint.disk(domain, disk)
                    }
                    if hasSnapshots {
                        changes[disk.target] = change
                        policies[disk.target] = policy
                    }
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

    /// The plan of one disk under `policy`, ignoring snapshot metadata (decided per domain by `plan`).
    public static func planDisk(
        domain: Domain, disk: Disk, policy: Policy, inventory: Inventory, config: HostConfig = .defaults,
        freeSpace: [String: UInt64] = [:]
    ) -> DiskOutcome {
        planDisk(
            domain: domain, disk: disk, policy: policy, inventory: inventory, config: config, freeSpace: freeSpace,
            roots: AllowedRoots(config))
    }

    static func planDisk(
        domain: Domain, disk: Disk, policy: Policy, inventory: Inventory, config: HostConfig,
        freeSpace: [String: UInt64], roots: AllowedRoots
    ) -> DiskOutcome {
        guard disk.isChainDisk, let chain = disk.chain else { return .skipped }
        if domain.state == .shutoff && policy.shutoff == .skip { return .skipped }
        var planner = DiskPlanner(
            domain: domain, disk: disk, chain: chain, policy: policy, inventory: inventory, config: config,
            freeSpace: freeSpace, roots: roots)
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
