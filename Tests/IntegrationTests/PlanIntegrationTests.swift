import ChainCore
import ChainOps
import Foundation
import Libvirt
import Testing

/// Plans against the real daemon with real images, then carries the offline steps out with qemu-img exactly as
/// DESIGN.md maps them, and checks (a) that each step's estimated bytes equal the bytes really written into its
/// target image, and (b) that the guest-visible content is byte-for-byte unchanged.
@Suite(.serialized, .requiresLibvirt)
struct PlanIntegrationTests {
    /// Allocated bytes of one image on its own.
    func allocated(_ path: String, _ format: String) throws -> UInt64 {
        try Allocation.measure(path: path, format: format).byteCount
    }

    /// Flattens the guest view of `top` into a raw file (the reference for content comparisons).
    func flatten(_ top: String, to raw: String) throws {
        try Command.check(["qemu-img", "convert", "-U", "-O", "raw", top, raw])
    }

    func format(of path: String, in chain: Chain) -> String {
        chain.layers.first { $0.source.path == path }?.format ?? "qcow2"
    }

    /// Runs one offline step with qemu-img; returns the bytes it added to the image it writes.
    func execute(_ step: Step, chain: Chain) throws -> UInt64 {
        switch step.action {
        case .pull:
            let top = try #require(step.top)
            let before = try allocated(top, "qcow2")
            var argv = ["qemu-img", "rebase", "-f", "qcow2"]
            if let base = step.base {
                argv += ["-F", format(of: base, in: chain), "-b", base]
            } else {
                argv += ["-b", ""]
            }
            try Command.check(argv + [top])
            return try allocated(top, "qcow2") - before
        case .commit:
            let top = try #require(step.top)
            let base = try #require(step.base)
            let baseFormat = format(of: base, in: chain)
            let before = try allocated(base, baseFormat)
            try Command.check(["qemu-img", "commit", "-q", "-b", base, top])
            // The image above `top` (if any) must now name `base`.
            if let i = step.expectBefore.firstIndex(of: top), i > 0 {
                let above = step.expectBefore[i - 1]
                try Command.check(["qemu-img", "rebase", "-u", "-f", "qcow2", "-F", baseFormat, "-b", base, above])
            }
            return try allocated(base, baseFormat) - before
        default:
            Issue.record("step \(step.action) not expected in this test")
            return 0
        }
    }

    @Test func estimatedBytesEqualBytesWrittenAndContentIsUnchanged() throws {
        let conn = try requireLibvirt()
        let sandbox = try Sandbox(connection: conn, prefix: uniqueTestPrefix("plan"))
        defer { try? sandbox.teardown() }
        // Two shut-off guests, data at cluster-aligned offsets:
        //  pull-me:   base.qcow2 ← a ← b ← c   (c rewrote b's range: pulling a, b into c is cheapest)
        //  commit-me: base.qcow2 ← a ← b ← c ← d (c holds a lot: committing under it beats pulling through it)
        func chain(_ name: String, _ layers: [(UInt8, UInt64, UInt64)]) throws -> String {
            var below: String?
            var top = ""
            for (i, (byte, offsetMiB, lengthMiB)) in layers.enumerated() {
                let image = try sandbox.createImage(
                    name: "\(name)-\(i).qcow2", format: "qcow2", sizeMiB: below == nil ? 64 : nil, backing: below,
                    backingFormat: below == nil ? nil : "qcow2")
                try sandbox.writePattern(image: image, byte: byte, offset: offsetMiB << 20, length: lengthMiB << 20)
                below = image
                top = image
            }
            return top
        }
        let pullTop = try chain("pull", [(0x10, 0, 8), (0x11, 10, 2), (0x12, 16, 1), (0x13, 16, 1)])
        let commitTop = try chain("commit", [(0x20, 0, 8), (0x21, 10, 2), (0x22, 14, 1), (0x23, 20, 12), (0x24, 40, 1)])
        try sandbox.defineDomain(name: "pull-me", disks: [("vda", pullTop, "qcow2")], start: false)
        try sandbox.defineDomain(name: "commit-me", disks: [("vda", commitTop, "qcow2")], start: false)

        var inventory = try InventoryReader.fromLibvirt(
            conn, names: [sandbox.domainName("pull-me"), sandbox.domainName("commit-me")])
        let pull = Policy(name: "two", maxDepth: 2)
        let commit = Policy(name: "three", maxDepth: 3)
        let assignments = [
            DiskKey(domain: sandbox.domainName("pull-me"), disk: "vda"): pull,
            DiskKey(domain: sandbox.domainName("commit-me"), disk: "vda"): commit,
        ]
        let config = HostConfig(allowedRoots: [ImageProbe.canonical(sandbox.directory)])
        let plan = PlanBuilder.build(
            inventory: &inventory, assignments: assignments, config: config, policyDigest: "test", measure: true)
        #expect(plan.blocked.isEmpty, "\(plan.blocked)")
        #expect(!plan.steps.isEmpty)

        // Reference content of each guest before anything runs.
        var reference: [String: String] = [:]
        for d in inventory.domains {
            let top = try #require(d.disks.first?.chain?.active?.source.path)
            let raw = sandbox.directory + "/\(d.name)-before.raw"
            try flatten(top, to: raw)
            reference[d.name] = raw
        }
        #expect(plan.steps.contains { $0.action == .pull }, "pull-me is shortened by a pull")
        #expect(plan.steps.contains { $0.action == .commit }, "commit-me is shortened by a commit")

        for step in plan.steps {
            let chain = try #require(inventory.domain(named: step.domain)?.disks.first?.chain)
            let written = try execute(step, chain: chain)
            #expect(written == step.estimatedBytes, "step \(step.id) \(step.action): estimated \(step.estimatedBytes), wrote \(written)")
            // The chain the next step expects is the one this step left.
            let after = ImageProbe.chain(from: try #require(step.expectAfter.first))
            #expect(after.layers.compactMap(\.source.path) == step.expectAfter)
        }
        // Guest-visible content is unchanged, byte for byte.
        for d in plan.disks {
            let top = try #require(d.after.first)
            let raw = sandbox.directory + "/\(d.domain)-after.raw"
            try flatten(top, to: raw)
            let cmp = try Command.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", try #require(reference[d.domain]), raw])
            #expect(cmp.status == 0, "\(d.domain): \(cmp.stdoutString)")
        }
    }
}
