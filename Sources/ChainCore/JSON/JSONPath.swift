// A path into a JSON document, rendered the way diagnostics show it: `policies[0].match.domains[2]`.

public struct JSONPath: Hashable, Sendable, CustomStringConvertible {
    public enum Component: Hashable, Sendable {
        case key(String)
        case index(Int)
    }

    public var components: [Component]

    public init(_ components: [Component] = []) {
        self.components = components
    }

    /// The document root (renders as the empty string).
    public static let root = JSONPath()

    public var isRoot: Bool { components.isEmpty }

    public func appending(_ key: String) -> JSONPath {
        JSONPath(components + [.key(key)])
    }

    public func appending(index: Int) -> JSONPath {
        JSONPath(components + [.index(index)])
    }

    /// `policies[0].match.domains[2]`; a root-level key is just `version`. Keys that are not plain identifiers
    /// are written as `["a key"]`.
    public var description: String {
        var out = ""
        for component in components {
            switch component {
            case .index(let index):
                out += "[\(index)]"
            case .key(let key):
                if JSONPath.isPlainKey(key) {
                    out += out.isEmpty ? key : "." + key
                } else {
                    out += "[" + JSONText.quoted(key) + "]"
                }
            }
        }
        return out
    }

    /// `[A-Za-z_$][A-Za-z0-9_$-]*`
    static func isPlainKey(_ key: String) -> Bool {
        guard let first = key.utf8.first, isIdentifierStart(first) else { return false }
        return key.utf8.allSatisfy { isIdentifierStart($0) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }

    private static func isIdentifierStart(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x24
    }
}

/// Helpers to show JSON text in messages.
enum JSONText {
    /// `s` as a JSON string literal, e.g. `"web-*"`, with `"`, `\` and control characters escaped.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u" + hex(scalar.value, width: 4)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// Like `quoted`, but long strings are cut to `limit` characters with `…`.
    static func quotedShort(_ s: String, limit: Int = 60) -> String {
        guard s.count > limit else { return quoted(s) }
        return quoted(String(s.prefix(limit))).dropLast() + "…\""
    }

    /// Upper-case hexadecimal, zero-padded to `width`.
    static func hex(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
