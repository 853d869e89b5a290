// Property tests of the planner over random chains (deterministic seeds).

import Testing

@testable import ChainCore

/// One random disk with everything the oracle needs to judge the plan independently of the planner.
struct RandomCase: CustomStringConvertible {
    var domains: [Domain]
    var policy: Policy
    var layers: [Layer]
    /// Oracle: positions that must never be written, merged away, moved or deleted.
    var unsafe: Set<Int>
    var seed: UInt64

    var paths: [String] { layers.map { $0.source.path ?? $0.key } }
    var active: Domain { domains[0] }

    var description: String {
        let marks = paths.enumerated().map { i, p in "\(PlanPath.basename(p))\(unsafe.contains(i) ? "*" : "")" }
        return "seed \(seed): [\(marks.joined(separator: " ← "))] maxDepth \(policy.maxDepth.map(String.init) ?? "-")"
            + " flatten \(policy.flatten.rawValue) activeDir \(policy.activeDir ?? "-") state \(active.state)"
    }

    static func make(seed: UInt64, maxLayers: Int) -> RandomCase {
        var rng = SplitMix64(seed: seed)
        let n = rng.int(1...maxLayers)
        let estimated = rng.chance(0.2)
        var layers: [Layer] = []
        for i in 0..<n {
            let dir = rng.chance(0.2) ? "slow" : "vm"
            let path = PT.path("L\(i).qcow2", dir: dir)
            if estimated {
                layers.append(PT.layer(path, dataBytes: UInt64(rng.int(0...40)) * PT.cluster))
            } else {
                var ranges: [Range<UInt64>] = []
                for _ in 0..<rng.int(0...4) {
                    let start = UInt64(rng.int(0...60))
                    ranges.append(start..<min(PT.clusters, start + UInt64(rng.int(1...12))))
                }
                layers.append(PT.layer(path, clusters: ranges, formatRecorded: rng.chance(0.9)))
            }
        }
        let paths = layers.map { $0.source.path ?? "" }
        var unsafe = Set<Int>()
        var domains: [Domain] = []
        var snapshots: [Snapshot] = []
        // Sharing: another domain's chain continues from layer i, or a snapshot's saved state is layer i.
        if rng.chance(0.35) {
            let i = rng.chance(0.1) ? 0 : rng.int(0...(n - 1))
            if rng.chance(0.5) {
                let other = PT.layer(PT.path("other-top.qcow2", dir: "other"), clusters: [0..<1])
                domains.append(PT.domain("web-2", state: .shutoff, disks: [PT.disk("vda", [other] + layers[i...])]))
            } else {
                let overlay = i > 0 ? layers[i - 1].source : nil
                snapshots.append(
                    Snapshot(
                        name: "s1", disks: [.init(target: "vda", kind: "external", overlay: overlay,
                                                   stateSources: [layers[i].source])]))
            }
            unsafe.formUnion(i..<n)
        }
        var protect: [String] = []
        for i in 0..<n where rng.chance(0.12) {
            protect.append(paths[i])
            unsafe.insert(i)
        }
        let flatten: Flatten = rng.chance(0.6) ? .none : (rng.chance(0.5) ? .keepBase : .full)
        let maxDepth: Int? = rng.chance(0.25) ? nil : rng.int(1...5)
        var activeDir: String?
        if rng.chance(0.3) { activeDir = PT.root + (rng.chance(0.7) ? "/fast" : "/vm") }
        let policy = PT.policy(
            maxDepth: maxDepth, flatten: flatten, protect: protect, activeDir: activeDir,
            retired: rng.chance(0.3) ? .delete : .keep)
        let state: DomainState = rng.chance(0.5) ? .running : .shutoff
        domains.insert(PT.domain("vm", state: state, disks: [PT.disk("vda", layers)], snapshots: snapshots), at: 0)
        return RandomCase(domains: domains, policy: policy, layers: layers, unsafe: unsafe, seed: seed)
    }

    func plan() -> Plan {
        PT.plan(domains, policy: policy, managed: [DiskKey(domain: "vm", disk: "vda")])
    }

    func simChain() -> SimChain {
        SimChain(chain: Chain(layers: layers), writable: (0..<layers.count).map { !unsafe.contains($0) })
    }
}

@Suite("Planner properties")
struct PlannerPropertyTests {
    static let dataActions: Set<StepAction> = [.commit, .pull, .copy]

