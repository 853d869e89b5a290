import Foundation
import Testing

@testable import ChainCore

/// Policy fixtures: `Tests/ChainCoreTests/Fixtures/policies`, copied into the test bundle.
enum PolicyFixtures {
    static func root() throws -> String {
        let url = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        return url.path + "/policies"
    }

    /// Loads fixture paths (relative to the fixture root) from disk.
    static func load(_ paths: String...) throws -> PolicyLoadResult {
        let root = try root()
        return PolicyLoader.load(paths: paths.map { root + "/" + $0 })
    }

    /// The diagnostics as printed, with the fixture root removed from file names so that they read as relative.
    static func rendered(_ result: PolicyLoadResult) throws -> [String] {
        let prefix = try root() + "/"
        return result.diagnostics.map { diagnostic in
            let text = diagnostic.description
            return text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : text
        }
    }

    static func inMemory(_ texts: [String: String], paths: [String]) -> PolicyLoadResult {
        PolicyLoader.load(paths: paths, fileSystem: InMemoryFileSystem(texts: texts))
    }
}

@Suite struct PolicyLoaderTests {
    // MARK: Every kind of error, exact text

    struct ErrorCase: CustomTestStringConvertible, Sendable {
        var file: String
        var expected: [String]
        var testDescription: String { file }
    }

    static let allowedPolicyKeys =
        "allowed: name, match, maxDepth, flatten, protect, storage, snapshotMetadata, shutoff, retired, bandwidthMiBps"
    static let nameRule = "expected a name of lowercase letters, digits and '-' that starts with a letter or digit"

