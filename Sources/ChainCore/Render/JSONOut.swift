/// A JSON value for output, with object keys kept in the order they were given (stable, reviewable output).
public indirect enum JSONOut: Sendable, Equatable {
    case object([(String, JSONOut)])
    case array([JSONOut])
    case string(String)
    case int(Int64)
    case uint(UInt64)
    case bool(Bool)
    case null

    public static func == (a: JSONOut, b: JSONOut) -> Bool { a.render() == b.render() }

    public static func str(_ s: String?) -> JSONOut { s.map { .string($0) } ?? .null }
    public static func num(_ n: Int?) -> JSONOut { n.map { .int(Int64($0)) } ?? .null }
    public static func num(_ n: UInt64?) -> JSONOut { n.map { .uint($0) } ?? .null }

    /// Pretty-printed with two-space indentation and a trailing newline.
    public func render() -> String {
        var out = ""
        write(into: &out, indent: 0)
        out += "\n"
        return out
    }

    func write(into out: inout String, indent: Int) {
        let pad = String(repeating: "  ", count: indent + 1)
        let closePad = String(repeating: "  ", count: indent)
        switch self {
        case .object(let members):
            if members.isEmpty {
                out += "{}"
                return
            }
            out += "{\n"
            for (i, (k, v)) in members.enumerated() {
                out += pad
                JSONOut.escape(k, into: &out)
                out += ": "
                v.write(into: &out, indent: indent + 1)
                out += i + 1 < members.count ? ",\n" : "\n"
            }
            out += closePad + "}"
        case .array(let items):
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "[\n"
            for (i, v) in items.enumerated() {
                out += pad
                v.write(into: &out, indent: indent + 1)
                out += i + 1 < items.count ? ",\n" : "\n"
            }
            out += closePad + "]"
        case .string(let s): JSONOut.escape(s, into: &out)
        case .int(let n): out += String(n)
        case .uint(let n): out += String(n)
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        }
    }

    static func escape(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

/// Human byte sizes: `512 B`, `1.5 KiB`, `64 MiB`, `2.0 GiB`.
public func formatBytes(_ n: UInt64?) -> String {
    guard let n else { return "?" }
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 {
        v /= 1024
        u += 1
    }
    if u == 0 { return "\(n) B" }
    if v == v.rounded() && v < 10_000 { return "\(Int(v)) \(units[u])" }
    let scaled = (v * 10).rounded() / 10
    return "\(scaled) \(units[u])"
}