    /// (a) The plan's bytes and step count equal the optimum of an exhaustive search; no plan ⇔ no solution.
    @Test func planIsOptimal() {
        checkOptimality(seeds: 1...400, multiplier: 7919, maxLayers: 6, minPlanned: 150, minImpossible: 10)
    }

    /// (a) on chains of 7 to 10 layers (fewer cases: the exhaustive search grows quickly with the depth).
    @Test func planIsOptimalOnLongChains() {
        checkOptimality(seeds: 1...200, multiplier: 15_485_863, maxLayers: 10, minLayers: 7, minPlanned: 70, minImpossible: 5)
    }

    func checkOptimality(
        seeds: ClosedRange<UInt64>, multiplier: UInt64, maxLayers: Int, minLayers: Int = 1, minPlanned: Int,
        minImpossible: Int
    ) {
        var planned = 0
        var impossible = 0
        var kinds: [String: Int] = [:]
        var seed = seeds.lowerBound
        var tried = 0
        while tried < seeds.count {
            let c = RandomCase.make(seed: seed &* multiplier, maxLayers: maxLayers)
            seed += 1
            if c.layers.count < minLayers { continue }
            tried += 1
            let plan = c.plan()
            let optimum = BruteForce.optimum(c.simChain(), goal: Goal(policy: c.policy, original: c.paths))
            let blocked = plan.blocked(for: "vm")
            if blocked.isEmpty {
                planned += 1
                let data = plan.steps(for: "vm").filter { Self.dataActions.contains($0.action) }
                let bytes = data.reduce(0) { $0 + $1.estimatedBytes }
                for step in data {
                    let kind = step.action == .commit && step.top == step.expectBefore.first ? "active-commit"
                        : step.action == .copy ? "copy-\(step.base == nil ? "full" : "shallow")" : step.action.rawValue
                    kinds[kind, default: 0] += 1
                }
                #expect(optimum == BruteForce.Best(bytes: bytes, steps: data.count), "\(c)")
            } else if blocked.contains(where: { $0.code == .other && $0.reason.contains("backing format") }) {
                continue  // an unrecorded backing format in a protected or shared image: not a shape question
            } else {
                impossible += 1
                let codes = Set(blocked.map(\.code))
                #expect(codes.isSubset(of: [.impossible, .protectedActive, .sharedActive]), "\(c): \(blocked)")
                #expect(optimum == nil, "\(c): blocked \(blocked) but search found \(String(describing: optimum))")
            }
        }
        #expect(planned > minPlanned)
        #expect(impossible > minImpossible)
        // The random cases exercise every way of leaving the chain.
        for kind in ["commit", "active-commit", "pull", "copy-full", "copy-shallow"] {
            #expect(kinds[kind, default: 0] >= 5, "\(kind): \(kinds)")
        }
    }

    /// (b)-(e) on chains up to 10 layers.
    @Test func planIsSafeAndConsistent() {
        for seed in 1...400 as ClosedRange<UInt64> {
            let c = RandomCase.make(seed: seed &* 104_729 &+ 17, maxLayers: 10)
            let plan = c.plan()
            guard plan.blocked(for: "vm").isEmpty else { continue }
            let steps = plan.steps(for: "vm")
            var chain = c.simChain()
            let before = chain.resolve()
            var expected = c.paths
            var current = c.paths
            for step in steps {
                // (d) each step expects the chain the previous one left.
                #expect(step.expectBefore == expected, "\(c) step \(step.id)")
                // (c) nothing unsafe is written, merged away, moved or deleted.
                let touchedUnsafe = Self.unsafeTouched(step, current: current, case: c)
                #expect(touchedUnsafe.isEmpty, "\(c) step \(step.id) \(step.action) touches \(touchedUnsafe)")
                guard let (next, bytes) = ChainSimulator.transition(step, chain) else {
                    Issue.record("\(c): step \(step.id) \(step.action) does not apply to \(chain.paths)")
                    break
                }
                #expect(bytes == step.estimatedBytes, "\(c) step \(step.id)")
                #expect(next.paths == step.expectAfter, "\(c) step \(step.id)")
                chain = next
                expected = step.expectAfter
                current = next.paths
            }
            // (b) the result meets the policy.
            let goal = Goal(policy: c.policy, original: c.paths)
            #expect(goal.isMet(chain.paths), "\(c): final \(chain.paths)")
            #expect(plan.diskPlan(for: "vm")?.after == chain.paths, "\(c)")
            // (e) guest-visible content is unchanged.
            #expect(chain.resolve() == before, "\(c)")
        }
    }

