// Every reason the planner blocks a disk for, and the disks it deliberately leaves alone.

import Testing

@testable import ChainCore

private func path(_ name: String, _ dir: String = "vm") -> String { PT.path(name, dir: dir) }

/// `base ← a ← top`, depth 3, so that maxDepth 2 needs a change.
private func deepChain(dir: String = "vm") -> [Layer] {
    [
        PT.layer(path("top.qcow2", dir), clusters: [0..<8]),
        PT.layer(path("a.qcow2", dir), clusters: [8..<10]),
        PT.layer(path("base.qcow2", dir), clusters: [0..<64]),
    ]
}

private func planOne(
    _ domain: Domain, policy: Policy = PT.policy(maxDepth: 2), others: [Domain] = [],
    config: HostConfig = HostConfig(), freeSpace: [String: UInt64] = [:]
) -> Plan {
    PT.plan(
        [domain] + others, policy: policy, managed: [DiskKey(domain: domain.name, disk: "vda")], config: config,
        freeSpace: freeSpace)
}

/// The disk is blocked with exactly `code` (among possibly others), has no steps and no DiskPlan, and a fingerprint.
private func expectBlocked(_ plan: Plan, _ code: BlockedCode, domain: String = "vm", mentions: [String] = []) {
    let blocked = plan.blocked(for: domain)
    #expect(blocked.contains { $0.code == code }, "expected \(code), got \(blocked)")
    #expect(plan.steps(for: domain).isEmpty)
    #expect(plan.diskPlan(for: domain) == nil)
    #expect(plan.fingerprints["uuid-\(domain)/vda"] != nil)
    for reason in blocked where reason.code == code {
        #expect(reason.reason.hasPrefix("\(domain)/vda: "), "\(reason.reason)")
        #expect(reason.policy == "test")
        for text in mentions { #expect(reason.reason.contains(text), "\(reason.reason) lacks \(text)") }
    }
}

@Suite("Planner blocked reasons")
struct PlannerBlockedTests {
    @Test func paused() {
        let plan = planOne(PT.domain("vm", state: .paused, disks: [PT.disk("vda", deepChain())]))
        expectBlocked(plan, .paused, mentions: ["virsh resume vm"])
        // A compliant disk of a paused domain is simply compliant.
        let fine = planOne(PT.domain("vm", state: .paused, disks: [PT.disk("vda", Array(deepChain().suffix(2)))]))
        #expect(fine.blocked.isEmpty)
        #expect(fine.diskPlan(for: "vm") != nil)
    }

    @Test func jobRunning() {
        let job = PT.disk("vda", deepChain(), job: BlockJob(type: .activeCommit))
        expectBlocked(planOne(PT.domain("vm", disks: [job])), .jobRunning, mentions: ["active-commit"])
        var mirrored = PT.disk("vda", deepChain())
        mirrored.mirror = Mirror(job: "copy", ready: true, source: nil)
        expectBlocked(planOne(PT.domain("vm", disks: [mirrored])), .jobRunning)
    }

    @Test func shutOffSkipAddsNothing() {
        let plan = planOne(
            PT.domain("vm", state: .shutoff, disks: [PT.disk("vda", deepChain())]),
            policy: PT.policy(maxDepth: 2, shutoff: .skip))
        #expect(plan.steps.isEmpty)
        #expect(plan.blocked.isEmpty)
        #expect(plan.disks.isEmpty)
        #expect(plan.fingerprints.isEmpty)
    }

    @Test func chainProblems() {
        func disk(_ problems: [ChainProblem], complete: Bool = true) -> Domain {
            var d = PT.disk("vda", deepChain())
            d.chain?.problems = problems
            d.chain?.complete = complete
            return PT.domain("vm", disks: [d])
        }
        expectBlocked(
            planOne(disk([.missing(path: path("gone.qcow2"), referencedBy: path("a.qcow2"))])), .missingImage,
            mentions: ["gone.qcow2"])
        expectBlocked(planOne(disk([.loop(path: path("a.qcow2"))])), .loop)
        expectBlocked(planOne(disk([.unreadable(path: path("a.qcow2"), message: "Permission denied")])), .unknownChain)
        expectBlocked(planOne(disk([.unterminated(after: path("a.qcow2"))])), .unknownChain)
        expectBlocked(planOne(disk([.other("strange")])), .unknownChain)
        expectBlocked(planOne(disk([], complete: false)), .unknownChain)
        // Chain problems block even a disk that would otherwise be compliant.
        expectBlocked(planOne(disk([.loop(path: path("a.qcow2"))]), policy: PT.policy()), .loop)
    }

    @Test func duplicateLayerIsALoop() {
        var layers = deepChain()
        layers.append(layers[1])
        expectBlocked(planOne(PT.domain("vm", disks: [PT.disk("vda", layers)])), .loop)
    }

    @Test func unsupportedNetworkSource() {
        var layers = deepChain()
        layers[2].source = ImageSource(kind: .network, networkProtocol: "rbd", name: "pool/base", hosts: ["ceph1"])
        let plan = planOne(PT.domain("vm", disks: [PT.disk("vda", layers)]))
        expectBlocked(plan, .unsupportedSource, mentions: ["rbd"])
        // Only that reason: no roots or block-device complaints about a network image.
        #expect(plan.blocked.map(\.code) == [.unsupportedSource])
        // Compliant chains on network storage are fine.
        let fine = planOne(PT.domain("vm", disks: [PT.disk("vda", layers)]), policy: PT.policy(maxDepth: 3))
        #expect(fine.blocked.isEmpty)
    }

    @Test func blockDeviceIsNeverACommitTarget() {
        // `/dev/vg0/base ← a ← m ← top`, maxDepth 3, top protected: top can neither receive a pull nor have its
        // header rewritten by a commit of m, so a must be committed into the base (rewriting m's header); the base
        // is a raw logical volume.
        var layers = deepChain()
        layers.insert(PT.layer(path("m.qcow2"), clusters: [10..<12]), at: 1)
        layers[3] = PT.layer("/dev/vg0/base", format: "raw", clusters: [0..<64], kind: .block)
        let policy = PT.policy(maxDepth: 3, protect: [path("top.qcow2")])
        let config = HostConfig(allowedRoots: [PT.root, "/dev/vg0"])
        expectBlocked(
            planOne(PT.domain("vm", disks: [PT.disk("vda", layers)]), policy: policy, config: config),
            .unsupportedSource, mentions: ["/dev/vg0/base"])
        // Without the protection the block device is only read: pull into top.
        let fine = planOne(
            PT.domain("vm", disks: [PT.disk("vda", layers)]), policy: PT.policy(maxDepth: 3), config: config)
        #expect(fine.steps.map(\.action) == [.pull])
        let three = Array(layers[0..<1] + layers[2...])
        let fineThree = planOne(PT.domain("vm", disks: [PT.disk("vda", three)]), config: config)
        #expect(fineThree.steps.map(\.action) == [.pull])
    }

    @Test func encrypted() {
        var layers = deepChain()
        layers[1].encrypted = true
        expectBlocked(planOne(PT.domain("vm", disks: [PT.disk("vda", layers)])), .encrypted, mentions: ["a.qcow2"])
    }

    @Test func dirtyBitmaps() {
        var layers = deepChain()
        layers[0].bitmaps = ["backup-1", "backup-2"]
        expectBlocked(
            planOne(PT.domain("vm", disks: [PT.disk("vda", layers)])), .dirtyBitmaps,
            mentions: ["backup-1, backup-2", "top.qcow2"])
    }

    @Test func branchedSnapshots() {
        let layers = deepChain()
        let ref = Snapshot.DiskRef(target: "vda", kind: "external")
        let snapshots = [
            Snapshot(name: "s1", disks: [ref]), Snapshot(name: "s2", parent: "s1", disks: [ref]),
            Snapshot(name: "s3", parent: "s1", disks: [ref]),
        ]
        expectBlocked(
            planOne(PT.domain("vm", disks: [PT.disk("vda", layers)], snapshots: snapshots)), .branchedSnapshots,
            mentions: ["s1", "s2 and s3"])
    }

    @Test func protectedActive() {
        let layers = deepChain()
        let policy = PT.policy(flatten: .full, protect: [path("top.qcow2")])
        expectBlocked(
            planOne(PT.domain("vm", disks: [PT.disk("vda", layers)]), policy: policy), .protectedActive,
            mentions: ["top.qcow2", "protect glob"])
        // Moving a protected active image is refused too.
        let move = PT.policy(protect: [path("top.qcow2")], activeDir: PT.root + "/fast")
        expectBlocked(planOne(PT.domain("vm", disks: [PT.disk("vda", layers)]), policy: move), .protectedActive)
        // A commit right below a protected active image would rewrite the backing reference in its header: refused.
        expectBlocked(
            planOne(
                PT.domain("vm", disks: [PT.disk("vda", layers)]),
                policy: PT.policy(maxDepth: 2, protect: [path("top.qcow2")])),
            .protectedActive, mentions: ["top.qcow2"])
        // A commit further down is fine: it rewrites the header of the (unprotected) image above it.
        var deeper = layers
        deeper.insert(PT.layer(path("m.qcow2"), clusters: [10..<12]), at: 1)
        let below = planOne(
            PT.domain("vm", disks: [PT.disk("vda", deeper)]),
            policy: PT.policy(maxDepth: 3, protect: [path("top.qcow2")]))
        #expect(below.steps.map(\.action) == [.commit])
        #expect(below.steps.first?.top == path("a.qcow2"))
    }

    @Test func sharedActive() {
        let layers = deepChain()
        let snapshot = Snapshot(
            name: "s1", disks: [.init(target: "vda", kind: "external", stateSources: [layers[0].source])])
        expectBlocked(
            planOne(PT.domain("vm", disks: [PT.disk("vda", layers)], snapshots: [snapshot])), .sharedActive,
            mentions: ["snapshot s1"])
    }

    @Test func impossible() {
        // keep-base with maxDepth 1 means committing everything into the base, which another guest uses.
        let layers = deepChain()
        let other = PT.domain("web-2", disks: [PT.disk("vda", [PT.layer(path("w.qcow2")), layers[2]])])
        let plan = planOne(
            PT.domain("vm", disks: [PT.disk("vda", layers)]), policy: PT.policy(maxDepth: 1, flatten: .keepBase),
            others: [other])
        expectBlocked(plan, .impossible, mentions: ["shared with web-2/vda", "base.qcow2", "Fix:"])
    }

    @Test func insufficientSpace() {
        // The cheapest plan commits top into a (8 clusters = 512 KiB) in …/vm.
        let layers = [
            PT.layer(path("top.qcow2"), clusters: [0..<8]), PT.layer(path("a.qcow2"), clusters: [8..<40]),
            PT.layer(path("base.qcow2"), clusters: [0..<64]),
        ]
        let domain = PT.domain("vm", disks: [PT.disk("vda", layers)])
        expectBlocked(
            planOne(domain, freeSpace: [PT.root + "/vm": 100_000]), .insufficientSpace,
            mentions: [PT.root + "/vm", "512.0 KiB"])
        let fine = planOne(domain, freeSpace: [PT.root + "/vm": 1 << 30])
        #expect(fine.steps.map(\.action) == [.commit])
    }

    @Test func rawBaseTooSmall() {
        // Committing top and a into the raw base is cheapest, but a is bigger than the base.
        let layers = [
            PT.layer(path("top.qcow2"), clusters: [0..<1]),
            PT.layer(path("a.qcow2"), clusters: [1..<2], virtualSize: 2 * PT.virtualSize),
            PT.layer(path("base.raw"), format: "raw", clusters: [0..<64]),
        ]
        expectBlocked(
            planOne(PT.domain("vm", disks: [PT.disk("vda", layers)]), policy: PT.policy(flatten: .full)),
            .rawBaseTooSmall, mentions: ["base.raw", "qemu-img resize"])
    }

    @Test func activeDirOutsideAllowedRoots() {
        let layers = Array(deepChain().suffix(2))
        expectBlocked(
            planOne(PT.domain("vm", disks: [PT.disk("vda", layers)]), policy: PT.policy(activeDir: "/srv/fast")),
            .outsideAllowedRoots, mentions: ["/srv/fast to allowedRoots", "config.json"])
    }

    @Test func writesOutsideAllowedRoots() {
        // Every image lives in /srv/other: no commit or pull target is allowed.
        let layers = deepChain().map { layer -> Layer in
            var copy = layer
            copy.source = .file("/srv/other/" + PlanPath.basename(layer.source.path ?? ""))
            return copy
        }
        expectBlocked(
            planOne(PT.domain("vm", disks: [PT.disk("vda", layers)])), .outsideAllowedRoots,
            mentions: ["/srv/other", "allowedRoots"])
    }

    @Test func commitTargetOutsideRootsFallsBackToPull() {
        // Committing top into a would be cheapest, but a lies outside the allowed roots: pull instead.
        let layers = [
            PT.layer(path("top.qcow2"), clusters: [0..<2]), PT.layer("/srv/other/a.qcow2", clusters: [2..<40]),
            PT.layer(path("base.qcow2"), clusters: [0..<64]),
        ]
        let plan = planOne(PT.domain("vm", disks: [PT.disk("vda", layers)]))
        #expect(plan.blocked.isEmpty)
        #expect(plan.steps.map(\.action) == [.pull])
    }

    @Test func noHeaderIsRewrittenOutsideTheRoots() {
        // Committing the tiny a into base is cheapest, but it rewrites the backing reference in mid's header, and
        // mid lies outside the allowed roots (invariant 7): the planner leaves mid alone and pulls it into top.
        let layers = [
            PT.layer(path("top.qcow2"), clusters: [0..<8]), PT.layer("/srv/other/mid.qcow2", clusters: [8..<40]),
            PT.layer(path("a.qcow2"), clusters: [40..<41]), PT.layer(path("base.qcow2"), clusters: [0..<64]),
        ]
        let domain = PT.domain("vm", disks: [PT.disk("vda", layers)])
        func rewritesMid(_ plan: Plan) -> Bool {
            plan.steps.contains { step in
                guard step.action == .commit, let k = step.expectBefore.firstIndex(of: step.top ?? ""), k > 0
                else { return false }
                return step.expectBefore[k - 1] == "/srv/other/mid.qcow2"
            }
        }
        let plan = planOne(domain, policy: PT.policy(maxDepth: 3))
        #expect(plan.blocked.isEmpty, "\(plan.blocked)")
        #expect(plan.steps.map(\.action) == [.pull])
        #expect(plan.steps.first?.top == path("top.qcow2") && plan.steps.first?.base == path("a.qcow2"))
        #expect(!rewritesMid(plan))
        // With /srv/other in the roots, the cheaper commit is planned.
        let wide = planOne(domain, policy: PT.policy(maxDepth: 3), config: HostConfig(allowedRoots: [PT.root, "/srv/other"]))
        #expect(wide.blocked.isEmpty)
        #expect(wide.steps.map(\.action) == [.commit])
        #expect(rewritesMid(wide))
        // When every plan would rewrite mid (top protected: nothing can be pulled into it), the disk is blocked.
        expectBlocked(
            planOne(domain, policy: PT.policy(maxDepth: 3, protect: [path("top.qcow2")])), .outsideAllowedRoots,
            mentions: ["rewrites the backing reference in /srv/other/mid.qcow2", "/srv/other to allowedRoots"])
    }

    @Test func readOnlyDisk() {
        var disk = PT.disk("vda", deepChain())
        disk.readonly = true
        expectBlocked(planOne(PT.domain("vm", disks: [disk])), .other, mentions: ["read-only"])
    }

    @Test func otherDomainStates() {
        expectBlocked(planOne(PT.domain("vm", state: .crashed, disks: [PT.disk("vda", deepChain())])), .other)
    }

    @Test func severalReasonsAtOnce() {
        var layers = deepChain()
        layers[1].bitmaps = ["b"]
        let plan = planOne(PT.domain("vm", state: .paused, disks: [PT.disk("vda", layers)]))
        #expect(Set(plan.blocked.map(\.code)) == [.paused, .dirtyBitmaps])
    }
}

@Suite("Planner fingerprints and scale")
struct PlannerFingerprintTests {
    @Test func fnv1aKnownVectors() {
        func fnv(_ text: String) -> String {
            var h = FNV1a64()
            for b in text.utf8 { h.byte(b) }
            return h.hex
        }
        #expect(fnv("") == "cbf29ce484222325")
        #expect(fnv("a") == "af63dc4c8601ec8c")
        #expect(fnv("foobar") == "85944171f73967e8")
        // Strings carry a length prefix, so field boundaries matter.
        var ab = FNV1a64()
        ab.string("ab")
        ab.string("c")
        var abc = FNV1a64()
        abc.string("a")
        abc.string("bc")
        #expect(ab.value != abc.value)
    }

    @Test func diskFingerprintCoversChainAndState() {
        let disk = PT.disk("vda", deepChain())
        let domain = PT.domain("vm", disks: [disk])
        let base = Fingerprint.disk(domain, disk)
        #expect(base == Fingerprint.disk(domain, disk))
        #expect(base.count == 16)
        var touched = disk
        touched.chain?.layers[1].mtime = 1_700_000_001
        #expect(Fingerprint.disk(domain, touched) != base)
        var stopped = domain
        stopped.state = .shutoff
        #expect(Fingerprint.disk(stopped, disk) != base)
        var grown = disk
        grown.chain?.layers[1].dataBytes = 1
        #expect(Fingerprint.disk(domain, grown) != base)
        // The running guest's own writes to its active image do not count (see fingerprintFollowsTheChain…).
        var written = disk
        written.chain?.layers[0].dataBytes = 1
        #expect(Fingerprint.disk(domain, written) == base)
        #expect(Fingerprint.key(domain, disk) == "uuid-vm/vda")
    }

    @Test func planFingerprintsDisksWithStepsOrBlocked() {
        let changed = PT.domain("a", disks: [PT.disk("vda", deepChain(dir: "a"))])
        let compliant = PT.domain("b", disks: [PT.disk("vda", Array(deepChain(dir: "b").suffix(2)))])
        let blocked = PT.domain("c", state: .paused, disks: [PT.disk("vda", deepChain(dir: "c"))])
        let plan = PT.plan([changed, compliant, blocked], policy: PT.policy(maxDepth: 2))
        #expect(Set(plan.fingerprints.keys) == ["uuid-a/vda", "uuid-c/vda"])
        #expect(plan.fingerprints["uuid-a/vda"] == Fingerprint.disk(changed, changed.disks[0]))
    }

    /// 20,000 disks with chains up to 16 deep plan in one call (speed is measured by the benchmarks).
    @Test func twentyThousandDisks() {
        var rng = SplitMix64(seed: 42)
        var domains: [Domain] = []
        for d in 0..<5000 {
            var disks: [Disk] = []
            for t in 0..<4 {
                let depth = rng.int(1...16)
                let layers = (0..<depth).map { i in
                    PT.layer("\(PT.root)/d\(d)/\(t)-\(i).qcow2", dataBytes: UInt64(rng.int(0...1000)) * 4096)
                }
                disks.append(PT.disk("vd\(["a", "b", "c", "d"][t])", layers))
            }
            domains.append(PT.domain("dom\(d)", state: d % 3 == 0 ? .shutoff : .running, disks: disks))
        }
        let plan = PT.plan(domains, policy: PT.policy(maxDepth: 8))
        #expect(plan.disks.count + Set(plan.blocked.map { "\($0.domain)/\($0.disk)" }).count == 20_000)
        #expect(plan.steps.count > 1000)
        #expect(plan.blocked.isEmpty)
    }
}
