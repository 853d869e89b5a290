// A declarative description of a strict JSON format (keys, types, constraints, defaults, descriptions) and the
// checker that validates parsed JSON against it. The policy format (`PolicyFormat`) and the host configuration
// (`HostConfigFormat`) are both tables of `KeySpec`s; `policies/virt-chain.schema.json` is kept equal to
// `PolicyFormat.rootKeys` by SchemaTests.

/// How a string value is checked, and how that check is written in JSON Schema.
public enum StringRule: Hashable, Sendable {
    /// Any string but `""`.
    case nonEmpty
    /// `[a-z0-9][a-z0-9-]*`
    case policyName
    /// Starts with `/` and has no `..` component. The loader normalises it: `//`, `/./` and a trailing `/` go.
    case absolutePath
    /// A glob (see `Glob`) that starts with `/` and has no `..` component. Kept as written.
    case absolutePathGlob

    /// The JSON Schema `pattern` the value must match.
    public var schemaPattern: String? {
        switch self {
        case .nonEmpty: return nil
        case .policyName: return "^[a-z0-9][a-z0-9-]*$"
        case .absolutePath, .absolutePathGlob: return "^/"
        }
    }

    /// A JSON Schema `pattern` the value must not match (written as `"not": {"pattern": …}`).
    public var schemaForbiddenPattern: String? {
        switch self {
        case .nonEmpty, .policyName: return nil
        case .absolutePath, .absolutePathGlob: return "(^|/)\\.\\.(/|$)"
        }
    }

    /// The JSON Schema `minLength`.
    public var schemaMinLength: Int? {
        self == .nonEmpty ? 1 : nil
    }
}

