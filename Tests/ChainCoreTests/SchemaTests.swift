import Foundation
import Testing

@testable import ChainCore

/// Keeps `policies/virt-chain.schema.json` equal to the loader's key table (`PolicyFormat`), and the example
/// policies in `policies/` valid.
@Suite struct SchemaTests {
    /// The repository's `policies/` directory, found from this file (Tests/ChainCoreTests/SchemaTests.swift).
    static let policiesDirectory: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("policies").path
    }()

    static let schemaPath = policiesDirectory + "/virt-chain.schema.json"

    static func loadSchema() throws -> JSONValue {
        try JSONParser.parse(try LocalFileSystem().read(schemaPath))
    }

    @Test func theSchemaParsesAndDeclaresDraft2020() throws {
        let schema = try Self.loadSchema()
        #expect(schema["$schema"]?.string == "https://json-schema.org/draft/2020-12/schema")
        #expect(schema["title"]?.string == "virt-chain policy file, format version 1")
    }

    @Test func theSchemaEqualsTheKeyTableAtEveryLevel() throws {
        let schema = try Self.loadSchema()
        var issues: [String] = []
        Self.compare(
            schema, .object(PolicyFormat.rootKeys), at: "#", extraKeywords: ["$schema", "$id", "title", "description"],
            issues: &issues)
        #expect(issues == [])
    }

    @Test func theComparisonNoticesDifferences() throws {
        // Guard against a comparison that accepts everything.
        let schema = try Self.loadSchema()
        var issues: [String] = []
        var keys = PolicyFormat.rootKeys
        keys[0].type = .formatVersion(2)
        keys[1].type = .array(of: .object(Array(PolicyFormat.policyKeys.dropLast())), minItems: 0)
        Self.compare(
            schema, .object(keys), at: "#", extraKeywords: ["$schema", "$id", "title", "description"],
            issues: &issues)
        #expect(
            issues == [
                "#/properties/version: const is 1, table says 2",
                "#/properties/policies/items: property names are name, match, maxDepth, flatten, protect, storage, "
                    + "snapshotMetadata, shutoff, retired, bandwidthMiBps; table says name, match, maxDepth, flatten, "
                    + "protect, storage, snapshotMetadata, shutoff, retired",
            ])
    }

    @Test func theTableEnumsAreTheModelEnums() {
        let keys = Dictionary(uniqueKeysWithValues: PolicyFormat.policyKeys.map { ($0.name, $0.type) })
        #expect(keys["flatten"] == .enumeration(["none", "keep-base", "full"]))
        #expect(keys["flatten"] == .enumeration(Flatten.allCases.map(\.rawValue)))
        #expect(keys["snapshotMetadata"] == .enumeration(SnapshotMetadataMode.allCases.map(\.rawValue)))
        #expect(keys["shutoff"] == .enumeration(ShutoffMode.allCases.map(\.rawValue)))
        #expect(keys["retired"] == .enumeration(RetiredMode.allCases.map(\.rawValue)))
    }

    @Test func theTableDefaultsAreThePolicyDefaults() {
        // A policy with only a name gets the table's defaults; they must equal Policy's own.
        let result = PolicyLoader.load(
            sources: [PolicySource(path: "p.json", text: #"{"version": 1, "policies": [{"name": "n"}]}"#)])
        #expect(result.policies == [Policy(name: "n", location: SourceLocation(file: "p.json", line: 1, column: 29))])
    }

    // MARK: Examples

    @Test func everyExamplePolicyFileLoadsWithoutDiagnostics() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.policiesDirectory)
            .filter { $0.hasSuffix(".json") && !$0.hasSuffix(".schema.json") }.sorted()
        #expect(names.count >= 3)
        for name in names {
            let result = PolicyLoader.load(paths: [Self.policiesDirectory + "/" + name])
            #expect(result.diagnostics.map(\.description) == [], "\(name)")
            #expect(!result.policies.isEmpty, "\(name)")
        }
    }

    @Test func theExampleDirectoryLoadsAsAWholeAndItsPoliciesDoNotOverlap() throws {
        let result = PolicyLoader.load(paths: [Self.policiesDirectory])
        #expect(result.diagnostics.map(\.description) == [])
        #expect(result.emptyRunError(allowEmpty: false) == nil)
        #expect(result.files.allSatisfy { !$0.hasSuffix(".schema.json") })
        #expect(result.policies.map(\.name) == ["archive", "database", "lab-catch-all", "web-tier"])

        func disk(_ target: String) -> Disk {
            Disk(target: target, chain: Chain(layers: [Layer(source: .file("/images/\(target).qcow2"))]))
        }
        let names = ["web-1", "db-1", "pg-main", "archive-2019", "lab-x", "dev-y", "ci-runner", "other"]
        let domains = names.map { Domain(name: $0, uuid: $0, state: .running, disks: [disk("vda"), disk("sdb")]) }
        let assignment = PolicySet(result.policies).assign(domains)
        #expect(assignment.diagnostics.map(\.description) == [])
        let expected: [String: String?] = [
            "web-1/vda": "web-tier", "web-1/sdb": nil, "db-1/vda": "database", "db-1/sdb": "database",
            "pg-main/vda": "database", "pg-main/sdb": "database", "archive-2019/vda": "archive",
            "archive-2019/sdb": "archive", "lab-x/vda": "lab-catch-all", "lab-x/sdb": "lab-catch-all",
            "dev-y/vda": "lab-catch-all", "dev-y/sdb": "lab-catch-all", "ci-runner/vda": "lab-catch-all",
            "ci-runner/sdb": "lab-catch-all", "other/vda": nil, "other/sdb": nil,
        ]
        for entry in assignment.entries {
            #expect(entry.policy?.name == expected[entry.key.description] ?? nil, "\(entry.key)")
        }
    }

    // MARK: Comparison

    /// Compares a schema node with a table type. `extraKeywords` are allowed on this node only (annotations of
    /// the root).
    static func compare(
        _ schema: JSONValue, _ type: KeyType, at path: String, extraKeywords: Set<String> = [],
        issues: inout [String]
    ) {
        guard let members = schema.members else {
            issues.append("\(path): not an object")
            return
        }
        var expected: Set<String> = ["type"]
        if schema["type"]?.string != type.schemaType {
            issues.append("\(path): type is \(schema["type"]?.string ?? "absent"), table says \(type.schemaType)")
        }
        switch type {
        case .formatVersion(let version):
            expected.insert("const")
            if schema["const"]?.number?.intValue != version {
                issues.append(
                    "\(path): const is \(schema["const"]?.number?.literal ?? "absent"), table says \(version)")
            }
        case .integer(let minimum):
            expected.insert("minimum")
            if schema["minimum"]?.number?.intValue != minimum {
                issues.append(
                    "\(path): minimum is \(schema["minimum"]?.number?.literal ?? "absent"), table says \(minimum)")
            }
        case .string(let rule):
            if let pattern = rule.schemaPattern {
                expected.insert("pattern")
                if schema["pattern"]?.string != pattern {
                    issues.append("\(path): pattern is \(schema["pattern"]?.string ?? "absent"), table says \(pattern)")
                }
            }
            if let forbidden = rule.schemaForbiddenPattern {
                expected.insert("not")
                let not = schema["not"]
                if not?.members?.map(\.key) != ["pattern"] || not?["pattern"]?.string != forbidden {
                    issues.append("\(path): not must be {\"pattern\": \(forbidden)}")
                }
            }
            if let minLength = rule.schemaMinLength {
                expected.insert("minLength")
                if schema["minLength"]?.number?.intValue != minLength {
                    issues.append("\(path): minLength must be \(minLength)")
                }
            }
        case .enumeration(let allowed):
            expected.insert("enum")
            let values = schema["enum"]?.elements?.compactMap(\.string)
            if values != allowed {
                issues.append("\(path): enum is \(values ?? []), table says \(allowed)")
            }
        case .array(let item, let minItems):
            expected.insert("items")
            if minItems > 0 {
                expected.insert("minItems")
                if schema["minItems"]?.number?.intValue != minItems {
                    issues.append("\(path): minItems must be \(minItems)")
                }
            }
            if let items = schema["items"] {
                compare(items, item, at: path + "/items", issues: &issues)
            } else {
                issues.append("\(path): items is absent")
            }
        case .object(let keys):
            expected.formUnion(["additionalProperties", "properties"])
            if schema["additionalProperties"]?.bool != false {
                issues.append("\(path): additionalProperties must be false")
            }
            let required = keys.filter(\.required).map(\.name)
            if !required.isEmpty {
                expected.insert("required")
            }
            let schemaRequired = schema["required"]?.elements?.compactMap(\.string) ?? []
            if schemaRequired != required {
                issues.append("\(path): required is \(schemaRequired), table says \(required)")
            }
            let properties = schema["properties"]?.members ?? []
            let names = properties.map(\.key)
            if names != keys.map(\.name) {
                issues.append(
                    "\(path): property names are \(names.joined(separator: ", ")); table says "
                        + keys.map(\.name).joined(separator: ", "))
            }
            for spec in keys {
                guard let property = properties.first(where: { $0.key == spec.name })?.value else { continue }
                compareProperty(property, spec, at: path + "/properties/" + spec.name, issues: &issues)
            }
        }
        let keywords = Set(members.map(\.key)).subtracting(extraKeywords)
        if keywords != expected {
            issues.append("\(path): keywords are \(keywords.sorted()), expected \(expected.sorted())")
        }
    }

    /// Compares a property schema with its key: description and default, then the type.
    static func compareProperty(_ schema: JSONValue, _ spec: KeySpec, at path: String, issues: inout [String]) {
        if schema["description"]?.string != spec.description {
            issues.append("\(path): description differs from the table: \(spec.description)")
        }
        var extra: Set<String> = ["description"]
        switch (spec.defaultValue, schema["default"]) {
        case (nil, nil):
            break
        case (let expected?, let actual?):
            extra.insert("default")
            let matches: Bool
            switch expected {
            case .integer(let i): matches = actual.number?.intValue == i
            case .string(let s): matches = actual.string == s
            case .strings(let list):
                matches = actual.elements?.compactMap(\.string) == list && actual.elements?.count == list.count
            }
            if !matches { issues.append("\(path): default differs from the table (\(expected))") }
        case (let expected?, nil):
            issues.append("\(path): default is absent, table says \(expected)")
        case (nil, _?):
            extra.insert("default")
            issues.append("\(path): default is given, table has none")
        }
        compare(schema, spec.type, at: path, extraKeywords: extra, issues: &issues)
    }
}
