@testable import ChainCore
import Foundation
import Testing

/// Damaged domain and snapshot XML (bytes deleted, inserted, replaced, truncated) is either read or refused with an
/// error that has a position; it never crashes the reader, and whatever is read can be walked and rendered.
@Suite struct XMLMutationTests {
    static let fixtures = [
        "live-running-chain.xml", "live-after-snapshot.xml", "live-copy-mirror.xml", "inactive-after-full-pull.xml",
        "synthetic-mixed-sources.xml", "synthetic-relative-and-loop.xml", "snapshot-s1.xml",
    ]
    static let interesting: [UInt8] = Array("<>/='\"&;![]-? \n\tx#".utf8) + [0x00, 0xC3, 0xA9, 0xFF]

    /// Reads `bytes` as the fixture kind, and renders what was read.
    static func read(_ bytes: [UInt8], name: String) -> Result<Void, DomainXMLError> {
        if name.hasPrefix("snapshot") {
            return Result { () throws(DomainXMLError) in
                let s = try DomainXML.parseSnapshot(bytes, file: name)
                _ = s.snapshot.disks.map(\.target)
            }
        }
        return Result { () throws(DomainXMLError) in
            let parsed = try DomainXML.parseDomain(bytes, file: name)
            let report = ShowReport(inventory: Inventory(host: "xml", domains: [parsed.domain]))
            _ = report.text()
            _ = report.jsonBytes()
        }
    }

    @Test(arguments: fixtures)
    func damagedXMLNeverCrashes(name: String) throws {
        let original = try domainFixture(name)
        var rng = SplitMix64(seed: UInt64(name.utf8.count) &* 2_654_435_761)
        var read = 0
        var refused = 0
        for _ in 0..<1000 {
            var bytes = original
            for _ in 0..<rng.int(1...4) {
                guard !bytes.isEmpty else { break }
                let at = rng.int(0...(bytes.count - 1))
                let byte = Self.interesting[rng.int(0...(Self.interesting.count - 1))]
                switch rng.int(0...3) {
                case 0: bytes.remove(at: at)
                case 1: bytes.insert(byte, at: at)
                case 2: bytes[at] = byte
                default: bytes.removeLast(bytes.count - at)
                }
            }
            switch Self.read(bytes, name: name) {
            case .success:
                read += 1
            case .failure(let e):
                refused += 1
                #expect(e.description.hasPrefix("\(name): "), "\(e)")
                #expect(!e.message.isEmpty)
            }
            // The generic tree of the same bytes: every element's text and attributes can be read.
            if let root = try? XMLReader.document(bytes, keep: { _ in .whole }) {
                var stack = [root]
                while let node = stack.popLast() {
                    _ = node.text
                    _ = node.attributes
                    stack += node.children
                }
            }
        }
        #expect(read + refused == 1000)
        #expect(refused > 0, "the mutations should break some documents")
    }
}
