/// A streaming JSON writer: two-space indentation, one member or item per line, `{}`/`[]` when empty, a newline at
/// the end (the tests hold it to a reference tree renderer, byte for byte), without building a tree first. Large outputs (plans of tens of
/// thousands of steps) are written in parallel pieces: a writer can start inside an open array with items already
/// written (`resumingArray`), and the pieces concatenate to the whole document.
///
/// The bytes live in a buffer of the writer's own (no array uniqueness or growth checks per byte); strings that
/// need no escaping are copied eight bytes at a time. A writer is a value, but copies share the buffer: give each
/// thread its own writer.
public struct JSONWriter {
    private let buffer: ByteBuffer
    /// Items written so far in each open container, innermost last.
    private var counts: [Int] = []

    public init(capacity: Int = 4096) {
        buffer = ByteBuffer(capacity: capacity)
    }

    /// A writer continuing an array opened at nesting `depth` (1 = an array that is a member of the top object)
    /// that already holds `itemsBefore` items. Its bytes go right after the previous piece's.
    public static func resumingArray(depth: Int, itemsBefore: Int, capacity: Int = 4096) -> JSONWriter {
        var w = JSONWriter(capacity: capacity)
        w.counts = Array(repeating: 1, count: depth) + [itemsBefore]
        return w
    }

    /// Empties the writer (keeping its buffer) and continues an array as `resumingArray` does.
    public mutating func resume(depth: Int, itemsBefore: Int) {
        buffer.count = 0
        counts = Array(repeating: 1, count: depth) + [itemsBefore]
    }

    public var depth: Int { counts.count }

    /// The bytes written so far (a copy).
    public var bytes: [UInt8] { withBytes { Array($0.bindMemory(to: UInt8.self)) } }

