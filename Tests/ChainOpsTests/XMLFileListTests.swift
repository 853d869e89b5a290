import ChainOps
import Foundation
import Testing

/// `--domain-xml DIR` reads every `*.xml` below DIR, in a stable (sorted) order, and nothing else.
@Suite struct XMLFileListTests {
    @Test func listsXMLFilesRecursivelySorted() throws {
        let root = NSTemporaryDirectory() + "vc-list-" + UUID().uuidString.prefix(8)
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/b/deeper", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/a", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/outside", withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: root) }
        let dir = root + "/dumps"
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["z.xml", "m.xml", "notes.txt", "x.xml.bak", ".hidden.xml"] {
            fm.createFile(atPath: dir + "/" + f, contents: Data())
        }
        try fm.createDirectory(atPath: dir + "/sub/deeper", withIntermediateDirectories: true)
        fm.createFile(atPath: dir + "/sub/deeper/k.xml", contents: Data())
        fm.createFile(atPath: dir + "/sub/a.xml", contents: Data())
        fm.createFile(atPath: root + "/outside/o.xml", contents: Data())
        try fm.createSymbolicLink(atPath: dir + "/loop", withDestinationPath: dir)  // not followed: no endless walk
        try fm.createSymbolicLink(atPath: dir + "/outside", withDestinationPath: root + "/outside")

        let found = try InventoryReader.xmlFiles([dir, dir + "/"])
        let expected = [".hidden.xml", "m.xml", "sub/a.xml", "sub/deeper/k.xml", "z.xml"].map { dir + "/" + $0 }
        #expect(found == expected + expected)
        #expect(try InventoryReader.xmlFiles([dir + "/m.xml"]) == [dir + "/m.xml"])
        #expect(throws: ObserveError.self) { try InventoryReader.xmlFiles([root + "/none"]) }
    }
}
