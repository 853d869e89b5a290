// A small, fast, non-validating XML reader for libvirt's domain and snapshot XML.
//
// It checks well-formedness (tag nesting, attribute syntax, references, comments, CDATA) over the whole document,
// but only materialises the elements the caller asks for: everything else is scanned byte by byte and dropped.
// That keeps parsing of large XML dumps cheaper than building a full tree.

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// A parsed element: name, attributes in document order, child elements and concatenated text.
public struct XMLElement: Sendable, Hashable {
    public var name: String
    public var attributes: [(String, String)]
    public var children: [XMLElement]
    public var text: String

    public init(name: String, attributes: [(String, String)] = [], children: [XMLElement] = [], text: String = "") {
        self.name = name
        self.attributes = attributes
        self.children = children
        self.text = text
    }

    public subscript(attribute name: String) -> String? {
        for (k, v) in attributes where k == name { return v }
        return nil
    }

    public func child(_ name: String) -> XMLElement? { children.first { $0.name == name } }
    public func children(_ name: String) -> [XMLElement] { children.filter { $0.name == name } }

    public static func == (a: XMLElement, b: XMLElement) -> Bool {
        a.name == b.name && a.text == b.text && a.children == b.children
            && a.attributes.map { $0.0 } == b.attributes.map { $0.0 }
            && a.attributes.map { $0.1 } == b.attributes.map { $0.1 }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(text)
        hasher.combine(children)
        for (k, v) in attributes {
            hasher.combine(k)
            hasher.combine(v)
        }
    }
}

public struct XMLError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var line: Int
    public var column: Int
    public var description: String { "\(line):\(column): \(message)" }
}

/// What to do with an element, decided from its path of names (root first).
public enum XMLKeep: Sendable {
    /// Drop it and everything inside.
    case skip
    /// Keep the element with its attributes and text, and ask again for each child.
    case container
    /// Keep the element and its whole subtree.
    case whole
}

public enum XMLReader {
    /// Parses `bytes` and returns the root element, keeping what `keep` selects. The root is always kept as a
    /// container (at least its name and attributes).
    public static func parse(_ bytes: [UInt8], keep: (_ path: [String]) -> XMLKeep) throws(XMLError) -> XMLElement {
        try document(bytes, keep: keep).element
    }

    /// Parses `bytes` into a compact document (kept elements only; names, attributes and text are read lazily from
    /// the original bytes) and returns its root.
    public static func document(_ bytes: [UInt8], keep: (_ path: [String]) -> XMLKeep) throws(XMLError) -> XMLNode {
        let doc = XMLDocument(bytes: bytes)
        try bytes.withUnsafeBufferPointer { (buf) throws(XMLError) -> Void in
            var p = XMLParserCore(buf: buf)
            try p.document(keep: keep)
            doc.nodes = p.nodes
            doc.attrs = p.attrs
        }
        return XMLNode(doc: doc, index: 0)
    }

    /// Parses the whole document into a tree.
    public static func parse(_ bytes: [UInt8]) throws(XMLError) -> XMLElement {
        try parse(bytes) { _ in .whole }
    }

    public static func parse(_ string: String) throws(XMLError) -> XMLElement {
        try parse(Array(string.utf8))
    }
}

/// The kept elements of a parsed document, stored flat: no per-element allocation, no per-attribute string.
public final class XMLDocument: @unchecked Sendable {
    struct Node {
        var nameStart: Int32
        var nameEnd: Int32
        var attrStart: Int32
        var attrCount: Int32
        var firstChild: Int32 = -1
        var lastChild: Int32 = -1
        var next: Int32 = -1
        /// The element's content (between its tags) and what its own text is: 0 none (blank), 1 the content
        /// itself, 2 the content with references to decode, 3 character data and CDATA between markup (read again
        /// from the content when asked for: rare, and no string is made for the blank text of the rest).
        var contentStart: Int32 = 0
        var contentEnd: Int32 = 0
        var textKind: UInt8 = 0
    }

