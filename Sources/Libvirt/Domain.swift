internal import CLibvirt

/// The run state of a domain (`virDomainState`).
public enum DomainStateCode: String, Sendable, Hashable, CaseIterable {
    case nostate, running, blocked, paused, shutdown, shutoff, crashed, pmsuspended, unknown

    init(raw: Int32) {
        switch UInt32(bitPattern: raw) {
        case VIR_DOMAIN_NOSTATE.rawValue: self = .nostate
        case VIR_DOMAIN_RUNNING.rawValue: self = .running
        case VIR_DOMAIN_BLOCKED.rawValue: self = .blocked
        case VIR_DOMAIN_PAUSED.rawValue: self = .paused
        case VIR_DOMAIN_SHUTDOWN.rawValue: self = .shutdown
        case VIR_DOMAIN_SHUTOFF.rawValue: self = .shutoff
        case VIR_DOMAIN_CRASHED.rawValue: self = .crashed
        case VIR_DOMAIN_PMSUSPENDED.rawValue: self = .pmsuspended
        default: self = .unknown
        }
    }
}

/// The kind of a block job (`virDomainBlockJobType`).
public enum BlockJobType: String, Sendable, Hashable, CaseIterable {
    case pull, copy, commit, activeCommit, backup, unknown

    init(raw: Int32) {
        switch UInt32(bitPattern: raw) {
        case VIR_DOMAIN_BLOCK_JOB_TYPE_PULL.rawValue: self = .pull
        case VIR_DOMAIN_BLOCK_JOB_TYPE_COPY.rawValue: self = .copy
        case VIR_DOMAIN_BLOCK_JOB_TYPE_COMMIT.rawValue: self = .commit
        case VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT.rawValue: self = .activeCommit
        case VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP.rawValue: self = .backup
        default: self = .unknown
        }
    }
}

/// Progress of a running block job (`virDomainBlockJobInfo`).
///
/// `cur == end` does **not** mean READY; wait for the READY event or `<mirror ready='yes'>` in the live XML.
public struct BlockJobInfo: Sendable, Equatable {
    /// The job's kind.
    public var type: BlockJobType
    /// libvirt's raw job type number.
    public var rawType: Int32
    /// The bandwidth limit in bytes/s (0 = unlimited).
    public var bandwidth: UInt64
    /// Progress position; spans the virtual disk, not the data moved.
    public var cur: UInt64
    /// Progress end (usually the virtual size).
    public var end: UInt64

    /// Creates a value (for tests and fixtures).
    public init(type: BlockJobType, rawType: Int32, bandwidth: UInt64, cur: UInt64, end: UInt64) {
        self.type = type
        self.rawType = rawType
        self.bandwidth = bandwidth
        self.cur = cur
        self.end = end
    }
}

/// Sizes of a disk's active image (`virDomainBlockInfo`).
public struct BlockInfo: Sendable, Equatable {
    /// Guest-visible (virtual) size in bytes.
    public var capacity: UInt64
    /// Host bytes allocated (like `du`) for file images.
    public var allocation: UInt64
    /// Host size of the container (file size).
    public var physical: UInt64

    /// Creates a value (for tests and fixtures).
    public init(capacity: UInt64, allocation: UInt64, physical: UInt64) {
        self.capacity = capacity
        self.allocation = allocation
        self.physical = physical
    }
}

/// A libvirt domain (`virDomainPtr`). Holds its `Connection` alive; the handle is freed in `deinit`.
///
/// Thread safety: libvirt domain objects may be used from several threads; errors are read per thread.
public final class Domain: @unchecked Sendable {
    let handle: OpaquePointer
    /// The connection this domain belongs to (kept alive as long as the domain).
    public let connection: Connection
    /// The domain's UUID in canonical string form ("" if libvirt could not report it).
    public let uuid: String

    /// Takes ownership of one reference to `handle`.
    init(handle: OpaquePointer, connection: Connection) {
        self.handle = handle
        self.connection = connection
        var buffer = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        if virDomainGetUUIDString(handle, &buffer) == 0 {
            self.uuid = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } else {
            virResetLastError()
            self.uuid = ""
        }
    }

    deinit {
        virDomainFree(handle)
    }

    /// The domain's name (the string is owned by libvirt and copied here).
    public var name: String {
        guard let pointer = virDomainGetName(handle) else {
            virResetLastError()
            return ""
        }
        return String(cString: pointer)
    }

    /// The current state and its reason code (`virDomainGetState`; reason values depend on the state).
    public func state() throws(LibvirtError) -> (code: DomainStateCode, reason: Int32) {
        var state: Int32 = 0
        var reason: Int32 = 0
        try check(virDomainGetState(handle, &state, &reason, 0), "virDomainGetState")
        return (DomainStateCode(raw: state), reason)
    }

    /// Whether the domain is running (or paused): it has a QEMU process.
    public var isActive: Bool {
        get throws(LibvirtError) { try check(virDomainIsActive(handle), "virDomainIsActive") == 1 }
    }

