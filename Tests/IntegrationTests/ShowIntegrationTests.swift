import ChainCore
import ChainOps
import Foundation
import Libvirt
import Testing

/// `show` against a real libvirtd: the demo world (running and shut-off guests, a raw base shared by two guests,
/// external snapshots with metadata, a backing file whose format is not recorded).
@Suite(.serialized, .requiresLibvirt)
struct ShowIntegrationTests {
    @Test func observesEveryChainSharedImageAndSnapshot() throws {
        let conn = try requireLibvirt()
        let sandbox = try Sandbox(connection: conn, prefix: uniqueTestPrefix("show"))
        defer { try? sandbox.teardown() }
        let scenario = try DemoScenario(sandbox: sandbox)
        let dir = ImageProbe.canonical(sandbox.directory)
        func p(_ name: String) -> String { dir + "/" + name }

        let names = ["web-1", "web-2", "db-1", "legacy", "archive"].map(sandbox.domainName)
        let inv = try InventoryReader.fromLibvirt(conn, names: names)
        #expect(inv.domains.count == 5)
        func disk(_ suffix: String) throws -> (ChainCore.Domain, Disk) {
            let d = try #require(inv.domain(named: sandbox.domainName(suffix)))
            return (d, try #require(d.disks.first { $0.target == "vda" }))
        }

        // Running guest: chain from the live XML, with libvirt's indexes; qcow2 over raw.
        let (web1, web1vda) = try disk("web-1")
        #expect(web1.state == .running)
        let c1 = try #require(web1vda.chain)
        #expect(c1.layers.map(\.source.path) == ["web1-c.qcow2", "web1-b.qcow2", "web1-a.qcow2", "golden/base.raw"].map(p))
        #expect(c1.layers.map(\.format) == ["qcow2", "qcow2", "qcow2", "raw"])
        #expect(c1.layers.allSatisfy { $0.index != nil })
        #expect(c1.complete)
        #expect(c1.origin == .xml)
        #expect(c1.layers.last?.virtualSize == 64 << 20)
        #expect((c1.layers[1].dataBytes ?? 0) >= 1 << 20, "web1-b holds 1 MiB of data")

        // Shut-off guest: no chain in its XML, probed from the image headers.
        let (web2, web2vda) = try disk("web-2")
        #expect(web2.state == .shutoff)
        let c2 = try #require(web2vda.chain)
        #expect(c2.layers.map(\.source.path) == ["web2-b.qcow2", "web2-a.qcow2", "golden/base.raw"].map(p))
        #expect(c2.origin == .probe)
        #expect(c2.complete)
        #expect(c2.layers.map(\.formatRecorded) == [true, true, true])

        // The golden base is shared by web-1 (running) and web-2 (shut off); nothing else is.
        let base = p("golden/base.raw")
        #expect(inv.isShared(base, domain: web1.name, disk: "vda"))
        #expect(inv.isShared(base, domain: web2.name, disk: "vda"))
        #expect(!inv.isShared(p("web1-a.qcow2"), domain: web1.name, disk: "vda"))
        #expect(inv.references[base]?.map(\.domain).sorted() == [web1.name, web2.name].sorted())

        // Snapshots with metadata: overlays on top of db-base, each snapshot's saved state is the image below.
        let (db, dbvda) = try disk("db-1")
        #expect(dbvda.chain?.layers.map(\.source.path) == ["db-s2.qcow2", "db-s1.qcow2", "db-base.qcow2"].map(p))
        #expect(db.snapshots.map(\.name).sorted() == ["after-upgrade", "before-upgrade"])
        let before = try #require(db.snapshots.first { $0.name == "before-upgrade" })
        #expect(before.disks.first?.overlay?.path == p("db-s1.qcow2"))
        #expect(before.disks.first?.stateSources.first?.path == p("db-base.qcow2"))
        let after = try #require(db.snapshots.first { $0.name == "after-upgrade" })
        #expect(after.parent == "before-upgrade")
        #expect(after.isCurrent)
        #expect(inv.isShared(p("db-base.qcow2"), domain: db.name, disk: "vda"), "a snapshot's saved state is shared")

        // Backing format not recorded in the header.
        let (_, legacyvda) = try disk("legacy")
        #expect(legacyvda.chain?.layers.map(\.formatRecorded) == [true, false])
        #expect(legacyvda.chain?.layers.last?.format == "raw")

        // The report: compliance against the sandbox policies, marks for shared and protected.
        let loaded = PolicyLoader.load(paths: [scenario.policyFile])
        #expect(loaded.diagnostics.isEmpty)
        let assignment = PolicySet(loaded.policies).assign(inv.domains)
        var assignments: [DiskKey: Policy] = [:]
        for e in assignment.entries { assignments[e.key] = e.policy }
        let report = ShowReport(inventory: inv, assignments: assignments)
        let web1Row = try #require(report.domains.first { $0.domain.name == web1.name }?.disks.first)
        #expect(web1Row.policy?.name == "web-tier")
        #expect(!web1Row.compliant)
        #expect(web1Row.problems.contains("depth 4 > maxDepth 2"))
        #expect(web1Row.layers.last?.protected == true)
        #expect(web1Row.layers.last?.sharedWith.map(\.domain) == [web2.name])
        let text = report.text()
        #expect(text.contains("base.raw ← web1-a.qcow2 ← web1-b.qcow2 ← web1-c.qcow2 (active)"))
        let json = String(decoding: report.jsonBytes(), as: UTF8.self)
        #expect(json.contains("\"formatVersion\": 1"))
    }

    @Test func missingBackingFileAndLoopAreReportedPerDisk() throws {
        let conn = try requireLibvirt()
        let sandbox = try Sandbox(connection: conn, prefix: uniqueTestPrefix("broken"))
        defer { try? sandbox.teardown() }
        // good: a healthy chain; gone: its backing file was deleted; loop: a → b → a.
        let base = try sandbox.createImage(name: "good-base.qcow2", format: "qcow2", sizeMiB: 16)
        let top = try sandbox.createImage(name: "good-top.qcow2", backing: base, backingFormat: "qcow2")
        try sandbox.defineDomain(name: "good", disks: [("vda", top, "qcow2")], start: false)
        let lost = try sandbox.createImage(name: "lost-base.qcow2", format: "qcow2", sizeMiB: 16)
        let orphan = try sandbox.createImage(name: "orphan.qcow2", backing: lost, backingFormat: "qcow2")
        try FileManager.default.removeItem(atPath: lost)
        try sandbox.defineDomain(name: "gone", disks: [("vda", orphan, "qcow2")], start: false)
        let la = try sandbox.createImage(name: "loop-a.qcow2", format: "qcow2", sizeMiB: 16)
        let lb = try sandbox.createImage(name: "loop-b.qcow2", backing: la, backingFormat: "qcow2")
        try Command.check(["qemu-img", "rebase", "-u", "-F", "qcow2", "-b", lb, la])
        try sandbox.defineDomain(name: "loop", disks: [("vda", lb, "qcow2")], start: false)

        let inv = try InventoryReader.fromLibvirt(conn, names: ["good", "gone", "loop"].map(sandbox.domainName))
        let good = try #require(inv.domain(named: sandbox.domainName("good"))?.disks.first?.chain)
        #expect(good.problems.isEmpty)
        #expect(good.depth == 2)
        let gone = try #require(inv.domain(named: sandbox.domainName("gone"))?.disks.first?.chain)
        #expect(gone.problems == [.missing(path: ImageProbe.canonical(lost), referencedBy: ImageProbe.canonical(orphan))])
        let loop = try #require(inv.domain(named: sandbox.domainName("loop"))?.disks.first?.chain)
        #expect(loop.problems == [.loop(path: ImageProbe.canonical(lb))])
    }
}