    struct Attr {
        var nameStart: Int32
        var nameEnd: Int32
        var valueStart: Int32
        var valueEnd: Int32
        var hasRef: Bool
    }

    let bytes: [UInt8]
    var nodes: [Node] = []
    var attrs: [Attr] = []

    init(bytes: [UInt8]) { self.bytes = bytes }

    /// The concatenated character data and CDATA of `node` itself (not of its children); "" when blank.
    static func text(of node: Node, in buf: UnsafeBufferPointer<UInt8>) -> String {
        let range = Int(node.contentStart)..<Int(node.contentEnd)
        switch node.textKind {
        case 1: return String(decoding: UnsafeBufferPointer(rebasing: buf[range]), as: UTF8.self)
        case 2: return (try? XMLParserCore.decodeRefs(buf, range)) ?? ""
        case 3: return ownText(buf, range)
        default: return ""
        }
    }

    /// The text of a content range that holds markup: character data and CDATA outside child elements, comments
    /// and processing instructions. The range was checked well-formed when it was parsed.
    static func ownText(_ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String {
        var out: [UInt8] = []
        var depth = 0
        var k = range.lowerBound
        func starts(_ s: StaticString) -> Bool {
            let n = s.utf8CodeUnitCount
            guard k + n <= range.upperBound else { return false }
            for j in 0..<n where buf[k + j] != s.utf8Start[j] { return false }
            return true
        }
        func past(_ s: StaticString) -> Int {
            var j = k
            while j < range.upperBound {
                k = j
                if starts(s) { return j + s.utf8CodeUnitCount }
                j += 1
            }
            return range.upperBound
        }
        while k < range.upperBound {
            if buf[k] != 0x3C {  // character data up to the next '<'
                let s = k
                while k < range.upperBound && buf[k] != 0x3C { k += 1 }
                guard depth == 0 else { continue }
                if let decoded = try? XMLParserCore.decodeRefs(buf, s..<k) {
                    out.append(contentsOf: decoded.utf8)
                }
            } else if starts("<!--") {
                k += 4
                k = past("-->")
            } else if starts("<![CDATA[") {
                let s = k + 9
                k = s
                let end = past("]]>")
                if depth == 0 { out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[s..<(end - 3)])) }
                k = end
            } else if starts("<?") {
                k += 2
                k = past("?>")
            } else if k + 1 < range.upperBound && buf[k + 1] == 0x2F {  // end tag
                while k < range.upperBound && buf[k] != 0x3E { k += 1 }
                k += 1
                depth -= 1
            } else {  // start tag: to its '>', past quoted attribute values
                var quote: UInt8 = 0
                k += 1
                while k < range.upperBound {
                    let c = buf[k]
                    if quote != 0 {
                        if c == quote { quote = 0 }
                    } else if c == 0x22 || c == 0x27 {
                        quote = c
                    } else if c == 0x3E {
                        break
                    }
                    k += 1
                }
                if buf[k - 1] != 0x2F { depth += 1 }  // not `<x/>`
                k += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    func string(_ start: Int32, _ end: Int32) -> String {
        bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[Int(start)..<Int(end)]), as: UTF8.self) }
    }

}

extension XMLDocument {
    /// Runs `body` with a cursor over the document's flat arrays (no reference counting, no exclusivity checks per
    /// access): the fast way to read many elements, as the domain model builder does.
    func withCursor<R, E: Error>(_ body: (XMLCursor) throws(E) -> R) throws(E) -> R {
        let (nodes, attrs, bytes) = (self.nodes, self.attrs, self.bytes)
        return try nodes.withUnsafeBufferPointer { (n) throws(E) -> R in
            try attrs.withUnsafeBufferPointer { (a) throws(E) -> R in
                try bytes.withUnsafeBufferPointer { (b) throws(E) -> R in
                    try body(XMLCursor(nodes: n, attrs: a, bytes: b))
                }
            }
        }
    }
}

