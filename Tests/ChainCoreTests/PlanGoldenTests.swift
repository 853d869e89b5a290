import ChainCore
import Foundation
import Testing

// Golden-file tests of the three plan formats over the classic procedures and every blocked reason.
// Regenerate after an intended change with: VIRT_CHAIN_UPDATE_GOLDEN=1 swift test --filter PlanGoldenTests
// (then review the diff of Tests/ChainCoreTests/Fixtures/golden/ like any other change).

private let MiB: UInt64 = 1 << 20
private let img = "/var/lib/libvirt/images"

/// Builds inventories for golden scenarios.
struct GoldenWorld {
    var domains: [Domain] = []
    var policies: [String: Policy] = [:]
    var config = HostConfig(allowedRoots: ["/var/lib/libvirt/images", "/srv/fast"])
    var freeSpace: [String: UInt64] = [:]
    var serial = 0

    /// A layer with data ranges given in MiB: `[(offset, length)]`.
    static func layer(
        _ name: String, _ format: String = "qcow2", data: [(UInt64, UInt64)], virtualMiB: UInt64 = 64,
        dir: String = img, recorded: Bool = true, kind: SourceKind = .file
    ) -> Layer {
        let path = name.hasPrefix("/") ? name : dir + "/" + name
        let extents = ExtentSet(data.map { ($0.0 * MiB)..<(($0.0 + $0.1) * MiB) })
        var source = ImageSource.file(path)
        source.kind = kind
        return Layer(
            source: source, format: format, formatRecorded: recorded, virtualSize: virtualMiB * MiB,
            dataBytes: extents.byteCount + 196_608, fileSize: extents.byteCount + 262_144, mtime: 1_790_000_000,
            allocation: extents)
    }

    mutating func domain(
        _ name: String, _ state: DomainState = .running, disks: [(String, [Layer])], snapshots: [Snapshot] = [],
        policy: Policy? = nil, complete: Bool = true, problems: [ChainProblem] = []
    ) {
        serial += 1
        let uuid = String(format: "00000000-0000-4000-8000-%012d", serial)
        let ds = disks.map { target, layers in
            Disk(target: target, chain: Chain(layers: layers, origin: .xml, complete: complete, problems: problems))
        }
        domains.append(Domain(name: name, uuid: uuid, state: state, disks: ds, snapshots: snapshots))
        if let policy {
            for (target, _) in disks { policies["\(name)/\(target)"] = policy }
        }
    }

    var assignments: [DiskKey: Policy] {
        var assignments: [DiskKey: Policy] = [:]
        for d in domains {
            for k in d.disks {
                if let p = policies["\(d.name)/\(k.target)"] { assignments[DiskKey(domain: d.name, disk: k.target)] = p }
            }
        }
        return assignments
    }

    func plan() -> Plan {
        let inventory = Inventory(host: "qemu:///system", domains: domains)
        var assignments: [DiskKey: Policy] = [:]
        for d in domains {
            for k in d.disks {
                if let p = policies["\(d.name)/\(k.target)"] { assignments[DiskKey(domain: d.name, disk: k.target)] = p }
            }
        }
        var plan = Planner.plan(
            PlannerInput(inventory: inventory, assignments: assignments, config: config, freeSpace: freeSpace))
        plan.fingerprints["policies"] = "golden-policies"
        return plan
    }
}

func policy(
    _ name: String, file: String = "policies/web.json", line: Int = 4, maxDepth: Int? = nil, flatten: Flatten = .none,
    protect: [String] = [], activeDir: String? = nil, snapshotMetadata: SnapshotMetadataMode = .prune,
    shutoff: ShutoffMode = .offline, retired: RetiredMode = .keep
) -> Policy {
    Policy(
        name: name, maxDepth: maxDepth, flatten: flatten, protect: protect, activeDir: activeDir,
        snapshotMetadata: snapshotMetadata, shutoff: shutoff, retired: retired,
        location: SourceLocation(file: file, line: line, column: 5))
}

typealias L = GoldenWorld