    static let errorCases: [ErrorCase] = [
        ErrorCase(
            file: "errors/syntax-empty.json",
            expected: [
                "errors/syntax-empty.json:1:1: the file is empty; "
                    + #"expected a JSON object with "version" and "policies""#
            ]),
        ErrorCase(
            file: "errors/syntax-blank.json",
            expected: [
                "errors/syntax-blank.json:1:1: the file is empty; "
                    + #"expected a JSON object with "version" and "policies""#
            ]),
        ErrorCase(
            file: "errors/syntax-trailing-comma.json",
            expected: [
                "errors/syntax-trailing-comma.json:4:25: trailing comma is not allowed"
            ]),
        ErrorCase(
            file: "errors/syntax-comment.json",
            expected: [
                "errors/syntax-comment.json:2:3: comments are not allowed in JSON"
            ]),
        ErrorCase(
            file: "errors/syntax-missing-comma.json",
            expected: [
                "errors/syntax-missing-comma.json:3:3: expected ',' or '}' after object member"
            ]),
        ErrorCase(
            file: "errors/syntax-unclosed.json",
            expected: [
                "errors/syntax-unclosed.json:5:1: unexpected end of input; the array opened at 3:15 is not closed"
            ]),
        ErrorCase(
            file: "errors/syntax-duplicate-key.json",
            expected: [
                #"errors/syntax-duplicate-key.json:3:3: version: duplicate key "version" (first defined at 2:3)"#
            ]),
        ErrorCase(
            file: "errors/syntax-invalid-utf8.json",
            expected: [
                "errors/syntax-invalid-utf8.json:3:33: invalid UTF-8 (byte 0xFF); the text must be UTF-8"
            ]),
        ErrorCase(
            file: "errors/root-array.json",
            expected: [
                #"errors/root-array.json:1:1: expected a JSON object with "version" and "policies", got array"#
            ]),
        ErrorCase(
            file: "errors/unknown-key.json",
            expected: [
                #"errors/unknown-key.json:6:7: policies[0].maxDepht: unknown key "maxDepht"; did you mean "maxDepth"? "#
                    + allowedPolicyKeys,
                #"errors/unknown-key.json:7:18: policies[0].match.domain: unknown key "domain"; "#
                    + #"did you mean "domains"? "#
                    + "allowed: domains, disks",
                #"errors/unknown-key.json:8:7: policies[0].activeDir: unknown key "activeDir"; it belongs inside "#
                    + #""storage"; "# + allowedPolicyKeys,
                #"errors/unknown-key.json:9:7: policies[0].colour: unknown key "colour"; "# + allowedPolicyKeys,
                #"errors/unknown-key.json:12:3: Version: unknown key "Version"; did you mean "version"? "#
                    + "allowed: version, policies",
            ]),
        ErrorCase(
            file: "errors/wrong-types.json",
            expected: [
                "errors/wrong-types.json:6:29: policies[0].match.domains: "
                    + "expected a non-empty array of non-empty strings, "
                    + #"got string; write ["web-*"]"#,
                "errors/wrong-types.json:6:48: policies[0].match.disks[0]: expected a non-empty string, got 1",
                "errors/wrong-types.json:7:19: policies[0].maxDepth: expected an integer ≥ 1, got string",
                "errors/wrong-types.json:8:18: policies[0].flatten: expected one of: none, keep-base, full; got 1",
                "errors/wrong-types.json:9:18: policies[0].protect: expected an array of absolute path globs, "
                    + "got string; "
                    + #"write ["/srv/golden/*"]"#,
                "errors/wrong-types.json:10:18: policies[0].storage: expected an object, got array",
                "errors/wrong-types.json:11:25: policies[0].bandwidthMiBps: expected an integer ≥ 0, got boolean",
                "errors/wrong-types.json:12:18: policies[0].shutoff: expected one of: offline, skip; got null",
                "errors/wrong-types.json:14:5: policies[1]: expected an object, got string",
            ]),
        ErrorCase(
            file: "errors/bad-enums.json",
            expected: [
                #"errors/bad-enums.json:6:18: policies[0].flatten: expected one of: none, keep-base, full; got "flat""#,
                "errors/bad-enums.json:7:27: policies[0].snapshotMetadata: expected one of: prune, keep; "
                    + #"got "Prune" (did you mean "prune"?)"#,
                "errors/bad-enums.json:8:18: policies[0].shutoff: expected one of: offline, skip; "
                    + #"got "offlne" (did you mean "offline"?)"#,
                #"errors/bad-enums.json:9:18: policies[0].retired: expected one of: keep, delete; got "remove""#,
            ]),
        ErrorCase(
            file: "errors/bad-names.json",
            expected: [
                #"errors/bad-names.json:4:15: policies[0].name: \#(nameRule), got "Web_Tier""#,
                #"errors/bad-names.json:5:15: policies[1].name: \#(nameRule), got "-web""#,
                #"errors/bad-names.json:6:15: policies[2].name: \#(nameRule), got """#,
                #"errors/bad-names.json:7:15: policies[3].name: \#(nameRule), got 42"#,
                #"errors/bad-names.json:8:15: policies[4].name: \#(nameRule), got "db tier""#,
            ]),
        ErrorCase(
            file: "errors/missing-version.json",
            expected: [
                #"errors/missing-version.json:1:1: missing required key "version""#,
                #"errors/missing-version.json:3:5: policies[0]: missing required key "name""#,
            ]),
        ErrorCase(
            file: "errors/missing-policies.json",
            expected: [
                #"errors/missing-policies.json:1:1: missing required key "policies""#
            ]),
        ErrorCase(
            file: "errors/version-2.json",
            expected: [
                "errors/version-2.json:2:14: version: unsupported policy format version 2; "
                    + "this virt-chain reads version 1"
            ]),
        ErrorCase(
            file: "errors/version-string.json",
            expected: [
                "errors/version-string.json:1:14: version: expected the integer 1, got string"
            ]),
        ErrorCase(
            file: "errors/paths.json",
            expected: [
                #"errors/paths.json:6:19: policies[0].protect[0]: expected an absolute path glob, got "golden/*""#,
                "errors/paths.json:6:40: policies[0].protect[2]: "
                    + "expected an absolute path glob without '..' components, "
                    + #"got "/srv/../etc/*""#,
                #"errors/paths.json:7:33: policies[0].storage.activeDir: expected an absolute path, got "vms/fast""#,
                "errors/paths.json:11:33: policies[1].storage.activeDir: expected an absolute path without '..' "
                    + #"components, got "/srv/vms/..""#,
            ]),
        ErrorCase(
            file: "errors/numbers.json",
            expected: [
                "errors/numbers.json:4:41: policies[0].maxDepth: expected an integer ≥ 1, got 0",
                "errors/numbers.json:4:62: policies[0].bandwidthMiBps: expected an integer ≥ 0, got -1",
                "errors/numbers.json:5:39: policies[1].maxDepth: expected an integer ≥ 1, got 2.5",
                "errors/numbers.json:5:62: policies[1].bandwidthMiBps: expected an integer ≥ 0, got 1e3",
                "errors/numbers.json:6:41: policies[2].bandwidthMiBps: expected an integer ≥ 0, "
                    + "got 99999999999999999999 (too large)",
            ]),
        ErrorCase(
            file: "errors/empty-match.json",
            expected: [
                "errors/empty-match.json:4:51: policies[0].match.domains: "
                    + "expected a non-empty array of non-empty strings, "
                    + "got an empty array",
                #"errors/empty-match.json:4:72: policies[0].match.disks[1]: expected a non-empty string, got """#,
            ]),
        ErrorCase(
            file: "errors/contradiction.json",
            expected: [
                #"errors/contradiction.json:4:63: policies[0].maxDepth: maxDepth 1 contradicts flatten "keep-base", "#
                    + "which keeps two images (base ← active); use flatten \"full\" for one self-contained image, "
                    + "or a maxDepth of at least 2"
            ]),
        ErrorCase(
            file: "errors/many-errors.json",
            expected: [
                #"errors/many-errors.json:9:15: policies[1].name: \#(nameRule), got "Bad""#,
                "errors/many-errors.json:10:19: policies[1].maxDepth: expected an integer ≥ 1, got 0",
                "errors/many-errors.json:11:18: policies[1].flatten: "
                    + #"expected one of: none, keep-base, full; got "flat""#,
                "errors/many-errors.json:12:29: policies[1].match.domains: expected a non-empty array of non-empty "
                    + "strings, got an empty array",
                #"errors/many-errors.json:12:33: policies[1].match.disk: unknown key "disk"; did you mean "disks"? "#
                    + "allowed: domains, disks",
                "errors/many-errors.json:13:19: policies[1].protect[0]: "
                    + #"expected an absolute path glob, got "relative/*""#,
                #"errors/many-errors.json:14:7: policies[1].extra: unknown key "extra"; "# + allowedPolicyKeys,
                #"errors/many-errors.json:16:5: policies[2]: missing required key "name""#,
            ]),
    ]