    /// Whether the domain has a persistent definition (survives being stopped).
    public var isPersistent: Bool {
        get throws(LibvirtError) { try check(virDomainIsPersistent(handle), "virDomainIsPersistent") == 1 }
    }

    /// The domain XML: live (with detected backing chains and indexes) or, with `inactive`, the persistent definition.
    public func xml(inactive: Bool = false) throws(LibvirtError) -> String {
        let flags = inactive ? VIR_DOMAIN_XML_INACTIVE.rawValue : 0
        return try unwrap(takeString(virDomainGetXMLDesc(handle, flags)), "virDomainGetXMLDesc")
    }

    /// Starts a defined, shut-off domain (`virDomainCreate`).
    public func create() throws(LibvirtError) {
        try check(virDomainCreate(handle), "virDomainCreate")
    }

    /// Stops the domain immediately, like pulling the power plug (`virDomainDestroy`).
    public func destroy() throws(LibvirtError) {
        try check(virDomainDestroy(handle), "virDomainDestroy")
    }

    /// Asks the guest to shut down (ACPI); returns before it has stopped.
    public func shutdown() throws(LibvirtError) {
        try check(virDomainShutdown(handle), "virDomainShutdown")
    }

    /// Removes the persistent definition (`virDomainUndefineFlags`). A running domain becomes transient.
    public func undefine(_ flags: UndefineFlags = []) throws(LibvirtError) {
        try check(virDomainUndefineFlags(handle, flags.rawValue), "virDomainUndefineFlags")
    }

    /// Removes the persistent definition, optionally with its snapshot/checkpoint metadata and NVRAM file.
    /// Image files are never deleted.
    public func undefine(
        snapshotsMetadata: Bool, checkpointsMetadata: Bool = false, nvram: Bool = false
    ) throws(LibvirtError) {
        var flags: UndefineFlags = []
        if snapshotsMetadata { flags.insert(.snapshotsMetadata) }
        if checkpointsMetadata { flags.insert(.checkpointsMetadata) }
        flags.insert(nvram ? .nvram : .keepNVRAM)
        try undefine(flags)
    }

    /// Pauses the guest's vCPUs.
    public func suspend() throws(LibvirtError) {
        try check(virDomainSuspend(handle), "virDomainSuspend")
    }

    /// Resumes a paused guest.
    public func resume() throws(LibvirtError) {
        try check(virDomainResume(handle), "virDomainResume")
    }

    // MARK: Snapshots