/// Every scenario: name → world.
let goldenScenarios: [(String, @Sendable () -> GoldenWorld)] = [
    ("classic-maxdepth2-running", {
        var w = GoldenWorld()
        // c rewrote most of what b holds: pulling a and b into c moves less than committing them into the base.
        w.domain(
            "web-1",
            disks: [("vda", [L.layer("c.qcow2", data: [(8, 4)]), L.layer("b.qcow2", data: [(8, 4)]),
                             L.layer("a.qcow2", data: [(0, 2)]), L.layer("base.raw", "raw", data: [(0, 40)])])],
            policy: policy("web-tier", maxDepth: 2))
        return w
    }),
    ("classic-maxdepth3-commit-wins", {
        var w = GoldenWorld()
        w.domain(
            "web-1",
            disks: [("vda", [L.layer("d.qcow2", data: [(60, 1)]), L.layer("c.qcow2", data: [(30, 20)]),
                             L.layer("b.qcow2", data: [(8, 1)]), L.layer("a.qcow2", data: [(0, 2)]),
                             L.layer("base.raw", "raw", data: [(0, 40)])])],
            policy: policy("web-tier", maxDepth: 3))
        return w
    }),
    ("classic-maxdepth2-protected-base", {
        var w = GoldenWorld()
        w.domain(
            "web-1",
            disks: [("vda", [L.layer("c.qcow2", data: [(30, 8)]), L.layer("b.qcow2", data: [(8, 1)]),
                             L.layer("a.qcow2", data: [(0, 2)]), L.layer("golden/base.raw", "raw", data: [(0, 40)])])],
            policy: policy("web-tier", maxDepth: 2, protect: ["\(img)/golden/*"]))
        return w
    }),
    ("snapshots-sn4-to-maxdepth3", {
        var w = GoldenWorld()
        w.domain(
            "app-1", .shutoff,
            disks: [("vda", [L.layer("sn4.qcow2", data: [(0, 1)]), L.layer("sn3.qcow2", data: [(4, 2)]),
                             L.layer("sn2.qcow2", data: [(8, 3)]), L.layer("sn1.qcow2", data: [(12, 1)]),
                             L.layer("base.qcow2", data: [(0, 20)])])],
            policy: policy("apps", file: "policies/apps.json", line: 3, maxDepth: 3))
        return w
    }),
    ("golden-shared-keep-base", {
        var w = GoldenWorld()
        let golden = L.layer("golden/debian12.raw", "raw", data: [(0, 30)])
        let p = policy("web-tier", flatten: .keepBase, protect: ["\(img)/golden/*"])
        w.domain("web-1", disks: [("vda", [L.layer("w1-b.qcow2", data: [(1, 1)]), L.layer("w1-a.qcow2", data: [(2, 2)]), golden])], policy: p)
        w.domain("web-2", disks: [("vda", [L.layer("w2-c.qcow2", data: [(1, 1)]), L.layer("w2-b.qcow2", data: [(3, 1)]),
                                          L.layer("w2-a.qcow2", data: [(5, 1)]), golden])], policy: p)
        w.domain("web-3", .shutoff, disks: [("vda", [L.layer("w3-b.qcow2", data: [(7, 1)]), L.layer("w3-a.qcow2", data: [(9, 3)]), golden])], policy: p)
        return w
    }),
    ("flatten-full-running", {
        var w = GoldenWorld()
        w.domain(
            "build-1",
            disks: [("vda", [L.layer("top.qcow2", data: [(0, 2)]), L.layer("mid.qcow2", data: [(4, 2)]),
                             L.layer("base.qcow2", data: [(0, 10)])])],
            policy: policy("builders", file: "policies/build.json", line: 2, flatten: .full))
        return w
    }),
    ("flatten-full-shutoff", {
        var w = GoldenWorld()
        w.domain(
            "build-2", .shutoff,
            disks: [("vda", [L.layer("top.qcow2", data: [(0, 2)]), L.layer("mid.qcow2", data: [(4, 2)]),
                             L.layer("base.qcow2", data: [(0, 10)])])],
            policy: policy("builders", file: "policies/build.json", line: 2, flatten: .full))
        return w
    }),
    ("move-active-dir-shallow", {
        var w = GoldenWorld()
        w.domain(
            "db-1",
            disks: [("vda", [L.layer("db-top.qcow2", data: [(0, 1)]), L.layer("db-base.qcow2", data: [(0, 40)])])],
            policy: policy("databases", file: "policies/db.json", line: 6, activeDir: "/srv/fast"))
        return w
    }),
    ("move-active-dir-full-copy", {
        var w = GoldenWorld()
        w.domain(
            "db-2",
            disks: [("vda", [L.layer("db2-top.qcow2", data: [(0, 1)]), L.layer("db2-mid.qcow2", data: [(2, 6)]),
                             L.layer("db2-base.qcow2", data: [(0, 8)])])],
            policy: policy("databases", file: "policies/db.json", line: 6, maxDepth: 1, activeDir: "/srv/fast"))
        return w
    }),
    ("stale-snapshot-metadata", {
        var w = GoldenWorld()
        let snap = Snapshot(
            name: "before-upgrade", state: "disk-snapshot",
            disks: [.init(target: "vda", kind: "external", overlay: .file("\(img)/old-s1.qcow2"),
                          stateSources: [.file("\(img)/old-base.qcow2")])])
        w.domain(
            "app-2",
            disks: [("vda", [L.layer("app2.qcow2", data: [(0, 3)])])], snapshots: [snap],
            policy: policy("apps", file: "policies/apps.json", line: 3, maxDepth: 3))
        return w
    }),
    ("missing-backing-format", {
        var w = GoldenWorld()
        w.domain(
            "legacy", .shutoff,
            disks: [("vda", [L.layer("legacy-top.qcow2", data: [(0, 1)]),
                             L.layer("legacy-base.raw", "raw", data: [(0, 8)], recorded: false)])],
            policy: policy("legacy", file: "policies/legacy.json", line: 2, maxDepth: 4))
        return w
    }),
    ("retired-delete", {
        var w = GoldenWorld()
        w.domain(
            "ci-1", .shutoff,
            disks: [("vda", [L.layer("ci-c.qcow2", data: [(0, 1)]), L.layer("ci-b.qcow2", data: [(1, 1)]),
                             L.layer("ci-a.qcow2", data: [(2, 1)])])],
            policy: policy("ci", file: "policies/ci.json", line: 2, maxDepth: 1, retired: .delete))
        return w
    }),
    ("compliant-noop", {
        var w = GoldenWorld()
        w.domain(
            "web-9", disks: [("vda", [L.layer("top.qcow2", data: [(0, 1)]), L.layer("base.raw", "raw", data: [(0, 8)])])],
            policy: policy("web-tier", maxDepth: 3))
        return w
    }),
    ("shutoff-skip", {
        var w = GoldenWorld()
        w.domain(
            "cold-1", .shutoff,
            disks: [("vda", [L.layer("c1.qcow2", data: [(0, 1)]), L.layer("c0.qcow2", data: [(0, 1)]), L.layer("cb.raw", "raw", data: [(0, 1)])])],
            policy: policy("cold", file: "policies/cold.json", line: 2, maxDepth: 1, shutoff: .skip))
        return w
    }),
    ("blocked-every-reason", {
        var w = GoldenWorld()
        let deep = { (p: String) in
            [L.layer("\(p)-c.qcow2", data: [(0, 1)]), L.layer("\(p)-b.qcow2", data: [(1, 1)]),
             L.layer("\(p)-a.qcow2", data: [(2, 1)])]
        }
        let p = policy("strict", file: "policies/strict.json", line: 2, maxDepth: 1)
        w.domain("paused-1", .paused, disks: [("vda", deep("paused"))], policy: p)
        w.domain("job-1", disks: [("vda", deep("job"))], policy: p)
        w.domains[w.domains.count - 1].disks[0].job = BlockJob(type: .pull, cur: 1, end: 4)
        w.domain("roots-1", disks: [("vda", deep("roots"))], policy: policy("elsewhere", file: "policies/strict.json", line: 9, activeDir: "/mnt/other"))
        w.domain(
            "space-1",
            disks: [("vda", [L.layer("space-top.qcow2", data: [(0, 30)]), L.layer("/srv/fast/space-base.qcow2", data: [(30, 30)])])],
            policy: policy("strict", file: "policies/strict.json", line: 2, maxDepth: 1, protect: []))
        w.freeSpace["/srv/fast"] = 1 * MiB
        w.freeSpace[img] = 1 * MiB
        w.domain(
            "rawsmall-1", .shutoff,
            disks: [("vda", [L.layer("rs-top.qcow2", data: [(0, 1)], virtualMiB: 128), L.layer("rs-base.raw", "raw", data: [(0, 1)], virtualMiB: 64)])],
            policy: policy("strict", file: "policies/strict.json", line: 2, maxDepth: 1, protect: []))
        var net = L.layer("rbd-top", data: [(0, 1)])
        net.source = ImageSource(kind: .network, networkProtocol: "rbd", name: "pool/rbd-top", hosts: ["mon1:6789"])
        var netBase = L.layer("rbd-base", data: [(0, 4)])
        netBase.source = ImageSource(kind: .network, networkProtocol: "rbd", name: "pool/rbd-base", hosts: ["mon1:6789"])
        w.domain("net-1", disks: [("vda", [net, netBase])], policy: p)
        let branched = [
            Snapshot(name: "s1", disks: [.init(target: "vda", kind: "external", overlay: .file("\(img)/br-b.qcow2"), stateSources: [.file("\(img)/br-a.qcow2")])]),
            Snapshot(name: "s2", parent: "s1", disks: [.init(target: "vda", kind: "external", overlay: .file("\(img)/br-c.qcow2"), stateSources: [.file("\(img)/br-b.qcow2")])]),
            Snapshot(name: "s3", parent: "s1", disks: [.init(target: "vda", kind: "external", overlay: .file("\(img)/br-x.qcow2"), stateSources: [.file("\(img)/br-b.qcow2")])]),
        ]
        w.domain("branch-1", disks: [("vda", deep("br"))], snapshots: branched, policy: p)
        w.domain(
            "missing-1", .shutoff, disks: [("vda", [L.layer("miss-top.qcow2", data: [(0, 1)])])], policy: p, complete: false,
            problems: [.missing(path: "\(img)/miss-base.qcow2", referencedBy: "\(img)/miss-top.qcow2")])
        w.domain(
            "loop-1", .shutoff, disks: [("vda", [L.layer("loop-a.qcow2", data: [(0, 1)]), L.layer("loop-b.qcow2", data: [(0, 1)])])],
            policy: p, problems: [.loop(path: "\(img)/loop-a.qcow2")])
        var bm = deep("bm")
        bm[1].bitmaps = ["virtnbdbackup.3"]
        w.domain("bitmaps-1", disks: [("vda", bm)], policy: p)
        // The active image itself is protected: nothing may write it.
        w.domain(
            "protected-1", disks: [("vda", [L.layer("golden/appliance.qcow2", data: [(0, 1)]), L.layer("pa-base.qcow2", data: [(1, 1)])])],
            policy: policy("appliances", file: "policies/strict.json", line: 14, maxDepth: 1, protect: ["\(img)/golden/*"]))
        // The active image is also the active image of another guest.
        let twin = [L.layer("twin-top.qcow2", data: [(0, 1)]), L.layer("twin-base.qcow2", data: [(1, 1)])]
        w.domain("twin-1", disks: [("vda", twin)], policy: p)
        w.domain("twin-2", .shutoff, disks: [("vda", twin)])
        // A LUKS-encrypted layer would have to be rewritten.
        var enc = deep("enc")
        enc[0].encrypted = true
        w.domain("enc-1", disks: [("vda", enc)], policy: p)
        // The cheapest route commits into a raw base smaller than the image committed into it.
        w.domain(
            "rawbase-1", .shutoff,
            disks: [("vda", [L.layer("rb-d.qcow2", data: [(0, 10)], virtualMiB: 128),
                             L.layer("rb-c.qcow2", data: [(10, 20)], virtualMiB: 128),
                             L.layer("rb-b.qcow2", data: [(40, 1)], virtualMiB: 128),
                             L.layer("rb-base.raw", "raw", data: [(0, 1)], virtualMiB: 64)])],
            policy: policy("strict3", file: "policies/strict.json", line: 20, maxDepth: 3))
        // keep-base with maxDepth 1 cannot be met (the loader rejects such a policy; the planner still explains).
        let golden = L.layer("golden/shared.raw", "raw", data: [(0, 4)])
        w.domain("imp-1", disks: [("vda", [L.layer("imp-a.qcow2", data: [(0, 1)]), golden])],
                 policy: policy("contradiction", file: "policies/strict.json", line: 26, maxDepth: 1, flatten: .keepBase))
        w.domain("imp-2", .shutoff, disks: [("vda", [L.layer("imp-b.qcow2", data: [(0, 1)]), golden])])
        return w
    }),
]