/// Read access to a parsed document by element index (valid only inside `XMLDocument.withCursor`). Element `-1`
/// stands for "none": every accessor answers nil / -1 for it.
struct XMLCursor {
    let nodes: UnsafeBufferPointer<XMLDocument.Node>
    let attrs: UnsafeBufferPointer<XMLDocument.Attr>
    let bytes: UnsafeBufferPointer<UInt8>

    @inline(__always) func equals(_ start: Int32, _ end: Int32, _ name: StaticString) -> Bool {
        let n = name.utf8CodeUnitCount
        guard Int(end - start) == n else { return false }
        let p = name.utf8Start
        var i = 0
        while i < n {
            if bytes[Int(start) + i] != p[i] { return false }
            i += 1
        }
        return true
    }

    func isNamed(_ node: Int32, _ name: StaticString) -> Bool {
        node >= 0 && equals(nodes[Int(node)].nameStart, nodes[Int(node)].nameEnd, name)
    }

    /// The first child element called `name` (-1: none).
    func child(_ node: Int32, _ name: StaticString) -> Int32 {
        guard node >= 0 else { return -1 }
        return sibling(from: nodes[Int(node)].firstChild, name)
    }

    /// The first element called `name` at `start` or after it among its siblings (-1: none).
    func sibling(from start: Int32, _ name: StaticString) -> Int32 {
        var c = start
        while c >= 0 {
            let n = nodes[Int(c)]
            if equals(n.nameStart, n.nameEnd, name) { return c }
            c = n.next
        }
        return -1
    }

    /// The next sibling of `node` called `name` (-1: none).
    func next(_ node: Int32, _ name: StaticString) -> Int32 {
        sibling(from: nodes[Int(node)].next, name)
    }

    func hasChild(_ node: Int32, _ name: StaticString) -> Bool { child(node, name) >= 0 }

    /// Index into `attrs` of the attribute `name` of `node`, or nil.
    func attrIndex(_ node: Int32, _ name: StaticString) -> Int? {
        guard node >= 0 else { return nil }
        let n = nodes[Int(node)]
        var k = Int(n.attrStart)
        let end = k + Int(n.attrCount)
        while k < end {
            if equals(attrs[k].nameStart, attrs[k].nameEnd, name) { return k }
            k += 1
        }
        return nil
    }

    /// The value of attribute `name` (references decoded).
    func attr(_ node: Int32, _ name: StaticString) -> String? {
        attrIndex(node, name).map(value)
    }

    func value(_ k: Int) -> String {
        let a = attrs[k]
        let raw = UnsafeBufferPointer(rebasing: bytes[Int(a.valueStart)..<Int(a.valueEnd)])
        if a.hasRef, let decoded = try? XMLParserCore.decodeRefs(bytes, Int(a.valueStart)..<Int(a.valueEnd)) {
            return decoded
        }
        return String(decoding: raw, as: UTF8.self)
    }

    /// The raw bytes of attribute `k`'s value, when it has no reference to decode (else nil).
    func rawValue(_ k: Int) -> UnsafeBufferPointer<UInt8>? {
        let a = attrs[k]
        return a.hasRef ? nil : UnsafeBufferPointer(rebasing: bytes[Int(a.valueStart)..<Int(a.valueEnd)])
    }

    /// Whether attribute `name` is exactly `value`.
    func attr(_ node: Int32, _ name: StaticString, is value: StaticString) -> Bool {
        guard let k = attrIndex(node, name) else { return false }
        let a = attrs[k]
        return a.hasRef ? self.value(k) == value.description : equals(a.valueStart, a.valueEnd, value)
    }

