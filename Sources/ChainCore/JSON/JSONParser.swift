// A strict RFC 8259 JSON parser over UTF-8 bytes that records the position of every value and object key.
//
// Strict means: no comments, no trailing commas, no single quotes, no NaN/Infinity, no leading zeros, no raw control
// characters in strings, no unpaired UTF-16 surrogates in `\u` escapes, no invalid UTF-8 and no duplicate object keys.
// A UTF-8 byte order mark at the very start is skipped (RFC 8259 §8.1 allows parsers to ignore it).
// Positions are 1-based; columns count Unicode scalars (see `JSONPosition`).

public enum JSONParser {
    /// The deepest nesting of arrays and objects accepted; deeper input is an error, never a stack overflow.
    public static let maxNestingDepth = 512

    /// Parses a complete JSON text. Throws `JSONParseError`.
    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        try parseResult(bytes).get()
    }

    /// Parses a complete JSON text. Throws `JSONParseError`.
    public static func parse(_ text: String) throws -> JSONValue {
        try parseResult(Array(text.utf8)).get()
    }

    /// Parses a complete JSON text.
    public static func parseResult(_ bytes: [UInt8]) -> Result<JSONValue, JSONParseError> {
        bytes.withUnsafeBufferPointer { buffer in
            var parser = Parser(buffer)
            do throws(PendingError) {
                return .success(try parser.document())
            } catch {
                return .failure(error.finished())
            }
        }
    }
}

// MARK: - Implementation

private enum Byte {
    static let tab: UInt8 = 0x09
    static let newline: UInt8 = 0x0A
    static let carriageReturn: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let apostrophe: UInt8 = 0x27
    static let asterisk: UInt8 = 0x2A
    static let plus: UInt8 = 0x2B
    static let comma: UInt8 = 0x2C
    static let minus: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let slash: UInt8 = 0x2F
    static let zero: UInt8 = 0x30
    static let nine: UInt8 = 0x39
    static let colon: UInt8 = 0x3A
    static let upperE: UInt8 = 0x45
    static let openBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let closeBracket: UInt8 = 0x5D
    static let lowerE: UInt8 = 0x65
    static let openBrace: UInt8 = 0x7B
    static let closeBrace: UInt8 = 0x7D
    static let hash: UInt8 = 0x23

    static func isDigit(_ b: UInt8) -> Bool { b >= zero && b <= nine }
    static func isLetter(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
    static func isWordByte(_ b: UInt8) -> Bool { isLetter(b) || isDigit(b) || b == 0x5F || b == 0x24 }
    static func isContinuation(_ b: UInt8) -> Bool { b & 0xC0 == 0x80 }
}

/// An error while parsing. The path is collected in reverse while the error unwinds through the enclosing objects
/// and arrays; `finished()` puts it in order.
private struct PendingError: Error {
    var error: JSONParseError
    var reversedPath: [JSONPath.Component] = []

