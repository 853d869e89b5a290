internal import CLibvirt

// Every libvirt flag used by virt-chain, as Swift option sets. These are the only place where C flag names appear.

/// Flags of `Domain.blockCommit` (`virDomainBlockCommitFlags`).
public struct BlockCommitFlags: OptionSet, Sendable, Hashable {
    /// The raw libvirt bit mask.
    public let rawValue: UInt32
    /// Creates flags from a raw libvirt bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// A nil base means the immediate backing file of top.
    public static let shallow = Self(rawValue: VIR_DOMAIN_BLOCK_COMMIT_SHALLOW.rawValue)
    /// Delete the committed files after success.
    public static let delete = Self(rawValue: VIR_DOMAIN_BLOCK_COMMIT_DELETE.rawValue)
    /// Allow a two-phase (READY + pivot) commit when top is the active layer.
    public static let active = Self(rawValue: VIR_DOMAIN_BLOCK_COMMIT_ACTIVE.rawValue)
    /// Keep the backing chain relative where it already is.
    public static let relative = Self(rawValue: VIR_DOMAIN_BLOCK_COMMIT_RELATIVE.rawValue)
    /// The bandwidth argument is in bytes/s instead of MiB/s.
    public static let bandwidthBytes = Self(rawValue: VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES.rawValue)
}

/// Flags of `Domain.blockRebase` (`virDomainBlockRebaseFlags`).
public struct BlockRebaseFlags: OptionSet, Sendable, Hashable {
    /// The raw libvirt bit mask.
    public let rawValue: UInt32
    /// Creates flags from a raw libvirt bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Copy job only: copy just the top of the source chain.
    public static let shallow = Self(rawValue: VIR_DOMAIN_BLOCK_REBASE_SHALLOW.rawValue)
    /// Copy job only: reuse an existing destination file.
    public static let reuseExternal = Self(rawValue: VIR_DOMAIN_BLOCK_REBASE_REUSE_EXT.rawValue)
    /// Copy job only: make the destination raw.
    public static let copyRaw = Self(rawValue: VIR_DOMAIN_BLOCK_REBASE_COPY_RAW.rawValue)
    /// Start a (legacy) copy job; prefer `Domain.blockCopy`.
    public static let copy = Self(rawValue: VIR_DOMAIN_BLOCK_REBASE_COPY.rawValue)
    /// Keep the backing chain relative where it already is.
    public static let relative = Self(rawValue: VIR_DOMAIN_BLOCK_REBASE_RELATIVE.rawValue)
    /// Copy job only: the destination is a block device.
    public static let copyDevice = Self(rawValue: VIR_DOMAIN_BLOCK_REBASE_COPY_DEV.rawValue)
    /// The bandwidth argument is in bytes/s instead of MiB/s.
    public static let bandwidthBytes = Self(rawValue: VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES.rawValue)
}

/// Flags of `Domain.blockPull` (`virDomainBlockPullFlags`).
public struct BlockPullFlags: OptionSet, Sendable, Hashable {
    /// The raw libvirt bit mask.
    public let rawValue: UInt32
    /// Creates flags from a raw libvirt bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The bandwidth argument is in bytes/s instead of MiB/s.
    public static let bandwidthBytes = Self(rawValue: VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES.rawValue)
}

/// Flags of `Domain.blockCopy` (`virDomainBlockCopyFlags`).
public struct BlockCopyFlags: OptionSet, Sendable, Hashable {
    /// The raw libvirt bit mask.
    public let rawValue: UInt32
    /// Creates flags from a raw libvirt bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Copy only the top image; the destination shares the source's backing chain.
    public static let shallow = Self(rawValue: VIR_DOMAIN_BLOCK_COPY_SHALLOW.rawValue)
    /// The destination was pre-created by the caller.
    public static let reuseExternal = Self(rawValue: VIR_DOMAIN_BLOCK_COPY_REUSE_EXT.rawValue)
    /// The job is not recoverable if the VM stops; required for persistent domains.
    public static let transientJob = Self(rawValue: VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB.rawValue)
    /// Guest writes go to both sides so the job converges under heavy I/O.
    public static let synchronousWrites = Self(rawValue: VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES.rawValue)
}

