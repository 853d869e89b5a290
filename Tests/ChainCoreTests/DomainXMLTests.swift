@testable import ChainCore
import Foundation
import Testing

/// Reads a fixture under Tests/ChainCoreTests/Fixtures/domains.
func domainFixture(_ name: String) throws -> [UInt8] {
    let url = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        .appendingPathComponent("domains").appendingPathComponent(name)
    return Array(try Data(contentsOf: url))
}

func parse(_ name: String) throws -> Domain {
    try DomainXML.parseDomain(domainFixture(name), file: name).domain
}

func paths(_ disk: Disk?) -> [String] { disk?.chain?.layers.compactMap(\.source.path) ?? [] }

let fixDir = "/var/lib/libvirt/images/vcfix"

@Suite struct DomainXMLTests {
    @Test func liveRunningChainFromRealDaemon() throws {
        let d = try parse("live-running-chain.xml")
        #expect(d.name == "vcfix-run")
        #expect(d.state == .running)
        #expect(d.uuid.count == 36)
        let vda = try #require(d.disks.first { $0.target == "vda" })
        #expect(paths(vda) == ["c.qcow2", "b.qcow2", "a.qcow2", "base.raw"].map { "\(fixDir)/\($0)" })
        let chain = try #require(vda.chain)
        #expect(chain.complete)
        #expect(chain.origin == .xml)
        #expect(chain.layers.map(\.index) == [2, 3, 4, 5])
        #expect(chain.layers.map(\.format) == ["qcow2", "qcow2", "qcow2", "raw"])
        #expect(vda.alias == "virtio-disk0")
        #expect(vda.isChainDisk)
        // The empty cdrom is not a chain.
        let sdc = try #require(d.disks.first { $0.target == "sdc" })
        #expect(sdc.device == "cdrom")
        #expect(sdc.chain == nil)
        #expect(!sdc.isChainDisk)
        #expect(sdc.readonly)
    }

    @Test func shutOffGuestHasNoChainInXML() throws {
        let d = try parse("shutoff-no-chain.xml")
        #expect(d.state == .shutoff)
        let vda = try #require(d.disks.first { $0.target == "vda" })
        let chain = try #require(vda.chain)
        #expect(chain.layers.count == 1)
        #expect(!chain.complete, "absent <backingStore> means: probe")
        #expect(chain.layers[0].index == nil)
    }

    @Test func chainEndedByTerminatorAfterFullPull() throws {
        let vda = try #require(try parse("live-after-full-pull.xml").disks.first { $0.target == "vda" })
        let chain = try #require(vda.chain)
        #expect(chain.layers.count == 1)
        #expect(chain.complete, "<backingStore/> ends the chain")
    }

    @Test func partialPullKeepsIndexesNotPositions() throws {
        let vda = try #require(try parse("live-after-partial-pull.xml").disks.first { $0.target == "vda" })
        let chain = try #require(vda.chain)
        #expect(paths(vda) == ["s1.qcow2", "a.qcow2", "base.raw"].map { "\(fixDir)/\($0)" })
        #expect(chain.complete)
        let indexes = chain.layers.compactMap(\.index)
        #expect(indexes.count == 3)
        #expect(indexes != [1, 2, 3], "index is a stable ID, not a position")
    }

    @Test func unterminatedInactiveChainAfterSnapshot() throws {
        let d = try parse("inactive-after-snapshot-unterminated.xml")
        #expect(d.state == .shutoff)
        let vda = try #require(d.disks.first { $0.target == "vda" })
        #expect(paths(vda) == ["\(fixDir)/s1.qcow2", "\(fixDir)/c.qcow2"])
        #expect(vda.chain?.complete == false)
    }

    @Test func liveAfterSnapshotHasOverlayOnTop() throws {
        let vda = try #require(try parse("live-after-snapshot.xml").disks.first { $0.target == "vda" })
        #expect(paths(vda).first == "\(fixDir)/s1.qcow2")
        #expect(paths(vda).count == 5)
        #expect(vda.chain?.complete == true)
    }

    @Test func mirrorOfActiveCommitAndCopy() throws {
        let commit = try #require(try parse("live-active-commit-mirror-ready.xml").disks.first { $0.target == "vda" })
        #expect(commit.mirror?.job == "active-commit")
        #expect(commit.mirror?.ready == true)
        let copy = try #require(try parse("live-copy-mirror.xml").disks.first { $0.target == "vda" })
        #expect(copy.mirror?.job == "copy")
        #expect(copy.mirror?.source?.path == "\(fixDir)/copy.qcow2")
    }

