// One error found while loading policy files or the host configuration, or while matching policies to disks.

/// An error in a policy file, the host configuration, or the policy set as a whole.
///
/// Rendered as `FILE:LINE:COL: JSON.path: message`, e.g.
/// `policies/web.json:7:20: policies[0].maxDepth: expected an integer ≥ 1, got 0`. Parts that do not apply are left
/// out: syntax errors have no JSON path (`FILE:LINE:COL: message`), an unreadable file has no position
/// (`FILE: message`), and run-wide errors (an empty run, a disk matched by two policies) are just the message.
public struct PolicyDiagnostic: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of problem this is, for callers that react to some kinds (tests, exit codes, JSON output).
    public enum Code: String, Hashable, Sendable, CaseIterable {
        /// The file does not exist or cannot be read.
        case unreadable
        /// The file is empty, not UTF-8, or not JSON.
        case syntax
        /// An object has the same key twice.
        case duplicateKey
        /// A key that the format does not define.
        case unknownKey
        /// A required key is absent.
        case missingKey
        /// A value of the wrong JSON type.
        case wrongType
        /// A value of the right type that is not allowed (below the minimum, not in the enum, bad pattern, …).
        case invalidValue
        /// `version` is not a version this virt-chain reads.
        case unsupportedVersion
        /// Two policies share a name.
        case duplicateName
        /// Settings of one policy that cannot both hold.
        case contradiction
        /// A disk is matched by two or more policies.
        case overlappingMatch
        /// No policies at all, and an empty run was not allowed.
        case emptyRun
    }

    public var code: Code
    /// The file as the user named it (relative paths stay relative); nil for run-wide errors.
    public var file: String?
    /// 1-based position in `file`; nil when the error concerns the whole file.
    public var line: Int?
    public var column: Int?
    /// Where in the document, e.g. `policies[0].match.domains[2]`; root when not applicable.
    public var path: JSONPath
    /// What is wrong and what is allowed.
    public var message: String

    public init(
        code: Code, file: String?, line: Int? = nil, column: Int? = nil, path: JSONPath = .root, message: String
    ) {
        self.code = code
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message
    }

    init(code: Code, file: String, at position: JSONPosition, path: JSONPath, message: String) {
        self.init(code: code, file: file, line: position.line, column: position.column, path: path, message: message)
    }

    /// `FILE:LINE:COL` when the diagnostic has a position.
    public var location: SourceLocation? {
        guard let file, let line, let column else { return nil }
        return SourceLocation(file: file, line: line, column: column)
    }

    /// `FILE:LINE:COL: JSON.path: message`, leaving out the parts that do not apply.
    public var description: String {
        var out = ""
        if let file {
            out += file
            if let line {
                out += ":\(line)"
                if let column { out += ":\(column)" }
            }
            out += ": "
        }
        if !path.isRoot { out += "\(path): " }
        return out + message
    }
}
