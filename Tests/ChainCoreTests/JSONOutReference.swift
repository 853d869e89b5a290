// The reference JSON renderer: a value tree rendered with two-space indentation. virt-chain itself writes JSON
// with the streaming `JSONWriter`; the tests hold it to exactly these bytes (and to the golden files).

@testable import ChainCore
import Testing

/// A JSON value for output, with object keys kept in the order they were given (stable, reviewable output).
indirect enum JSONOut: Sendable, Equatable {
    case object([(String, JSONOut)])
    case array([JSONOut])
    case string(String)
    case int(Int64)
    case uint(UInt64)
    case bool(Bool)
    case null

    static func == (a: JSONOut, b: JSONOut) -> Bool { a.render() == b.render() }

    static func str(_ s: String?) -> JSONOut { s.map { .string($0) } ?? .null }
    static func num(_ n: Int?) -> JSONOut { n.map { .int(Int64($0)) } ?? .null }
    static func num(_ n: UInt64?) -> JSONOut { n.map { .uint($0) } ?? .null }

    /// Pretty-printed with two-space indentation and a trailing newline.
    func render() -> String {
        String(decoding: renderBytes(), as: UTF8.self)
    }

    /// The same as `render()`, as UTF-8 bytes (no intermediate String).
    func renderBytes() -> [UInt8] {
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

extension JSONOut {
    /// A parsed document as a reference tree (integers stay integers; keys keep their order).
    init(_ v: JSONValue) {
        switch v.kind {
        case .object(let members): self = .object(members.map { ($0.key, JSONOut($0.value)) })
        case .array(let items): self = .array(items.map(JSONOut.init))
        case .string(let s): self = .string(s)
        case .number(let n):
            if let i = Int64(n.literal) { self = .int(i) } else { self = .uint(UInt64(n.literal) ?? 0) }
        case .bool(let b): self = .bool(b)
        case .null: self = .null
        }
    }
}

/// `bytes` parse as JSON, and rendering the parsed tree with the reference renderer gives `bytes` back: the
/// streamed document is well formed and formatted exactly as one tree would be, wherever its pieces were cut.
func expectCanonicalJSON(_ bytes: [UInt8], sourceLocation: Testing.SourceLocation = #_sourceLocation) -> JSONValue? {
    guard let parsed = try? JSONParser.parse(bytes) else {
        Issue.record("not JSON", sourceLocation: sourceLocation)
        return nil
    }
    #expect(JSONOut(parsed).renderBytes() == bytes, sourceLocation: sourceLocation)
    return parsed
}