    /// A decimal attribute (nil when absent or not a number).
    func intAttr(_ node: Int32, _ name: StaticString) -> Int? {
        guard let k = attrIndex(node, name) else { return nil }
        guard let raw = rawValue(k), !raw.isEmpty, raw.count < 19 else { return Int(value(k)) }
        var v = 0
        for c in raw {
            guard c >= 0x30 && c <= 0x39 else { return Int(value(k)) }
            v = v * 10 + Int(c - 0x30)
        }
        return v
    }

    func text(_ node: Int32) -> String {
        guard node >= 0 else { return "" }
        return XMLDocument.text(of: nodes[Int(node)], in: bytes)
    }

    func name(_ node: Int32) -> String {
        let n = nodes[Int(node)]
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[Int(n.nameStart)..<Int(n.nameEnd)]), as: UTF8.self)
    }
}

/// A kept element of an `XMLDocument`.
public struct XMLNode: Sendable {
    let doc: XMLDocument
    let index: Int32

    var node: XMLDocument.Node { doc.nodes[Int(index)] }

    public var name: String { doc.string(node.nameStart, node.nameEnd) }

    /// Names and values (references decoded), in document order. (Lookups by name go through `XMLCursor`.)
    public var attributes: [(String, String)] {
        let n = node
        return doc.withCursor { c in
            (Int(n.attrStart)..<Int(n.attrStart + n.attrCount)).map { k in
                let a = c.attrs[k]
                return (doc.string(a.nameStart, a.nameEnd), c.value(k))
            }
        }
    }

    public var text: String { doc.withCursor { $0.text(index) } }

    public var children: [XMLNode] {
        var out: [XMLNode] = []
        var c = node.firstChild
        while c >= 0 {
            out.append(XMLNode(doc: doc, index: c))
            c = doc.nodes[Int(c)].next
        }
        return out
    }

    /// The subtree as a value tree.
    public var element: XMLElement {
        XMLElement(name: name, attributes: attributes, children: children.map(\.element), text: text)
    }
}

// MARK: - Implementation

private let LT = UInt8(ascii: "<")
private let GT = UInt8(ascii: ">")
private let SLASH = UInt8(ascii: "/")
private let EQ = UInt8(ascii: "=")
private let AMP = UInt8(ascii: "&")
private let QM = UInt8(ascii: "?")
private let EXCL = UInt8(ascii: "!")
private let DQ = UInt8(ascii: "\"")
private let SQ = UInt8(ascii: "'")
private let SEMI = UInt8(ascii: ";")

@inline(__always) private func isSpace(_ c: UInt8) -> Bool {
    c == 0x20 || c == 0x0A || c == 0x09 || c == 0x0D
}

