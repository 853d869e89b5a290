import ChainCore
import Foundation
import Libvirt

/// The built-in sandbox world: real images and real guests that show every situation virt-chain handles.
///
/// - `web-1` (running): golden `base.raw` ← web1-a ← web1-b ← web1-c, four images deep.
/// - `web-2` (shut off): the same golden `base.raw` ← web2-a ← web2-b (the base is shared).
/// - `db-1` (running): db-base.qcow2 with two external snapshots (libvirt metadata) on top.
/// - `legacy` (shut off): legacy-base.raw ← legacy-top.qcow2 whose backing format is not recorded.
/// - `archive` (shut off): archive-base.qcow2 ← archive-top.qcow2, to be flattened into a new directory.
public struct DemoScenario {
    public let sandbox: Sandbox
    public let policyFile: String

    /// Images written with a pattern, so that guest-visible content can be compared before and after.
    public static let webPatterns: [(image: String, byte: UInt8, offset: UInt64, length: UInt64)] = [
        ("golden/base.raw", 0x11, 0, 4 << 20),
        ("web1-a.qcow2", 0x21, 4 << 20, 2 << 20),
        ("web1-b.qcow2", 0x22, 8 << 20, 1 << 20),
        ("web1-c.qcow2", 0x23, 0, 1 << 20),
    ]

    public init(sandbox: Sandbox) throws {
        self.sandbox = sandbox
        let s = sandbox
        let base = try s.createImage(name: "golden/base.raw", format: "raw", sizeMiB: 64)
        try s.writePattern(image: base, byte: 0x11, offset: 0, length: 4 << 20)
        var below = base
        var belowFormat = "raw"
        for (name, byte, offset, length) in Self.webPatterns.dropFirst() {
            let img = try s.createImage(name: name, format: "qcow2", backing: below, backingFormat: belowFormat)
            try s.writePattern(image: img, byte: byte, offset: offset, length: length)
            below = img
            belowFormat = "qcow2"
        }
        try s.defineDomain(name: "web-1", disks: [("vda", below, "qcow2")], start: true)

        let w2a = try s.createImage(name: "web2-a.qcow2", format: "qcow2", backing: base, backingFormat: "raw")
        try s.writePattern(image: w2a, byte: 0x31, offset: 16 << 20, length: 1 << 20)
        let w2b = try s.createImage(name: "web2-b.qcow2", format: "qcow2", backing: w2a, backingFormat: "qcow2")
        try s.defineDomain(name: "web-2", disks: [("vda", w2b, "qcow2")], start: false)

        let dbBase = try s.createImage(name: "db-base.qcow2", format: "qcow2", sizeMiB: 64)
        try s.writePattern(image: dbBase, byte: 0x41, offset: 0, length: 2 << 20)
        let db = try s.defineDomain(name: "db-1", disks: [("vda", dbBase, "qcow2")], start: true)
        try s.externalSnapshot(domain: db, name: "before-upgrade", disk: "vda", overlayPath: "db-s1.qcow2")
        try s.externalSnapshot(domain: db, name: "after-upgrade", disk: "vda", overlayPath: "db-s2.qcow2")

        let legacyBase = try s.createImage(name: "legacy-base.raw", format: "raw", sizeMiB: 32)
        let legacyTop = try s.createImage(
            name: "legacy-top.qcow2", format: "qcow2", backing: legacyBase, backingFormat: "raw",
            recordBackingFormat: false)
        try s.defineDomain(name: "legacy", disks: [("vda", legacyTop, "qcow2")], start: false)

        let archBase = try s.createImage(name: "archive-base.qcow2", format: "qcow2", sizeMiB: 64)
        try s.writePattern(image: archBase, byte: 0x51, offset: 0, length: 3 << 20)
        let archTop = try s.createImage(
            name: "archive-top.qcow2", format: "qcow2", backing: archBase, backingFormat: "qcow2")
        try s.writePattern(image: archTop, byte: 0x52, offset: 1 << 20, length: 1 << 20)
        try s.defineDomain(name: "archive", disks: [("vda", archTop, "qcow2")], start: false)

        // Policies for this sandbox (domain globs use its unique prefix).
        let p = sandbox.prefix
        let dir = sandbox.directory
        let policies = """
            {
              "version": 1,
              "policies": [
                {
                  "name": "web-tier",
                  "match": { "domains": ["\(p)web-*"], "disks": ["vd*"] },
                  "maxDepth": 2,
                  "protect": ["\(dir)/golden/*"]
                },
                {
                  "name": "databases",
                  "match": { "domains": ["\(p)db-*"] },
                  "maxDepth": 2,
                  "snapshotMetadata": "prune"
                },
                {
                  "name": "legacy",
                  "match": { "domains": ["\(p)legacy"] },
                  "maxDepth": 4
                },
                {
                  "name": "archive",
                  "match": { "domains": ["\(p)archive"] },
                  "flatten": "full",
                  "storage": { "activeDir": "\(dir)/cold" }
                }
              ]
            }

            """
        policyFile = dir + "/policies.json"
        try policies.write(toFile: policyFile, atomically: true, encoding: .utf8)
        _ = try sandbox.createDirectory("cold")
    }
}
