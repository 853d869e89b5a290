// Why a JSON text could not be parsed, and where.

public struct JSONParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// The text is not JSON (RFC 8259): a missing comma, a comment, a trailing comma, a bad escape, …
        case syntax
        /// A byte sequence that is not UTF-8.
        case invalidUTF8
        /// An object has the same key twice. `path` names the second occurrence.
        case duplicateKey
        /// Arrays and objects nested deeper than `JSONParser.maxNestingDepth`.
        case tooDeep
    }

    public var kind: Kind
    /// What is wrong, without the position, e.g. `expected ',' or '}' after object member`.
    public var message: String
    public var position: JSONPosition
    /// Where in the document the error was found (the keys and indices of the enclosing values).
    public var path: JSONPath

    public init(kind: Kind, message: String, position: JSONPosition, path: JSONPath = .root) {
        self.kind = kind
        self.message = message
        self.position = position
        self.path = path
    }

    /// `LINE:COL: message`
    public var description: String { "\(position): \(message)" }
}