    @Test(arguments: errorCases)
    func everyErrorIsReportedWithFileLineColumnPathAndWhatIsAllowed(_ errorCase: ErrorCase) throws {
        let result = try PolicyFixtures.load(errorCase.file)
        #expect(try PolicyFixtures.rendered(result) == errorCase.expected)
        #expect(!result.isValid)
        #expect(result.files.count == 1)
    }

    @Test func diagnosticCodes() throws {
        func codes(_ file: String) throws -> [PolicyDiagnostic.Code] {
            try PolicyFixtures.load(file).diagnostics.map(\.code)
        }
        #expect(try codes("errors/syntax-comment.json") == [.syntax])
        #expect(try codes("errors/syntax-empty.json") == [.syntax])
        #expect(try codes("errors/syntax-invalid-utf8.json") == [.syntax])
        #expect(try codes("errors/syntax-duplicate-key.json") == [.duplicateKey])
        #expect(try codes("errors/root-array.json") == [.wrongType])
        #expect(try codes("errors/version-2.json") == [.unsupportedVersion])
        #expect(try codes("errors/missing-version.json") == [.missingKey, .missingKey])
        #expect(try codes("errors/bad-enums.json") == [.invalidValue, .invalidValue, .invalidValue, .invalidValue])
        #expect(try codes("errors/contradiction.json") == [.contradiction])
        #expect(try codes("errors/unknown-key.json").allSatisfy { $0 == .unknownKey })
        #expect(try codes("dup") == [.duplicateName])
        #expect(try codes("does-not-exist.json") == [.unreadable])
    }

    @Test func aValidPolicyInAFileWithErrorsIsStillReturnedButTheRunIsInvalid() throws {
        let result = try PolicyFixtures.load("errors/many-errors.json")
        #expect(result.policies.map(\.name) == ["good"])
        #expect(!result.isValid)
        let contradiction = try PolicyFixtures.load("errors/contradiction.json")
        #expect(contradiction.policies.map(\.name) == ["full-deep", "keep-two"])
        #expect(contradiction.policies.map(\.effectiveMaxDepth) == [1, 2])
    }

    @Test func diagnosticPartsAreAvailableSeparately() throws {
        let root = try PolicyFixtures.root()
        let result = try PolicyFixtures.load("errors/numbers.json")
        let first = try #require(result.diagnostics.first)
        #expect(first.file == root + "/errors/numbers.json")
        #expect(first.line == 4)
        #expect(first.column == 41)
        #expect(first.path.description == "policies[0].maxDepth")
        #expect(first.message == "expected an integer ≥ 1, got 0")
        #expect(first.location == SourceLocation(file: root + "/errors/numbers.json", line: 4, column: 41))
        #expect(first.code == .invalidValue)
    }

    // MARK: Names