@Suite struct PlanGoldenTests {
    static let goldenDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/golden")

    /// `show --format json` streams its JSON in parallel waves: for every golden world and for one large enough to
    /// be written in several waves, it is well formed, canonically formatted and holds every domain, disk and layer.
    @Test func streamedShowJSONHoldsTheReport() throws {
        var all: [Domain] = []
        var worlds: [(Inventory, [DiskKey: Policy])] = []
        for (_, make) in goldenScenarios {
            let world = make()
            worlds.append((Inventory(host: "qemu:///system", domains: world.domains), world.assignments))
            all += world.domains
        }
        var large: [Domain] = []
        for copy in 0..<80 {
            for var d in all {
                d.name += "-\(copy)"
                large.append(d)
            }
        }
        #expect(large.count > 4 * 512)
        worlds.append((Inventory(host: "xml:/dumps", domains: large), [:]))
        for (inventory, assignments) in worlds {
            let report = ShowReport(inventory: inventory, assignments: assignments)
            let json = try #require(expectCanonicalJSON(report.jsonBytes()))
            #expect(json["formatVersion"]?.number?.intValue == 1)
            let domains = try #require(json["domains"]?.elements)
            #expect(domains.map { $0["name"]?.string } == report.domains.map(\.domain.name))
            for (d, row) in zip(domains, report.domains) {
                let disks = try #require(d["disks"]?.elements)
                #expect(disks.map { $0["target"]?.string } == row.disks.map(\.disk.target))
                for (k, disk) in zip(disks, row.disks) {
                    #expect(k["chain"]?.elements?.map { $0["path"]?.string } == disk.layers.map(\.layer.source.display))
                    #expect(k["policy"]?.string == disk.policy?.name)
                    #expect(k["compliant"]?.bool == disk.compliant)
                }
                #expect(d["snapshots"]?.elements?.count == row.domain.snapshots.count)
            }
        }
    }

