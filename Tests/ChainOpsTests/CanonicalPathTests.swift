import ChainCore
import ChainOps
import Foundation
import Testing

/// The per-thread path resolver (directory cache + last-directory shortcut) must give exactly what `realpath` gives
/// for paths that exist, and the lexically normal path for directories that do not.
@Suite struct CanonicalPathTests {
    @Test func resolverAgreesWithRealpath() throws {
        let root = NSTemporaryDirectory() + "vc-canon-" + UUID().uuidString.prefix(8)
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/real/sub", withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: root) }
        let real = ImageProbe.canonical(root + "/real")
        for name in ["a.qcow2", "b.qcow2", "sub/c.qcow2"] {
            fm.createFile(atPath: root + "/real/" + name, contents: Data())
        }
        try fm.createSymbolicLink(atPath: root + "/link", withDestinationPath: root + "/real")  // symlinked directory
        try fm.createSymbolicLink(atPath: root + "/real/ln.qcow2", withDestinationPath: "sub/c.qcow2")  // symlinked file

        // Consecutive paths in one directory, then through the symlinked directory, then a missing directory, then
        // back: every switch must be seen (the shortcut caches only the previous directory).
        let paths = [
            root + "/real/a.qcow2", root + "/real/b.qcow2", root + "/real/ln.qcow2", root + "/link/a.qcow2",
            root + "/link/b.qcow2", root + "/link/ln.qcow2", root + "/gone/x.qcow2", root + "/gone/y.qcow2",
            root + "/real/sub/c.qcow2", root + "/link/sub/../a.qcow2", root + "/real//b.qcow2", root + "/real/a.qcow2",
            "/", "/nonexistent-vc-dir/z.raw",
            // Alternating between more directories than the resolver remembers, and files in "/".
            root + "/real/a.qcow2", root + "/gone/x.qcow2", root + "/link/a.qcow2", root + "/real/sub/c.qcow2",
            "/nonexistent-vc-dir/z.raw", root + "/link/b.qcow2", root + "/real/a.qcow2", "/vc-root-file.img",
            root + "/gone/y.qcow2", root + "/link/ln.qcow2", "/vc-root-file.img", root + "/real/b.qcow2",
        ]
        let resolve = ImageProbe.makeResolver()
        let expected: [String: String] = [
            root + "/real/a.qcow2": real + "/a.qcow2", root + "/real/b.qcow2": real + "/b.qcow2",
            root + "/real/ln.qcow2": real + "/sub/c.qcow2", root + "/link/a.qcow2": real + "/a.qcow2",
            root + "/link/b.qcow2": real + "/b.qcow2", root + "/link/ln.qcow2": real + "/sub/c.qcow2",
            root + "/gone/x.qcow2": root + "/gone/x.qcow2", root + "/gone/y.qcow2": root + "/gone/y.qcow2",
            root + "/real/sub/c.qcow2": real + "/sub/c.qcow2", root + "/link/sub/../a.qcow2": real + "/a.qcow2",
            root + "/real//b.qcow2": real + "/b.qcow2", "/": "/",
            "/nonexistent-vc-dir/z.raw": "/nonexistent-vc-dir/z.raw", "/vc-root-file.img": "/vc-root-file.img",
        ]
        for p in paths {
            let r = resolve(p)
            #expect(r == expected[p], "\(p)")
            #expect(r == ImageProbe.resolver(p), "shared resolver differs for \(p)")
            if fm.fileExists(atPath: p) { #expect(r == ImageProbe.canonical(p)) }
        }
    }
}