    /// Every snapshot of the domain (metadata known to libvirt).
    public func snapshots() throws(LibvirtError) -> [DomainSnapshot] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let count = try check(virDomainListAllSnapshots(handle, &list, 0), "virDomainListAllSnapshots")
        guard let list else { return [] }
        defer { free(list) }
        var result: [DomainSnapshot] = []
        for index in 0..<Int(count) {
            if let pointer = list[index] { result.append(DomainSnapshot(handle: pointer, domain: self)) }
        }
        return result
    }

    /// The snapshot named `name`; throws `Code.noDomainSnapshot` when there is none.
    public func snapshot(named name: String) throws(LibvirtError) -> DomainSnapshot {
        let pointer = try unwrap(virDomainSnapshotLookupByName(handle, name, 0), "virDomainSnapshotLookupByName")
        return DomainSnapshot(handle: pointer, domain: self)
    }

    /// Creates a snapshot from `<domainsnapshot>` XML (`virDomainSnapshotCreateXML`).
    public func snapshotCreateXML(
        _ xml: String, flags: SnapshotCreateFlags = []
    ) throws(LibvirtError) -> DomainSnapshot {
        let pointer = try unwrap(
            virDomainSnapshotCreateXML(handle, xml, flags.rawValue), "virDomainSnapshotCreateXML")
        return DomainSnapshot(handle: pointer, domain: self)
    }

    /// The name of the current snapshot, or nil when there is none.
    public func currentSnapshotName() throws(LibvirtError) -> String? {
        let has = try check(virDomainHasCurrentSnapshot(handle, 0), "virDomainHasCurrentSnapshot")
        guard has == 1 else { return nil }
        let pointer = try unwrap(virDomainSnapshotCurrent(handle, 0), "virDomainSnapshotCurrent")
        return DomainSnapshot(handle: pointer, domain: self).name
    }

    // MARK: Block devices and jobs

    /// The block job running on `disk` (target such as "vda"), or nil when there is none.
    /// `bandwidth` is reported in bytes/s. On a shut-off domain libvirt refuses with `Code.operationInvalid`.
    public func blockJobInfo(disk: String) throws(LibvirtError) -> BlockJobInfo? {
        var info = virDomainBlockJobInfo()
        let rc = try check(
            virDomainGetBlockJobInfo(handle, disk, &info, VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES.rawValue),
            "virDomainGetBlockJobInfo")
        guard rc == 1 else { return nil }
        return BlockJobInfo(
            type: BlockJobType(raw: info.type), rawType: info.type, bandwidth: UInt64(info.bandwidth),
            cur: info.cur, end: info.end)
    }

    /// Sizes of the active image of `disk` (target or the active image's path; backing files are refused).
    public func blockInfo(disk: String) throws(LibvirtError) -> BlockInfo {
        var info = virDomainBlockInfo()
        try check(virDomainGetBlockInfo(handle, disk, &info, 0), "virDomainGetBlockInfo")
        return BlockInfo(capacity: info.capacity, allocation: info.allocation, physical: info.physical)
    }

    /// Starts a commit job merging (base, top] into `base` (`virDomainBlockCommit`).
    /// `base`/`top` are paths or `vda[N]`; nil base = bottom of the chain (or top's backing with `.shallow`),
    /// nil top = the active layer (needs `.active`). `bandwidth` is MiB/s, or bytes/s with `.bandwidthBytes`; 0 = none.
    public func blockCommit(
        disk: String, base: String?, top: String?, bandwidth: UInt64 = 0, flags: BlockCommitFlags = []
    ) throws(LibvirtError) {
        try withOptionalCString(base) { (basePtr) throws(LibvirtError) in
            try withOptionalCString(top) { (topPtr) throws(LibvirtError) in
                try check(
                    virDomainBlockCommit(handle, disk, basePtr, topPtr, UInt(bandwidth), flags.rawValue),
                    "virDomainBlockCommit")
            }
        }
    }

    /// Starts a pull job (`virDomainBlockRebase` without `.copy`): merges the layers between the active image
    /// and `base` (path or `vda[N]`, exclusive) into the active image; nil base flattens the whole chain.
    public func blockRebase(
        disk: String, base: String?, bandwidth: UInt64 = 0, flags: BlockRebaseFlags = []
    ) throws(LibvirtError) {
        try withOptionalCString(base) { (basePtr) throws(LibvirtError) in
            try check(
                virDomainBlockRebase(handle, disk, basePtr, UInt(bandwidth), flags.rawValue), "virDomainBlockRebase")
        }
    }

    /// Starts a full pull job (`virDomainBlockPull`): the active image absorbs its whole backing chain.
    public func blockPull(disk: String, bandwidth: UInt64 = 0, flags: BlockPullFlags = []) throws(LibvirtError) {
        try check(virDomainBlockPull(handle, disk, UInt(bandwidth), flags.rawValue), "virDomainBlockPull")
    }

    /// Starts a copy job of `disk` to the destination described by `destXML` (a `<disk>` with `<driver type>` and
    /// `<source>`) (`virDomainBlockCopy`). `bandwidthBytes` in bytes/s (nil = unlimited); `granularity` (power of
    /// two) and `bufSize` are optional tunables. Persistent domains need `.transientJob` on libvirt 9.0.
    public func blockCopy(
        disk: String, destXML: String, bandwidthBytes: UInt64? = nil, granularity: UInt32? = nil,
        bufSize: UInt64? = nil, flags: BlockCopyFlags = []
    ) throws(LibvirtError) {
        var params: UnsafeMutablePointer<virTypedParameter>?
        var count: Int32 = 0
        var capacity: Int32 = 0
        defer { virTypedParamsFree(params, count) }
        if let bandwidthBytes {
            try check(
                virTypedParamsAddULLong(&params, &count, &capacity, VIR_DOMAIN_BLOCK_COPY_BANDWIDTH, bandwidthBytes),
                "virTypedParamsAddULLong")
        }
        if let granularity {
            try check(
                virTypedParamsAddUInt(&params, &count, &capacity, VIR_DOMAIN_BLOCK_COPY_GRANULARITY, granularity),
                "virTypedParamsAddUInt")
        }
        if let bufSize {
            try check(
                virTypedParamsAddULLong(&params, &count, &capacity, VIR_DOMAIN_BLOCK_COPY_BUF_SIZE, bufSize),
                "virTypedParamsAddULLong")
        }
        try check(virDomainBlockCopy(handle, disk, destXML, params, count, flags.rawValue), "virDomainBlockCopy")
    }

    /// Ends the block job on `disk` (`virDomainBlockJobAbort`): cancels it, or with `.pivot` switches to the
    /// destination (only after READY; otherwise `Code.blockCopyActive`). With `.async` returns immediately.
    public func blockJobAbort(disk: String, flags: BlockJobAbortFlags = []) throws(LibvirtError) {
        try check(virDomainBlockJobAbort(handle, disk, flags.rawValue), "virDomainBlockJobAbort")
    }

    /// Changes the bandwidth limit of the running job on `disk` (MiB/s, or bytes/s with `.bandwidthBytes`; 0 = none).
    public func blockJobSetSpeed(
        disk: String, bandwidth: UInt64, flags: BlockJobSetSpeedFlags = []
    ) throws(LibvirtError) {
        try check(
            virDomainBlockJobSetSpeed(handle, disk, UInt(bandwidth), flags.rawValue), "virDomainBlockJobSetSpeed")
    }
}