    @Test func snapshotXMLNamesOverlayAndState() throws {
        let parsed = try DomainXML.parseSnapshot(domainFixture("snapshot-s1.xml"))
        #expect(parsed.snapshot.name == "s1")
        #expect(parsed.snapshot.state == "disk-snapshot")
        #expect(parsed.domainName == "vcfix-run")
        let vda = try #require(parsed.snapshot.disks.first { $0.target == "vda" })
        #expect(vda.kind == "external")
        #expect(vda.overlay?.path == "\(fixDir)/s1.qcow2")
        #expect(vda.stateSources.first?.path == "\(fixDir)/c.qcow2")
        let sdc = try #require(parsed.snapshot.disks.first { $0.target == "sdc" })
        #expect(sdc.kind == "no")
        #expect(sdc.overlay == nil)
    }

    @Test func everySourceType() throws {
        let d = try parse("synthetic-mixed-sources.xml")
        #expect(d.name == "mixed & sources", "entities are decoded")
        #expect(d.state == .running)
        func disk(_ t: String) throws -> Disk { try #require(d.disks.first { $0.target == t }) }

        let nbd = try disk("vda")
        #expect(nbd.chain?.layers.first?.source.kind == .network)
        #expect(nbd.chain?.layers.first?.source.networkProtocol == "nbd")
        #expect(nbd.chain?.layers.first?.source.hosts == ["10.0.0.5:10809"])
        #expect(nbd.chain?.layers.first?.source.key == "nbd://10.0.0.5:10809/export1")

        let rbd = try disk("vdb")
        #expect(rbd.chain?.layers.first?.source.hosts == ["mon1:6789", "mon2:6789"])
        #expect(rbd.chain?.layers.first?.source.name == "pool/image1")

        let vol = try disk("vdc")
        #expect(vol.chain?.layers.map(\.source.key) == ["volume:default/vol1.qcow2", "volume:default/base-vol.qcow2"])
        #expect(vol.chain?.complete == true)

        let block = try disk("vdd")
        #expect(block.chain?.layers.map(\.source.kind) == [.block, .block])
        #expect(paths(block) == ["/dev/vg0/top", "/dev/vg0/base"])

        let iso = try disk("sda")
        #expect(iso.device == "cdrom")
        #expect(iso.chain != nil)
        #expect(!iso.isChainDisk, "a cdrom with media is still not a managed chain")

        let floppy = try disk("fda")
        #expect(!floppy.isChainDisk)

        let empty = try disk("sdb")
        #expect(empty.chain == nil)

        let enc = try disk("vde")
        #expect(enc.chain?.layers.first?.encrypted == true)
        #expect(enc.chain?.layers.last?.encrypted == false)

        let shared = try disk("vdf")
        #expect(shared.shareable)
        #expect(shared.chain?.layers.count == 1)

        let lun = try disk("sdd")
        #expect(lun.device == "lun")
        #expect(lun.readonly)
        #expect(lun.isChainDisk)

        let gluster = try disk("vdg")
        #expect(gluster.chain?.layers.count == 2)
        #expect(gluster.chain?.complete == false, "unterminated network chain")

        let nvme = try disk("vdh")
        #expect(nvme.chain?.layers.first?.source.kind == .nvme)
    }

    @Test func relativeNamesAreResolvedAgainstTheReferencingImage() throws {
        let d = try parse("synthetic-relative-and-loop.xml")
        let vda = try #require(d.disks.first { $0.target == "vda" })
        #expect(paths(vda) == ["/images/fast/s5.qcow2", "/images/copy-full.qcow2", "/images/golden/base.raw"])
        #expect(vda.chain?.layers[1].source.written == "../copy-full.qcow2")
    }

    @Test func unnormalisedPathsAndLoop() throws {
        let d = try parse("synthetic-relative-and-loop.xml")
        let vdb = try #require(d.disks.first { $0.target == "vdb" })
        #expect(paths(vdb) == ["/images/b/top.qcow2", "/images/b/mid.qcow2"])
        #expect(vdb.chain?.problems == [.loop(path: "/images/b/top.qcow2")])
        #expect(vdb.chain?.layers[1].formatRecorded == false, "no <format>")
        let vdc = try #require(d.disks.first { $0.target == "vdc" })
        #expect(vdc.chain?.complete == false)
    }

    @Test func resolverCanonicalisesEveryPath() throws {
        let d = try DomainXML.parseDomain(
            domainFixture("synthetic-relative-and-loop.xml"),
            resolve: { $0.replacingOccurrences(of: "/images/", with: "/real/") }
        ).domain
        let vda = try #require(d.disks.first { $0.target == "vda" })
        #expect(paths(vda) == ["/real/fast/s5.qcow2", "/real/copy-full.qcow2", "/real/golden/base.raw"])
    }

    @Test func referenceIndexAcrossDomainsAndSnapshots() throws {
        var a = try parse("live-running-chain.xml")
        var b = try parse("shutoff-no-chain.xml")
        // b shares base.raw with a (as it does on disk; the probe would find it).
        b.disks[0].chain?.layers.append(Layer(source: .file("\(fixDir)/base.raw"), format: "raw"))
        let snap = try DomainXML.parseSnapshot(domainFixture("snapshot-s1.xml")).snapshot
        a.snapshots = [snap]
        let inv = Inventory(host: "test", domains: [a, b])
        let base = "\(fixDir)/base.raw"
        #expect(inv.references[base]?.count == 2)
        #expect(inv.isShared(base, domain: a.name, disk: "vda"))
        #expect(!inv.isShared("\(fixDir)/b.qcow2", domain: a.name, disk: "vda"))
        // c.qcow2 is the snapshot's saved state: shared with the snapshot.
        let c = "\(fixDir)/c.qcow2"
        #expect(inv.foreignReferences(of: c, domain: a.name, disk: "vda").map(\.kind) == [.snapshotState(snapshot: "s1")])
    }

    @Test(arguments: [
        ("", "1:1: document is empty"),
        ("<domain><name>x</name>", "1:1: element <domain> is not closed"),
        ("<domain><name>x</nam></domain>", "1:16: end tag </nam> does not match start tag <name>"),
        ("<domain a='1' a='2'/>", "1:15: duplicate attribute 'a'"),
        ("<domain a=1/>", "1:11: expected a quoted attribute value"),
        ("<domain>&bogus;</domain>", "1:9: undefined entity '&bogus;'"),
        ("<domain/><x/>", "1:10: extra content after the root element"),
        ("<domain><!-- a -- b --></domain>", "1:16: '--' is not allowed inside a comment"),
    ])
    func malformedXMLIsAnErrorWithPosition(xml: String, message: String) {
        #expect(throws: XMLError.self) { try XMLReader.parse(xml) }
        do {
            _ = try XMLReader.parse(xml)
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func notADomain() {
        #expect {
            try DomainXML.parseDomain(Array("<network><name>x</name></network>".utf8), file: "n.xml")
        } throws: { error in
            "\(error)" == "n.xml: root element is <network>, expected <domain>"
        }
    }

    @Test func cdataCommentsAndProcessingInstructionsAreHandled() throws {
        let el = try XMLReader.parse(
            "<?xml version='1.0'?>\n<!DOCTYPE domain>\n<domain><?pi x?><name><![CDATA[a<b]]>&#x41;&#66;</name></domain>"
        )
        #expect(el.child("name")?.text == "a<bAB")
    }

    /// An element's text is its own character data and CDATA, in order, without its children's text, comments or
    /// processing instructions; blank text (even written as references) is no text.
    @Test(arguments: [
        ("<a>  x <b>inner</b> y <!-- c --> <![CDATA[ <z> ]]> &amp; <?pi q?> </a>",
         "  x " + " y " + " " + " <z> " + " & " + " "),
        ("<a>&#32;<b/>\n</a>", ""),
        ("<a>t1<b x=\"1>2\"/>t2<c y='>'>in</c>t3</a>", "t1t2t3"),
        ("<a>p<a>q</a>r</a>", "pr"),
        ("<a> web-1 </a>", " web-1 "),
        ("<a>x&lt;y</a>", "x<y"),
        ("<a><![CDATA[  ]]><b>t</b></a>", ""),
        ("<a><!-- only --></a>", ""),
        ("<a/>", ""),
    ])
    func elementTextIsItsOwnCharacterData(xml: String, text: String) throws {
        let el = try XMLReader.parse(xml)
        #expect(el.text == text)
        // The same through the index cursor the domain reader uses.
        let doc = try XMLReader.document(Array(xml.utf8)) { _ in .whole }
        #expect(doc.text == text)
        #expect(doc.doc.withCursor { $0.text(doc.index) } == text)
    }
}

@Suite struct PathUtilTests {
    /// The fast "already normal" check agrees with normalising by components, on every short path over `/ . a`.
    @Test func normalAbsoluteCheckAgreesWithNormalising() {
        func reference(_ p: String) -> Bool {
            guard p.hasPrefix("/") else { return false }
            var parts: [Substring] = []
            for comp in p.split(separator: "/") where comp != "." {
                if comp == ".." { if !parts.isEmpty { parts.removeLast() } } else { parts.append(comp) }
            }
            return "/" + parts.joined(separator: "/") == p
        }
        var paths = [""]
        for _ in 0..<7 { paths = paths + paths.flatMap { p in ["/", ".", "a"].map { p + $0 } } }
        for p in Set(paths) {
            #expect(PathUtil.isNormalAbsolute(p) == reference(p), "\(p)")
        }
    }

    @Test(arguments: [
        ("/a/b/../c", nil, "/a/c"),
        ("../x.qcow2", "/images/fast", "/images/x.qcow2"),
        ("x.qcow2", "/images", "/images/x.qcow2"),
        ("//a//./b/", nil, "/a/b"),
        ("/../a", nil, "/a"),
        ("/a/b/c/../../d", nil, "/a/d"),
    ] as [(String, String?, String)])
    func normalize(path: String, dir: String?, expected: String) {
        #expect(PathUtil.normalize(path, relativeTo: dir) == expected)
    }
}
