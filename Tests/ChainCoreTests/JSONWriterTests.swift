import Testing

@testable import ChainCore

/// The streaming writer (what `plan --format json`, saved plans and `show --format json` use) must produce exactly
/// the bytes of the reference tree renderer (`JSONOut`, in the tests).
@Suite struct JSONWriterTests {
    static func write(_ v: JSONOut, into w: inout JSONWriter) {
        switch v {
        case .object(let members):
            w.beginObject()
            for (k, v) in members {
                w.key(k)
                write(v, into: &w)
            }
            w.endObject()
        case .array(let items):
            w.beginArray()
            for v in items {
                w.item()
                write(v, into: &w)
            }
            w.endArray()
        case .string(let s): w.string(s)
        case .int(let n): w.int(Int(n))
        case .uint(let n): w.uint(n)
        case .bool(let b): w.bool(b)
        case .null: w.null()
        }
    }

    static let texts = [
        "", "a", "/var/lib/libvirt/images/a b.qcow2", "quote \" and \\ backslash", "line\nbreak\ttab\rcr",
        "ctl \u{01}\u{1f}\u{7f}", "ünïcödé ← ⇒ 🙂", "\u{0}",
    ]

    static func randomValue(_ rng: inout SplitMix64, depth: Int) -> JSONOut {
        switch rng.int(0...(depth > 3 ? 4 : 6)) {
        case 0: return .string(texts[rng.int(0...(texts.count - 1))])
        case 1: return .int([Int64.min, -1, 0, 7, 10, 99, Int64.max][rng.int(0...6)])
        case 2: return .uint([0, 9, 10, 1 << 40, UInt64.max][rng.int(0...4)])
        case 3: return .bool(rng.chance(0.5))
        case 4: return .null
        case 5:
            return .array((0..<rng.int(0...4)).map { _ in randomValue(&rng, depth: depth + 1) })
        default:
            return .object((0..<rng.int(0...4)).map { i in
                ("\(texts[rng.int(0...(texts.count - 1))])\(i)", randomValue(&rng, depth: depth + 1))
            })
        }
    }

    @Test func randomDocumentsMatchTheTreeRenderer() {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<2000 {
            let v = JSONOut.object([("v", Self.randomValue(&rng, depth: 0)), ("w", Self.randomValue(&rng, depth: 0))])
            var w = JSONWriter()
            Self.write(v, into: &w)
            w.finish()
            #expect(w.bytes == v.renderBytes())
        }
    }

    /// Every character that needs an escape is found wherever it sits in a string (the writer checks eight bytes
    /// at a time, the last eight overlapping).
    @Test func escapesAreFoundAtEveryPosition() {
        for length in 1...24 {
            for position in 0..<length {
                for special in ["\"", "\\", "\n", "\u{01}", "\u{1f}", "é"] {
                    var chars = Array(repeating: "a", count: length)
                    chars[position] = special
                    let s = chars.joined()
                    var w = JSONWriter()
                    w.string(s)
                    #expect(w.bytes == Array(JSONOut.string(s).renderBytes().dropLast()), "\(length) \(position) \(special)")
                }
            }
        }
    }

    @Test func controlCharactersAreEscaped() {
        var w = JSONWriter()
        w.string("a\u{01}\"\\\n\u{1f}b")
        #expect(String(decoding: w.bytes, as: UTF8.self) == #""a\u0001\"\\\n\u001fb""#)
    }

    @Test func stringPartsAreOneString() {
        var w = JSONWriter()
        w.string(parts: "depth 5 > maxDepth 3", " (policy ", "we\"b", ", ", "p.json:4", ")")
        #expect(String(decoding: w.bytes, as: UTF8.self) == #""depth 5 > maxDepth 3 (policy we\"b, p.json:4)""#)
    }

