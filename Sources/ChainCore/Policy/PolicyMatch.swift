// Which policy manages which disk. A disk is managed by the one policy whose `match` globs cover its domain name and
// disk target. A disk matched by two or more policies is an error and is managed by none of them.

/// The policies of a run, in load order.
public struct PolicySet: Hashable, Sendable {
    public var policies: [Policy]

    public init(_ policies: [Policy]) {
        self.policies = policies
    }

    /// Every policy whose patterns match the domain and disk, in load order.
    public func candidates(domain: String, disk: String) -> [Policy] {
        policies.filter { $0.matches(domain: domain, disk: disk) }
    }

    /// Assigns a policy to every chain disk (`Disk.isChainDisk`) of `domains`.
    public func assign(_ domains: [Domain]) -> PolicyAssignment {
        var entries: [PolicyAssignment.Entry] = []
        var diagnostics: [PolicyDiagnostic] = []
        for domain in domains {
            for disk in domain.disks where disk.isChainDisk {
                let matching = candidates(domain: domain.name, disk: disk.target)
                let key = DiskKey(domain: domain.name, disk: disk.target)
                entries.append(
                    PolicyAssignment.Entry(
                        key: key, policy: matching.count == 1 ? matching[0] : nil, candidates: matching))
                if matching.count > 1 {
                    diagnostics.append(Self.overlap(key, matching))
                }
            }
        }
        return PolicyAssignment(entries: entries, diagnostics: diagnostics)
    }

    /// The policy of every chain disk matched by exactly one policy; each disk matched by several gets a
    /// diagnostic (as in `assign`) and an entry in `conflicts` instead. No per-disk entry list: what `plan` needs
    /// for tens of thousands of disks.
    public func assignments(_ domains: [Domain]) -> (
        policies: [DiskKey: Policy], conflicts: [DiskKey: String], diagnostics: [PolicyDiagnostic]
    ) {
        var assigned: [DiskKey: Policy] = [:]
        var conflicts: [DiskKey: String] = [:]
        var diagnostics: [PolicyDiagnostic] = []
        for domain in domains {
            for disk in domain.disks where disk.isChainDisk {
                var first = -1
                var several = false
                for (p, policy) in policies.enumerated() where policy.matches(domain: domain.name, disk: disk.target) {
                    if first < 0 { first = p } else { several = true }
                }
                guard first >= 0 else { continue }
                let key = DiskKey(domain: domain.name, disk: disk.target)
                if several {
                    let d = Self.overlap(key, candidates(domain: domain.name, disk: disk.target))
                    diagnostics.append(d)
                    conflicts[key] = d.message
                } else {
                    assigned[key] = policies[first]
                }
            }
        }
        return (assigned, conflicts, diagnostics)
    }

    /// `domain web-1 disk vda is matched by policies web-tier (policies/web.json:4) and all-vms
    /// (policies/all.json:3); make the match patterns disjoint`
    static func overlap(_ key: DiskKey, _ policies: [Policy]) -> PolicyDiagnostic {
        let named = policies.map { "\($0.name) (\($0.location.fileLine))" }
        let list: String
        if let last = named.last, named.count > 1 {
            list = named.dropLast().joined(separator: ", ") + " and " + last
        } else {
            list = named.joined()
        }
        return PolicyDiagnostic(
            code: .overlappingMatch, file: nil,
            message: "domain \(key.domain) disk \(key.disk) is matched by policies \(list); "
                + "make the match patterns disjoint")
    }
}

/// The policy of every chain disk of an inventory.
public struct PolicyAssignment: Hashable, Sendable {
    public struct Entry: Hashable, Sendable {
        public var key: DiskKey
        /// The policy that manages the disk: nil when no policy matches it, or when two or more do.
        public var policy: Policy?
        /// Every matching policy, in load order.
        public var candidates: [Policy]

        public init(key: DiskKey, policy: Policy?, candidates: [Policy]) {
            self.key = key
            self.policy = policy
            self.candidates = candidates
        }

        /// Matched by two or more policies.
        public var isConflicting: Bool { candidates.count > 1 }
    }

    /// One entry per chain disk, in domain order, then disk order.
    public var entries: [Entry]
    /// One error per disk matched by two or more policies.
    public var diagnostics: [PolicyDiagnostic]
    private var index: [DiskKey: Int]

    public init(entries: [Entry], diagnostics: [PolicyDiagnostic]) {
        self.entries = entries
        self.diagnostics = diagnostics
        var index: [DiskKey: Int] = [:]
        for (i, entry) in entries.enumerated() where index[entry.key] == nil { index[entry.key] = i }
        self.index = index
    }

    public func entry(domain: String, disk: String) -> Entry? {
        index[DiskKey(domain: domain, disk: disk)].map { entries[$0] }
    }

    /// The policy managing the disk; nil when none, or when it is matched by several policies.
    public func policy(domain: String, disk: String) -> Policy? {
        entry(domain: domain, disk: disk)?.policy
    }

    /// Disks with exactly one policy.
    public var managed: [Entry] { entries.filter { $0.policy != nil } }
}