/// The type of a key's value, with its constraints.
public indirect enum KeyType: Hashable, Sendable {
    /// An integer that must equal the given version (`"type": "integer", "const": N`).
    case formatVersion(Int)
    /// An integer ≥ `minimum`.
    case integer(minimum: Int)
    case string(StringRule)
    /// A string, one of the given values.
    case enumeration([String])
    /// An array of at least `minItems` items.
    case array(of: KeyType, minItems: Int)
    /// An object with exactly these keys (no others).
    case object([KeySpec])

    /// The JSON Schema `type`.
    public var schemaType: String {
        switch self {
        case .formatVersion, .integer: return "integer"
        case .string, .enumeration: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

/// The value a key takes when it is absent.
public enum KeyDefault: Hashable, Sendable {
    case integer(Int)
    case string(String)
    case strings([String])
}

/// One key of a JSON object: its name, type and constraints, whether it is required, its default, and what it means.
public struct KeySpec: Hashable, Sendable {
    public var name: String
    public var type: KeyType
    public var required: Bool
    /// nil: no default (the setting is unset when absent). An absent object counts as `{}`, so the defaults of its
    /// keys apply.
    public var defaultValue: KeyDefault?
    public var description: String

    public init(name: String, type: KeyType, required: Bool, defaultValue: KeyDefault?, description: String) {
        self.name = name
        self.type = type
        self.required = required
        self.defaultValue = defaultValue
        self.description = description
    }

    public static func required(_ name: String, _ type: KeyType, _ description: String) -> KeySpec {
        KeySpec(name: name, type: type, required: true, defaultValue: nil, description: description)
    }

    public static func optional(
        _ name: String, _ type: KeyType, default defaultValue: KeyDefault? = nil, _ description: String
    ) -> KeySpec {
        KeySpec(name: name, type: type, required: false, defaultValue: defaultValue, description: description)
    }
}

// MARK: - Checked values

/// A value that passed its `KeyType` check, with strings normalised and defaults filled in.
enum CheckedValue: Hashable, Sendable {
    case integer(Int)
    case string(String)
    case array([CheckedValue])
    case object(CheckedObject)

    var integer: Int? {
        if case .integer(let i) = self { return i }
        return nil
    }

    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var strings: [String]? {
        guard case .array(let items) = self else { return nil }
        let strings = items.compactMap(\.string)
        return strings.count == items.count ? strings : nil
    }

    var object: CheckedObject? {
        if case .object(let o) = self { return o }
        return nil
    }
}

/// An object whose keys were checked. Holds the keys that passed (plus defaults); keys that failed are absent.
struct CheckedObject: Hashable, Sendable {
    /// Position of the `{` (nil for an absent object filled in from defaults).
    var position: JSONPosition?
    var values: [String: CheckedValue] = [:]
    /// Positions of the values present in the file.
    var positions: [String: JSONPosition] = [:]

    subscript(key: String) -> CheckedValue? { values[key] }
}

// MARK: - Checker

/// Checks JSON values against key tables, collecting every problem as a `PolicyDiagnostic`.
struct KeyChecker {
    let file: String
    var diagnostics: [PolicyDiagnostic] = []

    init(file: String) {
        self.file = file
    }

    mutating func report(_ code: PolicyDiagnostic.Code, at position: JSONPosition, _ path: JSONPath, _ message: String)
    {
        diagnostics.append(PolicyDiagnostic(code: code, file: file, at: position, path: path, message: message))
    }

    /// Checks `value` against `type`. Returns nil when the value itself is unusable; objects and arrays that
    /// contain errors are returned with the failing parts left out (every error is in `diagnostics`).
    mutating func check(_ value: JSONValue, as type: KeyType, at path: JSONPath) -> CheckedValue? {
        switch type {
        case .formatVersion(let version):
            return checkVersion(value, version, at: path)
        case .integer(let minimum):
            return checkInteger(value, minimum: minimum, at: path)
        case .string(let rule):
            return checkString(value, rule, at: path)
        case .enumeration(let allowed):
            return checkEnumeration(value, allowed, at: path)
        case .array(let item, let minItems):
            return checkArray(value, of: item, minItems: minItems, at: path)
        case .object(let keys):
            return checkObject(value, keys: keys, at: path).map { .object($0) }
        }
    }

    mutating func checkVersion(_ value: JSONValue, _ version: Int, at path: JSONPath) -> CheckedValue? {
        guard let number = value.number, number.isInteger else {
            report(.wrongType, at: value.position, path, "expected the integer \(version), got \(Self.got(value))")
            return nil
        }
        guard number.intValue == version else {
            report(
                .unsupportedVersion, at: value.position, path,
                "unsupported policy format version \(number.literal); this virt-chain reads version \(version)")
            return nil
        }
        return .integer(version)
    }

    mutating func checkInteger(_ value: JSONValue, minimum: Int, at path: JSONPath) -> CheckedValue? {
        var expected: String { Self.expectation(.integer(minimum: minimum)) }
        guard let number = value.number, number.isInteger else {
            report(.wrongType, at: value.position, path, "expected \(expected), got \(Self.got(value))")
            return nil
        }
        guard let int = number.intValue else {
            report(.invalidValue, at: value.position, path, "expected \(expected), got \(number.literal) (too large)")
            return nil
        }
        guard int >= minimum else {
            report(.invalidValue, at: value.position, path, "expected \(expected), got \(number.literal)")
            return nil
        }
        return .integer(int)
    }

    mutating func checkString(_ value: JSONValue, _ rule: StringRule, at path: JSONPath) -> CheckedValue? {
        var expected: String { Self.expectation(.string(rule)) }
        guard let string = value.string else {
            report(.wrongType, at: value.position, path, "expected \(expected), got \(Self.got(value))")
            return nil
        }
        var shown: String { JSONText.quotedShort(string) }
        switch rule {
        case .nonEmpty:
            guard !string.isEmpty else {
                report(.invalidValue, at: value.position, path, "expected \(expected), got \"\"")
                return nil
            }
            return .string(string)
        case .policyName:
            guard Self.isPolicyName(string) else {
                report(.invalidValue, at: value.position, path, "expected \(expected), got \(shown)")
                return nil
            }
            return .string(string)
        case .absolutePath, .absolutePathGlob:
            guard string.hasPrefix("/") else {
                report(.invalidValue, at: value.position, path, "expected \(expected), got \(shown)")
                return nil
            }
            guard !string.split(separator: "/").contains("..") else {
                report(
                    .invalidValue, at: value.position, path,
                    "expected \(expected) without '..' components, got \(shown)")
                return nil
            }
            return .string(rule == .absolutePath ? Self.normalizedAbsolutePath(string) : string)
        }
    }

    mutating func checkEnumeration(_ value: JSONValue, _ allowed: [String], at path: JSONPath) -> CheckedValue? {
        var expected: String { Self.expectation(.enumeration(allowed)) }
        guard let string = value.string else {
            report(.wrongType, at: value.position, path, "expected \(expected); got \(Self.got(value))")
            return nil
        }
        guard allowed.contains(string) else {
            var message = "expected \(expected); got \(JSONText.quotedShort(string))"
            if let close = Self.suggestion(for: string, among: allowed) {
                message += " (did you mean \(JSONText.quoted(close))?)"
            }
            report(.invalidValue, at: value.position, path, message)
            return nil
        }
        return .string(string)
    }

    mutating func checkArray(_ value: JSONValue, of item: KeyType, minItems: Int, at path: JSONPath)
        -> CheckedValue?
    {
        var expected: String { Self.expectation(.array(of: item, minItems: minItems)) }
        guard let elements = value.elements else {
            var message = "expected \(expected), got \(Self.got(value))"
            if let string = value.string, case .string = item {
                message += "; write [\(JSONText.quotedShort(string))]"
            }
            report(.wrongType, at: value.position, path, message)
            return nil
        }
        guard elements.count >= minItems else {
            let got = elements.isEmpty ? "an empty array" : "\(elements.count) items"
            report(.invalidValue, at: value.position, path, "expected \(expected), got \(got)")
            return nil
        }
        var checked: [CheckedValue] = []
        var failed = false
        for (index, element) in elements.enumerated() {
            if let c = check(element, as: item, at: path.appending(index: index)) {
                checked.append(c)
            } else {
                failed = true
            }
        }
        return failed ? nil : .array(checked)
    }

    /// Checks an object against `keys`: unknown keys, missing required keys, and every value. Absent keys with a
    /// default get it; absent object-typed keys are checked as `{}` so that their keys' defaults apply.
    mutating func checkObject(_ value: JSONValue, keys: [KeySpec], at path: JSONPath) -> CheckedObject? {
        guard let members = value.members else {
            report(.wrongType, at: value.position, path, "expected an object, got \(Self.got(value))")
            return nil
        }
        var result = CheckedObject(position: value.position)
        for member in members {
            let memberPath = path.appending(member.key)
            guard let spec = keys.first(where: { $0.name == member.key }) else {
                report(.unknownKey, at: member.keyPosition, memberPath, Self.unknownKeyMessage(member.key, keys))
                continue
            }
            result.positions[member.key] = member.value.position
            if let checked = check(member.value, as: spec.type, at: memberPath) {
                result.values[member.key] = checked
            }
        }
        for spec in keys where members.first(where: { $0.key == spec.name }) == nil {
            if spec.required {
                report(.missingKey, at: value.position, path, "missing required key \(JSONText.quoted(spec.name))")
            } else if let defaultValue = Self.defaultValue(of: spec) {
                result.values[spec.name] = defaultValue
            }
        }
        return result
    }

    // MARK: Defaults

    /// The value an absent key takes: its default, or for an object the defaults of its keys; nil if unset.
    static func defaultValue(of spec: KeySpec) -> CheckedValue? {
        if let value = spec.defaultValue {
            switch value {
            case .integer(let i): return .integer(i)
            case .string(let s): return .string(s)
            case .strings(let list): return .array(list.map { .string($0) })
            }
        }
        if case .object(let keys) = spec.type {
            var object = CheckedObject(position: nil)
            for key in keys {
                if let value = defaultValue(of: key) { object.values[key.name] = value }
            }
            return .object(object)
        }
        return nil
    }

    // MARK: Messages

    /// What a value of `type` must be, e.g. `an integer ≥ 1`, `one of: none, keep-base, full`.
    static func expectation(_ type: KeyType) -> String {
        switch type {
        case .formatVersion(let version): return "the integer \(version)"
        case .integer(let minimum): return "an integer ≥ \(minimum)"
        case .string(.nonEmpty): return "a non-empty string"
        case .string(.policyName):
            return "a name of lowercase letters, digits and '-' that starts with a letter or digit"
        case .string(.absolutePath): return "an absolute path"
        case .string(.absolutePathGlob): return "an absolute path glob"
        case .enumeration(let allowed): return "one of: " + allowed.joined(separator: ", ")
        case .array(let item, let minItems):
            return (minItems > 0 ? "a non-empty array of " : "an array of ") + plural(item)
        case .object: return "an object"
        }
    }

    static func plural(_ type: KeyType) -> String {
        switch type {
        case .formatVersion, .integer: return "integers"
        case .string(.nonEmpty): return "non-empty strings"
        case .enumeration: return "strings"
        case .string(.policyName): return "names"
        case .string(.absolutePath): return "absolute paths"
        case .string(.absolutePathGlob): return "absolute path globs"
        case .array: return "arrays"
        case .object: return "objects"
        }
    }

    /// How a value of the wrong type is named: numbers by their literal, everything else by its type.
    static func got(_ value: JSONValue) -> String {
        switch value.kind {
        case .number(let n): return n.literal
        case .string: return "string"
        case .bool: return "boolean"
        case .null: return "null"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// `unknown key "maxDepht"; did you mean "maxDepth"? allowed: name, match, …`
    static func unknownKeyMessage(_ key: String, _ keys: [KeySpec]) -> String {
        let allowed = "allowed: " + keys.map(\.name).joined(separator: ", ")
        let unknown = "unknown key \(JSONText.quotedShort(key))"
        if let close = suggestion(for: key, among: keys.map(\.name)) {
            return "\(unknown); did you mean \(JSONText.quoted(close))? \(allowed)"
        }
        let parent = keys.first { spec in
            guard case .object(let inner) = spec.type else { return false }
            return inner.contains { $0.name.lowercased() == key.lowercased() }
        }
        if let parent {
            return "\(unknown); it belongs inside \(JSONText.quoted(parent.name)); \(allowed)"
        }
        return "\(unknown); \(allowed)"
    }

    /// The candidate closest to `word` (case-insensitive edit distance with transpositions, or a prefix of at least
    /// four characters), if any is close enough.
    static func suggestion(for word: String, among candidates: [String]) -> String? {
        let lower = Array(word.lowercased().unicodeScalars)
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let other = Array(candidate.lowercased().unicodeScalars)
            var distance = editDistance(lower, other)
            let shorter = min(lower.count, other.count)
            if shorter >= 4 && (lower.starts(with: other) || other.starts(with: lower)) {
                distance = min(distance, 1)
            }
            let limit = max(1, min(3, max(lower.count, other.count) / 3))
            if distance <= limit && (best == nil || distance < (best?.distance ?? Int.max)) {
                best = (candidate, distance)
            }
        }
        return best?.candidate
    }

    /// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
    static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    value = min(value, previous2[j - 2] + 1)
                }
                current[j] = value
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }

    // MARK: String rules

    /// `[a-z0-9][a-z0-9-]*`
    static func isPolicyName(_ s: String) -> Bool {
        guard let first = s.utf8.first, isLowerOrDigit(first) else { return false }
        return s.utf8.allSatisfy { isLowerOrDigit($0) || $0 == UInt8(ascii: "-") }
    }

    private static func isLowerOrDigit(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
    }

    /// `/srv//fast/./vms/` → `/srv/fast/vms`. The path must start with `/` and have no `..` component.
    static func normalizedAbsolutePath(_ path: String) -> String {
        let parts = path.split(separator: "/").filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
    }
}
