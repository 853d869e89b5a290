// Loads the admin-owned host configuration (`/etc/virt-chain/config.json` or `--config FILE`), strictly: unknown
// keys, wrong types and bad values are errors with file, line, column and JSON path, like policy files.

/// The host configuration format, as one declarative table. Its defaults equal `HostConfig.defaults`
/// (checked by a test).
public enum HostConfigFormat {
    public static let keys: [KeySpec] = [
        .optional(
            "allowedRoots", .array(of: .string(.absolutePath), minItems: 0),
            default: .strings(HostConfig.defaults.allowedRoots),
            "Directories where virt-chain may create, write or delete images."),
        .optional(
            "stateDir", .string(.absolutePath), default: .string(HostConfig.defaults.stateDir),
            "Directory for the journal, the lock and saved reports."),
        .optional(
            "maxParallelJobs", .integer(minimum: 1), default: .integer(HostConfig.defaults.maxParallelJobs),
            "Most block jobs run at once."),
        .optional("maxSteps", .integer(minimum: 1), "Most steps one run may execute. Absent: no limit."),
        .optional("maxBytes", .integer(minimum: 1), "Most bytes one run may copy or merge. Absent: no limit."),
    ]
}

/// The configuration a load produced.
public struct HostConfigLoadResult: Hashable, Sendable {
    /// The configuration; nil when there are diagnostics (never fall back to defaults after an error).
    public var config: HostConfig?
    public var diagnostics: [PolicyDiagnostic]
    /// The file read; nil when the default file does not exist and the built-in defaults apply.
    public var file: String?

    public init(config: HostConfig?, diagnostics: [PolicyDiagnostic], file: String?) {
        self.config = config
        self.diagnostics = diagnostics
        self.file = file
    }
}

public enum HostConfigLoader {
    public static let defaultPath = "/etc/virt-chain/config.json"

    /// Loads `path`, or `defaultPath` when nil. A missing default file means `HostConfig.defaults`; a missing file
    /// that was asked for is an error. `resolve` canonicalises each allowed root after it is checked and normalised
    /// (ChainCore does not call `realpath`; ChainOps passes a resolver that does); a thrown error becomes a
    /// diagnostic.
    public static func load(
        path: String? = nil, fileSystem: any ReadOnlyFileSystem = LocalFileSystem(),
        resolve: (String) throws -> String = { $0 }
    ) -> HostConfigLoadResult {
        let file = path ?? defaultPath
        switch fileSystem.status(of: file) {
        case .missing:
            if path == nil { return HostConfigLoadResult(config: .defaults, diagnostics: [], file: nil) }
            return failure(file, "no such file or directory")
        case .directory:
            return failure(file, "is a directory, not a configuration file")
        case .inaccessible(let message):
            return failure(file, "cannot access: \(message)")
        case .file:
            do {
                return load(bytes: try fileSystem.read(file), file: file, resolve: resolve)
            } catch {
                return failure(file, "cannot read: \(error)")
            }
        }
    }

    /// Loads a configuration whose content is already in memory.
    public static func load(
        bytes: [UInt8], file: String, resolve: (String) throws -> String = { $0 }
    ) -> HostConfigLoadResult {
        var checker = KeyChecker(file: file)
        let start = JSONPosition(line: 1, column: 1)
        let expectation =
            "a JSON object with host settings (\(HostConfigFormat.keys.map(\.name).joined(separator: ", ")))"
        let root: JSONValue
        switch JSONParser.parseResult(bytes) {
        case .success(let value):
            root = value
        case .failure(let error):
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
                checker.report(.syntax, at: start, .root, "the file is empty; expected \(expectation)")
            } else {
                let isDuplicate = error.kind == .duplicateKey
                checker.report(
                    isDuplicate ? .duplicateKey : .syntax, at: error.position, isDuplicate ? error.path : .root,
                    error.message)
            }
            return HostConfigLoadResult(config: nil, diagnostics: checker.diagnostics, file: file)
        }
        guard root.members != nil else {
            checker.report(.wrongType, at: root.position, .root, "expected \(expectation), got \(KeyChecker.got(root))")
            return HostConfigLoadResult(config: nil, diagnostics: checker.diagnostics, file: file)
        }
        guard let object = checker.checkObject(root, keys: HostConfigFormat.keys, at: .root),
            checker.diagnostics.isEmpty
        else {
            return HostConfigLoadResult(config: nil, diagnostics: checker.diagnostics, file: file)
        }

        var roots: [String] = []
        let rootsPath = JSONPath([.key("allowedRoots")])
        for (index, allowedRoot) in (object["allowedRoots"]?.strings ?? []).enumerated() {
            do {
                roots.append(try resolve(allowedRoot))
            } catch {
                checker.report(
                    .invalidValue, at: root["allowedRoots"]?[index]?.position ?? start,
                    rootsPath.appending(index: index),
                    "cannot resolve allowed root \(JSONText.quoted(allowedRoot)): \(error)")
            }
        }
        guard checker.diagnostics.isEmpty,
            let stateDir = object["stateDir"]?.string,
            let maxParallelJobs = object["maxParallelJobs"]?.integer
        else {
            return HostConfigLoadResult(config: nil, diagnostics: checker.diagnostics, file: file)
        }
        let config = HostConfig(
            allowedRoots: roots, stateDir: stateDir, maxParallelJobs: maxParallelJobs,
            maxSteps: object["maxSteps"]?.integer, maxBytes: object["maxBytes"]?.integer.map { UInt64($0) })
        return HostConfigLoadResult(config: config, diagnostics: [], file: file)
    }

    private static func failure(_ file: String, _ message: String) -> HostConfigLoadResult {
        HostConfigLoadResult(
            config: nil, diagnostics: [PolicyDiagnostic(code: .unreadable, file: file, message: message)], file: file)
    }
}