    /// A plan large enough to be written in parallel pieces (several pieces of steps and of disks).
    static func largePlan(steps: Int, disks: Int) -> Plan {
        var rng = SplitMix64(seed: 7)
        let actions = StepAction.allCases
        var plan = Plan(host: "xml:/tmp/x \"y\"")
        for i in 0..<steps {
            let chain = (0..<rng.int(1...6)).map { "/var/lib/libvirt/images/d\(i)/l\($0).qcow2" }
            let action = actions[rng.int(0...(actions.count - 1))]
            plan.steps.append(
                Step(
                    id: i + 1, host: plan.host, domain: "dom-\(i / 2)", disk: i % 2 == 0 ? "vda" : "vdb",
                    action: action, mode: rng.chance(0.5) ? .live : .offline,
                    top: chain.first, base: rng.chance(0.3) ? nil : chain.last,
                    destination: action == .copy ? "/fast/d\(i).qcow2" : nil,
                    estimatedBytes: UInt64(rng.int(0...(1 << 40))),
                    reason: StepReason(rule: "depth \(chain.count) > maxDepth 2", policy: "web", location: "p.json:\(i)"),
                    snapshot: action == .metadataDelete ? "snap\n\(i)" : nil,
                    backingFormat: action == .rebase ? "raw" : nil,
                    expectBefore: chain, expectAfter: Array(chain.prefix(2))))
        }
        plan.blocked = (0..<5).map {
            Blocked(domain: "b\($0)", disk: "vda", code: .paused, reason: "b\($0)/vda: paused", policy: $0 % 2 == 0 ? "web" : nil)
        }
        plan.disks = (0..<disks).map { i in
            DiskPlan(
                domain: "dom-\(i)", disk: "vda", policy: "web", before: ["/a/\(i)", "/b/\(i)"], after: ["/a/\(i)"],
                stepIDs: i < steps ? [i + 1] : [])
        }
        plan.fingerprints = ["policies": "abc", "u-1/vda": "def", "u-0/vda": "0123"]
        return plan
    }

    /// Plans large enough to be written in several waves of parallel pieces: the JSON is well formed, canonically
    /// formatted, and holds every step, disk, blocked disk and fingerprint of the plan, in order.
    @Test(arguments: [(0, 0), (1, 1), (1024, 0), (1025, 2049), (4097, 8193), (9000, 10000)])
    func planJSONHoldsThePlan(steps: Int, disks: Int) throws {
        let plan = Self.largePlan(steps: steps, disks: disks)
        let json = try #require(expectCanonicalJSON(PlanRender.jsonBytes(plan)))
        #expect(json.members?.map(\.key) == [
            "formatVersion", "host", "noOp", "totalEstimatedBytes", "steps", "blocked", "disks", "fingerprints",
        ])
        #expect(json["host"]?.string == plan.host)
        #expect(json["totalEstimatedBytes"]?.number?.literal == String(plan.totalEstimatedBytes))
        let jsonSteps = try #require(json["steps"]?.elements)
        #expect(jsonSteps.count == plan.steps.count)
        for (j, s) in zip(jsonSteps, plan.steps) {
            #expect(j["id"]?.number?.intValue == s.id)
            #expect(j["action"]?.string == s.action.rawValue)
            #expect(j["mode"]?.string == s.mode.rawValue)
            #expect(j["top"]?.string == s.top && j["base"]?.string == s.base && j["destination"]?.string == s.destination)
            #expect(j["estimatedBytes"]?.number?.literal == String(s.estimatedBytes))
            #expect(j["reason"]?.string == s.reason.description)
            #expect(j["snapshot"]?.string == s.snapshot)
            #expect(j["expectBefore"]?.elements?.map { $0.string } == s.expectBefore)
            #expect(j["expectAfter"]?.elements?.map { $0.string } == s.expectAfter)
            #expect(j["description"]?.string == PlanRender.describe(s))
        }
        #expect(json["blocked"]?.elements?.map { $0["reason"]?.string } == plan.blocked.map(\.reason))
        let jsonDisks = try #require(json["disks"]?.elements)
        #expect(jsonDisks.map { $0["domain"]?.string } == plan.disks.map(\.domain))
        #expect(jsonDisks.map { $0["steps"]?.elements?.map { $0.number?.intValue } } == plan.disks.map { $0.stepIDs })
        let fingerprints = try #require(json["fingerprints"]?.members)
        #expect(fingerprints.map(\.key) == plan.fingerprints.keys.sorted())
        #expect(Dictionary(uniqueKeysWithValues: fingerprints.map { ($0.key, $0.value.string ?? "") }) == plan.fingerprints)
    }
}