    /// Images a step writes, merges away, moves or deletes that the oracle marks shared or protected.
    static func unsafeTouched(_ step: Step, current: [String], case c: RandomCase) -> [String] {
        let unsafePaths = Set(c.unsafe.map { c.paths[$0] })
        var touched: [String] = []
        switch step.action {
        case .commit:
            if let top = step.top, let base = step.base, let t = current.firstIndex(of: top),
                let b = current.firstIndex(of: base)
            {
                // A non-active commit also rewrites the backing reference in the header of the image above top.
                touched = Array(current[max(t - 1, 0)...b])
            }
        case .pull, .rebase, .copy:
            touched = step.top.map { [$0] } ?? []
        case .deleteImage:
            touched = step.top.map { [$0] } ?? []
            let inventory = Inventory(host: "h", domains: c.domains)
            let foreign = (inventory.references[step.top ?? ""] ?? []).filter { ref in
                if case .chain = ref.kind, ref.domain == "vm", ref.disk == "vda" { return false }
                return true
            }
            if !foreign.isEmpty { return ["\(step.top ?? "") (referenced by \(foreign))"] }
        case .metadataDelete:
            break
        }
        return touched.filter { unsafePaths.contains($0) }
    }

    /// Steps are numbered 1… in order, unique, and carry the host.
    @Test func stepIDsAreSequential() {
        var domains: [Domain] = []
        for index in 1...60 {
            let layers = (0..<(index % 7 + 1)).map { i in
                PT.layer(PT.path("L\(i).qcow2", dir: "vm\(index)"), clusters: [UInt64(i)..<UInt64(i + index % 5 + 1)])
            }
            domains.append(PT.domain("vm\(index)", state: index % 2 == 0 ? .running : .shutoff,
                                     disks: [PT.disk("vda", layers), PT.disk("vdb", Array(layers.suffix(1)))]))
        }
        let plan = PT.plan(domains, policy: PT.policy(maxDepth: 2))
        #expect(plan.steps.count > 30)
        #expect(plan.steps.map(\.id) == Array(1...max(plan.steps.count, 1)))
        #expect(plan.steps.allSatisfy { $0.host == "qemu:///system" })
        let listed = plan.disks.flatMap(\.stepIDs).sorted()
        #expect(listed == plan.steps.map(\.id))
    }
}

@Suite("Planner building blocks")
struct PlannerBuildingBlockTests {
    /// |U(i...j)| from the cost model equals the ExtentSet union, for random extents (and estimates mixed in).
    @Test func costModelMatchesExtentSetUnions() {
        var rng = SplitMix64(seed: 99)
        for _ in 0..<300 {
            let n = rng.int(1...12)
            var extents: [ExtentSet?] = []
            var estimates: [UInt64] = []
            for _ in 0..<n {
                var ranges: [Range<UInt64>] = []
                for _ in 0..<rng.int(0...5) {
                    let start = UInt64(rng.int(0...500))
                    ranges.append(start..<(start + UInt64(rng.int(1...80))))
                }
                extents.append(rng.chance(0.2) ? nil : ExtentSet(ranges))
                estimates.append(UInt64(rng.int(0...300)))
            }
            let model = CostModel(extents: extents, estimates: estimates)
            // The same layers as ExtentSets, estimates as disjoint synthetic ranges.
            var next = EstimatedExtents.syntheticBase
            let sets = (0..<n).map { i -> ExtentSet in
                if let e = extents[i] { return e }
                defer { next += estimates[i] }
                return estimates[i] == 0 ? ExtentSet() : ExtentSet([next..<(next + estimates[i])])
            }
            for i in 0..<n {
                var union = ExtentSet()
                for j in i..<n {
                    union = union.union(sets[j])
                    #expect(model.union(i, j) == union.byteCount, "n \(n) i \(i) j \(j)")
                }
            }
        }
    }

    @Test func estimatesOnlyModelIsPrefixSums() {
        let layers = [100, 30, 0, 20].map { PT.layer(PT.path("x\($0)"), dataBytes: UInt64($0)) }
        let model = CostModel(layers: layers)
        #expect(model.union(0, 3) == 150)
        #expect(model.union(1, 2) == 30)
        #expect(model.union(2, 1) == 0)
        #expect(model.prefix(0) == 100)
    }