    func finished() -> JSONParseError {
        var result = error
        result.path = JSONPath(reversedPath.reversed())
        return result
    }
}

private struct Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    let start: Int
    var index: Int
    /// Current line number and the offset where it starts; kept up to date by `skipWhitespace`.
    var line = 1
    var lineStart: Int
    /// Column cache: the column of `columnOffset`, valid for the line starting at `columnLineStart`.
    var columnLineStart: Int
    var columnOffset: Int
    var column = 1
    /// Reused buffer for strings with escapes.
    var scratch: [UInt8] = []

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
        let bom = bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF
        start = bom ? 3 : 0
        index = start
        lineStart = start
        columnLineStart = start
        columnOffset = start
    }

    // MARK: Positions

    /// The position of `offset`, which must be on the current line and not before the last position asked for.
    /// Amortised O(1): the column is counted on from the previous call.
    mutating func position(_ offset: Int) -> JSONPosition {
        if columnLineStart != lineStart {
            columnLineStart = lineStart
            columnOffset = lineStart
            column = 1
        }
        var i = columnOffset
        while i < offset {
            if !Byte.isContinuation(bytes[i]) { column += 1 }
            i += 1
        }
        columnOffset = offset
        return JSONPosition(line: line, column: column)
    }

    /// The position of any offset, counted from the start (used only for errors).
    func positionFromStart(_ offset: Int) -> JSONPosition {
        var line = 1
        var column = 1
        var i = start
        let end = min(offset, bytes.count)
        while i < end {
            let b = bytes[i]
            if b == Byte.newline {
                line += 1
                column = 1
            } else if b == Byte.carriageReturn {
                if i + 1 < bytes.count && bytes[i + 1] == Byte.newline {
                    i += 1
                    if i >= end {
                        // `offset` points at the `\n` of a `\r\n`: still the end of this line.
                        column += 1
                        break
                    }
                }
                line += 1
                column = 1
            } else if !Byte.isContinuation(b) {
                column += 1
            }
            i += 1
        }
        return JSONPosition(line: line, column: column)
    }

    func error(_ message: String, at offset: Int, kind: JSONParseError.Kind = .syntax) -> PendingError {
        PendingError(error: JSONParseError(kind: kind, message: message, position: positionFromStart(offset)))
    }

    // MARK: Document

    mutating func document() throws(PendingError) -> JSONValue {
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if index < bytes.count {
            throw unexpected(at: index) { "unexpected character \($0) after the JSON value" }
        }
        return value
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case Byte.space, Byte.tab:
                index += 1
            case Byte.newline:
                index += 1
                line += 1
                lineStart = index
            case Byte.carriageReturn:
                index += 1
                if index < bytes.count && bytes[index] == Byte.newline { index += 1 }
                line += 1
                lineStart = index
            default:
                return
            }
        }
    }

    // MARK: Values

    mutating func parseValue(depth: Int) throws(PendingError) -> JSONValue {
        skipWhitespace()
        guard index < bytes.count else {
            throw error("unexpected end of input; expected a JSON value", at: index)
        }
        let position = position(index)
        switch bytes[index] {
        case Byte.openBrace:
            return try parseObject(at: position, depth: depth)
        case Byte.openBracket:
            return try parseArray(at: position, depth: depth)
        case Byte.quote:
            return JSONValue(.string(try parseString()), at: position)
        case Byte.minus, Byte.zero...Byte.nine:
            return JSONValue(.number(try parseNumber()), at: position)
        case let b where Byte.isLetter(b):
            return JSONValue(try parseLiteral(), at: position)
        default:
            throw unexpected(at: index) { "unexpected character \($0); expected a JSON value" }
        }
    }

    mutating func parseObject(at open: JSONPosition, depth: Int) throws(PendingError) -> JSONValue {
        guard depth < JSONParser.maxNestingDepth else {
            throw error("nesting is deeper than \(JSONParser.maxNestingDepth) levels", at: index, kind: .tooDeep)
        }
        index += 1
        var members: [JSONMember] = []
        var keyIndex: [String: Int] = [:]
        skipWhitespace()
        if index < bytes.count && bytes[index] == Byte.closeBrace {
            index += 1
            return JSONValue(.object(members), at: open)
        }
        var afterComma = false
        while true {
            guard index < bytes.count else { throw unclosed("object", open) }
            guard bytes[index] == Byte.quote else {
                throw unexpectedKey(at: index, afterComma: afterComma)
            }
            let keyPosition = position(index)
            let key = try parseString()
            if let first = firstPosition(of: key, in: members, index: &keyIndex) {
                var pending = error(
                    "duplicate key \(JSONText.quotedShort(key)) (first defined at \(first))", at: index,
                    kind: .duplicateKey)
                pending.error.position = keyPosition
                pending.reversedPath = [.key(key)]
                throw pending
            }
            skipWhitespace()
            guard index < bytes.count else { throw unclosed("object", open) }
            guard bytes[index] == Byte.colon else {
                throw unexpected(at: index, expected: "expected ':' after object key")
            }
            index += 1
            let value: JSONValue
            do {
                value = try parseValue(depth: depth + 1)
            } catch {
                var pending = error
                pending.reversedPath.append(.key(key))
                throw pending
            }
            members.append(JSONMember(key: key, keyPosition: keyPosition, value: value))
            skipWhitespace()
            guard index < bytes.count else { throw unclosed("object", open) }
            switch bytes[index] {
            case Byte.comma:
                let comma = index
                index += 1
                skipWhitespace()
                if index < bytes.count && bytes[index] == Byte.closeBrace {
                    throw error("trailing comma is not allowed", at: comma)
                }
                afterComma = true
            case Byte.closeBrace:
                index += 1
                return JSONValue(.object(members), at: open)
            default:
                throw unexpected(at: index, expected: "expected ',' or '}' after object member")
            }
        }
    }

    /// Where `key` was first defined in `members`, if it is a duplicate. Small objects are scanned; large ones use
    /// `index`, which is filled lazily.
    func firstPosition(of key: String, in members: [JSONMember], index: inout [String: Int]) -> JSONPosition? {
        if members.count < 16 {
            return members.first { $0.key == key }?.keyPosition
        }
        if index.isEmpty {
            for (i, member) in members.enumerated() where index[member.key] == nil { index[member.key] = i }
        } else {
            let last = members.count - 1
            if index[members[last].key] == nil { index[members[last].key] = last }
        }
        guard let i = index[key] else { return nil }
        return members[i].keyPosition
    }

    mutating func parseArray(at open: JSONPosition, depth: Int) throws(PendingError) -> JSONValue {
        guard depth < JSONParser.maxNestingDepth else {
            throw error("nesting is deeper than \(JSONParser.maxNestingDepth) levels", at: index, kind: .tooDeep)
        }
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count && bytes[index] == Byte.closeBracket {
            index += 1
            return JSONValue(.array(elements), at: open)
        }
        while true {
            guard index < bytes.count else { throw unclosed("array", open) }
            do {
                elements.append(try parseValue(depth: depth + 1))
            } catch {
                var pending = error
                pending.reversedPath.append(.index(elements.count))
                throw pending
            }
            skipWhitespace()
            guard index < bytes.count else { throw unclosed("array", open) }
            switch bytes[index] {
            case Byte.comma:
                let comma = index
                index += 1
                skipWhitespace()
                if index < bytes.count && bytes[index] == Byte.closeBracket {
                    throw error("trailing comma is not allowed", at: comma)
                }
            case Byte.closeBracket:
                index += 1
                return JSONValue(.array(elements), at: open)
            default:
                throw unexpected(at: index, expected: "expected ',' or ']' after array element")
            }
        }
    }

    // MARK: Strings

    /// Parses the string starting at the opening quote at `index`.
    mutating func parseString() throws(PendingError) -> String {
        let quote = index
        index += 1
        let contentStart = index
        // Fast path: no escapes.
        while index < bytes.count {
            let b = bytes[index]
            if b == Byte.quote {
                let s = String(decoding: UnsafeBufferPointer(rebasing: bytes[contentStart..<index]), as: UTF8.self)
                index += 1
                return s
            }
            if b == Byte.backslash { break }
            if b < 0x20 { throw controlCharacter(b, at: index, quote: quote) }
            if b < 0x80 {
                index += 1
            } else {
                index = try validateUTF8(at: index)
            }
        }
        guard index < bytes.count else { throw error("unterminated string", at: quote) }
        // Slow path: copy what was scanned, then decode escapes.
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[contentStart..<index]))
        while index < bytes.count {
            let b = bytes[index]
            if b == Byte.quote {
                index += 1
                return String(decoding: scratch, as: UTF8.self)
            }
            if b == Byte.backslash {
                try parseEscape(quote: quote)
            } else if b < 0x20 {
                throw controlCharacter(b, at: index, quote: quote)
            } else if b < 0x80 {
                scratch.append(b)
                index += 1
            } else {
                let end = try validateUTF8(at: index)
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<end]))
                index = end
            }
        }
        throw error("unterminated string", at: quote)
    }

    func controlCharacter(_ b: UInt8, at offset: Int, quote: Int) -> PendingError {
        if b == Byte.newline || b == Byte.carriageReturn {
            return error("unterminated string (a string cannot contain a raw line break; write \\n)", at: quote)
        }
        let name = "U+" + JSONText.hex(UInt32(b), width: 4)
        let hint = b == Byte.tab ? "; write \\t" : "; write \\u" + JSONText.hex(UInt32(b), width: 4)
        return error("control character \(name) must be escaped in a string\(hint)", at: offset)
    }

    /// Decodes the escape sequence at `index` (a backslash) into `scratch`. `quote` is where the string began.
    mutating func parseEscape(quote: Int) throws(PendingError) {
        let backslash = index
        guard index + 1 < bytes.count else { throw error("unterminated string", at: quote) }
        let c = bytes[index + 1]
        index += 2
        switch c {
        case Byte.quote: scratch.append(Byte.quote)
        case Byte.backslash: scratch.append(Byte.backslash)
        case Byte.slash: scratch.append(Byte.slash)
        case 0x62: scratch.append(0x08)  // b
        case 0x66: scratch.append(0x0C)  // f
        case 0x6E: scratch.append(Byte.newline)  // n
        case 0x72: scratch.append(Byte.carriageReturn)  // r
        case 0x74: scratch.append(Byte.tab)  // t
        case 0x75:  // u
            let unit = try hex4(at: index, escapeAt: backslash)
            index += 4
            var scalarValue = UInt32(unit)
            if unit >= 0xD800 && unit <= 0xDBFF {
                guard index + 1 < bytes.count, bytes[index] == Byte.backslash, bytes[index + 1] == 0x75,
                    let low = hex4IfValid(at: index + 2), low >= 0xDC00 && low <= 0xDFFF
                else {
                    throw unpairedSurrogate(unit, at: backslash)
                }
                index += 6
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            } else if unit >= 0xDC00 && unit <= 0xDFFF {
                throw unpairedSurrogate(unit, at: backslash)
            }
            guard let scalar = Unicode.Scalar(scalarValue) else { throw unpairedSurrogate(unit, at: backslash) }
            if let encoded = UTF8.encode(scalar) { scratch.append(contentsOf: encoded) }
        default:
            throw error("invalid escape sequence '\\\(character(at: backslash + 1))' in string", at: backslash)
        }
    }

    func unpairedSurrogate(_ unit: UInt16, at offset: Int) -> PendingError {
        error("invalid \\u escape: unpaired UTF-16 surrogate \\u\(JSONText.hex(UInt32(unit), width: 4))", at: offset)
    }

    func hex4(at offset: Int, escapeAt backslash: Int) throws(PendingError) -> UInt16 {
        guard let value = hex4IfValid(at: offset) else {
            throw error("invalid \\u escape: expected 4 hexadecimal digits", at: backslash)
        }
        return value
    }

    func hex4IfValid(at offset: Int) -> UInt16? {
        guard offset + 4 <= bytes.count else { return nil }
        var value: UInt16 = 0
        for i in offset..<(offset + 4) {
            let b = bytes[i]
            let digit: UInt8
            switch b {
            case Byte.zero...Byte.nine: digit = b - Byte.zero
            case 0x41...0x46: digit = b - 0x41 + 10
            case 0x61...0x66: digit = b - 0x61 + 10
            default: return nil
            }
            value = value << 4 | UInt16(digit)
        }
        return value
    }

    /// Validates the UTF-8 sequence starting at `offset` (a byte ≥ 0x80) and returns the offset after it.
    func validateUTF8(at offset: Int) throws(PendingError) -> Int {
        let lead = bytes[offset]
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            secondRange = 0x80...0x9F
        case 0xF0:
            length = 4
            secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            secondRange = 0x80...0x8F
        default:
            throw invalidUTF8(at: offset)
        }
        for i in 1..<length {
            guard offset + i < bytes.count else { throw invalidUTF8(at: offset) }
            let b = bytes[offset + i]
            let ok = i == 1 ? secondRange.contains(b) : Byte.isContinuation(b)
            guard ok else { throw invalidUTF8(at: offset) }
        }
        return offset + length
    }

    func invalidUTF8(at offset: Int) -> PendingError {
        error(
            "invalid UTF-8 (byte 0x\(JSONText.hex(UInt32(bytes[offset]), width: 2))); the text must be UTF-8",
            at: offset, kind: .invalidUTF8)
    }

    // MARK: Numbers and literals

    mutating func parseNumber() throws(PendingError) -> JSONNumber {
        let numberStart = index
        var isInteger = true
        if bytes[index] == Byte.minus {
            index += 1
            guard index < bytes.count, Byte.isDigit(bytes[index]) else {
                throw error("invalid number: expected a digit after '-'", at: numberStart)
            }
        }
        if bytes[index] == Byte.zero {
            index += 1
            if index < bytes.count && Byte.isDigit(bytes[index]) {
                throw error("invalid number: leading zeros are not allowed", at: numberStart)
            }
        } else {
            skipDigits()
        }
        if index < bytes.count && bytes[index] == Byte.dot {
            isInteger = false
            index += 1
            guard index < bytes.count, Byte.isDigit(bytes[index]) else {
                throw error("invalid number: expected a digit after '.'", at: numberStart)
            }
            skipDigits()
        }
        if index < bytes.count && (bytes[index] == Byte.lowerE || bytes[index] == Byte.upperE) {
            isInteger = false
            index += 1
            if index < bytes.count && (bytes[index] == Byte.plus || bytes[index] == Byte.minus) { index += 1 }
            guard index < bytes.count, Byte.isDigit(bytes[index]) else {
                throw error("invalid number: expected a digit in the exponent", at: numberStart)
            }
            skipDigits()
        }
        let literal = String(decoding: UnsafeBufferPointer(rebasing: bytes[numberStart..<index]), as: UTF8.self)
        return JSONNumber(literal: literal, isInteger: isInteger)
    }

    mutating func skipDigits() {
        while index < bytes.count && Byte.isDigit(bytes[index]) { index += 1 }
    }

    mutating func parseLiteral() throws(PendingError) -> JSONValue.Kind {
        let wordStart = index
        while index < bytes.count && Byte.isWordByte(bytes[index]) { index += 1 }
        let word = String(decoding: UnsafeBufferPointer(rebasing: bytes[wordStart..<index]), as: UTF8.self)
        switch word {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "null": return .null
        default:
            let shown = word.count > 40 ? String(word.prefix(40)) + "…" : word
            throw error(
                "invalid literal '\(shown)'; expected true, false, null, a number, or a string in double quotes",
                at: wordStart)
        }
    }

    // MARK: Error helpers

    /// An error for an unexpected byte at `offset`, recognising comments, single quotes and bad UTF-8. `message`
    /// receives the character as shown in messages (`'x'` or `U+0001`).
    func unexpected(at offset: Int, message: (String) -> String) -> PendingError {
        let b = bytes[offset]
        if b == Byte.slash && offset + 1 < bytes.count
            && (bytes[offset + 1] == Byte.slash || bytes[offset + 1] == Byte.asterisk)
        {
            return error("comments are not allowed in JSON", at: offset)
        }
        if b == Byte.hash {
            return error("comments are not allowed in JSON", at: offset)
        }
        if b == Byte.apostrophe {
            return error("single quotes are not allowed; JSON strings use double quotes", at: offset)
        }
        if b >= 0x80 {
            do {
                _ = try validateUTF8(at: offset)
            } catch {
                return error
            }
        }
        return error(message(quotedCharacter(at: offset)), at: offset)
    }

    func unexpected(at offset: Int, expected: String) -> PendingError {
        unexpected(at: offset) { _ in expected }
    }

    func unexpectedKey(at offset: Int, afterComma: Bool) -> PendingError {
        let b = bytes[offset]
        if Byte.isLetter(b) || b == 0x5F || b == 0x24 {
            return error("object keys must be strings in double quotes", at: offset)
        }
        let what = afterComma ? "expected a double-quoted object key" : "expected a double-quoted object key or '}'"
        return unexpected(at: offset, expected: what)
    }

    func unclosed(_ what: String, _ open: JSONPosition) -> PendingError {
        error("unexpected end of input; the \(what) opened at \(open) is not closed", at: bytes.count)
    }

    /// `'x'` for a printable character, `U+0001` for a control character.
    func quotedCharacter(at offset: Int) -> String {
        let text = character(at: offset)
        return text.hasPrefix("U+") ? text : "'" + text + "'"
    }

    /// The character at `offset` (decoded from UTF-8), or `U+0001` for a control character.
    func character(at offset: Int) -> String {
        guard offset < bytes.count else { return "" }
        let b = bytes[offset]
        if b < 0x80 {
            if b < 0x20 || b == 0x7F { return "U+" + JSONText.hex(UInt32(b), width: 4) }
            return String(UnicodeScalar(b))
        }
        var end = offset + 1
        while end < bytes.count && Byte.isContinuation(bytes[end]) && end - offset < 4 { end += 1 }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[offset..<end]), as: UTF8.self)
    }
}
