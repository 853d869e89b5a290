import ChainOps
import Foundation
import Libvirt
import Testing

/// Live tests of the `Libvirt` wrapper and of `Sandbox` against the real daemon at qemu:///system.
@Suite(.serialized)
struct LibvirtWrapperTests {
    private static let mib: UInt64 = 1 << 20

    // MARK: Connection

    @Test func uriResolutionPrefersArgumentThenEnvironmentThenSystem() {
        #expect(Connection.resolveURI("test:///default", environment: ["LIBVIRT_DEFAULT_URI": "qemu:///session"])
            == "test:///default")
        #expect(Connection.resolveURI(nil, environment: ["LIBVIRT_DEFAULT_URI": "qemu:///session"])
            == "qemu:///session")
        #expect(Connection.resolveURI(nil, environment: ["LIBVIRT_DEFAULT_URI": ""]) == "qemu:///system")
        #expect(Connection.resolveURI("", environment: [:]) == "qemu:///system")
        #expect(Connection.resolveURI(nil, environment: [:]) == "qemu:///system")
        #expect(Connection.formatVersion(9_000_000) == "9.0.0")
        #expect(Connection.formatVersion(7_002_022) == "7.2.22")
    }

    @Test(.requiresLibvirt) func connectionReportsHostAndVersions() throws {
        let conn = try requireLibvirt()
        #expect(conn.uri == "qemu:///system")
        #expect(try !conn.hostname.isEmpty)
        #expect(try conn.libvirtVersion >= 9_000_000)
        #expect(try conn.hypervisorVersion >= 7_000_000)
        let readOnly = try Connection(uri: "qemu:///system", readOnly: true)
        let denied = try #require(throws: LibvirtError.self) { try readOnly.defineXML("<domain/>") }
        #expect(denied.code == LibvirtError.Code.operationDenied, "\(denied)")
        // Listing works (other domains may exist on the host; we only look at the call succeeding).
        _ = try conn.listAllDomains()
    }

    // MARK: Errors

    @Test(.requiresLibvirt) func errorsCarryCodeMessageAndOperation() throws {
        let conn = try requireLibvirt()
        let missing = uniqueTestPrefix("err") + "does-not-exist"
        let error = try #require(throws: LibvirtError.self) { try conn.lookupDomain(name: missing) }
        #expect(error.code == LibvirtError.Code.noDomain)
        #expect(error.code == 42)
        #expect(error.operation == "virDomainLookupByName")
        #expect(error.message.contains(missing))
        #expect(error.description == "virDomainLookupByName: \(error.message)")

        let byUUID = try #require(throws: LibvirtError.self) {
            try conn.lookupDomain(uuid: "00000000-0000-4000-8000-00000000dead")
        }
        #expect(byUUID.code == LibvirtError.Code.noDomain)
        #expect(byUUID.operation == "virDomainLookupByUUIDString")

        let badXML = try #require(throws: LibvirtError.self) { try conn.defineXML("<domain") }
        #expect(badXML.operation == "virDomainDefineXML")
        #expect(badXML.code == LibvirtError.Code.xmlDetail)

        // The error state is per call: a following successful call is unaffected, a new failure reports itself.
        #expect(try !conn.hostname.isEmpty)
        let again = try #require(throws: LibvirtError.self) { try conn.lookupDomain(name: missing + "2") }
        #expect(again.message.contains(missing + "2"))

        let noConnect = try #require(throws: LibvirtError.self) { try Connection(uri: "vcbogus:///nowhere") }
        #expect(noConnect.operation == "virConnectOpenAuth")
        #expect(noConnect.code != LibvirtError.Code.ok)
    }

    // MARK: Sandbox, chains, snapshots

    @Test(.requiresLibvirt) func sandboxChainsXMLSnapshotsAndStats() throws {
        let conn = try requireLibvirt()
        let sandbox = try Sandbox(connection: conn, prefix: uniqueTestPrefix("chain"))
        defer { try? sandbox.teardown() }

        let base = try sandbox.createImage(name: "base.raw", format: "raw", sizeMiB: 64)
        try sandbox.writePattern(image: base, byte: 0xAA, offset: 0, length: Self.mib)
        let mid = try sandbox.createImage(name: "mid.qcow2", backing: base)
        try sandbox.writePattern(image: mid, byte: 0xBB, offset: Self.mib, length: Self.mib)
        let runTop = try sandbox.createImage(name: "run.qcow2", backing: mid)
        let offTop = try sandbox.createImage(name: "off.qcow2", backing: mid)
        #expect(try sandbox.verifyPattern(image: runTop, byte: 0xAA, offset: 0, length: Self.mib))
        #expect(try sandbox.verifyPattern(image: runTop, byte: 0xBB, offset: Self.mib, length: Self.mib))
        #expect(try !sandbox.verifyPattern(image: runTop, byte: 0xAA, offset: Self.mib, length: Self.mib))

        let run = try sandbox.defineDomain(name: "run", disks: [("vda", runTop, "qcow2")], start: true)
        let off = try sandbox.defineDomain(name: "off", disks: [("vda", offTop, "qcow2")], start: false)
        #expect(run.name == sandbox.prefix + "run")
        #expect(run.uuid.count == 36)
        #expect(try conn.lookupDomain(uuid: run.uuid).name == run.name)
        #expect(try run.state().code == .running)
        #expect(try off.state().code == .shutoff)
        #expect(try run.isActive && run.isPersistent)
        #expect(try !off.isActive && off.isPersistent)
        let listed = Set(try conn.listAllDomains().map(\.name))
        #expect(listed.isSuperset(of: [run.name, off.name]))

        // Live XML: the detected chain with indexes, terminated; inactive XML: no chain at all.
        let live = try run.xml()
        #expect(live.contains("<source file='\(runTop)' index='1'/>"))
        #expect(live.contains("<backingStore type='file' index='2'>"))
        #expect(live.contains("<source file='\(mid)'/>"))
        #expect(live.contains("<backingStore type='file' index='3'>"))
        #expect(live.contains("<format type='raw'/>"))
        #expect(live.contains("<source file='\(base)'/>"))
        #expect(live.contains("<backingStore/>"))
        #expect(try !run.xml(inactive: true).contains("<backingStore"))
        #expect(try !off.xml().contains("<backingStore"))

        // No job, sizes, and a block job API refused on a shut-off guest.
        #expect(try run.blockJobInfo(disk: "vda") == nil)
        let info = try run.blockInfo(disk: "vda")
        #expect(info.capacity == 64 * Self.mib)
        // Offline, libvirt 9.0 resolves commit arguments against the (chain-less) inactive XML before it checks
        // that the domain runs; pull and job queries report "domain is not running"; blockInfo works.
        let refusedCommit = try #require(throws: LibvirtError.self) {
            try off.blockCommit(disk: "vda", base: mid, top: nil, flags: [.active])
        }
        #expect(refusedCommit.code == LibvirtError.Code.invalidArg, "\(refusedCommit)")
        #expect(refusedCommit.operation == "virDomainBlockCommit")
        #expect(refusedCommit.message.contains("could not find image '\(mid)'"))
        let refusedPull = try #require(throws: LibvirtError.self) { try off.blockPull(disk: "vda") }
        #expect(refusedPull.code == LibvirtError.Code.operationInvalid)
        #expect(
            refusedPull.description == "virDomainBlockPull: Requested operation is not valid: domain is not running")
        let refusedInfo = try #require(throws: LibvirtError.self) { try off.blockJobInfo(disk: "vda") }
        #expect(refusedInfo.code == LibvirtError.Code.operationInvalid)
        #expect(try off.blockInfo(disk: "vda").capacity == 64 * Self.mib)

        // External disk-only snapshot with metadata on the running guest.
        #expect(try run.snapshots().isEmpty)
        #expect(try run.currentSnapshotName() == nil)
        let s1 = try sandbox.externalSnapshot(domain: run, name: "s1", disk: "vda", overlayPath: "run-s1.qcow2")
        let s1Path = sandbox.directory + "/run-s1.qcow2"
        #expect(FileManager.default.fileExists(atPath: s1Path))
        #expect(s1.name == "s1")
        #expect(try s1.isCurrent() && s1.hasMetadata())
        #expect(try s1.parentName() == nil)
        #expect(try run.snapshots().map(\.name) == ["s1"])
        #expect(try run.currentSnapshotName() == "s1")
        let s1XML = try run.snapshot(named: "s1").xml()
        #expect(s1XML.contains("<source file='\(s1Path)'"))
        #expect(s1XML.contains("<state>disk-snapshot</state>"))
        let liveAfter = try run.xml()
        #expect(liveAfter.contains("<source file='\(s1Path)' index='4'/>"))
        #expect(liveAfter.contains("<source file='\(runTop)'/>"))
        let missingSnap = try #require(throws: LibvirtError.self) { try run.snapshot(named: "nope") }
        #expect(missingSnap.code == LibvirtError.Code.noDomainSnapshot)

        // The same on the shut-off guest: libvirt creates the overlay itself.
        let o1 = try sandbox.externalSnapshot(domain: off, name: "o1", disk: "vda", overlayPath: "off-o1.qcow2")
        let o1Path = sandbox.directory + "/off-o1.qcow2"
        #expect(FileManager.default.fileExists(atPath: o1Path))
        #expect(try o1.xml().contains("<source file='\(o1Path)'"))
        #expect(try off.xml(inactive: true).contains("<source file='\(o1Path)'/>"))
        let header = try Command.check(["qemu-img", "info", "--output=json", o1Path]).stdoutString
        #expect(header.contains("\"backing-filename\": \"\(offTop)\""))
        #expect(try off.state().code == .shutoff)

        // A second snapshot is a child of the first.
        let s2 = try sandbox.externalSnapshot(domain: run, name: "s2", disk: "vda", overlayPath: "run-s2.qcow2")
        #expect(try s2.parentName() == "s1")
        #expect(try !s1.isCurrent())

        // Bulk stats: one block group per chain member (s2 → s1 → run → mid → base).
        let stats = try conn.allDomainBlockStats(backing: true)
        let runStats = try #require(stats[run.name])
        #expect(runStats["block.count"]?.uint64Value == 5)
        #expect(runStats["block.0.name"]?.stringValue == "vda")
        #expect(runStats["block.0.path"]?.stringValue == sandbox.directory + "/run-s2.qcow2")
        #expect(runStats["block.4.path"]?.stringValue == base)
        #expect(runStats["block.4.backingIndex"]?.uint64Value == 3)
        #expect(runStats["block.0.capacity"]?.uint64Value == 64 * Self.mib)

        // Metadata-only deletion leaves every file in place.
        try s2.delete(flags: .metadataOnly)
        #expect(try run.snapshots().map(\.name) == ["s1"])
        #expect(FileManager.default.fileExists(atPath: sandbox.directory + "/run-s2.qcow2"))
    }

    @Test(.requiresLibvirt) func sandboxImageOptions() throws {
        let conn = try requireLibvirt()
        let sandbox = try Sandbox(connection: conn, prefix: uniqueTestPrefix("img"))
        defer { try? sandbox.teardown() }
        let base = try sandbox.createImage(name: "golden/base.qcow2", format: "qcow2", sizeMiB: 32)
        let rel = try sandbox.createImage(name: "vms/rel.qcow2", backing: base, relativeBacking: true)
        let bare = try sandbox.createImage(name: "vms/bare.qcow2", backing: rel, recordBackingFormat: false)
        let relInfo = try Command.check(["qemu-img", "info", "--output=json", rel]).stdoutString
        #expect(relInfo.contains("\"backing-filename\": \"../golden/base.qcow2\""))
        #expect(relInfo.contains("\"backing-filename-format\": \"qcow2\""))
        #expect(relInfo.contains("\"virtual-size\": 33554432"))
        let bareInfo = try Command.check(["qemu-img", "info", "--output=json", bare]).stdoutString
        #expect(bareInfo.contains("\"backing-filename\": \"\(rel)\""))
        #expect(!bareInfo.contains("backing-filename-format"))
        try Command.check(["qemu-img", "check", bare])
        #expect(throws: SandboxError.self) { try sandbox.createImage(name: "../escape.qcow2") }
        #expect(throws: SandboxError.self) { try sandbox.createImage(name: "x.qcow2", backing: "/etc/hostname") }
        #expect(throws: SandboxError.self) { try sandbox.createImage(name: "vms/rel.qcow2") }
    }

    // MARK: Block jobs

    @Test(.requiresLibvirt) func blockPullOnRunningGuestCompletes() throws {
        let conn = try requireLibvirt()
        let sandbox = try Sandbox(connection: conn, prefix: uniqueTestPrefix("pull"))
        defer { try? sandbox.teardown() }
        let base = try sandbox.createImage(name: "base.raw", format: "raw", sizeMiB: 64)
        try sandbox.writePattern(image: base, byte: 0x5A, offset: 0, length: 4 * Self.mib)
        let mid = try sandbox.createImage(name: "mid.qcow2", backing: base)
        try sandbox.writePattern(image: mid, byte: 0x6B, offset: 8 * Self.mib, length: 2 * Self.mib)
        let top = try sandbox.createImage(name: "top.qcow2", backing: mid)
        let guest = try sandbox.defineDomain(name: "pull", disks: [("vda", top, "qcow2")], start: true)
        #expect(try guest.xml().contains("<backingStore type='file' index='3'>"))

        // Start throttled to 1 MiB/s so the job is observable, then lift the limit.
        try guest.blockRebase(disk: "vda", base: nil, bandwidth: Self.mib, flags: .bandwidthBytes)
        let job = try #require(try guest.blockJobInfo(disk: "vda"))
        #expect(job.type == .pull)
        #expect(job.bandwidth == Self.mib)
        #expect(job.end == 64 * Self.mib)
        let second = try #require(throws: LibvirtError.self) {
            try guest.blockCommit(disk: "vda", base: nil, top: nil, flags: [.active])
        }
        // A second job on the same disk (here: during a pull) is refused as "Operation not supported".
        #expect(second.code == LibvirtError.Code.operationUnsupported, "\(second)")
        #expect(second.message.contains("disk 'vda' already in active block job"))
        try guest.blockJobSetSpeed(disk: "vda", bandwidth: 0)
        let finished = try waitUntil(timeout: 30) { try guest.blockJobInfo(disk: "vda") == nil }
        #expect(finished)
        let live = try guest.xml()
        #expect(!live.contains("<backingStore type='file'"))
        #expect(live.contains("<backingStore/>"))
        #expect(live.contains("<source file='\(top)' index='1'/>"))

        // The flattened top holds the guest data by itself.
        try guest.destroy()
        let info = try Command.check(["qemu-img", "info", "--output=json", top]).stdoutString
        #expect(!info.contains("backing-filename"))
        #expect(try sandbox.verifyPattern(image: top, byte: 0x5A, offset: 0, length: 4 * Self.mib))
        #expect(try sandbox.verifyPattern(image: top, byte: 0x6B, offset: 8 * Self.mib, length: 2 * Self.mib))
        #expect(try sandbox.verifyPattern(image: top, byte: 0, offset: 16 * Self.mib, length: Self.mib))
    }

    @Test(.requiresLibvirt) func activeCommitAndBlockCopyPivot() throws {
        let conn = try requireLibvirt()
        let sandbox = try Sandbox(connection: conn, prefix: uniqueTestPrefix("pivot"))
        defer { try? sandbox.teardown() }
        let base = try sandbox.createImage(name: "base.qcow2", sizeMiB: 32)
        try sandbox.writePattern(image: base, byte: 0x11, offset: 0, length: Self.mib)
        let top = try sandbox.createImage(name: "top.qcow2", backing: base)
        try sandbox.writePattern(image: top, byte: 0x22, offset: 2 * Self.mib, length: Self.mib)
        let guest = try sandbox.defineDomain(name: "pivot", disks: [("vda", top, "qcow2")], start: true)

        // Active commit: READY shows as <mirror … ready='yes'>, then pivot onto the base.
        try guest.blockCommit(disk: "vda", base: nil, top: nil, flags: [.active])
        #expect(try guest.blockJobInfo(disk: "vda")?.type == .activeCommit)
        #expect(try waitUntil(timeout: 30) { try guest.xml().contains("job='active-commit' ready='yes'") })
        try guest.blockJobAbort(disk: "vda", flags: .pivot)
        #expect(try waitUntil(timeout: 30) { try guest.blockJobInfo(disk: "vda") == nil })
        #expect(try guest.xml().contains("<source file='\(base)' index='2'/>"))

        // Shallow copy of the (now single-layer) disk to a pre-created destination, then pivot.
        let dest = try sandbox.createImage(name: "fast/copy.qcow2", sizeMiB: 32)
        let destXML = "<disk type='file'><driver type='qcow2'/><source file='\(dest)'/></disk>"
        let persistentRefused = try #require(throws: LibvirtError.self) {
            try guest.blockCopy(disk: "vda", destXML: destXML, flags: [.reuseExternal])
        }
        #expect(persistentRefused.code == LibvirtError.Code.operationInvalid, "\(persistentRefused)")
        try guest.blockCopy(
            disk: "vda", destXML: destXML, bandwidthBytes: 512 * Self.mib, granularity: 65536,
            flags: [.shallow, .reuseExternal, .transientJob])
        let copyJob = try #require(try guest.blockJobInfo(disk: "vda"))
        #expect(copyJob.type == .copy)
        #expect(copyJob.bandwidth == 512 * Self.mib)
        #expect(try waitUntil(timeout: 30) { try guest.xml().contains("job='copy' ready='yes'") })
        try guest.blockJobAbort(disk: "vda", flags: [.pivot])
        #expect(try waitUntil(timeout: 30) { try guest.blockJobInfo(disk: "vda") == nil })
        #expect(try guest.xml().contains("<source file='\(dest)'"))
        #expect(try guest.xml(inactive: true).contains("<source file='\(dest)'/>"))

        try guest.destroy()
        #expect(try sandbox.verifyPattern(image: dest, byte: 0x11, offset: 0, length: Self.mib))
        #expect(try sandbox.verifyPattern(image: dest, byte: 0x22, offset: 2 * Self.mib, length: Self.mib))
    }

    // MARK: Teardown

    @Test(.requiresLibvirt) func teardownRemovesOnlyWhatTheSandboxCreated() throws {
        let conn = try requireLibvirt()
        let prefix = uniqueTestPrefix("down")
        let sandbox = try Sandbox(connection: conn, prefix: prefix)
        let image = try sandbox.createImage(name: "a.qcow2", sizeMiB: 16)
        let image2 = try sandbox.createImage(name: "b.qcow2", sizeMiB: 16)
        let running = try sandbox.defineDomain(name: "up", disks: [("vda", image, "qcow2")], start: true)
        let stopped = try sandbox.defineDomain(name: "down", disks: [("vda", image2, "qcow2")], start: false)
        try sandbox.externalSnapshot(domain: running, name: "r1", disk: "vda", overlayPath: "a-r1.qcow2")
        try sandbox.externalSnapshot(domain: stopped, name: "d1", disk: "vda", overlayPath: "b-d1.qcow2")
        #expect(sandbox.createdDomainNames == [prefix + "up", prefix + "down"])

        // A domain with the same prefix that the sandbox did not define must survive teardown.
        let foreignXML = """
            <domain type='qemu'><name>\(prefix)foreign</name><memory unit='MiB'>32</memory>
            <os><type arch='x86_64' machine='pc'>hvm</type></os></domain>
            """
        let foreign = try conn.defineXML(foreignXML)
        defer { try? foreign.undefine() }

        // Defining over an existing name is refused.
        #expect(throws: SandboxError.self) {
            try sandbox.defineDomain(name: "foreign", disks: [("vda", image, "qcow2")], start: false)
        }

        let directory = sandbox.directory
        #expect(directory.hasPrefix(Sandbox.defaultParentDirectory() + "/"))
        try sandbox.teardown()
        for name in [prefix + "up", prefix + "down"] {
            let gone = try #require(throws: LibvirtError.self) { try conn.lookupDomain(name: name) }
            #expect(gone.code == LibvirtError.Code.noDomain)
        }
        #expect(!FileManager.default.fileExists(atPath: directory))
        #expect(try conn.lookupDomain(name: prefix + "foreign").uuid == foreign.uuid)
        #expect(sandbox.createdDomainNames.isEmpty)
        try sandbox.teardown()  // idempotent
    }
}