/// Flags of `Domain.blockJobAbort` (`virDomainBlockJobAbortFlags`).
public struct BlockJobAbortFlags: OptionSet, Sendable, Hashable {
    /// The raw libvirt bit mask.
    public let rawValue: UInt32
    /// Creates flags from a raw libvirt bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Return immediately; completion is reported by an event (or the job vanishing).
    public static let async = Self(rawValue: VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC.rawValue)
    /// Switch the disk to the job's destination (copy / active commit after READY).
    public static let pivot = Self(rawValue: VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT.rawValue)
}

/// Flags of `Domain.blockJobSetSpeed` (`virDomainBlockJobSetSpeedFlags`).
public struct BlockJobSetSpeedFlags: OptionSet, Sendable, Hashable {
    /// The raw libvirt bit mask.
    public let rawValue: UInt32
    /// Creates flags from a raw libvirt bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The bandwidth argument is in bytes/s instead of MiB/s.
    public static let bandwidthBytes = Self(rawValue: VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES.rawValue)
}

/// Flags of `Domain.snapshotCreateXML` (`virDomainSnapshotCreateFlags`).
public struct SnapshotCreateFlags: OptionSet, Sendable, Hashable {
    /// The raw libvirt bit mask.
    public let rawValue: UInt32
    /// Creates flags from a raw libvirt bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Redefine metadata of an existing snapshot (no disk change).
    public static let redefine = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE.rawValue)
    /// With `redefine`, make the snapshot current.
    public static let current = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT.rawValue)
    /// Do not store libvirt metadata for the snapshot.
    public static let noMetadata = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA.rawValue)
    /// Stop the guest after the snapshot.
    public static let halt = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_HALT.rawValue)
    /// Disk state only (external overlays), no memory state.
    public static let diskOnly = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY.rawValue)
    /// Reuse pre-created overlay files.
    public static let reuseExternal = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT.rawValue)
    /// Freeze guest file systems through the guest agent.
    public static let quiesce = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE.rawValue)
    /// All disks or none.
    public static let atomic = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC.rawValue)
    /// Live memory snapshot of a running guest.
    public static let live = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_LIVE.rawValue)
    /// Validate the XML against the schema.
    public static let validate = Self(rawValue: VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE.rawValue)
}

/// Flags of `DomainSnapshot.delete` (`virDomainSnapshotDeleteFlags`).
public struct SnapshotDeleteFlags: OptionSet, Sendable, Hashable {
    /// The raw libvirt bit mask.
    public let rawValue: UInt32
    /// Creates flags from a raw libvirt bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Also delete the snapshot's children.
    public static let children = Self(rawValue: VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN.rawValue)
    /// Delete only libvirt's metadata; leave every image file alone.
    public static let metadataOnly = Self(rawValue: VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY.rawValue)
    /// Delete only the children, keep this snapshot.
    public static let childrenOnly = Self(rawValue: VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY.rawValue)
}

/// Flags of `Domain.undefine` (`virDomainUndefineFlagsValues`).
public struct UndefineFlags: OptionSet, Sendable, Hashable {
    /// The raw libvirt bit mask.
    public let rawValue: UInt32
    /// Creates flags from a raw libvirt bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Also remove a managed-save image.
    public static let managedSave = Self(rawValue: VIR_DOMAIN_UNDEFINE_MANAGED_SAVE.rawValue)
    /// Also remove snapshot metadata (required when the domain has any); image files stay.
    public static let snapshotsMetadata = Self(rawValue: VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA.rawValue)
    /// Also remove the NVRAM file.
    public static let nvram = Self(rawValue: VIR_DOMAIN_UNDEFINE_NVRAM.rawValue)
    /// Keep the NVRAM file.
    public static let keepNVRAM = Self(rawValue: VIR_DOMAIN_UNDEFINE_KEEP_NVRAM.rawValue)
    /// Also remove checkpoint metadata.
    public static let checkpointsMetadata = Self(rawValue: VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA.rawValue)
    /// Also remove TPM state.
    public static let tpm = Self(rawValue: VIR_DOMAIN_UNDEFINE_TPM.rawValue)
    /// Keep TPM state.
    public static let keepTPM = Self(rawValue: VIR_DOMAIN_UNDEFINE_KEEP_TPM.rawValue)
}
