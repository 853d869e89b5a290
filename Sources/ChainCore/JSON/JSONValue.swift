// The value tree produced by `JSONParser`: every value and every object key keeps its source position.

/// A 1-based place in a JSON text.
///
/// `line` counts line breaks (`\n`, `\r\n` or a lone `\r`). `column` counts Unicode scalars from the start of the
/// line, so a tab is one column and `é` is one column (not two bytes). A UTF-8 byte order mark at the start of the
/// text is not counted.
public struct JSONPosition: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    /// `LINE:COL`
    public var description: String { "\(line):\(column)" }

    public static func < (lhs: JSONPosition, rhs: JSONPosition) -> Bool {
        (lhs.line, lhs.column) < (rhs.line, rhs.column)
    }
}

/// A JSON number, kept as written.
public struct JSONNumber: Hashable, Sendable, CustomStringConvertible {
    /// The literal exactly as it appears in the text, e.g. `-12`, `3.50`, `1e3`.
    public var literal: String
    /// True when the literal has neither a fraction nor an exponent (`3` is an integer; `3.0` and `3e0` are not).
    public var isInteger: Bool

    public init(literal: String, isInteger: Bool) {
        self.literal = literal
        self.isInteger = isInteger
    }

    /// The value as `Int`, for an integer literal that fits; nil otherwise.
    public var intValue: Int? { isInteger ? Int(literal) : nil }

    /// The value as `Double` (may be rounded or infinite for extreme literals).
    public var doubleValue: Double? { Double(literal) }

    public var description: String { literal }
}

/// One `"key": value` pair of an object, in source order.
public struct JSONMember: Hashable, Sendable {
    public var key: String
    /// Position of the key's opening quote.
    public var keyPosition: JSONPosition
    public var value: JSONValue

    public init(key: String, keyPosition: JSONPosition, value: JSONValue) {
        self.key = key
        self.keyPosition = keyPosition
        self.value = value
    }
}

/// A parsed JSON value with the position of its first character.
public struct JSONValue: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// Members in source order. Keys are unique (the parser rejects duplicates).
        case object([JSONMember])
        case array([JSONValue])
        case string(String)
        case number(JSONNumber)
        case bool(Bool)
        case null
    }

    public var kind: Kind
    /// Position of the value's first character (`{`, `[`, `"`, digit, `-`, `t`, `f`, `n`).
    public var position: JSONPosition

    public init(_ kind: Kind, at position: JSONPosition) {
        self.kind = kind
        self.position = position
    }

    /// The members, if this is an object.
    public var members: [JSONMember]? {
        if case .object(let members) = kind { return members }
        return nil
    }

    /// The elements, if this is an array.
    public var elements: [JSONValue]? {
        if case .array(let elements) = kind { return elements }
        return nil
    }

    public var string: String? {
        if case .string(let s) = kind { return s }
        return nil
    }

    public var number: JSONNumber? {
        if case .number(let n) = kind { return n }
        return nil
    }

    public var bool: Bool? {
        if case .bool(let b) = kind { return b }
        return nil
    }

    public var isNull: Bool { kind == .null }

    /// The member named `key`, if this is an object that has it.
    public func member(_ key: String) -> JSONMember? {
        members?.first { $0.key == key }
    }

    /// The value of member `key`, if this is an object that has it.
    public subscript(key: String) -> JSONValue? { member(key)?.value }

    /// The element at `index`, if this is an array that long.
    public subscript(index: Int) -> JSONValue? {
        guard let elements, elements.indices.contains(index) else { return nil }
        return elements[index]
    }

    /// `object`, `array`, `string`, `integer` (a number without fraction or exponent), `number`, `boolean`, `null`.
    public var typeName: String {
        switch kind {
        case .object: return "object"
        case .array: return "array"
        case .string: return "string"
        case .number(let n): return n.isInteger ? "integer" : "number"
        case .bool: return "boolean"
        case .null: return "null"
        }
    }
}
