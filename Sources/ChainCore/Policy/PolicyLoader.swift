// Loads policy files (format version 1, see DESIGN.md and `PolicyFormat`) into resolved `Policy` values,
// reporting every problem of the run with its file, line, column and JSON path.

/// A policy file's name (as the user gave it) and content.
public struct PolicySource: Hashable, Sendable {
    public var path: String
    public var bytes: [UInt8]

    public init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
    }

    public init(path: String, text: String) {
        self.init(path: path, bytes: Array(text.utf8))
    }
}

/// Everything one load produced. The run is usable only when `diagnostics` is empty.
public struct PolicyLoadResult: Hashable, Sendable {
    /// The valid policies, in load order (files in order, then policies in file order). A policy with any error is
    /// left out.
    public var policies: [Policy]
    /// Every error of the run, in load order and by position within a file.
    public var diagnostics: [PolicyDiagnostic]
    /// Every policy file the run read or tried to read, in load order, named as the user named them.
    public var files: [String]
    /// The paths the user gave (files and directories), for messages.
    public var inputs: [String]
    /// SHA-256 (hex) over the bytes of every file read, in load order, each preceded by its length in decimal and
    /// `:`. It changes when any policy file's content or the set or order of files changes, and does not depend on
    /// where the files are (so it can go into plan fingerprints).
    public var digest: String

    public init(
        policies: [Policy], diagnostics: [PolicyDiagnostic], files: [String], inputs: [String], digest: String
    ) {
        self.policies = policies
        self.diagnostics = diagnostics
        self.files = files
        self.inputs = inputs
        self.digest = digest
    }

    public var isValid: Bool { diagnostics.isEmpty }

    /// The error for a run that found no policies at all, unless `allowEmpty` (`--allow-empty`). nil when there are
    /// policies, when empty runs are allowed, or when the run has other errors (they explain the emptiness).
    public func emptyRunError(allowEmpty: Bool) -> PolicyDiagnostic? {
        guard policies.isEmpty, !allowEmpty, diagnostics.isEmpty else { return nil }
        let place = inputs.isEmpty ? "" : " in " + inputs.joined(separator: ", ")
        let detail: String
        if inputs.isEmpty {
            detail = "no policy paths were given"
        } else if files.isEmpty {
            detail = "no *.json files"
        } else {
            detail =
                files.count == 1 ? "1 file, which declares no policy" : "\(files.count) files, none declares a policy"
        }
        return PolicyDiagnostic(
            code: .emptyRun, file: nil,
            message: "no policies found\(place) (\(detail)); pass --allow-empty to accept an empty run "
                + "(nothing will be managed)")
    }
}

