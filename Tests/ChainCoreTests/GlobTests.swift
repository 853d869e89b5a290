import Testing

@testable import ChainCore

@Suite struct GlobTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var pattern: String
        var text: String
        var pathMode: Bool
        var matches: Bool
        init(_ pattern: String, _ text: String, path pathMode: Bool = false, _ matches: Bool) {
            self.pattern = pattern
            self.text = text
            self.pathMode = pathMode
            self.matches = matches
        }
        var testDescription: String { "\(pattern) ~ \(text)\(pathMode ? " (path)" : "") → \(matches)" }
    }

    static let cases: [Case] = [
        // Literals and *
        Case("web-1", "web-1", true),
        Case("web-1", "web-10", false),
        Case("", "", true),
        Case("", "a", false),
        Case("*", "", true),
        Case("*", "anything at all", true),
        Case("web-*", "web-", true),
        Case("web-*", "web-frontend-3", true),
        Case("web-*", "db-web-1", false),
        Case("*-1", "web-1", true),
        Case("*-1", "web-10", false),
        Case("w*b*1", "web-db-1", true),
        Case("**", "a/b/c", true),
        Case("*", "a/b", true),
        // ?
        Case("vd?", "vda", true),
        Case("vd?", "vd", false),
        Case("vd?", "vdaa", false),
        Case("??", "é", true),  // é is two bytes
        // Classes
        Case("vd[ab]", "vdb", true),
        Case("vd[ab]", "vdc", false),
        Case("sd[a-c]", "sdc", true),
        Case("sd[a-c]", "sdd", false),
        Case("sd[!a]", "sdb", true),
        Case("sd[!a]", "sda", false),
        Case("sd[^a]", "sdb", true),
        Case("x[]]", "x]", true),
        Case("x[a-]", "x-", true),
        Case("x[a-]", "xa", true),
        Case("x[a", "x[a", true),
        Case("x[a", "xa", false),
        Case("[0-9][0-9]", "42", true),
        Case("[0-9][0-9]", "4x", false),
        Case("[ab]", "", false),
        // Escapes
        Case("a\\*", "a*", true),
        Case("a\\*", "ab", false),
        Case("a\\?", "a?", true),
        Case("a\\[b]", "a[b]", true),
        Case("a\\", "a\\", true),
        // Path mode: * and ? stop at /, ** crosses it
        Case("/images/golden/*", "/images/golden/base.qcow2", path: true, true),
        Case("/images/golden/*", "/images/golden/sub/base.qcow2", path: true, false),
        Case("/images/golden/**", "/images/golden/sub/base.qcow2", path: true, true),
        Case("/images/**/base.qcow2", "/images/a/b/base.qcow2", path: true, true),
        Case("/images/*/base.qcow2", "/images/a/b/base.qcow2", path: true, false),
        Case("/images/*/base.qcow2", "/images/a/base.qcow2", path: true, true),
        Case("/images/golden/?", "/images/golden/a", path: true, true),
        Case("/images/golden?a", "/images/golden/a", path: true, false),
        Case("/images/golden*", "/images/golden/a", path: true, false),
        Case("/images/*.qcow2", "/images/web.qcow2", path: true, true),
        Case("/images/*.qcow2", "/images/web.raw", path: true, false),
        Case("*", "a/b", path: true, false),
        Case("/srv/*/*.qcow2", "/srv/db/x.qcow2", path: true, true),
    ]

    @Test(arguments: cases)
    func matches(_ c: Case) {
        #expect(Glob.match(c.pattern, c.text, pathMode: c.pathMode) == c.matches)
    }

    @Test func policyMatchingUsesGlobsOnDomainAndDisk() {
        let policy = Policy(name: "p", domains: ["web-*", "www"], disks: ["vd?"], protect: ["/golden/**"])
        #expect(policy.matches(domain: "web-1", disk: "vda"))
        #expect(policy.matches(domain: "www", disk: "vdb"))
        #expect(!policy.matches(domain: "www2", disk: "vda"))
        #expect(!policy.matches(domain: "web-1", disk: "sda"))
        #expect(policy.protects(path: "/golden/a/b.qcow2"))
        #expect(!policy.protects(path: "/silver/b.qcow2"))
    }
}

@Suite struct GlobComplexityTests {
    /// Many stars against a long non-matching text: must answer (memoised), not backtrack exponentially.
    @Test func manyStarsDoNotBacktrackExponentially() {
        let pattern = String(repeating: "a*", count: 12) + "b"
        let text = String(repeating: "a", count: 40)
        #expect(!Glob.match(pattern, text))
        #expect(!Glob.match(pattern, text, pathMode: true))
        #expect(Glob.match(pattern, text + "b"))
    }
}

@Suite struct GlobFastPathTests {
    /// The allocation-free matcher for `*`/`?` patterns agrees with the general matcher on random inputs.
    @Test func fastPathAgreesWithGeneralMatcher() {
        var state: UInt64 = 0x1234_5678
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        let patternAlphabet = Array("ab*?-")
        let textAlphabet = Array("ab-")
        for _ in 0..<5000 {
            let pattern = String((0..<next(7)).map { _ in patternAlphabet[next(patternAlphabet.count)] })
            let text = String((0..<next(9)).map { _ in textAlphabet[next(textAlphabet.count)] })
            // pathMode: true never takes the fast path; without '/' in the text both semantics coincide.
            #expect(
                Glob.match(pattern, text) == Glob.match(pattern, text, pathMode: true),
                "pattern \(pattern) text \(text)")
        }
    }
}