@inline(__always) private func isNameStart(_ c: UInt8) -> Bool {
    (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F || c == 0x3A || c >= 0x80
}

@inline(__always) private func isNameChar(_ c: UInt8) -> Bool {
    isNameStart(c) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2E
}

/// `isNameChar` of every byte value.
nonisolated(unsafe) private let nameCharTable: UnsafePointer<Bool> = {  // written once, then only read
    let table = UnsafeMutablePointer<Bool>.allocate(capacity: 256)
    for c in 0..<256 { table[c] = isNameChar(UInt8(c)) }
    return UnsafePointer(table)
}()

struct XMLParserCore {
    let buf: UnsafeBufferPointer<UInt8>
    /// The kept elements, built here (not in the shared document) so that no exclusivity checks run per access.
    var nodes: [XMLDocument.Node] = []
    var attrs: [XMLDocument.Attr] = []
    var i = 0
    /// Attribute names of the current start tag (reused to avoid an allocation per element).
    var seen: [Range<Int>] = []

    init(buf: UnsafeBufferPointer<UInt8>) {
        self.buf = buf
        nodes.reserveCapacity(64)
        attrs.reserveCapacity(128)
    }

    func error(_ message: String, at offset: Int? = nil) -> XMLError {
        let end = min(offset ?? i, buf.count)
        var line = 1
        var col = 1
        var k = 0
        while k < end {
            if buf[k] == 0x0A {
                line += 1
                col = 1
            } else if buf[k] & 0xC0 != 0x80 {
                col += 1
            }
            k += 1
        }
        return XMLError(message: message, line: line, column: col)
    }

    func isBlank(_ r: Range<Int>) -> Bool {
        for k in r where !isSpace(buf[k]) { return false }
        return true
    }

    /// Offset of the first `byte` in `from..<to` (default: to the end), or nil (memchr: many bytes per step).
    @inline(__always) func find(_ byte: UInt8, from: Int, to: Int? = nil) -> Int? {
        let end = to ?? buf.count
        guard from < end, let base = buf.baseAddress else { return nil }
        guard let p = memchr(base + from, Int32(byte), end - from) else { return nil }
        return base.distance(to: p.assumingMemoryBound(to: UInt8.self))
    }

    @inline(__always) func peek(_ offset: Int = 0) -> UInt8 {
        let k = i + offset
        return k < buf.count ? buf[k] : 0
    }

    @inline(__always) mutating func skipSpace() {
        while i < buf.count && isSpace(buf[i]) { i += 1 }
    }

    func startsWith(_ s: StaticString) -> Bool {
        let n = s.utf8CodeUnitCount
        guard i + n <= buf.count else { return false }
        let p = s.utf8Start
        for k in 0..<n where buf[i + k] != p[k] { return false }
        return true
    }

    /// Advances past the first occurrence of `s`; error if absent.
    mutating func skipPast(_ s: StaticString, what: String) throws(XMLError) {
        let n = s.utf8CodeUnitCount
        let p = s.utf8Start
        let first = p[0]
        let start = i
        while i + n <= buf.count {
            if buf[i] == first {
                var ok = true
                for k in 1..<n where buf[i + k] != p[k] {
                    ok = false
                    break
                }
                if ok {
                    i += n
                    return
                }
            }
            i += 1
        }
        throw error("unterminated \(what)", at: start)
    }

    mutating func name() throws(XMLError) -> Range<Int> {
        let start = i
        guard i < buf.count, isNameStart(buf[i]) else { throw error("expected a name") }
        i += 1
        // One table lookup per byte (names are most of what a start or end tag holds).
        let table = nameCharTable
        while i < buf.count && table[Int(buf[i])] { i += 1 }
        return start..<i
    }

    func string(_ r: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: buf[r]), as: UTF8.self)
    }

    func equal(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
        guard a.count == b.count else { return false }
        var x = a.lowerBound
        var y = b.lowerBound
        while x < a.upperBound {
            if buf[x] != buf[y] { return false }
            x += 1
            y += 1
        }
        return true
    }

    /// Skips prolog items: XML declaration, comments, PIs, DOCTYPE, whitespace.
    mutating func misc(allowDoctype: Bool) throws(XMLError) {
        while true {
            skipSpace()
            if startsWith("<?") {
                try skipPast("?>", what: "processing instruction")
            } else if startsWith("<!--") {
                try comment()
            } else if allowDoctype && startsWith("<!DOCTYPE") {
                try doctype()
            } else {
                return
            }
        }
    }

    mutating func comment() throws(XMLError) {
        let start = i
        i += 4
        while i + 2 < buf.count {
            if buf[i] == UInt8(ascii: "-") && buf[i + 1] == UInt8(ascii: "-") {
                guard buf[i + 2] == GT else { throw error("'--' is not allowed inside a comment") }
                i += 3
                return
            }
            i += 1
        }
        throw error("unterminated comment", at: start)
    }

    mutating func doctype() throws(XMLError) {
        let start = i
        var depth = 0
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "[") { depth += 1 }
            if c == UInt8(ascii: "]") { depth -= 1 }
            if c == GT && depth <= 0 {
                i += 1
                return
            }
            i += 1
        }
        throw error("unterminated DOCTYPE", at: start)
    }

    mutating func document(keep: (_ path: [String]) -> XMLKeep) throws(XMLError) {
        if buf.count >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF { i = 3 }
        try misc(allowDoctype: true)
        guard peek() == LT, isNameStart(peek(1)) else {
            throw error(i >= buf.count ? "document is empty" : "expected the root element")
        }
        var path: [String] = []
        guard try element(path: &path, mode: .container, keep: keep, forceKeep: true) == 0 else {
            throw error("expected the root element")
        }
        try misc(allowDoctype: false)
        if i < buf.count { throw error("extra content after the root element") }
    }

    /// Parses attributes; records them in the document when `keep`, else validates and drops them.
    /// Returns whether the tag was self-closing.
    mutating func attributes(keep: Bool) throws(XMLError) -> Bool {
        seen.removeAll(keepingCapacity: true)
        while true {
            let hadSpace = i < buf.count && isSpace(buf[i])
            skipSpace()
            guard i < buf.count else { throw error("unterminated start tag") }
            let c = buf[i]
            if c == GT {
                i += 1
                return false
            }
            if c == SLASH {
                guard peek(1) == GT else { throw error("expected '>' after '/'") }
                i += 2
                return true
            }
            guard hadSpace else { throw error("expected whitespace before attribute") }
            let n = try name()
            for s in seen where equal(s, n) { throw error("duplicate attribute '\(string(n))'", at: n.lowerBound) }
            seen.append(n)
            skipSpace()
            guard peek() == EQ else { throw error("expected '=' after attribute name '\(string(n))'") }
            i += 1
            skipSpace()
            let q = peek()
            guard q == DQ || q == SQ else { throw error("expected a quoted attribute value") }
            i += 1
            let vstart = i
            guard let end = find(q, from: i) else { throw error("unterminated attribute value", at: vstart) }
            if let lt = find(LT, from: vstart, to: end) {
                i = lt
                throw error("'<' is not allowed in attribute values")
            }
            let hasRef = find(AMP, from: vstart, to: end) != nil
            i = end
            let vr = vstart..<i
            i += 1
            if hasRef { _ = try decodeRefs(vr) }
            if keep {
                attrs.append(
                    XMLDocument.Attr(
                        nameStart: Int32(n.lowerBound), nameEnd: Int32(n.upperBound), valueStart: Int32(vr.lowerBound),
                        valueEnd: Int32(vr.upperBound), hasRef: hasRef))
            }
        }
    }

    func decodeRefs(_ r: Range<Int>) throws(XMLError) -> String {
        do {
            return try XMLParserCore.decodeRefs(buf, r)
        } catch let e as RefError {
            throw error(e.message, at: e.offset)
        } catch {
            throw self.error("invalid reference")
        }
    }

    struct RefError: Error {
        var message: String
        var offset: Int
    }

    static func decodeRefs(_ buf: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) throws -> String {
        func string(_ r: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: buf[r]), as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(r.count)
        var k = r.lowerBound
        while k < r.upperBound {
            let c = buf[k]
            if c != AMP {
                out.append(c)
                k += 1
                continue
            }
            var e = k + 1
            while e < r.upperBound && buf[e] != SEMI { e += 1 }
            guard e < r.upperBound else { throw RefError(message: "unterminated entity reference", offset: k) }
            let ent = string((k + 1)..<e)
            switch ent {
            case "amp": out.append(AMP)
            case "lt": out.append(LT)
            case "gt": out.append(GT)
            case "quot": out.append(DQ)
            case "apos": out.append(SQ)
            default:
                var scalar: UInt32?
                if ent.hasPrefix("#x") {
                    scalar = UInt32(ent.dropFirst(2), radix: 16)
                } else if ent.hasPrefix("#") {
                    scalar = UInt32(ent.dropFirst(1), radix: 10)
                }
                guard let s = scalar, let u = Unicode.Scalar(s), s != 0 else {
                    throw RefError(message: "undefined entity '&\(ent);'", offset: k)
                }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            }
            k = e + 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses one element starting at `<`. Returns its node index, or -1 when the element is skipped.
    mutating func element(
        path: inout [String], mode parentMode: XMLKeep, keep: (_ path: [String]) -> XMLKeep, forceKeep: Bool = false
    ) throws(XMLError) -> Int32 {
        i += 1  // '<'
        let nameRange = try name()
        // Decide whether to keep this element.
        var mode: XMLKeep
        switch parentMode {
        case .skip: mode = .skip
        case .whole: mode = .whole
        case .container:
            path.append(string(nameRange))
            mode = keep(path)
            if forceKeep && mode == .skip { mode = .container }
            if mode == .skip { path.removeLast() }
        }
        let kept = mode != .skip
        var node: Int32 = -1
        if kept {
            node = Int32(nodes.count)
            nodes.append(
                XMLDocument.Node(
                    nameStart: Int32(nameRange.lowerBound), nameEnd: Int32(nameRange.upperBound),
                    attrStart: Int32(attrs.count), attrCount: 0))
        }
        let selfClosing = try attributes(keep: kept)
        if kept { nodes[Int(node)].attrCount = Int32(attrs.count) - nodes[Int(node)].attrStart }
        defer { if parentMode == .container && kept { path.removeLast() } }
        if selfClosing { return node }
        // The element's own text is not copied here: only whether it has any non-blank text, and where its
        // content is (most kept elements hold only indentation between their children).
        let contentStart = i
        var hasText = false
        var markup = false
        var refs = false
        // Content.
        while true {
            guard i < buf.count else {
                throw error("element <\(string(nameRange))> is not closed", at: nameRange.lowerBound - 1)
            }
            let c = buf[i]
            if c == LT {
                let n = peek(1)
                if n == SLASH {
                    let contentEnd = i
                    i += 2
                    let endName = try name()
                    guard equal(endName, nameRange) else {
                        throw error(
                            "end tag </\(string(endName))> does not match start tag <\(string(nameRange))>",
                            at: endName.lowerBound - 2)
                    }
                    skipSpace()
                    guard peek() == GT else { throw error("expected '>' in end tag") }
                    i += 1
                    if kept && hasText {
                        nodes[Int(node)].contentStart = Int32(contentStart)
                        nodes[Int(node)].contentEnd = Int32(contentEnd)
                        nodes[Int(node)].textKind = markup ? 3 : (refs ? 2 : 1)
                    }
                    return node
                } else if n == EXCL {
                    markup = true
                    if startsWith("<!--") {
                        try comment()
                    } else if startsWith("<![CDATA[") {
                        i += 9
                        let s = i
                        try skipPast("]]>", what: "CDATA section")
                        if kept && !hasText { hasText = !isBlank(s..<(i - 3)) }
                    } else {
                        throw error("unexpected '<!'")
                    }
                } else if n == QM {
                    markup = true
                    try skipPast("?>", what: "processing instruction")
                } else {
                    markup = true
                    let child = try element(path: &path, mode: mode, keep: keep)
                    if child >= 0 && node >= 0 {
                        let last = nodes[Int(node)].lastChild
                        if last >= 0 {
                            nodes[Int(last)].next = child
                        } else {
                            nodes[Int(node)].firstChild = child
                        }
                        nodes[Int(node)].lastChild = child
                    }
                }
            } else {
                // Character data up to the next '<'.
                let s = i
                i = find(LT, from: i) ?? buf.count
                if find(AMP, from: s, to: i) != nil {
                    let decoded = try decodeRefs(s..<i)  // checked even where nothing is kept
                    refs = true
                    if kept && !hasText { hasText = decoded.utf8.contains { !isSpace($0) } }
                } else if kept && !hasText {
                    hasText = !isBlank(s..<i)
                }
            }
        }
    }
}