/// Loads and validates policy files.
///
/// Rules beyond the key table (`PolicyFormat`):
/// - `version` is checked first; a file whose `version` is present but not 1 gets that one error and is not checked
///   further (its keys may mean something else). A missing `version` is reported and the file is checked as version 1.
/// - Policy names are unique across all files of the run; the later definition is the error and names the earlier.
/// - `flatten: "keep-base"` keeps two images (`base ← active`), so `maxDepth: 1` with it is a contradiction and an
///   error. `flatten: "full"` with any `maxDepth` is fine: full leaves one image, which satisfies every limit
///   (`Policy.effectiveMaxDepth` is 1). `keep-base` with `maxDepth` ≥ 2 is fine for the same reason.
/// - A policy with any error is left out of `policies`; the caller must not act when `diagnostics` is not empty.
public enum PolicyLoader {
    /// Loads `paths`: a file is itself (whatever its name); a directory means every `*.json` file below it,
    /// recursively, sorted by their path relative to the directory (byte order, like `LC_ALL=C sort`). In a
    /// directory, entries whose name starts with `.` are skipped, and so are `*.schema.json` files (the JSON Schema,
    /// `policies/virt-chain.schema.json`, lives next to the policies). A file named twice (or reached through two
    /// paths) is loaded once.
    public static func load(
        paths: [String], fileSystem: any ReadOnlyFileSystem = LocalFileSystem()
    ) -> PolicyLoadResult {
        var diagnostics: [PolicyDiagnostic] = []
        let files = policyFiles(in: paths, fileSystem: fileSystem, diagnostics: &diagnostics)
        var sources: [PolicySource] = []
        var attempted: [String] = []
        for file in files {
            attempted.append(file)
            do {
                sources.append(PolicySource(path: file, bytes: try fileSystem.read(file)))
            } catch {
                diagnostics.append(PolicyDiagnostic(code: .unreadable, file: file, message: "cannot read: \(error)"))
            }
        }
        var result = load(sources: sources, inputs: paths)
        result.files = attempted
        result.diagnostics = diagnostics + result.diagnostics
        if !diagnostics.isEmpty {
            // Keep load order: an unreadable file's error goes where the file is.
            let order = Dictionary(attempted.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
            result.diagnostics = Self.sorted(result.diagnostics, fileOrder: order)
        }
        return result
    }

    /// Loads policy files whose content is already in memory, in the given order.
    public static func load(sources: [PolicySource], inputs: [String]? = nil) -> PolicyLoadResult {
        var policies: [Policy] = []
        var diagnostics: [PolicyDiagnostic] = []
        var names: [String: SourceLocation] = [:]
        var hasher = SHA256()
        for source in sources {
            hasher.update("\(source.bytes.count):")
            hasher.update(source.bytes)
            var file = FileLoader(path: source.path)
            policies += file.load(source.bytes, names: &names)
            diagnostics += Self.sorted(file.checker.diagnostics, fileOrder: [:])
        }
        return PolicyLoadResult(
            policies: policies, diagnostics: diagnostics, files: sources.map(\.path),
            inputs: inputs ?? sources.map(\.path), digest: hasher.hexDigest())
    }

    /// The policy files `paths` name, in load order. Problems (a missing path, an unreadable directory) are appended
    /// to `diagnostics`.
    public static func policyFiles(
        in paths: [String], fileSystem: any ReadOnlyFileSystem, diagnostics: inout [PolicyDiagnostic]
    ) -> [String] {
        var files: [String] = []
        var seen = Set<String>()
        func add(_ file: String) {
            let identity = fileSystem.canonicalPath(file) ?? file
            if seen.insert(identity).inserted { files.append(file) }
        }
        for path in paths {
            switch fileSystem.status(of: path) {
            case .file:
                add(path)
            case .directory:
                var found: [(relative: [UInt8], path: String)] = []
                var visited = Set<String>()
                collect(
                    directory: path, relative: "", fileSystem: fileSystem, found: &found, visited: &visited,
                    diagnostics: &diagnostics)
                for entry in found.sorted(by: { $0.relative.lexicographicallyPrecedes($1.relative) }) {
                    add(entry.path)
                }
            case .missing:
                diagnostics.append(
                    PolicyDiagnostic(code: .unreadable, file: path, message: "no such file or directory"))
            case .inaccessible(let message):
                diagnostics.append(
                    PolicyDiagnostic(code: .unreadable, file: path, message: "cannot access: \(message)"))
            }
        }
        return files
    }

    private static func collect(
        directory: String, relative: String, fileSystem: any ReadOnlyFileSystem,
        found: inout [(relative: [UInt8], path: String)], visited: inout Set<String>,
        diagnostics: inout [PolicyDiagnostic]
    ) {
        // Stop at directory loops made by symbolic links.
        guard visited.insert(fileSystem.canonicalPath(directory) ?? directory).inserted else { return }
        let names: [String]
        do {
            names = try fileSystem.entries(of: directory)
        } catch {
            diagnostics.append(
                PolicyDiagnostic(code: .unreadable, file: directory, message: "cannot list directory: \(error)"))
            return
        }
        for name in names where !name.hasPrefix(".") {
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            let rel = relative.isEmpty ? name : relative + "/" + name
            switch fileSystem.status(of: path) {
            case .directory:
                collect(
                    directory: path, relative: rel, fileSystem: fileSystem, found: &found, visited: &visited,
                    diagnostics: &diagnostics)
            case .file where isPolicyFileName(name):
                found.append((Array(rel.utf8), path))
            case .missing where isPolicyFileName(name):
                // A dangling symbolic link named like a policy file: say so rather than skip it silently.
                found.append((Array(rel.utf8), path))
            case .inaccessible(let message) where isPolicyFileName(name):
                diagnostics.append(
                    PolicyDiagnostic(code: .unreadable, file: path, message: "cannot access: \(message)"))
            default:
                break
            }
        }
    }

    /// `*.json`, but not `*.schema.json`.
    static func isPolicyFileName(_ name: String) -> Bool {
        name.hasSuffix(".json") && !name.hasSuffix(".schema.json")
    }

    /// Stable sort by file (in `fileOrder`; paths that are not loaded files, such as a missing argument, first), then
    /// line and column.
    static func sorted(_ diagnostics: [PolicyDiagnostic], fileOrder: [String: Int]) -> [PolicyDiagnostic] {
        diagnostics.enumerated().sorted { a, b in
            let fa = a.element.file.flatMap { fileOrder[$0] } ?? -1
            let fb = b.element.file.flatMap { fileOrder[$0] } ?? -1
            let ka = (fa, a.element.line ?? 0, a.element.column ?? 0, a.offset)
            let kb = (fb, b.element.line ?? 0, b.element.column ?? 0, b.offset)
            return ka < kb
        }.map(\.element)
    }
}

/// Checks one policy file and builds its policies.
private struct FileLoader {
    let path: String
    var checker: KeyChecker

    init(path: String) {
        self.path = path
        checker = KeyChecker(file: path)
    }

    static let rootExpectation = "a JSON object with \"version\" and \"policies\""