    @Test func duplicateNamesAcrossFilesNameBothPlaces() throws {
        let result = try PolicyFixtures.load("dup")
        #expect(
            try PolicyFixtures.rendered(result) == [
                #"dup/b.json:5:15: policies[1].name: duplicate policy name "web-tier"; it is already defined at "#
                    + "\(try PolicyFixtures.root())/dup/a.json:4:15"
            ])
        #expect(result.policies.map(\.name) == ["web-tier", "db"])
        #expect(result.files.map { $0.hasSuffix("/dup/a.json") || $0.hasSuffix("/dup/b.json") } == [true, true])
    }

    @Test func duplicateNamesWithinOneFile() {
        let text = """
            {"version": 1, "policies": [
              {"name": "a"},
              {"name": "a"}
            ]}
            """
        let result = PolicyLoader.load(sources: [PolicySource(path: "p.json", text: text)])
        #expect(
            result.diagnostics.map(\.description) == [
                #"p.json:3:12: policies[1].name: duplicate policy name "a"; it is already defined at p.json:2:12"#
            ])
    }

    @Test func namesMayUseDigitsAndHyphens() {
        let text = #"{"version": 1, "policies": [{"name": "0-web-2"}, {"name": "a"}, {"name": "x--"}]}"#
        let result = PolicyLoader.load(sources: [PolicySource(path: "p.json", text: text)])
        #expect(result.isValid)
        #expect(result.policies.map(\.name) == ["0-web-2", "a", "x--"])
    }

    // MARK: Files and directories

    @Test func directoriesAreLoadedRecursivelyInSortedOrder() throws {
        let result = try PolicyFixtures.load("tree")
        let root = try PolicyFixtures.root()
        #expect(result.files == ["tree/a.json", "tree/a/x.json", "tree/b.json"].map { root + "/" + $0 })
        #expect(result.policies.map(\.name) == ["tree-a", "tree-a-x", "tree-b1", "tree-b2"])
        #expect(result.isValid)
        // Hidden files and non-JSON files are skipped.
        #expect(!result.files.contains { $0.hasSuffix(".draft.json") || $0.hasSuffix(".txt") })
    }

    @Test func aTrailingSlashOnADirectoryDoesNotDoubleTheSlash() throws {
        let root = try PolicyFixtures.root()
        let result = PolicyLoader.load(paths: [root + "/tree/"])
        #expect(result.files.first == root + "/tree/a.json")
    }

    @Test func aFileNamedTwiceIsLoadedOnce() throws {
        let result = try PolicyFixtures.load("tree", "tree/b.json", "tree/../tree/a.json")
        #expect(result.files.count == 3)
        #expect(result.isValid)
    }

    @Test func anExplicitFileNeedNotEndInJSON() {
        let result = PolicyFixtures.inMemory(
            ["conf/policy.txt": #"{"version": 1, "policies": [{"name": "x"}]}"#],
            paths: ["conf/policy.txt"])
        #expect(result.policies.map(\.name) == ["x"])
    }

    @Test func filesAreNamedAsTheUserGaveThem() {
        let texts = [
            "policies/web.json": #"{"version": 1, "policies": [{"name": "web", "maxDepth": 0}]}"#,
            "policies/sub/db.json": #"{"version": 1, "policies": [{"name": "db"}]}"#,
        ]
        let result = PolicyFixtures.inMemory(texts, paths: ["policies"])
        #expect(result.files == ["policies/sub/db.json", "policies/web.json"])
        #expect(
            result.diagnostics.map(\.description) == [
                "policies/web.json:1:57: policies[0].maxDepth: expected an integer ≥ 1, got 0"
            ])
        #expect(result.policies.map(\.location) == [SourceLocation(file: "policies/sub/db.json", line: 1, column: 29)])
        let dotted = PolicyFixtures.inMemory(texts, paths: ["./policies/"])
        #expect(dotted.files == ["./policies/sub/db.json", "./policies/web.json"])
    }

    @Test func missingAndUnreadableFilesAreErrorsAndOtherFilesStillLoad() {
        let fileSystem = InMemoryFileSystem(
            files: ["p/a.json": Array(#"{"version": 1, "policies": [{"name": "a"}]}"#.utf8)],
            unreadable: ["p/secret.json": "Permission denied"])
        let result = PolicyLoader.load(paths: ["missing.json", "p", "p/gone"], fileSystem: fileSystem)
        #expect(
            result.diagnostics.map(\.description) == [
                "missing.json: no such file or directory",
                "p/gone: no such file or directory",
                "p/secret.json: cannot read: Permission denied",
            ])
        #expect(result.diagnostics.map(\.code) == [.unreadable, .unreadable, .unreadable])
        #expect(result.files == ["p/a.json", "p/secret.json"])
        #expect(result.policies.map(\.name) == ["a"])
    }

    @Test func aMissingFileOnDiskIsAnError() throws {
        let root = try PolicyFixtures.root()
        let result = PolicyLoader.load(paths: [root + "/nope.json"])
        #expect(result.diagnostics.map(\.description) == [root + "/nope.json: no such file or directory"])
        #expect(result.emptyRunError(allowEmpty: false) == nil)
    }

    @Test func aDirectoryNamedAsAFileIsListed() throws {
        let root = try PolicyFixtures.root()
        let local = LocalFileSystem()
        #expect(local.status(of: root + "/tree") == .directory)
        #expect(local.status(of: root + "/tree/a.json") == .file)
        #expect(local.status(of: root + "/tree/none") == .missing)
        #expect(throws: FileSystemError.self) { try local.read(root + "/tree/none") }
        #expect(throws: FileSystemError.self) { try local.entries(of: root + "/none") }
        #expect(try local.entries(of: root + "/tree").sorted().contains("a.json"))
    }

    // MARK: Defaults and values

    @Test func defaultsAreApplied() throws {
        let result = try PolicyFixtures.load("defaults.json")
        #expect(result.isValid)
        let file = try PolicyFixtures.root() + "/defaults.json"
        let minimal = try #require(result.policies.first)
        #expect(minimal == Policy(name: "minimal", location: SourceLocation(file: file, line: 4, column: 5)))
        #expect(minimal.domains == ["*"])
        #expect(minimal.disks == ["*"])
        #expect(minimal.maxDepth == nil)
        #expect(minimal.flatten == .none)
        #expect(minimal.protect == [])
        #expect(minimal.activeDir == nil)
        #expect(minimal.snapshotMetadata == .prune)
        #expect(minimal.shutoff == .offline)
        #expect(minimal.retired == .keep)
        #expect(minimal.bandwidthMiBps == 0)
    }

    @Test func activeDirIsNormalised() throws {
        let result = try PolicyFixtures.load("defaults.json")
        #expect(result.policies.last?.activeDir == "/srv/fast/vms")
        func activeDir(_ path: String) -> String? {
            let text = #"{"version": 1, "policies": [{"name": "n", "storage": {"activeDir": "\#(path)"}}]}"#
            return PolicyLoader.load(sources: [PolicySource(path: "p.json", text: text)]).policies.first?.activeDir
        }
        #expect(activeDir("/") == "/")
        #expect(activeDir("//") == "/")
        #expect(activeDir("/srv/vms/") == "/srv/vms")
        #expect(activeDir("/srv///vms") == "/srv/vms")
        #expect(activeDir("/srv/./vms/.") == "/srv/vms")
        #expect(activeDir("/srv/..vms") == "/srv/..vms")
        #expect(activeDir("/srv/../vms") == nil)
    }

    @Test func everyValueIsRead() {
        let text = """
            {
              "version": 1,
              "policies": [
                {
                  "name": "web-tier",
                  "match": { "domains": ["web-*", "www-?"], "disks": ["vd*"] },
                  "maxDepth": 3,
                  "flatten": "keep-base",
                  "protect": ["/var/lib/libvirt/images/golden/*"],
                  "storage": { "activeDir": "/srv/fast/vms" },
                  "snapshotMetadata": "keep",
                  "shutoff": "skip",
                  "retired": "delete",
                  "bandwidthMiBps": 50
                }
              ]
            }
            """
        let result = PolicyLoader.load(sources: [PolicySource(path: "web.json", text: text)])
        #expect(result.diagnostics.isEmpty)
        #expect(
            result.policies == [
                Policy(
                    name: "web-tier", domains: ["web-*", "www-?"], disks: ["vd*"], maxDepth: 3, flatten: .keepBase,
                    protect: ["/var/lib/libvirt/images/golden/*"], activeDir: "/srv/fast/vms",
                    snapshotMetadata: .keep, shutoff: .skip, retired: .delete, bandwidthMiBps: 50,
                    location: SourceLocation(file: "web.json", line: 4, column: 5))
            ])
    }

    // MARK: Empty runs

    @Test func anEmptyDirectoryIsAnEmptyRun() throws {
        let root = try PolicyFixtures.root()
        let result = try PolicyFixtures.load("empty")
        #expect(result.isValid)
        #expect(result.files.isEmpty)
        #expect(result.policies.isEmpty)
        let error = try #require(result.emptyRunError(allowEmpty: false))
        #expect(
            error.description
                == "no policies found in \(root)/empty (no *.json files); pass --allow-empty to accept an empty run "
                + "(nothing will be managed)")
        #expect(error.code == .emptyRun)
        #expect(result.emptyRunError(allowEmpty: true) == nil)
    }

    @Test func filesWithoutPoliciesAreAnEmptyRun() throws {
        let one = PolicyFixtures.inMemory(
            ["p/zero.json": #"{"version": 1, "policies": []}"#], paths: ["p"])
        #expect(
            one.emptyRunError(allowEmpty: false)?.description
                == "no policies found in p (1 file, which declares no policy); pass --allow-empty to accept an empty "
                + "run (nothing will be managed)")
        let two = PolicyFixtures.inMemory(
            ["p/a.json": #"{"version": 1, "policies": []}"#, "q.json": #"{"version": 1, "policies": []}"#],
            paths: ["p", "q.json"])
        #expect(
            two.emptyRunError(allowEmpty: false)?.description
                == "no policies found in p, q.json (2 files, none declares a policy); pass --allow-empty to accept an "
                + "empty run (nothing will be managed)")
        #expect(two.emptyRunError(allowEmpty: true) == nil)
        let fixture = try PolicyFixtures.load("zero-policies.json")
        #expect(fixture.isValid)
        #expect(fixture.emptyRunError(allowEmpty: false) != nil)
    }

    @Test func noPathsIsAnEmptyRun() {
        let result = PolicyLoader.load(paths: [], fileSystem: InMemoryFileSystem())
        #expect(
            result.emptyRunError(allowEmpty: false)?.description
                == "no policies found (no policy paths were given); pass --allow-empty to accept an empty run "
                + "(nothing will be managed)")
    }

    @Test func aRunWithPoliciesOrWithOtherErrorsIsNotReportedAsEmpty() throws {
        #expect(try PolicyFixtures.load("tree").emptyRunError(allowEmpty: false) == nil)
        #expect(try PolicyFixtures.load("errors/version-2.json").emptyRunError(allowEmpty: false) == nil)
    }

    // MARK: Digest

    @Test func digestIsStableAndFollowsContent() throws {
        let a = PolicySource(path: "a.json", text: #"{"version": 1, "policies": [{"name": "a"}]}"#)
        let b = PolicySource(path: "b.json", text: #"{"version": 1, "policies": [{"name": "b"}]}"#)
        let digest = PolicyLoader.load(sources: [a, b]).digest
        #expect(digest.count == 64)
        #expect(PolicyLoader.load(sources: [a, b]).digest == digest)
        // Where the files are does not matter; their content and order do.
        let moved = [PolicySource(path: "x/a.json", bytes: a.bytes), PolicySource(path: "x/b.json", bytes: b.bytes)]
        #expect(PolicyLoader.load(sources: moved).digest == digest)
        #expect(PolicyLoader.load(sources: [b, a]).digest != digest)
        let changed = PolicySource(path: "b.json", text: #"{"version": 1, "policies": [{"name": "c"}]}"#)
        #expect(PolicyLoader.load(sources: [a, changed]).digest != digest)
        // Length prefixes keep file boundaries apart.
        let joined = PolicySource(path: "ab.json", bytes: a.bytes + b.bytes)
        #expect(PolicyLoader.load(sources: [joined]).digest != digest)
        // From disk it is the same digest.
        let disk = try PolicyFixtures.load("tree")
        let sources = try disk.files.map { PolicySource(path: $0, bytes: try LocalFileSystem().read($0)) }
        #expect(PolicyLoader.load(sources: sources).digest == disk.digest)
    }

    @Test func sha256MatchesKnownVectors() {
        #expect(SHA256.hexDigest([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            SHA256.hexDigest(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hexDigest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            SHA256.hexDigest([UInt8](repeating: 0x61, count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Incremental updates in odd pieces give the same digest.
        let message = Array("The quick brown fox jumps over the lazy dog, again and again and again.".utf8)
        var hasher = SHA256()
        var index = 0
        for size in [1, 3, 63, 64, 2, 200] where index < message.count {
            let end = min(message.count, index + size)
            hasher.update(message[index..<end])
            index = end
        }
        #expect(hasher.hexDigest() == SHA256.hexDigest(message))
        #expect(hasher.finalize() == hasher.finalize())
    }
}

extension PolicyLoaderTests {
    /// Matching policies to disks (PolicyMatch.swift). Nested so that `--filter PolicyLoaderTests` runs it.
    @Suite struct Matching {
        static func disk(_ target: String, device: String = "disk") -> Disk {
            Disk(target: target, device: device, chain: Chain(layers: [Layer(source: .file("/img/\(target).qcow2"))]))
        }

        @Test func aDiskMatchedByTwoOrMorePoliciesIsAnErrorAndGetsNoPolicy() throws {
            let loaded = try PolicyFixtures.load("overlap")
            #expect(loaded.isValid)
            let root = try PolicyFixtures.root()
            let domains = [
                Domain(
                    name: "web-1", uuid: "u1", state: .running,
                    disks: [
                        Self.disk("vda"), Self.disk("vdb"), Self.disk("sda"), Disk(target: "hdc", device: "cdrom"),
                    ]),
                Domain(name: "db-1", uuid: "u2", state: .shutoff, disks: [Self.disk("vda")]),
            ]
            let assignment = PolicySet(loaded.policies).assign(domains)
            let all = "all-vms (\(root)/overlap/all.json:4)"
            let web = "web-tier (\(root)/overlap/web.json:4)"
            let data = "web-data (\(root)/overlap/web.json:9)"
            let expected: [String] = [
                "domain web-1 disk vda is matched by policies \(all) and \(web); make the match patterns disjoint",
                "domain web-1 disk vdb is matched by policies \(all), \(web) and \(data); "
                    + "make the match patterns disjoint",
            ]
            #expect(assignment.diagnostics.map(\.description) == expected)
            #expect(assignment.diagnostics.allSatisfy { $0.code == .overlappingMatch })
            #expect(assignment.entries.map(\.key.description) == ["web-1/vda", "web-1/vdb", "web-1/sda", "db-1/vda"])
            #expect(assignment.policy(domain: "web-1", disk: "vda") == nil)
            #expect(assignment.entry(domain: "web-1", disk: "vda")?.isConflicting == true)
            #expect(
                assignment.entry(domain: "web-1", disk: "vdb")?.candidates.map(\.name) == [
                    "all-vms", "web-tier", "web-data",
                ])
            #expect(assignment.policy(domain: "web-1", disk: "sda")?.name == "all-vms")
            #expect(assignment.policy(domain: "db-1", disk: "vda")?.name == "all-vms")
            // A cdrom is not a chain disk.
            #expect(assignment.entry(domain: "web-1", disk: "hdc") == nil)
            #expect(assignment.managed.map(\.key.description) == ["web-1/sda", "db-1/vda"])
            // The map `plan` uses says the same.
            let map = PolicySet(loaded.policies).assignments(domains)
            #expect(map.diagnostics == assignment.diagnostics)
            #expect(map.policies == Dictionary(uniqueKeysWithValues: assignment.managed.map { ($0.key, $0.policy!) }))
            #expect(map.conflicts.keys.sorted() == assignment.entries.filter(\.isConflicting).map(\.key))
            #expect(map.conflicts[DiskKey(domain: "web-1", disk: "vda")] == expected[0])
        }

        @Test func unmatchedDisksHaveNoPolicyAndNoError() {
            let policies = [Policy(name: "web", domains: ["web-*"], disks: ["vd?"])]
            let domains = [
                Domain(name: "web-1", uuid: "u", state: .running, disks: [Self.disk("vda"), Self.disk("vdaa")]),
                Domain(name: "db-1", uuid: "v", state: .running, disks: [Self.disk("vda")]),
            ]
            let assignment = PolicySet(policies).assign(domains)
            #expect(assignment.diagnostics.isEmpty)
            #expect(assignment.policy(domain: "web-1", disk: "vda")?.name == "web")
            #expect(assignment.policy(domain: "web-1", disk: "vdaa") == nil)
            #expect(assignment.policy(domain: "db-1", disk: "vda") == nil)
            #expect(assignment.entries.count == 3)
            #expect(PolicySet(policies).candidates(domain: "web-2", disk: "vdz").map(\.name) == ["web"])
        }
    }

}

extension PolicyLoaderTests {
    /// The host configuration (HostConfigLoader.swift). Nested so that `--filter PolicyLoaderTests` runs it.
    @Suite struct HostConfiguration {
        static func load(_ text: String, resolve: (String) throws -> String = { $0 }) -> HostConfigLoadResult {
            HostConfigLoader.load(bytes: Array(text.utf8), file: "config.json", resolve: resolve)
        }

        @Test func theDefaultFileMayBeAbsent() {
            let result = HostConfigLoader.load(path: nil, fileSystem: InMemoryFileSystem())
            #expect(result.config == HostConfig.defaults)
            #expect(result.diagnostics.isEmpty)
            #expect(result.file == nil)
        }

        @Test func theDefaultFileIsReadWhenPresent() {
            let fileSystem = InMemoryFileSystem(texts: [HostConfigLoader.defaultPath: #"{"maxParallelJobs": 4}"#])
            let result = HostConfigLoader.load(path: nil, fileSystem: fileSystem)
            #expect(result.config?.maxParallelJobs == 4)
            #expect(result.config?.allowedRoots == HostConfig.defaults.allowedRoots)
            #expect(result.file == HostConfigLoader.defaultPath)
        }

        @Test func anExplicitFileMustExist() {
            let result = HostConfigLoader.load(path: "site.json", fileSystem: InMemoryFileSystem())
            #expect(result.config == nil)
            #expect(result.diagnostics.map(\.description) == ["site.json: no such file or directory"])
            let unreadable = HostConfigLoader.load(
                path: "site.json", fileSystem: InMemoryFileSystem(unreadable: ["site.json": "Permission denied"]))
            #expect(unreadable.diagnostics.map(\.description) == ["site.json: cannot read: Permission denied"])
            let directory = HostConfigLoader.load(
                path: "etc", fileSystem: InMemoryFileSystem(texts: ["etc/config.json": "{}"]))
            #expect(directory.diagnostics.map(\.description) == ["etc: is a directory, not a configuration file"])
        }

        @Test func everyKeyIsRead() {
            let result = Self.load(
                """
                {
                  "allowedRoots": ["/var/lib/libvirt/images/", "/srv//vms"],
                  "stateDir": "/var/lib/virt-chain/",
                  "maxParallelJobs": 2,
                  "maxSteps": 50,
                  "maxBytes": 1099511627776
                }
                """)
            #expect(result.diagnostics.isEmpty)
            #expect(
                result.config
                    == HostConfig(
                        allowedRoots: ["/var/lib/libvirt/images", "/srv/vms"], stateDir: "/var/lib/virt-chain",
                        maxParallelJobs: 2, maxSteps: 50, maxBytes: 1_099_511_627_776))
            #expect(Self.load("{}").config == HostConfig.defaults)
        }

        @Test func allowedRootsAreCanonicalisedByTheResolver() {
            let result = Self.load(#"{"allowedRoots": ["/images", "/srv/link/"]}"#) { path in
                path == "/srv/link" ? "/mnt/real" : path
            }
            #expect(result.config?.allowedRoots == ["/images", "/mnt/real"])

            struct Failure: Error, CustomStringConvertible {
                var description: String { "No such file or directory" }
            }
            let failing = Self.load("{\n  \"allowedRoots\": [\"/images\", \"/gone\"]\n}") { path in
                if path == "/gone" { throw Failure() }
                return path
            }
            #expect(failing.config == nil)
            #expect(
                failing.diagnostics.map(\.description) == [
                    #"config.json:2:31: allowedRoots[1]: cannot resolve allowed root "/gone": "#
                        + "No such file or directory"
                ])
        }

        @Test func errorsAreStrict() {
            let result = Self.load(
                """
                {
                  "allowedRoot": ["/images"],
                  "allowedRoots": ["images", "/a/../b"],
                  "stateDir": 7,
                  "maxParallelJobs": 0,
                  "maxSteps": -1,
                  "maxBytes": 1.5
                }
                """)
            #expect(result.config == nil)
            #expect(
                result.diagnostics.map(\.description) == [
                    #"config.json:2:3: allowedRoot: unknown key "allowedRoot"; did you mean "allowedRoots"? "#
                        + "allowed: allowedRoots, stateDir, maxParallelJobs, maxSteps, maxBytes",
                    #"config.json:3:20: allowedRoots[0]: expected an absolute path, got "images""#,
                    "config.json:3:30: allowedRoots[1]: expected an absolute path without '..' components, "
                        + #"got "/a/../b""#,
                    "config.json:4:15: stateDir: expected an absolute path, got 7",
                    "config.json:5:22: maxParallelJobs: expected an integer ≥ 1, got 0",
                    "config.json:6:15: maxSteps: expected an integer ≥ 1, got -1",
                    "config.json:7:15: maxBytes: expected an integer ≥ 1, got 1.5",
                ])
        }

        @Test func syntaxErrorsAndBadRoots() {
            #expect(
                Self.load("{\"maxSteps\": 1,}").diagnostics.map(\.description) == [
                    "config.json:1:15: trailing comma is not allowed"
                ])
            #expect(
                Self.load("").diagnostics.map(\.description) == [
                    "config.json:1:1: the file is empty; expected a JSON object with host settings (allowedRoots, "
                        + "stateDir, maxParallelJobs, maxSteps, maxBytes)"
                ])
            #expect(
                Self.load("[]").diagnostics.map(\.description) == [
                    "config.json:1:1: expected a JSON object with host settings (allowedRoots, stateDir, "
                        + "maxParallelJobs, maxSteps, maxBytes), got array"
                ])
            #expect(
                Self.load(#"{"stateDir": "/a", "stateDir": "/b"}"#).diagnostics.map(\.description) == [
                    #"config.json:1:20: stateDir: duplicate key "stateDir" (first defined at 1:2)"#
                ])
        }

        @Test func theTableDefaultsAreTheBuiltInDefaults() {
            let defaults = HostConfigFormat.keys.reduce(into: [String: KeyDefault]()) { $0[$1.name] = $1.defaultValue }
            #expect(defaults["allowedRoots"] == .strings(HostConfig.defaults.allowedRoots))
            #expect(defaults["stateDir"] == .string(HostConfig.defaults.stateDir))
            #expect(defaults["maxParallelJobs"] == .integer(HostConfig.defaults.maxParallelJobs))
            #expect(HostConfig.defaults.maxSteps == nil && defaults["maxSteps"] == nil)
            #expect(HostConfig.defaults.maxBytes == nil && defaults["maxBytes"] == nil)
        }
    }
}
