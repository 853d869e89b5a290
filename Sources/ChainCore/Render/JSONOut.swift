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
        String(decoding: renderBytes(), as: UTF8.self)
    }

    /// The same as `render()`, as UTF-8 bytes (no intermediate String).
    public func renderBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        write(into: &out, indent: 0)
        out.append(0x0A)
        return out
    }

    @inline(__always) static func pad(_ out: inout [UInt8], _ n: Int) {
        for _ in 0..<(2 * n) { out.append(0x20) }
    }

    func write(into out: inout [UInt8], indent: Int) {
        switch self {
        case .object(let members):
            if members.isEmpty {
                out.append(contentsOf: [0x7B, 0x7D])
                return
            }
            out.append(contentsOf: [0x7B, 0x0A])
            for (i, (k, v)) in members.enumerated() {
                JSONOut.pad(&out, indent + 1)
                JSONOut.escape(k, into: &out)
                out.append(contentsOf: [0x3A, 0x20])
                v.write(into: &out, indent: indent + 1)
                if i + 1 < members.count { out.append(0x2C) }
                out.append(0x0A)
            }
            JSONOut.pad(&out, indent)
            out.append(0x7D)
        case .array(let items):
            if items.isEmpty {
                out.append(contentsOf: [0x5B, 0x5D])
                return
            }
            out.append(contentsOf: [0x5B, 0x0A])
            for (i, v) in items.enumerated() {
                JSONOut.pad(&out, indent + 1)
                v.write(into: &out, indent: indent + 1)
                if i + 1 < items.count { out.append(0x2C) }
                out.append(0x0A)
            }
            JSONOut.pad(&out, indent)
            out.append(0x5D)
        case .string(let s): JSONOut.escape(s, into: &out)
        case .int(let n): out.append(contentsOf: String(n).utf8)
        case .uint(let n): out.append(contentsOf: String(n).utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .null: out.append(contentsOf: "null".utf8)
        }
    }

    static func escape(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        s.withUTF8 { b in
            for c in b {
                switch c {
                case 0x22: out.append(contentsOf: [0x5C, 0x22])
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
                case 0x0D: out.append(contentsOf: [0x5C, 0x72])
                case 0x09: out.append(contentsOf: [0x5C, 0x74])
                case 0..<0x20:
                    let hex = Array(String(c, radix: 16).utf8)
                    out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30])
                    if hex.count == 1 { out.append(0x30) }
                    out.append(contentsOf: hex)
                default: out.append(c)  // UTF-8 bytes ≥ 0x20 pass through unchanged
                }
            }
        }
        out.append(0x22)
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
