import ChainCore
import ChainOps
import Foundation
import Testing

/// The native qcow2/raw reader must agree with `qemu-img info` and `qemu-img map` on real images.
@Suite(.serialized)
struct ImageProbeTests {
    let dir: String

    init() throws {
        guard Command.resolve("qemu-img") != nil, Command.resolve("qemu-io") != nil else {
            throw Unavailable(description: "qemu-img/qemu-io not installed (apt-get install qemu-utils)")
        }
        dir = NSTemporaryDirectory() + "vc-probe-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    struct Unavailable: Error, CustomStringConvertible { var description: String }

    func img(_ name: String) -> String { dir + "/" + name }

    func run(_ argv: [String]) throws { try Command.check(argv) }

    /// Creates a varied set of images and returns their paths.
    func makeImages() throws -> [String] {
        try run(["qemu-img", "create", "-q", "-f", "raw", img("base.raw"), "32M"])
        try run(["qemu-io", "-f", "raw", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x12 10M 64k", img("base.raw")])
        try run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "base.raw", img("a.qcow2")])
        try run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x21 1M 2M", "-c", "write -z 20M 1M", img("a.qcow2")])
        // Relative backing, format not recorded.
        try run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", img("b.qcow2")])
        try Sandbox.removeBackingFormatExtension(qcow2: img("b.qcow2"))
        try run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x31 5M 64k", "-c", "write -P 0x32 30M 128k", img("b.qcow2")])
        // Old qcow2 v2 (compat 0.10), small clusters.
        try run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4096", img("v2.qcow2"), "16M"])
        try run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x41 4096 12288", img("v2.qcow2")])
        // Persistent dirty bitmaps.
        try run(["qemu-img", "create", "-q", "-f", "qcow2", img("bitmaps.qcow2"), "16M"])
        try run(["qemu-img", "bitmap", "--add", img("bitmaps.qcow2"), "backup-0"])
        try run(["qemu-img", "bitmap", "--add", img("bitmaps.qcow2"), "virtnbdbackup.1"])
        // Compressed clusters.
        try run(["qemu-img", "convert", "-c", "-O", "qcow2", img("a.qcow2"), img("compressed.qcow2")])
        // Large clusters.
        try run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", img("big.qcow2"), "64M"])
        try run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x51 3M 1M", img("big.qcow2")])
        return ["base.raw", "a.qcow2", "b.qcow2", "v2.qcow2", "bitmaps.qcow2", "compressed.qcow2", "big.qcow2"].map(img)
    }

    @Test func nativeHeaderMatchesQemuImgInfo() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for path in try makeImages() {
            let native = try #require(try ImageProbe.nativeHeader(path: path), "\(path)")
            let qemu = try ImageProbe.qemuImgHeader(path: path)
            #expect(native.format == qemu.format, "\(path)")
            #expect(native.virtualSize == qemu.virtualSize, "\(path)")
            #expect(native.backing == qemu.backing, "\(path)")
            #expect(native.backingFormat == qemu.backingFormat, "\(path)")
            #expect(native.bitmaps.sorted() == qemu.bitmaps.sorted(), "\(path)")
            #expect(native.clusterSize == qemu.clusterSize || native.format == "raw", "\(path)")
        }
        let bitmaps = try #require(try ImageProbe.nativeHeader(path: img("bitmaps.qcow2")))
        #expect(bitmaps.bitmaps.sorted() == ["backup-0", "virtnbdbackup.1"])
        let b = try #require(try ImageProbe.nativeHeader(path: img("b.qcow2")))
        #expect(b.backing == "a.qcow2")
        #expect(b.backingFormat == nil)
    }

    @Test func nativeAllocationMatchesQemuImgMap() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for path in try makeImages() {
            let format = path.hasSuffix(".raw") ? "raw" : "qcow2"
            let native = try Allocation.measure(path: path, format: format)
            let qemu = try Allocation.qemuImgMapForTesting(path: path, format: format)
            if format == "raw" {
                // The file system may allocate in larger blocks than were written; qemu-img map sees the same holes.
                #expect(native == qemu, "\(path)")
            } else {
                #expect(native == qemu, "\(path): native \(native.ranges) qemu \(qemu.ranges)")
            }
        }
        // a.qcow2 holds exactly the 2 MiB written into it (the zeroed range is not data).
        let a = try Allocation.measure(path: img("a.qcow2"), format: "qcow2")
        #expect(a.byteCount == 2 << 20)
    }

    @Test func chainFollowsRelativeNamesAndFlagsUnrecordedFormats() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try makeImages()
        let chain = ImageProbe.chain(from: ImageProbe.canonical(img("b.qcow2")))
        #expect(chain.problems.isEmpty)
        let canonicalDir = ImageProbe.canonical(dir)
        #expect(chain.layers.map(\.source.path) == ["b.qcow2", "a.qcow2", "base.raw"].map { canonicalDir + "/" + $0 })
        #expect(chain.layers.map(\.formatRecorded) == [true, false, true])
        #expect(chain.layers.map(\.format) == ["qcow2", "qcow2", "raw"])
        #expect(chain.layers[1].source.written == "a.qcow2")
    }

    @Test func qemuImgIsUsedForOtherFormats() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try run(["qemu-img", "create", "-q", "-f", "vmdk", img("disk.vmdk"), "8M"])
        #expect(try ImageProbe.nativeHeader(path: img("disk.vmdk")) == nil)
        let h = try ImageProbe.header(path: img("disk.vmdk"))
        #expect(h.format == "vmdk")
        #expect(h.virtualSize == 8 << 20)
    }

    @Test func unreadableHeaderIsAProblemNotACrash() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = img("bad.qcow2")
        // A qcow2 magic with a nonsense version.
        try Data([0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 9] + [UInt8](repeating: 0, count: 504)).write(to: URL(fileURLWithPath: path))
        let chain = ImageProbe.chain(from: path)
        #expect(chain.layers.isEmpty)
        #expect(chain.problems.count == 1)
        if case .unreadable(let p, let message) = chain.problems.first {
            #expect(p == path)
            #expect(message.contains("qemu-img info"))
        } else {
            Issue.record("expected an unreadable problem, got \(chain.problems)")
        }
    }
}
