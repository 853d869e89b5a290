// `virt-chain-bench strategies [--disks N] [--seed S]`: bytes the planner's plans write, compared with two naive
// strategies on the same random scenario set:
//   always-pull    — `virsh blockpull --base` into the active image down to the depth the policy allows (what the
//                    Red Hat guide does); always possible while the active image is writable;
//   always-commit  — `virsh blockcommit --active --pivot` of the top layers into the image that leaves the allowed
//                    depth, when that image may be written (not shared, not protected); otherwise it pulls too.
// Bytes come from the same exact extent unions the planner uses (CostModel), so the comparison is like for like.

import ChainCore
import Foundation

struct StrategyTotals {
    var planner: UInt64 = 0
    var pull: UInt64 = 0
    var commit: UInt64 = 0
    var disks = 0
    var commitFellBack = 0
}

func randomExtents(_ rng: inout SplitMix64, diskMiB: UInt64) -> ExtentSet {
    let count = Int.random(in: 1...8, using: &rng)
    var ranges: [Range<UInt64>] = []
    for _ in 0..<count {
        let start = UInt64.random(in: 0..<diskMiB, using: &rng)
        let len = UInt64.random(in: 1...max(1, diskMiB / 8), using: &rng)
        ranges.append((start << 20)..<(min(diskMiB, start + len) << 20))
    }
    return ExtentSet(ranges)
}

func strategiesBench(_ args: [String]) {
    let disks = option(args, "--disks").flatMap { Int($0) } ?? 2000
    var rng = SplitMix64(state: option(args, "--seed").flatMap { UInt64($0) } ?? 7)
    let dir = "/var/lib/libvirt/images"
    var domains: [Domain] = []
    var assignments: [DiskKey: Policy] = [:]
    let policies = [
        Policy(name: "depth-2", maxDepth: 2), Policy(name: "depth-3", maxDepth: 3),
        Policy(name: "keep-base", flatten: .keepBase), Policy(name: "full", flatten: .full),
        Policy(name: "golden-protected", maxDepth: 2, protect: ["\(dir)/golden/*"]),
    ]
    // A few golden bases shared by many guests.
    let goldens = (0..<5).map { i in
        Layer(source: .file("\(dir)/golden/base-\(i).raw"), format: "raw", virtualSize: 1 << 30,
              allocation: ExtentSet([0..<(UInt64(256 + i * 64) << 20)]))
    }
    for d in 0..<disks {
        let n = Int.random(in: 3...10, using: &rng)
        var layers: [Layer] = []
        for i in 0..<(n - 1) {
            layers.append(
                Layer(source: .file("\(dir)/vm-\(d)/l\(i).qcow2"), format: "qcow2", virtualSize: 1 << 30,
                      allocation: randomExtents(&rng, diskMiB: 1024)))
        }
        if Bool.random(using: &rng) {
            layers.append(goldens[Int.random(in: 0..<goldens.count, using: &rng)])
        } else {
            layers.append(Layer(source: .file("\(dir)/vm-\(d)/base.qcow2"), format: "qcow2", virtualSize: 1 << 30,
                                allocation: randomExtents(&rng, diskMiB: 1024)))
        }
        let name = "vm-\(d)"
        domains.append(Domain(name: name, uuid: "u\(d)", state: .running,
                              disks: [Disk(target: "vda", chain: Chain(layers: layers))]))
        assignments[DiskKey(domain: name, disk: "vda")] = policies[Int.random(in: 0..<policies.count, using: &rng)]
    }
    let inventory = Inventory(host: "bench", domains: domains)
    let plan = Planner.plan(PlannerInput(inventory: inventory, assignments: assignments))
    var planned: [DiskKey: UInt64] = [:]
    for s in plan.steps { planned[DiskKey(domain: s.domain, disk: s.disk), default: 0] += s.estimatedBytes }
    let blocked = Set(plan.blocked.map { DiskKey(domain: $0.domain, disk: $0.disk) })

    var t = StrategyTotals()
    for d in domains {
        let key = DiskKey(domain: d.name, disk: "vda")
        guard let policy = assignments[key], let chain = d.disks[0].chain, !blocked.contains(key) else { continue }
        let n = chain.depth
        let depth = policy.effectiveMaxDepth ?? n
        guard n > depth else { continue }
        let costs = CostModel(layers: chain.layers)
        // always-pull: keep the bottom depth-1 layers; pull everything between them and the active image.
        let k = n - depth  // layers 1...k are pulled (k = n-1 for a full flatten)
        let pull = costs.prefix(k) - costs.prefix(0)
        // always-commit: active commit of 0..<k into layer k (k becomes the active image) if it may be written.
        let sharedFrom = chain.layers.firstIndex {
            inventory.isShared($0.key, domain: d.name, disk: "vda") || policy.protects(path: $0.source.path ?? "")
        } ?? n
        let commitAllowed = k < sharedFrom
        let commit = commitAllowed ? costs.prefix(k - 1) : pull
        if !commitAllowed { t.commitFellBack += 1 }
        t.planner += planned[key] ?? 0
        t.pull += pull
        t.commit += commit
        t.disks += 1
    }
    func gib(_ b: UInt64) -> String { String(format: "%.1f GiB", Double(b) / Double(1 << 30)) }
    print("scenario set: \(t.disks) disks needing a change (\(disks) generated, \(blocked.count) blocked), seed-fixed")
    print("| strategy | bytes written | planner ÷ strategy |")
    print("|---|---:|---:|")
    print("| virt-chain planner | \(gib(t.planner)) | 1.00 |")
    func ratio(_ b: UInt64) -> String { String(format: "%.2f", Double(t.planner) / Double(max(b, 1))) }
    print("| always pull | \(gib(t.pull)) | \(ratio(t.pull)) |")
    print("| always commit when allowed (fell back to pull on \(t.commitFellBack) disks) | \(gib(t.commit)) | "
        + "\(ratio(t.commit)) |")
}