    /// The valid policies of the file. `names` holds every policy name seen so far in the run, with where it was
    /// defined; this file's names are added.
    mutating func load(_ bytes: [UInt8], names: inout [String: SourceLocation]) -> [Policy] {
        let start = JSONPosition(line: 1, column: 1)
        if Self.isBlank(bytes) {
            checker.report(.syntax, at: start, .root, "the file is empty; expected \(Self.rootExpectation)")
            return []
        }
        let root: JSONValue
        switch JSONParser.parseResult(bytes) {
        case .success(let value):
            root = value
        case .failure(let error):
            let isDuplicate = error.kind == .duplicateKey
            checker.report(
                isDuplicate ? .duplicateKey : .syntax, at: error.position, isDuplicate ? error.path : .root,
                error.message)
            return []
        }
        guard let members = root.members else {
            checker.report(
                .wrongType, at: root.position, .root,
                "expected \(Self.rootExpectation), got \(KeyChecker.got(root))")
            return []
        }

        let keys = PolicyFormat.rootKeys
        if let version = root.member("version"), let spec = keys.first(where: { $0.name == "version" }) {
            guard checker.check(version.value, as: spec.type, at: JSONPath([.key("version")])) != nil else {
                return []
            }
        }
        for member in members where !keys.contains(where: { $0.name == member.key }) {
            checker.report(
                .unknownKey, at: member.keyPosition, JSONPath([.key(member.key)]),
                KeyChecker.unknownKeyMessage(member.key, keys))
        }
        for spec in keys where spec.required && root.member(spec.name) == nil {
            checker.report(.missingKey, at: root.position, .root, "missing required key \(JSONText.quoted(spec.name))")
        }

        guard let policiesSpec = keys.first(where: { $0.name == "policies" }),
            case .array(let itemType, _) = policiesSpec.type,
            let policiesValue = root["policies"]
        else { return [] }
        let policiesPath = JSONPath([.key("policies")])
        guard let elements = policiesValue.elements else {
            _ = checker.check(policiesValue, as: policiesSpec.type, at: policiesPath)
            return []
        }

        var policies: [Policy] = []
        for (index, element) in elements.enumerated() {
            let path = policiesPath.appending(index: index)
            let before = checker.diagnostics.count
            guard let object = checker.check(element, as: itemType, at: path)?.object else { continue }
            checkName(object, path: path, names: &names)
            checkContradictions(object, path: path)
            guard checker.diagnostics.count == before else { continue }
            if let policy = build(object) {
                policies.append(policy)
            } else {
                checker.report(
                    .invalidValue, at: element.position, path, "internal error: the policy could not be built")
            }
        }
        return policies
    }

    mutating func checkName(_ object: CheckedObject, path: JSONPath, names: inout [String: SourceLocation]) {
        guard let name = object["name"]?.string, let position = object.positions["name"] else { return }
        let here = SourceLocation(file: self.path, line: position.line, column: position.column)
        if let first = names[name] {
            checker.report(
                .duplicateName, at: position, path.appending("name"),
                "duplicate policy name \(JSONText.quoted(name)); it is already defined at \(first)")
        } else {
            names[name] = here
        }
    }

    mutating func checkContradictions(_ object: CheckedObject, path: JSONPath) {
        guard object["flatten"]?.string == Flatten.keepBase.rawValue,
            let maxDepth = object["maxDepth"]?.integer, maxDepth < 2,
            let position = object.positions["maxDepth"]
        else { return }
        checker.report(
            .contradiction, at: position, path.appending("maxDepth"),
            "maxDepth \(maxDepth) contradicts flatten \"keep-base\", which keeps two images (base ← active); "
                + "use flatten \"full\" for one self-contained image, or a maxDepth of at least 2")
    }

    func build(_ object: CheckedObject) -> Policy? {
        guard let name = object["name"]?.string,
            let position = object.position,
            let match = object["match"]?.object,
            let domains = match["domains"]?.strings,
            let disks = match["disks"]?.strings,
            let flatten = object["flatten"]?.string.flatMap(Flatten.init(rawValue:)),
            let protect = object["protect"]?.strings,
            let storage = object["storage"]?.object,
            let snapshotMetadata = object["snapshotMetadata"]?.string.flatMap(SnapshotMetadataMode.init(rawValue:)),
            let shutoff = object["shutoff"]?.string.flatMap(ShutoffMode.init(rawValue:)),
            let retired = object["retired"]?.string.flatMap(RetiredMode.init(rawValue:)),
            let bandwidth = object["bandwidthMiBps"]?.integer
        else { return nil }
        return Policy(
            name: name, domains: domains, disks: disks, maxDepth: object["maxDepth"]?.integer, flatten: flatten,
            protect: protect, activeDir: storage["activeDir"]?.string, snapshotMetadata: snapshotMetadata,
            shutoff: shutoff, retired: retired, bandwidthMiBps: bandwidth,
            location: SourceLocation(file: path, line: position.line, column: position.column))
    }

    /// Empty or only JSON whitespace (and perhaps a byte order mark).
    static func isBlank(_ bytes: [UInt8]) -> Bool {
        var rest = bytes[...]
        if rest.starts(with: [0xEF, 0xBB, 0xBF]) { rest = rest.dropFirst(3) }
        return rest.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
    }
}
