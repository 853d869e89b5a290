/// A streaming JSON writer producing exactly the bytes of `JSONOut.renderBytes()` (two-space indentation, one
/// member or item per line, `{}`/`[]` when empty), without building a tree first. Large outputs (plans of tens of
/// thousands of steps) are written in parallel pieces: a writer can start inside an open array with items already
/// written (`resumingArray`), and the pieces concatenate to the whole document.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    /// Items written so far in each open container, innermost last.
    private var counts: [Int] = []

    public init(capacity: Int = 4096) {
        bytes.reserveCapacity(capacity)
    }

    /// A writer continuing an array opened at nesting `depth` (1 = an array that is a member of the top object)
    /// that already holds `itemsBefore` items. Its bytes go right after the previous piece's.
    public static func resumingArray(depth: Int, itemsBefore: Int, capacity: Int = 4096) -> JSONWriter {
        var w = JSONWriter(capacity: capacity)
        w.counts = Array(repeating: 1, count: depth) + [itemsBefore]
        return w
    }

    public var depth: Int { counts.count }

    // MARK: Structure

    /// Opens the next member of the current object: `"key": `.
    public mutating func key(_ k: StaticString) {
        separate()
        k.withUTF8Buffer { appendEscaped($0) }
        bytes.append(0x3A)
        bytes.append(0x20)
    }

    /// Opens the next member of the current object with a key that is not a literal.
    public mutating func key(_ k: String) {
        separate()
        appendEscaped(k)
        bytes.append(0x3A)
        bytes.append(0x20)
    }

    /// Opens the next item of the current array.
    public mutating func item() { separate() }

    public mutating func beginObject() {
        bytes.append(0x7B)
        counts.append(0)
    }

    public mutating func endObject() { close(0x7D) }

    public mutating func beginArray() {
        bytes.append(0x5B)
        counts.append(0)
    }

    public mutating func endArray() { close(0x5D) }

    /// Ends the document (the trailing newline of `renderBytes`).
    public mutating func finish() { bytes.append(0x0A) }

    // MARK: Values

    public mutating func string(_ s: String) { appendEscaped(s) }

    public mutating func string(_ s: String?) {
        if let s { appendEscaped(s) } else { null() }
    }

    /// One JSON string made of several parts (no intermediate String).
    public mutating func string(parts: String...) {
        bytes.append(0x22)
        for p in parts { appendEscapedContent(p) }
        bytes.append(0x22)
    }

    public mutating func null() { append(literal: "null") }

    public mutating func bool(_ b: Bool) { append(literal: b ? "true" : "false") }

    public mutating func int(_ n: Int) {
        if n < 0 {
            bytes.append(0x2D)
            uint(UInt64(n.magnitude))
        } else {
            uint(UInt64(n))
        }
    }

    public mutating func uint(_ n: UInt64) {
        if n < 10 {
            bytes.append(0x30 &+ UInt8(n))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes ≥ 20 digits of UInt64.max
        var count = 0
        var v = n
        withUnsafeMutableBytes(of: &digits) { d in
            while v > 0 {
                d[23 - count] = 0x30 &+ UInt8(v % 10)
                v /= 10
                count += 1
            }
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: d[(24 - count)...]))
        }
    }

    /// Appends whole pieces written by other writers.
    public mutating func append(raw: [UInt8]) { bytes.append(contentsOf: raw) }

    // MARK: Internals

    private mutating func separate() {
        let last = counts.count - 1
        if counts[last] > 0 { bytes.append(0x2C) }
        counts[last] += 1
        bytes.append(0x0A)
        pad(counts.count)
    }

    private mutating func close(_ bracket: UInt8) {
        let n = counts.removeLast()
        if n > 0 {
            bytes.append(0x0A)
            pad(counts.count)
        }
        bytes.append(bracket)
    }

    private static let spaces = [UInt8](repeating: 0x20, count: 64)

    private mutating func pad(_ level: Int) {
        var n = 2 * level
        while n > 0 {
            let k = min(n, JSONWriter.spaces.count)
            JSONWriter.spaces.withUnsafeBufferPointer { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: $0[..<k])) }
            n -= k
        }
    }

    private mutating func append(literal: StaticString) {
        literal.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    private mutating func appendEscaped(_ s: String) {
        bytes.append(0x22)
        appendEscapedContent(s)
        bytes.append(0x22)
    }

    private mutating func appendEscaped(_ b: UnsafeBufferPointer<UInt8>) {
        bytes.append(0x22)
        appendEscapedContent(b)
        bytes.append(0x22)
    }

    private mutating func appendEscapedContent(_ s: String) {
        var s = s
        s.withUTF8 { appendEscapedContent($0) }
    }

    /// Copies runs of bytes that need no escape in one piece; escapes `"`, `\` and control characters as
    /// `JSONOut.escape` does.
    private mutating func appendEscapedContent(_ b: UnsafeBufferPointer<UInt8>) {
        var start = 0
        var i = 0
        let n = b.count
        while i < n {
            let c = b[i]
            if c >= 0x20 && c != 0x22 && c != 0x5C {
                i += 1
                continue
            }
            if i > start { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: b[start..<i])) }
            switch c {
            case 0x22: bytes.append(0x5C); bytes.append(0x22)
            case 0x5C: bytes.append(0x5C); bytes.append(0x5C)
            case 0x0A: bytes.append(0x5C); bytes.append(0x6E)
            case 0x0D: bytes.append(0x5C); bytes.append(0x72)
            case 0x09: bytes.append(0x5C); bytes.append(0x74)
            default:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 0xF)]])
            }
            i += 1
            start = i
        }
        if n > start { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: b[start..<n])) }
    }
}