    @Test func enoughScenarios() {
        #expect(goldenScenarios.count >= 15)
    }

    @Test(arguments: goldenScenarios.map(\.0))
    func golden(name: String) throws {
        let world = try #require(goldenScenarios.first { $0.0 == name }).1()
        let plan = world.plan()
        let outputs = [
            ("txt", PlanRender.text(plan)), ("json", String(decoding: PlanRender.jsonBytes(plan), as: UTF8.self)), ("md", PlanRender.markdown(plan)),
        ]
        // The JSON is the streamed one the CLI writes; it must also be well formed and canonically formatted.
        _ = expectCanonicalJSON(PlanRender.jsonBytes(plan))
        let update = ProcessInfo.processInfo.environment["VIRT_CHAIN_UPDATE_GOLDEN"] == "1"
        for (ext, actual) in outputs {
            let url = Self.goldenDir.appendingPathComponent("\(name).\(ext)")
            if update {
                try FileManager.default.createDirectory(at: Self.goldenDir, withIntermediateDirectories: true)
                try actual.write(to: url, atomically: true, encoding: .utf8)
                continue
            }
            let expected = try? String(contentsOf: url, encoding: .utf8)
            #expect(expected != nil, "missing golden file \(url.path); run with VIRT_CHAIN_UPDATE_GOLDEN=1")
            if let expected, expected != actual {
                Issue.record("\(name).\(ext) differs from the golden file:\n--- expected\n\(expected)\n--- actual\n\(actual)")
            }
        }
    }
}