    /// Calls `body` with the bytes written so far (no copy).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count))
    }

    // MARK: Structure

    /// Opens the next member of the current object: `"key": `.
    public mutating func key(_ k: StaticString) {
        separate()
        buffer.append(0x22)
        appendEscapedContent(UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        buffer.append(0x22, 0x3A, 0x20)
    }

    /// Opens the next member of the current object with a key that is not a literal.
    public mutating func key(_ k: String) {
        separate()
        appendEscaped(k)
        buffer.append(0x3A, 0x20)
    }

    /// Opens the next item of the current array.
    public mutating func item() { separate() }

    public mutating func beginObject() {
        buffer.append(0x7B)
        counts.append(0)
    }

    public mutating func endObject() { close(0x7D) }

    public mutating func beginArray() {
        buffer.append(0x5B)
        counts.append(0)
    }

    public mutating func endArray() { close(0x5D) }

    /// Ends the document (a trailing newline).
    public mutating func finish() { buffer.append(0x0A) }

    // MARK: Values

    public mutating func string(_ s: String) { appendEscaped(s) }

    public mutating func string(_ s: String?) {
        if let s { appendEscaped(s) } else { null() }
    }

    /// One JSON string made of several parts (no intermediate String).
    public mutating func string(parts: String...) {
        buffer.append(0x22)
        for p in parts { appendEscapedContent(p) }
        buffer.append(0x22)
    }

    /// Opens a JSON string to be filled by `stringPart` calls and closed by `endString` (no intermediate String).
    public mutating func beginString() { buffer.append(0x22) }
    public mutating func stringPart(_ s: String) { appendEscapedContent(s) }
    public mutating func stringPart(_ s: StaticString) {
        appendEscapedContent(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
    public mutating func endString() { buffer.append(0x22) }

    /// The last path component of `path` (what `PathUtil.basename` returns), as part of the open string.
    public mutating func stringPart(basenameOf path: String) {
        let start = PathUtil.lastSlash(path).map { $0 + 1 } ?? 0
        PlanBytes.withBytes(path) { appendEscapedContent(UnsafeBufferPointer(rebasing: $0[start...])) }
    }

    public mutating func null() { append(literal: "null") }

    public mutating func bool(_ b: Bool) { append(literal: b ? "true" : "false") }

    public mutating func int(_ n: Int) {
        if n < 0 {
            buffer.append(0x2D)
            uint(UInt64(n.magnitude))
        } else {
            uint(UInt64(n))
        }
    }

    public mutating func uint(_ n: UInt64) {
        if n < 10 {
            buffer.append(0x30 &+ UInt8(n))
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
            buffer.append(UnsafeRawBufferPointer(rebasing: d[(24 - count)...]))
        }
    }

    // MARK: Internals

    private mutating func separate() {
        let last = counts.count - 1
        if counts[last] > 0 { buffer.append(0x2C) }
        counts[last] += 1
        buffer.append(0x0A)
        pad(counts.count)
    }

    private mutating func close(_ bracket: UInt8) {
        let n = counts.removeLast()
        if n > 0 {
            buffer.append(0x0A)
            pad(counts.count)
        }
        buffer.append(bracket)
    }

    private func pad(_ level: Int) {
        let n = 2 * level
        buffer.reserve(n)
        (buffer.base! + buffer.count).initialize(repeating: 0x20, count: n)
        buffer.count += n
    }

    private func append(literal: StaticString) {
        buffer.append(UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    private mutating func appendEscaped(_ s: String) {
        buffer.append(0x22)
        appendEscapedContent(s)
        buffer.append(0x22)
    }

    private mutating func appendEscapedContent(_ s: String) {
        if let done: Void = s.utf8.withContiguousStorageIfAvailable({ appendEscapedContent($0) }) { return done }
        var s = s
        s.withUTF8 { appendEscapedContent($0) }
    }

    /// Copies runs of bytes that need no escape in one piece (found eight bytes at a time); escapes `"`, `\` and
    /// control characters (`\n`, `\r`, `\t`, else `\u00XX`).
    private func appendEscapedContent(_ b: UnsafeBufferPointer<UInt8>) {
        guard let p = b.baseAddress else { return }
        let n = b.count
        // Most strings (paths, names) need no escape at all: check them a word at a time (the last word overlaps
        // the one before) and copy them whole.
        if n >= 8 {
            var i = 0
            var clean = true
            while clean {
                let at = min(i, n - 8)
                clean = JSONWriter.plain(UnsafeRawPointer(p + at).loadUnaligned(as: UInt64.self))
                if at == n - 8 { break }
                i += 8
            }
            if clean {
                buffer.append(UnsafeRawBufferPointer(start: p, count: n))
                return
            }
        }
        var start = 0
        var i = 0
        while i < n {
            // Skip eight plain bytes at a time: no byte < 0x20, no `"` (0x22), no `\` (0x5C).
            while i + 8 <= n && JSONWriter.plain(UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)) {
                i += 8
            }
            if i >= n { break }
            let c = p[i]
            if c >= 0x20 && c != 0x22 && c != 0x5C {
                i += 1
                continue
            }
            if i > start { buffer.append(UnsafeRawBufferPointer(start: p + start, count: i - start)) }
            switch c {
            case 0x22: buffer.append(0x5C, 0x22)
            case 0x5C: buffer.append(0x5C, 0x5C)
            case 0x0A: buffer.append(0x5C, 0x6E)
            case 0x0D: buffer.append(0x5C, 0x72)
            case 0x09: buffer.append(0x5C, 0x74)
            default:
                let hex: StaticString = "0123456789abcdef"
                buffer.append(0x5C, 0x75, 0x30)
                buffer.append(0x30, hex.utf8Start[Int(c >> 4)], hex.utf8Start[Int(c & 0xF)])
            }
            i += 1
            start = i
        }
        if n > start { buffer.append(UnsafeRawBufferPointer(start: p + start, count: n - start)) }
    }
}

extension JSONWriter {
    /// Whether none of the eight bytes of `w` needs an escape: no byte < 0x20, no `"` (0x22), no `\` (0x5C).
    /// (Classic word-at-a-time tests; a byte ≥ 0x80 never counts as < 0x20 or as either character.)
    @inline(__always) static func plain(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let high: UInt64 = 0x8080_8080_8080_8080
        let control = (w &- ones &* 0x20) & ~w & high
        let q = w ^ (ones &* 0x22)
        let quote = (q &- ones) & ~q & high
        let b = w ^ (ones &* 0x5C)
        let backslash = (b &- ones) & ~b & high
        return control | quote | backslash == 0
    }
}

/// The growable byte buffer of a `JSONWriter`.
final class ByteBuffer {
    var base: UnsafeMutablePointer<UInt8>?
    var count = 0
    var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base?.deallocate() }

    @inline(__always) func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    private func grow(_ needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        if let base {
            newBase.update(from: base, count: count)
            base.deallocate()
        }
        base = newBase
        capacity = newCapacity
    }

    @inline(__always) func append(_ c: UInt8) {
        reserve(1)
        base![count] = c
        count += 1
    }

    @inline(__always) func append(_ a: UInt8, _ b: UInt8) {
        reserve(2)
        base![count] = a
        base![count + 1] = b
        count += 2
    }

    @inline(__always) func append(_ a: UInt8, _ b: UInt8, _ c: UInt8) {
        reserve(3)
        base![count] = a
        base![count + 1] = b
        base![count + 2] = c
        count += 3
    }

    @inline(__always) func append(_ bytes: UnsafeRawBufferPointer) {
        guard let src = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        UnsafeMutableRawPointer(base! + count).copyMemory(from: src, byteCount: bytes.count)
        count += bytes.count
    }
}