    /// Large inventories are planned in parallel; the result equals planning smaller pieces one after another.
    @Test func parallelPlanEqualsSequentialPieces() {
        var rng = SplitMix64(seed: 7)
        var domains: [Domain] = []
        for d in 0..<600 {
            var disks: [Disk] = []
            for t in ["vda", "vdb"] {
                let layers = (0..<rng.int(1...9)).map { i in
                    PT.layer(
                        PT.path("\(t)-\(i).qcow2", dir: "d\(d)"), clusters: [UInt64(i)..<UInt64(i + rng.int(1...9))])
                }
                disks.append(PT.disk(t, layers))
            }
            domains.append(PT.domain("d\(d)", state: d % 2 == 0 ? .running : .shutoff, disks: disks))
        }
        let policy = PT.policy(maxDepth: 3, activeDir: d0Fast, retired: .delete)
        let whole = PT.plan(domains, policy: policy)
        var steps: [Step] = []
        var disks: [DiskPlan] = []
        var fingerprints: [String: String] = [:]
        for piece in stride(from: 0, to: domains.count, by: 50) {
            let part = PT.plan(Array(domains[piece..<(piece + 50)]), policy: policy)
            steps += part.steps
            disks += part.disks
            fingerprints.merge(part.fingerprints) { a, _ in a }
        }
        func strip(_ s: Step) -> Step {
            var copy = s
            copy.id = 0
            return copy
        }
        #expect(whole.steps.count > 1000)
        #expect(whole.steps.map(strip) == steps.map(strip))
        #expect(whole.disks.map { [$0.domain, $0.disk] + $0.after } == disks.map { [$0.domain, $0.disk] + $0.after })
        #expect(whole.fingerprints == fingerprints)
        #expect(whole.steps.map(\.id) == Array(1...whole.steps.count))
    }

    private var d0Fast: String { PT.root + "/fast" }

    /// Two different policies with the same name in one (parallel) plan are still told apart: every disk is planned
    /// under its own policy, as `planDisk` plans it alone.
    @Test func differentPoliciesWithOneNameAreToldApart() {
        var domains: [Domain] = []
        for d in 0..<520 {
            let layers = (0..<(d % 6 + 1)).map { i in
                PT.layer(PT.path("L\(i).qcow2", dir: "d\(d)"), clusters: [UInt64(i)..<UInt64(i + d % 4 + 1)])
            }
            domains.append(PT.domain("d\(d)", state: .running, disks: [PT.disk("vda", layers)]))
        }
        let a = PT.policy("same", maxDepth: 2)
        let b = PT.policy("same", maxDepth: 4, retired: .delete)
        var assignments: [DiskKey: Policy] = [:]
        for (d, domain) in domains.enumerated() {
            assignments[DiskKey(domain: domain.name, disk: "vda")] = d % 3 == 0 ? a : b
        }
        let inventory = Inventory(host: "qemu:///system", domains: domains)
        let plan = Planner.plan(PlannerInput(inventory: inventory, assignments: assignments))
        for (d, domain) in domains.enumerated() {
            let alone = Planner.planDisk(
                domain: domain, disk: domain.disks[0], policy: d % 3 == 0 ? a : b, inventory: inventory)
            let expected = alone.change?.steps.map { [$0.action.rawValue, $0.top ?? "", $0.base ?? ""] } ?? []
            let got = plan.steps(for: domain.name).map { [$0.action.rawValue, $0.top ?? "", $0.base ?? ""] }
            #expect(got == expected, "\(domain.name)")
        }
        #expect(plan.steps.count > 300)
    }

    /// The batched fingerprints (hashed four disks side by side) equal `Fingerprint.disk` one by one.
    @Test func batchedFingerprintsEqualSingleOnes() {
        var rng = SplitMix64(seed: 31)
        var domains: [Domain] = []
        var items: [(domain: Int, disk: Int)] = []
        for d in 0..<40 {
            var disks: [Disk] = []
            for t in 0..<rng.int(1...3) {
                var layers: [Layer] = []
                for i in 0..<rng.int(0...12) {
                    let name = rng.chance(0.1) ? "é-\(i).qcow2" : "\(d)-\(t)-\(i).qcow2"
                    var layer = PT.layer(PT.path(name, dir: "d\(d)"), format: rng.chance(0.2) ? nil : "qcow2")
                    if rng.chance(0.2) { layer.fileSize = nil }
                    if rng.chance(0.2) { layer.mtime = nil }
                    if rng.chance(0.2) { layer.virtualSize = nil }
                    if rng.chance(0.2) { layer.dataBytes = UInt64(rng.int(0...1_000_000)) }
                    if rng.chance(0.1) {
                        layer.source = ImageSource(kind: .network, networkProtocol: "rbd", name: "pool/img\(i)")
                    }
                    layers.append(layer)
                }
                var disk = PT.disk("vd\(t)", layers)
                if layers.isEmpty { disk.chain = nil }
                disks.append(disk)
                items.append((d, t))
            }
            domains.append(PT.domain("vm\(d)", state: d % 3 == 0 ? .shutoff : .running, disks: disks))
        }
        for count in [0, 1, 3, 4, 5, items.count] {
            let batch = Array(items.prefix(count))
            let batched = Fingerprint.disks(batch, in: domains)
            let single = batch.map { Fingerprint.disk(domains[$0.domain], domains[$0.domain].disks[$0.disk]) }
            #expect(batched == single, "\(count) disks")
        }
    }

