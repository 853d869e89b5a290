internal import CLibvirt

/// A snapshot of a domain (`virDomainSnapshotPtr`), libvirt's metadata about it. Holds its `Domain` alive.
///
/// Thread safety: as for `Domain`.
public final class DomainSnapshot: @unchecked Sendable {
    let handle: OpaquePointer
    /// The domain the snapshot belongs to.
    public let domain: Domain

    /// Takes ownership of one reference to `handle`.
    init(handle: OpaquePointer, domain: Domain) {
        self.handle = handle
        self.domain = domain
    }

    deinit {
        virDomainSnapshotFree(handle)
    }

    /// The snapshot's name (owned by libvirt and copied here).
    public var name: String {
        guard let pointer = virDomainSnapshotGetName(handle) else {
            virResetLastError()
            return ""
        }
        return String(cString: pointer)
    }

    /// The `<domainsnapshot>` XML: state, parent, `<disks>` with each overlay's `<source>`, and the domain as it was.
    public func xml() throws(LibvirtError) -> String {
        try unwrap(takeString(virDomainSnapshotGetXMLDesc(handle, 0)), "virDomainSnapshotGetXMLDesc")
    }

    /// Whether this is the domain's current snapshot.
    public func isCurrent() throws(LibvirtError) -> Bool {
        try check(virDomainSnapshotIsCurrent(handle, 0), "virDomainSnapshotIsCurrent") == 1
    }

    /// Whether libvirt holds metadata for this snapshot (false only for snapshots made with `.noMetadata`).
    public func hasMetadata() throws(LibvirtError) -> Bool {
        try check(virDomainSnapshotHasMetadata(handle, 0), "virDomainSnapshotHasMetadata") == 1
    }

    /// The name of the parent snapshot, or nil for a root snapshot.
    public func parentName() throws(LibvirtError) -> String? {
        guard let parent = virDomainSnapshotGetParent(handle, 0) else {
            let error = LibvirtError.last("virDomainSnapshotGetParent")
            if error.code == LibvirtError.Code.noDomainSnapshot { return nil }
            throw error
        }
        return DomainSnapshot(handle: parent, domain: domain).name
    }

    /// Deletes the snapshot (`virDomainSnapshotDelete`). With `.metadataOnly` only libvirt's metadata goes and no
    /// image is touched; without it, libvirt 9.0 merges an external snapshot's overlay and deletes its file.
    public func delete(flags: SnapshotDeleteFlags = []) throws(LibvirtError) {
        try check(virDomainSnapshotDelete(handle, flags.rawValue), "virDomainSnapshotDelete")
    }
}
