// Unit tests of the planner: the classic cases and every blocked reason.

import Testing

@testable import ChainCore

private func path(_ name: String, _ dir: String = "vm") -> String { PT.path(name, dir: dir) }
private let cluster = PT.cluster

/// `base.raw ← a ← b ← c`, active c. `sizes` = cluster ranges of (c, b, a, base).
private func classicChain(
    c: [Range<UInt64>], b: [Range<UInt64>], a: [Range<UInt64>], base: [Range<UInt64>] = [0..<64],
    dirs: (String, String, String, String) = ("vm", "vm", "vm", "vm")
) -> [Layer] {
    [
        PT.layer(path("c.qcow2", dirs.0), clusters: c),
        PT.layer(path("b.qcow2", dirs.1), clusters: b),
        PT.layer(path("a.qcow2", dirs.2), clusters: a),
        PT.layer(path("base.raw", dirs.3), format: "raw", clusters: base),
    ]
}

@Suite("Planner classic cases")
struct PlannerClassicTests {
    @Test func maxDepthTwoPrefersActiveCommitWhenTheTopIsSmall() {
        // a is large, b and c are small: active commit of c and b into a writes 4 clusters; a pull would write 42.
        let layers = classicChain(c: [42..<44], b: [40..<42], a: [0..<40])
        let plan = PT.plan([PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: PT.policy(maxDepth: 2))
        #expect(plan.blocked.isEmpty)
        #expect(plan.steps.count == 1)
        let step = plan.steps[0]
        #expect(step.action == .commit)
        #expect(step.mode == .live)
        #expect(step.top == path("c.qcow2"))
        #expect(step.base == path("a.qcow2"))
        #expect(step.estimatedBytes == 4 * cluster)
        #expect(step.reason.rule == "depth 4 > maxDepth 2")
        #expect(step.reason.location == "policies/test.json:4")
        #expect(step.expectBefore == layers.map { $0.source.path ?? "" })
        #expect(step.expectAfter == [path("a.qcow2"), path("base.raw")])
        #expect(step.id == 1)
        #expect(plan.diskPlan(for: "vm")?.after == [path("a.qcow2"), path("base.raw")])
        #expect(plan.fingerprints["uuid-vm/vda"] != nil)
    }

    @Test func maxDepthTwoPrefersPullWhenTheActiveHoldsMost() {
        // c already holds most of the data: pulling b and a into c writes 4 clusters; committing would write 58.
        let layers = classicChain(c: [4..<60], b: [2..<4], a: [0..<2])
        let plan = PT.plan([PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: PT.policy(maxDepth: 2))
        #expect(plan.steps.count == 1)
        let step = plan.steps[0]
        #expect(step.action == .pull)
        #expect(step.top == path("c.qcow2"))
        #expect(step.base == path("base.raw"))
        #expect(step.estimatedBytes == 4 * cluster)
        #expect(step.expectAfter == [path("c.qcow2"), path("base.raw")])
    }

    @Test func pullSubtractsWhatTheActiveAlreadyHolds() {
        // b and a overlap c: only the clusters c lacks are written.
        let layers = classicChain(c: [0..<10], b: [5..<15], a: [12..<20])
        let plan = PT.plan([PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: PT.policy(maxDepth: 2))
        #expect(plan.steps.map(\.action) == [.pull])
        #expect(plan.steps.first?.estimatedBytes == 10 * cluster)
    }

    @Test func protectedGoldenImagesForceAPull() {
        // Same sizes as the active-commit case, but a and base.raw live under a protected golden directory.
        let layers = classicChain(c: [42..<44], b: [40..<42], a: [0..<40], dirs: ("vm", "vm", "golden", "golden"))
        let policy = PT.policy(maxDepth: 2, protect: [PT.root + "/golden/*"])
        let plan = PT.plan([PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: policy)
        #expect(plan.blocked.isEmpty)
        #expect(plan.steps.map(\.action) == [.pull])
        #expect(plan.steps.first?.top == path("c.qcow2"))
        #expect(plan.steps.first?.base == path("base.raw", "golden"))
        #expect(plan.steps.first?.estimatedBytes == 42 * cluster)
    }

    @Test func protectedBaseIsNeverACommitTarget() {
        let layers = classicChain(c: [42..<44], b: [40..<42], a: [0..<40])
        let policy = PT.policy(maxDepth: 2, protect: [path("base.raw")])
        let plan = PT.plan([PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: policy)
        // Committing into a is still allowed (a is not protected); base.raw is never written.
        #expect(plan.steps.map(\.action) == [.commit])
        #expect(plan.steps.allSatisfy { $0.base != path("base.raw") || $0.action == .pull })
    }

    @Test func lowerGapCommitsIntoTheBaseUnlessProtected() {
        // d ← c big and disjoint, b and a small: committing b and a into base is cheapest (4 clusters).
        let layers = [
            PT.layer(path("d.qcow2"), clusters: [0..<20]), PT.layer(path("c.qcow2"), clusters: [20..<40]),
            PT.layer(path("b.qcow2"), clusters: [40..<42]), PT.layer(path("a.qcow2"), clusters: [42..<44]),
            PT.layer(path("base.qcow2"), clusters: [0..<64]),
        ]
        let domain = PT.domain("vm", disks: [PT.disk("vda", layers)])
        let free = PT.plan([domain], policy: PT.policy(maxDepth: 3))
        #expect(free.steps.map(\.action) == [.commit])
        #expect(free.steps.first?.top == path("b.qcow2"))
        #expect(free.steps.first?.base == path("base.qcow2"))
        #expect(free.steps.first?.estimatedBytes == 4 * cluster)
        #expect(free.steps.first?.expectAfter == [path("d.qcow2"), path("c.qcow2"), path("base.qcow2")])

        let protected = PT.plan([domain], policy: PT.policy(maxDepth: 3, protect: [path("base.qcow2")]))
        #expect(protected.steps.map(\.action) == [.pull])
        #expect(protected.steps.first?.top == path("d.qcow2"))
        #expect(protected.steps.first?.base == path("a.qcow2"))
        #expect(protected.steps.first?.estimatedBytes == 22 * cluster)
    }

    @Test func pullLetsAProtectedLayerLeaveBeforeAnActiveCommit() {
        // flatten full, L1 protected, base huge: pull L1 into L0, then commit L0 into the base (4 + 4 clusters)
        // beats pulling the whole base into L0 (62 clusters).
        let layers = [
            PT.layer(path("L0.qcow2"), clusters: [0..<2]), PT.layer(path("L1.qcow2"), clusters: [2..<4]),
            PT.layer(path("base.qcow2"), clusters: [0..<64]),
        ]
        let plan = PT.plan(
            [PT.domain("vm", state: .shutoff, disks: [PT.disk("vda", layers)])],
            policy: PT.policy(flatten: .full, protect: [path("L1.qcow2")]))
        #expect(plan.steps.map(\.action) == [.pull, .commit])
        #expect(plan.steps[0].base == path("base.qcow2"))
        #expect(plan.steps[0].estimatedBytes == 2 * cluster)
        #expect(plan.steps[1].top == path("L0.qcow2"))
        #expect(plan.steps[1].base == path("base.qcow2"))
        #expect(plan.steps[1].estimatedBytes == 4 * cluster)
        #expect(plan.steps[1].expectBefore == plan.steps[0].expectAfter)
        #expect(plan.steps.allSatisfy { $0.mode == .offline })
        #expect(plan.steps[0].reason.rule == "flatten full")
    }

    @Test func snapshotChainToMaxDepthThree() {
        // base ← sn1 ← sn2 ← sn3 ← sn4 with external snapshots s1…s4; every saved state makes its image
        // shared,
        // so only the active sn4 may be written: pull sn3 and sn2 into sn4, then prune stale metadata.
        let names = ["sn4.qcow2", "sn3.qcow2", "sn2.qcow2", "sn1.qcow2", "base.qcow2"]
        let layers = names.enumerated().map { i, name in
            PT.layer(path(name), clusters: [UInt64(i * 4)..<UInt64(i * 4 + 3)])
        }
        let sources = layers.map(\.source)
        var snapshots: [Snapshot] = []
        for k in 1...4 {
            snapshots.append(
                Snapshot(
                    name: "s\(k)", parent: k == 1 ? nil : "s\(k - 1)", isCurrent: k == 4,
                    disks: [
                        .init(target: "vda", kind: "external", overlay: sources[4 - k], stateSources: [sources[5 - k]])
                    ]
                ))
        }
        let plan = PT.plan(
            [PT.domain("vm", disks: [PT.disk("vda", layers)], snapshots: snapshots)], policy: PT.policy(maxDepth: 3))
        #expect(plan.blocked.isEmpty, "\(plan.blocked)")
        #expect(plan.steps.map(\.action) == [.pull, .metadataDelete, .metadataDelete, .metadataDelete])
        #expect(plan.steps[0].top == path("sn4.qcow2"))
        #expect(plan.steps[0].base == path("sn1.qcow2"))
        #expect(plan.steps[0].estimatedBytes == 6 * cluster)
        let after = [path("sn4.qcow2"), path("sn1.qcow2"), path("base.qcow2")]
        #expect(plan.steps[0].expectAfter == after)
        #expect(plan.steps.dropFirst().map(\.snapshot) == ["s2", "s3", "s4"])
        #expect(plan.steps.dropFirst().allSatisfy { $0.expectBefore == after && $0.expectAfter == after })
        #expect(plan.steps[1].reason.rule == "snapshot s2 names images no longer in any chain")
        #expect(plan.steps.map(\.id) == [1, 2, 3, 4])
        #expect(plan.diskPlan(for: "vm")?.stepIDs == [1, 2, 3, 4])
    }

    @Test func goldenBaseSharedByThreeGuestsToKeepBase() {
        let golden = PT.layer(path("base.qcow2", "golden"), clusters: [0..<64])
        let domains = (1...3).map { k in
            PT.domain(
                "web-\(k)",
                disks: [
                    PT.disk(
                        "vda",
                        [
                            PT.layer(path("web-\(k)-top.qcow2"), clusters: [0..<30]),
                            PT.layer(path("web-\(k)-mid.qcow2"), clusters: [30..<32]), golden,
                        ])
                ])
        }
        let plan = PT.plan(domains, policy: PT.policy(flatten: .keepBase))
        #expect(plan.blocked.isEmpty)
        #expect(plan.steps.map(\.action) == [.pull, .pull, .pull])
        #expect(plan.steps.map(\.id) == [1, 2, 3])
        for (k, step) in plan.steps.enumerated() {
            #expect(step.domain == "web-\(k + 1)")
            #expect(step.top == path("web-\(k + 1)-top.qcow2"))
            #expect(step.base == golden.source.path)
            #expect(step.estimatedBytes == 2 * cluster)
            #expect(step.reason.rule == "flatten keep-base")
        }
        #expect(!plan.steps.contains { $0.top == golden.source.path })
    }

    @Test func sharedGoldenBaseIsNeverMergedEvenWhenCheaper() {
        // Committing everything into the golden base would be cheapest, but it is shared: pull instead.
        let golden = PT.layer(path("base.qcow2", "golden"), clusters: [0..<64])
        let web1 = [
            PT.layer(path("t1.qcow2"), clusters: [0..<1]), PT.layer(path("m1.qcow2"), clusters: [1..<2]), golden,
        ]
        let web2 = [PT.layer(path("t2.qcow2"), clusters: [0..<1]), golden]
        let plan = PT.plan(
            [PT.domain("web-1", disks: [PT.disk("vda", web1)]), PT.domain("web-2", disks: [PT.disk("vda", web2)])],
            policy: PT.policy(flatten: .full))
        #expect(plan.steps(for: "web-1").map(\.action) == [.pull])
        #expect(plan.steps(for: "web-1").first?.base == nil)
        #expect(plan.steps(for: "web-1").first?.estimatedBytes == 63 * cluster)
    }

    @Test func flattenFullRunningAndShutOff() {
        let layers = classicChain(c: [0..<8], b: [8..<10], a: [10..<12], base: [12..<64])
        let running = PT.plan([PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: PT.policy(flatten: .full))
        // Committing c, b and a into the base writes 12 clusters; pulling the base into c would write 56.
        #expect(running.steps.map(\.action) == [.commit])
        #expect(running.steps.first?.mode == .live)
        #expect(running.steps.first?.top == path("c.qcow2"))
        #expect(running.steps.first?.base == path("base.raw"))
        #expect(running.steps.first?.estimatedBytes == 12 * cluster)
        #expect(running.diskPlan(for: "vm")?.after == [path("base.raw")])

        let shutOff = PT.plan(
            [PT.domain("vm", state: .shutoff, disks: [PT.disk("vda", layers)])],
            policy: PT.policy(flatten: .full, protect: [path("base.raw")]))
        #expect(shutOff.steps.map(\.action) == [.pull])
        #expect(shutOff.steps.first?.mode == .offline)
        #expect(shutOff.steps.first?.base == nil)
        #expect(shutOff.steps.first?.estimatedBytes == 56 * cluster)
        #expect(shutOff.diskPlan(for: "vm")?.after == [path("c.qcow2")])
    }

    @Test func moveToActiveDirShallowOrFullByBytes() {
        let layers = [PT.layer(path("a.qcow2"), clusters: [0..<4]), PT.layer(path("base.qcow2"), clusters: [0..<64])]
        let domain = PT.domain("vm", disks: [PT.disk("vda", layers)])
        let fast = PT.root + "/fast"
        // No depth rule: a shallow copy of the active image (4 clusters) keeps base.qcow2.
        let shallow = PT.plan([domain], policy: PT.policy(activeDir: fast))
        #expect(shallow.steps.map(\.action) == [.copy])
        #expect(shallow.steps.first?.top == path("a.qcow2"))
        #expect(shallow.steps.first?.base == path("base.qcow2"))
        #expect(shallow.steps.first?.destination == fast + "/a.qcow2")
        #expect(shallow.steps.first?.estimatedBytes == 4 * cluster)
        #expect(shallow.steps.first?.reason.rule == "active image not in storage.activeDir \(fast)")
        #expect(shallow.diskPlan(for: "vm")?.after == [fast + "/a.qcow2", path("base.qcow2")])

        // maxDepth 1: one full copy (64 clusters) instead of pull (60) then copy (64).
        let full = PT.plan([domain], policy: PT.policy(maxDepth: 1, activeDir: fast + "/"))
        #expect(full.steps.map(\.action) == [.copy])
        #expect(full.steps.first?.base == nil)
        #expect(full.steps.first?.destination == fast + "/a.qcow2")
        #expect(full.steps.first?.estimatedBytes == 64 * cluster)
        #expect(full.diskPlan(for: "vm")?.after == [fast + "/a.qcow2"])

        // Already there: compliant.
        let there = PT.plan([domain], policy: PT.policy(activeDir: PT.root + "/vm"))
        #expect(there.steps.isEmpty)
        #expect(there.diskPlan(for: "vm")?.stepIDs == [])
    }

    @Test func commitBeatsPullWhenACopyFollows() {
        // Pulling b and a into c (4 clusters) would make the copy of c carry them too (30); committing them into
        // the base instead (4) leaves c with 26 clusters to copy.
        let layers = classicChain(c: [4..<30], b: [2..<4], a: [0..<2])
        let fast = PT.root + "/fast"
        let plan = PT.plan(
            [PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: PT.policy(maxDepth: 2, activeDir: fast))
        #expect(plan.steps.map(\.action) == [.commit, .copy])
        #expect(plan.steps[0].top == path("b.qcow2"))
        #expect(plan.steps[0].base == path("base.raw"))
        #expect(plan.steps[0].estimatedBytes == 4 * cluster)
        #expect(plan.steps[1].expectBefore == plan.steps[0].expectAfter)
        #expect(plan.steps[1].expectAfter == [fast + "/c.qcow2", path("base.raw")])
        #expect(plan.steps[1].estimatedBytes == 26 * cluster)
    }

    @Test func pullThenCopyWhenTheBaseIsProtected() {
        let layers = classicChain(c: [4..<30], b: [2..<4], a: [0..<2])
        let fast = PT.root + "/fast"
        let plan = PT.plan(
            [PT.domain("vm", disks: [PT.disk("vda", layers)])],
            policy: PT.policy(maxDepth: 2, protect: [path("base.raw")], activeDir: fast))
        #expect(plan.steps.map(\.action) == [.pull, .copy])
        #expect(plan.steps[0].estimatedBytes == 4 * cluster)
        #expect(plan.steps[1].estimatedBytes == 30 * cluster)
        #expect(plan.steps[1].base == path("base.raw"))
    }

    @Test func staleSnapshotMetadataIsPruned() {
        let layers = [PT.layer(path("a.qcow2"), clusters: [0..<1]), PT.layer(path("base.qcow2"), clusters: [0..<2])]
        let old = Snapshot(
            name: "old", disks: [.init(target: "vda", kind: "external", overlay: .file(path("gone.qcow2")),
                                       stateSources: [layers[1].source])])
        let current = Snapshot(
            name: "current", parent: "old",
            disks: [
                .init(target: "vda", kind: "external", overlay: layers[0].source, stateSources: [layers[1].source])
            ])
        let domain = PT.domain("vm", disks: [PT.disk("vda", layers)], snapshots: [old, current])
        let plan = PT.plan([domain], policy: PT.policy())
        #expect(plan.steps.map(\.action) == [.metadataDelete])
        #expect(plan.steps.first?.snapshot == "old")
        #expect(plan.steps.first?.top == nil)
        #expect(plan.steps.first?.expectBefore == layers.map { $0.source.path ?? "" })
        #expect(plan.diskPlan(for: "vm")?.stepIDs == [1])
        #expect(plan.fingerprints["uuid-vm/vda"] != nil)

        let keep = PT.plan([domain], policy: PT.policy(snapshotMetadata: .keep))
        #expect(keep.steps.isEmpty)
        #expect(keep.fingerprints.isEmpty)
    }

    @Test func missingBackingFormatIsRecordedOffline() {
        let layers = [
            PT.layer(path("a.qcow2"), clusters: [0..<1]),
            PT.layer(path("base.raw"), format: "raw", clusters: [0..<2], formatRecorded: false),
        ]
        let shutOff = PT.plan([PT.domain("vm", state: .shutoff, disks: [PT.disk("vda", layers)])], policy: PT.policy())
        #expect(shutOff.steps.map(\.action) == [.rebase])
        let step = shutOff.steps[0]
        #expect(step.mode == .offline)
        #expect(step.top == path("a.qcow2"))
        #expect(step.base == path("base.raw"))
        #expect(step.backingFormat == "raw")
        #expect(step.reason.rule == "backing format of base.raw not recorded in a.qcow2")
        #expect(step.expectBefore == step.expectAfter)

        let running = PT.plan([PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: PT.policy())
        #expect(running.steps.isEmpty)
        #expect(running.blocked.isEmpty)

        var unknown = layers
        unknown[1].format = nil
        let blocked = PT.plan([PT.domain("vm", state: .shutoff, disks: [PT.disk("vda", unknown)])], policy: PT.policy())
        #expect(blocked.blocked.map(\.code) == [.other])
        #expect(blocked.blocked.first?.reason.contains("qemu-img rebase -u -F") == true)
    }

    @Test func rebaseComesFirstAndOnlyForUntouchedPairs() {
        // base.raw's format is not recorded in a. The active commit of c and b into a leaves the pair
        // (a, base.raw) untouched, so a is rebased first.
        var layers = classicChain(c: [42..<44], b: [40..<42], a: [0..<40])
        layers[3].formatRecorded = false
        let plan = PT.plan(
            [PT.domain("vm", state: .shutoff, disks: [PT.disk("vda", layers)])], policy: PT.policy(maxDepth: 2))
        #expect(plan.steps.map(\.action) == [.rebase, .commit])
        #expect(plan.steps[0].top == path("a.qcow2"))
        #expect(plan.steps[0].backingFormat == "raw")
    }

    @Test func retiredImagesAreDeletedOnlyWhenUnreferenced() {
        let layers = classicChain(c: [4..<60], b: [2..<4], a: [0..<2])
        let domain = PT.domain("vm", disks: [PT.disk("vda", layers)])
        let plan = PT.plan([domain], policy: PT.policy(maxDepth: 2, retired: .delete))
        #expect(plan.steps.map(\.action) == [.pull, .deleteImage, .deleteImage])
        #expect(plan.steps[1].top == path("b.qcow2"))
        #expect(plan.steps[2].top == path("a.qcow2"))
        #expect(plan.steps[1].reason.rule == "retired: delete")
        #expect(plan.steps[1].expectBefore == [path("c.qcow2"), path("base.raw")])

        // b is named by a snapshot (overlay): kept. a is outside the allowed roots: kept.
        var withSnapshot = domain
        withSnapshot.snapshots = [
            Snapshot(name: "s", disks: [.init(target: "vda", kind: "external", overlay: layers[1].source)])
        ]
        let narrow = HostConfig(allowedRoots: [PT.root + "/vm/c.qcow2", PT.root + "/vm/b.qcow2"])
        let kept = PT.plan([withSnapshot], policy: PT.policy(maxDepth: 2, retired: .delete), config: narrow)
        #expect(kept.steps.filter { $0.action == .deleteImage }.isEmpty)
        #expect(kept.steps.first?.action == .pull)

        let keep = PT.plan([domain], policy: PT.policy(maxDepth: 2, retired: .keep))
        #expect(keep.steps.map(\.action) == [.pull])
    }

    @Test func estimatesWithoutAllocationTreatLayersAsDisjoint() {
        let layers = [
            PT.layer(path("c.qcow2"), dataBytes: 100), PT.layer(path("b.qcow2"), dataBytes: 30),
            PT.layer(path("a.qcow2"), dataBytes: 20), PT.layer(path("base.qcow2"), dataBytes: 1000),
        ]
        let plan = PT.plan([PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: PT.policy(maxDepth: 2))
        // Pull b and a into c: 50 bytes; commit c and b into a: 130.
        #expect(plan.steps.map(\.action) == [.pull])
        #expect(plan.steps.first?.estimatedBytes == 50)
    }

    @Test func compliantDisksGetAnEmptyDiskPlan() {
        let layers = [PT.layer(path("a.qcow2"), clusters: [0..<1]), PT.layer(path("base.qcow2"), clusters: [0..<2])]
        let plan = PT.plan([PT.domain("vm", disks: [PT.disk("vda", layers)])], policy: PT.policy(maxDepth: 2))
        #expect(plan.steps.isEmpty)
        #expect(plan.blocked.isEmpty)
        #expect(plan.disks.count == 1)
        #expect(plan.disks.first?.before == plan.disks.first?.after)
        #expect(plan.disks.first?.stepIDs == [])
        #expect(plan.disks.first?.policy == "test")
        #expect(plan.fingerprints.isEmpty)
    }

    @Test func unmanagedAndNonChainDisksAreIgnored() {
        let layers = classicChain(c: [0..<1], b: [1..<2], a: [2..<3])
        var cdrom = Disk(target: "sda", device: "cdrom")
        cdrom.chain = nil
        let domain = PT.domain("vm", disks: [PT.disk("vda", layers), PT.disk("vdb", layers.map { l in
            var copy = l
            copy.source = .file((l.source.path ?? "") + ".b")
            return copy
        }), cdrom])
        let plan = PT.plan([domain], policy: PT.policy(maxDepth: 2), managed: [DiskKey(domain: "vm", disk: "vda")])
        #expect(Set(plan.steps.map(\.disk)) == ["vda"])
        #expect(plan.disks.map(\.disk) == ["vda"])
    }
}

/// A commit of the gap below an image rewrites the backing reference in that image's header (libvirt live,
/// `qemu-img rebase -u` offline): a protected or shared image is never the one right above a commit.
@Suite("Planner header writes of commits")
struct PlannerCommitHeaderTests {
    /// `base ← a ← P ← top`: committing a (1 cluster) into base is the cheapest way to depth 3; pulling P into top
    /// writes 10 clusters.
    private func chain() -> [Layer] {
        [
            PT.layer(path("top.qcow2"), clusters: [0..<2]),
            PT.layer(path("P.qcow2", "golden"), clusters: [2..<12]),
            PT.layer(path("a.qcow2"), clusters: [12..<13]),
            PT.layer(path("base.qcow2"), clusters: [0..<64]),
        ]
    }
    private let golden = [PT.root + "/golden/*"]

    @Test func protectedLayerIsNeverAboveACommitGap() {
        for state in [DomainState.running, .shutoff] {
            let layers = chain()
            let domain = PT.domain("vm", state: state, disks: [PT.disk("vda", layers)])
            // Without protection: commit a into base.
            let free = PT.plan([domain], policy: PT.policy(maxDepth: 3))
            #expect(free.steps.map(\.action) == [.commit])
            #expect(free.steps.first?.top == path("a.qcow2"))
            #expect(free.steps.first?.base == path("base.qcow2"))

            // P protected: that commit would rewrite P's backing reference. P is pulled into top instead.
            let plan = PT.plan([domain], policy: PT.policy(maxDepth: 3, protect: golden))
            #expect(plan.blocked.isEmpty)
            #expect(!plan.steps.contains { $0.action == .commit }, "\(plan.steps)")
            #expect(plan.steps.map(\.action) == [.pull])
            #expect(plan.steps.first?.top == path("top.qcow2"))
            #expect(plan.steps.first?.base == path("a.qcow2"))
            #expect(plan.steps.first?.estimatedBytes == 10 * cluster)
            #expect(plan.diskPlan(for: "vm")?.after == [path("top.qcow2"), path("a.qcow2"), path("base.qcow2")])

            // The exhaustive search agrees (its simulator refuses the commit too).
            let sim = SimChain(chain: Chain(layers: layers), writable: [true, false, true, true])
            let goal = Goal(policy: PT.policy(maxDepth: 3), original: layers.map { $0.source.path ?? "" })
            #expect(BruteForce.optimum(sim, goal: goal) == BruteForce.Best(bytes: 10 * cluster, steps: 1))
        }
    }

    @Test func blockedWhenNothingButThatCommitIsLeft() {
        // top protected as well: it can neither receive the pull nor have its header rewritten by a commit below.
        let layers = chain()
        let domain = PT.domain("vm", disks: [PT.disk("vda", layers)])
        let plan = PT.plan([domain], policy: PT.policy(maxDepth: 3, protect: golden + [path("top.qcow2")]))
        #expect(plan.steps.isEmpty)
        #expect(plan.blocked.map(\.code) == [.protectedActive])
    }

    @Test func theGapBelowAPulledProtectedLayerIsCommittedAfterThePull() {
        // top must move to storage.activeDir and the chain keep 2 images. Cheapest: pull P into top (2 clusters),
        // commit a into base (4), copy top (4) = 10 clusters; pulling a as well costs 6 + 8. Committing a first
        // would rewrite protected P's header, so the commit comes after the pull, when top is above a.
        let layers = [
            PT.layer(path("top.qcow2"), clusters: [0..<2]),
            PT.layer(path("P.qcow2", "golden"), clusters: [2..<4]),
            PT.layer(path("a.qcow2"), clusters: [4..<8]),
            PT.layer(path("base.qcow2"), clusters: [0..<64]),
        ]
        let fast = PT.root + "/fast"
        let policy = PT.policy(maxDepth: 2, protect: golden, activeDir: fast)
        let plan = PT.plan([PT.domain("vm", state: .shutoff, disks: [PT.disk("vda", layers)])], policy: policy)
        #expect(plan.blocked.isEmpty)
        #expect(plan.steps.map(\.action) == [.pull, .commit, .copy])
        guard plan.steps.count == 3 else { return }
        #expect(plan.steps[0].base == path("a.qcow2"))
        #expect(plan.steps[1].top == path("a.qcow2"))
        #expect(plan.steps[1].base == path("base.qcow2"))
        #expect(plan.steps[1].expectBefore == [path("top.qcow2"), path("a.qcow2"), path("base.qcow2")])
        #expect(plan.steps.map(\.estimatedBytes) == [2 * cluster, 4 * cluster, 4 * cluster])
        // Every step applies to the simulated chain with P read-only, and the content is unchanged.
        var sim = SimChain(chain: Chain(layers: layers), writable: [true, false, true, true])
        let before = sim.resolve()
        for step in plan.steps {
            guard let next = ChainSimulator.apply(step, to: sim) else {
                Issue.record("step \(step.action) does not apply to \(sim.paths)")
                return
            }
            #expect(next.paths == step.expectAfter)
            sim = next
        }
        #expect(sim.paths == [fast + "/top.qcow2", path("base.qcow2")])
        #expect(sim.resolve() == before)
        let goal = Goal(policy: policy, original: layers.map { $0.source.path ?? "" })
        let start = SimChain(chain: Chain(layers: layers), writable: [true, false, true, true])
        #expect(BruteForce.optimum(start, goal: goal) == BruteForce.Best(bytes: 10 * cluster, steps: 3))
    }

    @Test func simulatorRefusesACommitBelowAProtectedLayer() {
        let layers = [
            SimLayer(path: "/top", data: PT.extents([0..<2])),
            SimLayer(path: "/P", data: PT.extents([2..<12]), writable: false),
            SimLayer(path: "/a", data: PT.extents([12..<13])),
            SimLayer(path: "/base", data: PT.extents([0..<64])),
        ]
        let chain = SimChain(layers: layers)
        func step(_ action: StepAction, _ top: String?, _ base: String?) -> Step {
            Step(
                id: 1, host: "h", domain: "d", disk: "vda", action: action, mode: .live, top: top, base: base,
                destination: nil, estimatedBytes: 0, reason: StepReason(rule: "", policy: "", location: ""))
        }
        // The commit of a into base would rewrite P's backing reference: refused.
        #expect(ChainSimulator.apply(step(.commit, "/a", "/base"), to: chain) == nil)
        // Once P is pulled into top, top is above a and the same commit applies.
        guard let pulled = ChainSimulator.apply(step(.pull, "/top", "/a"), to: chain) else {
            Issue.record("pull refused")
            return
        }
        #expect(pulled.paths == ["/top", "/a", "/base"])
        let committed = ChainSimulator.apply(step(.commit, "/a", "/base"), to: pulled)
        #expect(committed?.paths == ["/top", "/base"])
        #expect(committed?.resolve() == chain.resolve())
        // A protected active image is written by a commit right below it as well.
        var protectedTop = layers
        protectedTop[0].writable = false
        protectedTop[1].writable = true
        #expect(ChainSimulator.apply(step(.commit, "/P", "/a"), to: SimChain(layers: protectedTop)) == nil)
        #expect(ChainSimulator.apply(step(.commit, "/a", "/base"), to: SimChain(layers: protectedTop)) != nil)
    }
}
