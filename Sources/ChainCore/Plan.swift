// The plan: ordered steps, blocked disks and fingerprints. JSON keys are a fixed contract (DESIGN.md).

public enum StepAction: String, Codable, Sendable, Hashable, CaseIterable {
    case commit, pull, copy, rebase
    case metadataDelete = "metadata-delete"
    case deleteImage = "delete-image"
}

public enum StepMode: String, Codable, Sendable, Hashable {
    case live, offline
}

/// Why a step is in the plan: the rule, the policy and where it was declared.
public struct StepReason: Hashable, Codable, Sendable, CustomStringConvertible {
    /// e.g. `depth 5 > maxDepth 3`
    public var rule: String
    public var policy: String
    /// `FILE:LINE` of the policy.
    public var location: String
    public init(rule: String, policy: String, location: String) {
        self.rule = rule
        self.policy = policy
        self.location = location
    }
    /// `depth 5 > maxDepth 3 (policy web-tier, policies/web.json:4)`
    public var description: String { "\(rule) (policy \(policy), \(location))" }
}

public struct Step: Hashable, Codable, Sendable {
    /// 1-based position in the plan.
    public var id: Int
    public var host: String
    public var domain: String
    public var disk: String
    public var action: StepAction
    public var mode: StepMode
    /// Absolute image paths; nil where not applicable. `base` nil = the whole chain.
    public var top: String?
    public var base: String?
    public var destination: String?
    public var estimatedBytes: UInt64
    public var reason: StepReason
    /// For `metadata-delete`: the snapshot name. For `rebase`: the backing format to record.
    public var snapshot: String?
    public var backingFormat: String?
    /// The chain (canonical paths, active first) this step expects to find, and the one it leaves.
    public var expectBefore: [String]
    public var expectAfter: [String]

    public init(
        id: Int, host: String, domain: String, disk: String, action: StepAction, mode: StepMode, top: String?,
        base: String?, destination: String?, estimatedBytes: UInt64, reason: StepReason, snapshot: String? = nil,
        backingFormat: String? = nil, expectBefore: [String] = [], expectAfter: [String] = []
    ) {
        self.id = id
        self.host = host
        self.domain = domain
        self.disk = disk
        self.action = action
        self.mode = mode
        self.top = top
        self.base = base
        self.destination = destination
        self.estimatedBytes = estimatedBytes
        self.reason = reason
        self.snapshot = snapshot
        self.backingFormat = backingFormat
        self.expectBefore = expectBefore
        self.expectAfter = expectAfter
    }
}

/// Why a disk cannot be brought to its policy now.
public enum BlockedCode: String, Codable, Sendable, Hashable, CaseIterable {
    case paused, jobRunning = "job-running", outsideAllowedRoots = "outside-allowed-roots"
    case insufficientSpace = "insufficient-space", rawBaseTooSmall = "raw-base-too-small"
    case unsupportedSource = "unsupported-source", branchedSnapshots = "branched-snapshots"
    case missingImage = "missing-image", loop, dirtyBitmaps = "dirty-bitmaps"
    case protectedActive = "protected-active", sharedActive = "shared-active"
    case unknownChain = "unknown-chain", encrypted, impossible, other
}

public struct Blocked: Hashable, Codable, Sendable {
    public var domain: String
    public var disk: String
    public var code: BlockedCode
    public var reason: String
    public var policy: String?
    public init(domain: String, disk: String, code: BlockedCode, reason: String, policy: String? = nil) {
        self.domain = domain
        self.disk = disk
        self.code = code
        self.reason = reason
        self.policy = policy
    }
}

/// The planned before ⇒ after of one disk (for rendering).
public struct DiskPlan: Hashable, Codable, Sendable {
    public var domain: String
    public var disk: String
    public var policy: String
    public var before: [String]
    public var after: [String]
    public var stepIDs: [Int]
    public init(domain: String, disk: String, policy: String, before: [String], after: [String], stepIDs: [Int]) {
        self.domain = domain
        self.disk = disk
        self.policy = policy
        self.before = before
        self.after = after
        self.stepIDs = stepIDs
    }
}

public struct Plan: Hashable, Codable, Sendable {
    public var formatVersion: Int = 1
    public var host: String
    public var steps: [Step]
    public var blocked: [Blocked]
    public var disks: [DiskPlan]
    /// Fingerprints of every disk the plan touches (`domainUUID/target` → hex digest) and of the policies
    /// (key `policies`).
    public var fingerprints: [String: String]

    public init(host: String, steps: [Step] = [], blocked: [Blocked] = [], disks: [DiskPlan] = [],
                fingerprints: [String: String] = [:]) {
        self.host = host
        self.steps = steps
        self.blocked = blocked
        self.disks = disks
        self.fingerprints = fingerprints
    }

    public var isNoOp: Bool { steps.isEmpty }
    public var totalEstimatedBytes: UInt64 { steps.reduce(0) { $0 + $1.estimatedBytes } }
}
