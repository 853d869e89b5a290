// A small, fast, non-validating XML reader for libvirt's domain and snapshot XML.
//
// It checks well-formedness (tag nesting, attribute syntax, references, comments, CDATA) over the whole document,
// but only materialises the elements the caller asks for: everything else is scanned byte by byte and dropped.
// That keeps parsing of large XML dumps cheaper than building a full tree.

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
        try bytes.withUnsafeBufferPointer { (buf) throws(XMLError) -> XMLElement in
            var p = Parser(buf: buf)
            return try p.document(keep: keep)
        }
    }

    /// Parses the whole document into a tree.
    public static func parse(_ bytes: [UInt8]) throws(XMLError) -> XMLElement {
        try parse(bytes) { _ in .whole }
    }

    public static func parse(_ string: String) throws(XMLError) -> XMLElement {
        try parse(Array(string.utf8))
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

private struct Parser {
    let buf: UnsafeBufferPointer<UInt8>
    var i = 0
    /// Attribute names of the current start tag (reused to avoid an allocation per element).
    var seen: [Range<Int>] = []

    init(buf: UnsafeBufferPointer<UInt8>) { self.buf = buf }

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
        while i < buf.count && isNameChar(buf[i]) { i += 1 }
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

    mutating func document(keep: (_ path: [String]) -> XMLKeep) throws(XMLError) -> XMLElement {
        if buf.count >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF { i = 3 }
        try misc(allowDoctype: true)
        guard peek() == LT, isNameStart(peek(1)) else {
            throw error(i >= buf.count ? "document is empty" : "expected the root element")
        }
        var path: [String] = []
        guard let root = try element(path: &path, mode: .container, keep: keep, forceKeep: true) else {
            throw error("expected the root element")
        }
        try misc(allowDoctype: false)
        if i < buf.count { throw error("extra content after the root element") }
        return root
    }

    /// Parses attributes; returns them decoded when `decode`, else validates and drops them.
    mutating func attributes(decode: Bool) throws(XMLError) -> (attrs: [(String, String)], selfClosing: Bool) {
        var attrs: [(String, String)] = []
        seen.removeAll(keepingCapacity: true)
        while true {
            let hadSpace = i < buf.count && isSpace(buf[i])
            skipSpace()
            guard i < buf.count else { throw error("unterminated start tag") }
            let c = buf[i]
            if c == GT {
                i += 1
                return (attrs, false)
            }
            if c == SLASH {
                guard peek(1) == GT else { throw error("expected '>' after '/'") }
                i += 2
                return (attrs, true)
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
            var hasRef = false
            while i < buf.count && buf[i] != q {
                if buf[i] == LT { throw error("'<' is not allowed in attribute values") }
                if buf[i] == AMP { hasRef = true }
                i += 1
            }
            guard i < buf.count else { throw error("unterminated attribute value", at: vstart) }
            let vr = vstart..<i
            i += 1
            if decode {
                attrs.append((string(n), hasRef ? try decodeRefs(vr) : string(vr)))
            } else if hasRef {
                _ = try decodeRefs(vr)
            }
        }
    }

    func decodeRefs(_ r: Range<Int>) throws(XMLError) -> String {
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
            guard e < r.upperBound else { throw error("unterminated entity reference", at: k) }
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
                    throw error("undefined entity '&\(ent);'", at: k)
                }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            }
            k = e + 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses one element starting at `<`. Returns nil when the element is skipped.
    mutating func element(
        path: inout [String], mode parentMode: XMLKeep, keep: (_ path: [String]) -> XMLKeep, forceKeep: Bool = false
    ) throws(XMLError) -> XMLElement? {
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
        let (attrs, selfClosing) = try attributes(decode: kept)
        var node = kept ? XMLElement(name: string(nameRange), attributes: attrs) : nil
        defer { if parentMode == .container && kept { path.removeLast() } }
        if selfClosing { return node }
        var text: [UInt8] = []
        // Content.
        while true {
            guard i < buf.count else {
                throw error("element <\(string(nameRange))> is not closed", at: nameRange.lowerBound - 1)
            }
            let c = buf[i]
            if c == LT {
                let n = peek(1)
                if n == SLASH {
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
                    if kept, text.contains(where: { !isSpace($0) }) {
                        node?.text = String(decoding: text, as: UTF8.self)
                    }
                    return node
                } else if n == EXCL {
                    if startsWith("<!--") {
                        try comment()
                    } else if startsWith("<![CDATA[") {
                        i += 9
                        let s = i
                        try skipPast("]]>", what: "CDATA section")
                        if kept { text.append(contentsOf: UnsafeBufferPointer(rebasing: buf[s..<(i - 3)])) }
                    } else {
                        throw error("unexpected '<!'")
                    }
                } else if n == QM {
                    try skipPast("?>", what: "processing instruction")
                } else {
                    let child = try element(path: &path, mode: mode, keep: keep)
                    if let child { node?.children.append(child) }
                }
            } else {
                // Character data up to the next '<'.
                let s = i
                var hasRef = false
                while i < buf.count && buf[i] != LT {
                    if buf[i] == AMP { hasRef = true }
                    i += 1
                }
                if kept {
                    if hasRef {
                        text.append(contentsOf: Array(try decodeRefs(s..<i).utf8))
                    } else {
                        text.append(contentsOf: UnsafeBufferPointer(rebasing: buf[s..<i]))
                    }
                } else if hasRef {
                    _ = try decodeRefs(s..<i)
                }
            }
        }
    }
}