    /// A fingerprint follows what `apply` must not find changed, and only that: for a running guest the active
    /// image's size, mtime and data bytes are the guest's own writes and do not count; everything else does.
    @Test func fingerprintFollowsTheChainButNotARunningGuestsWrites() {
        let layers = [
            PT.layer(PT.path("top.qcow2"), format: "qcow2"), PT.layer(PT.path("mid.qcow2"), format: "qcow2"),
            PT.layer(PT.path("base.raw"), format: "raw"),
        ]
        for state in [DomainState.running, .shutoff, .paused] {
            let domain = PT.domain("vm", state: state, disks: [PT.disk("vda", layers)])
            let original = Fingerprint.disk(domain, domain.disks[0])
            func changed(_ edit: (inout Domain) -> Void) -> Bool {
                var d = domain
                edit(&d)
                #expect(Fingerprint.disks([(0, 0)], in: [d]) == [Fingerprint.disk(d, d.disks[0])])
                return Fingerprint.disk(d, d.disks[0]) != original
            }
            // The guest's writes to its active image.
            let guestWrites = [
                changed { $0.disks[0].chain!.layers[0].mtime = 9e9 },
                changed { $0.disks[0].chain!.layers[0].fileSize = 1 << 40 },
                changed { $0.disks[0].chain!.layers[0].dataBytes = 1 << 40 },
            ]
            #expect(guestWrites == Array(repeating: state != .running, count: 3), "\(state)")
            // Everything else.
            #expect(changed { $0.disks[0].chain!.layers[1].mtime = 9e9 })
            #expect(changed { $0.disks[0].chain!.layers[2].fileSize = 1 })
            #expect(changed { $0.disks[0].chain!.layers[0].virtualSize = 1 << 41 })
            #expect(changed { $0.disks[0].chain!.layers[0].source.path = "/elsewhere/top.qcow2" })
            #expect(changed { $0.disks[0].chain!.layers[1].format = "raw" })
            #expect(changed { $0.disks[0].chain!.layers.remove(at: 1) })
            #expect(changed { $0.state = state == .running ? .paused : .running })
            #expect(changed { $0.uuid = "other" })
        }
    }

    @Test func simulatorRefusesUnsafeSteps() {
        let layers = [
            SimLayer(path: "/a", data: PT.extents([0..<2])),
            SimLayer(path: "/b", data: PT.extents([2..<4]), writable: false),
            SimLayer(path: "/c", data: PT.extents([0..<8])),
        ]
        let chain = SimChain(layers: layers)
        func step(_ action: StepAction, _ top: String?, _ base: String?) -> Step {
            Step(
                id: 1, host: "h", domain: "d", disk: "vda", action: action, mode: .live, top: top, base: base,
                destination: nil, estimatedBytes: 0, reason: StepReason(rule: "", policy: "", location: ""))
        }
        // Merging /b away by commit is refused; pulling it is fine and writes what /a lacks.
        #expect(ChainSimulator.apply(step(.commit, "/a", "/c"), to: chain) == nil)
        #expect(ChainSimulator.apply(step(.commit, "/b", "/c"), to: chain) == nil)
        #expect(ChainSimulator.cost(of: step(.pull, "/a", "/c"), on: chain) == 2 * PT.cluster)
        let pulled = ChainSimulator.apply(step(.pull, "/a", nil), to: chain)
        #expect(pulled?.paths == ["/a"])
        #expect(pulled?.resolve() == chain.resolve())
        // A step whose expected chain differs does not apply.
        var stale = step(.pull, "/a", nil)
        stale.expectBefore = ["/a", "/c"]
        #expect(ChainSimulator.apply(stale, to: chain) == nil)
    }
}
