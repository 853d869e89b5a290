import Testing

@testable import ChainCore

@Suite struct JSONParserTests {
    // MARK: Values and positions

    @Test func parsesEveryKindOfValueWithPositions() throws {
        let text = """
            {
              "s": "text",
              "i": -12,
              "n": 3.50,
              "e": 1e3,
              "t": true,
              "f": false,
              "z": null,
              "a": [1, {"k": []}],
              "o": {}
            }
            """
        let value = try JSONParser.parse(text)
        #expect(value.position == JSONPosition(line: 1, column: 1))
        let members = try #require(value.members)
        #expect(members.map(\.key) == ["s", "i", "n", "e", "t", "f", "z", "a", "o"])
        #expect(members.map(\.keyPosition.line) == Array(2...10))
        #expect(members.allSatisfy { $0.keyPosition.column == 3 })
        #expect(value["s"]?.string == "text")
        #expect(value["s"]?.position == JSONPosition(line: 2, column: 8))
        #expect(value["i"]?.number == JSONNumber(literal: "-12", isInteger: true))
        #expect(value["i"]?.number?.intValue == -12)
        #expect(value["n"]?.number == JSONNumber(literal: "3.50", isInteger: false))
        #expect(value["n"]?.number?.intValue == nil)
        #expect(value["n"]?.number?.doubleValue == 3.5)
        #expect(value["e"]?.number?.isInteger == false)
        #expect(value["e"]?.typeName == "number")
        #expect(value["i"]?.typeName == "integer")
        #expect(value["t"]?.bool == true)
        #expect(value["f"]?.bool == false)
        #expect(value["z"]?.isNull == true)
        #expect(value["z"]?.typeName == "null")
        let array = try #require(value["a"])
        #expect(array.typeName == "array")
        #expect(array.elements?.count == 2)
        #expect(array[0]?.position == JSONPosition(line: 9, column: 9))
        #expect(array[1]?.position == JSONPosition(line: 9, column: 12))
        #expect(array[1]?["k"]?.position == JSONPosition(line: 9, column: 18))
        #expect(array[1]?.member("k")?.keyPosition == JSONPosition(line: 9, column: 13))
        #expect(array[2] == nil)
        #expect(value["o"]?.members?.isEmpty == true)
        #expect(value["missing"] == nil)
    }

    @Test func topLevelScalarsAndWhitespace() throws {
        #expect(try JSONParser.parse(" \t\n 42 \n").number?.intValue == 42)
        #expect(try JSONParser.parse("\"x\"").string == "x")
        #expect(try JSONParser.parse("null").isNull)
        #expect(try JSONParser.parse("-0").number?.intValue == 0)
        #expect(try JSONParser.parse("[]").elements == [])
        #expect(try JSONParser.parse("\n\n  7").position == JSONPosition(line: 3, column: 3))
    }

    @Test func integerLiteralsOutsideIntRangeHaveNoIntValue() throws {
        let number = try #require(try JSONParser.parse("99999999999999999999").number)
        #expect(number.isInteger)
        #expect(number.intValue == nil)
        #expect(number.literal == "99999999999999999999")
        #expect(try JSONParser.parse("9223372036854775807").number?.intValue == Int.max)
        #expect(try JSONParser.parse("-9223372036854775808").number?.intValue == Int.min)
        #expect(try JSONParser.parse("1E+2").number == JSONNumber(literal: "1E+2", isInteger: false))
        #expect(try JSONParser.parse("0.5e-3").number?.isInteger == false)
    }

    @Test func stringEscapes() throws {
        let value = try JSONParser.parse(#""a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20AC\uD83D\uDE00\u0000""#)
        #expect(value.string == "a\"b\\c/d\u{08}\u{0C}\n\r\tAé€😀\u{0}")
        #expect(try JSONParser.parse(#""plain é 😀""#).string == "plain é 😀")
        #expect(try JSONParser.parse(#""\\""#).string == "\\")
        #expect(try JSONParser.parse(#""""#).string == "")
    }

    @Test func columnsCountUnicodeScalarsAndLineBreaksOfEveryKind() throws {
        // é is 2 bytes, 😀 is 4 bytes: each is one column.
        let value = try JSONParser.parse("[\"é😀\", 1]")
        #expect(value[1]?.position == JSONPosition(line: 1, column: 8))
        // CRLF and a lone CR are one line break each; a tab is one column.
        let mixed = try JSONParser.parse("[\r\n1,\r\t2,\n3]")
        #expect(
            mixed.elements?.map(\.position) == [
                JSONPosition(line: 2, column: 1), JSONPosition(line: 3, column: 2), JSONPosition(line: 4, column: 1),
            ])
    }

    @Test func byteOrderMarkIsSkippedAndNotCounted() throws {
        let value = try JSONParser.parse([0xEF, 0xBB, 0xBF] + Array("{\"a\": 1}".utf8))
        #expect(value.position == JSONPosition(line: 1, column: 1))
        #expect(value["a"]?.position == JSONPosition(line: 1, column: 7))
    }

    // MARK: Errors

    struct BadInput: CustomTestStringConvertible, Sendable {
        var bytes: [UInt8]
        var expected: String
        init(_ text: String, _ expected: String) {
            bytes = Array(text.utf8)
            self.expected = expected
        }
        init(bytes: [UInt8], _ expected: String) {
            self.bytes = bytes
            self.expected = expected
        }
        var testDescription: String { String(decoding: bytes, as: UTF8.self) }
    }

    static let badInputs: [BadInput] = [
        BadInput("", "1:1: unexpected end of input; expected a JSON value"),
        BadInput("   \n  ", "2:3: unexpected end of input; expected a JSON value"),
        BadInput("{", "1:2: unexpected end of input; the object opened at 1:1 is not closed"),
        BadInput("\n  [1,\n", "3:1: unexpected end of input; the array opened at 2:3 is not closed"),
        BadInput(#"{"a":"#, "1:6: unexpected end of input; expected a JSON value"),
        BadInput("[1,]", "1:3: trailing comma is not allowed"),
        BadInput(#"{"a":1,}"#, "1:7: trailing comma is not allowed"),
        BadInput("{\r\n  \"a\": 1,\r\n}", "2:9: trailing comma is not allowed"),
        BadInput(#"{"a":1 "b":2}"#, "1:8: expected ',' or '}' after object member"),
        BadInput("[1 2]", "1:4: expected ',' or ']' after array element"),
        BadInput("\t[1 2]", "1:5: expected ',' or ']' after array element"),
        BadInput(#"{"a" 1}"#, "1:6: expected ':' after object key"),
        BadInput("{a:1}", "1:2: object keys must be strings in double quotes"),
        BadInput("{'a':1}", "1:2: single quotes are not allowed; JSON strings use double quotes"),
        BadInput("['a']", "1:2: single quotes are not allowed; JSON strings use double quotes"),
        BadInput("{1:1}", "1:2: expected a double-quoted object key or '}'"),
        BadInput(#"{"a":1,2:1}"#, "1:8: expected a double-quoted object key"),
        BadInput("// note\n{}", "1:1: comments are not allowed in JSON"),
        BadInput("{} /* note */", "1:4: comments are not allowed in JSON"),
        BadInput("{\"a\": 1 // note\n}", "1:9: comments are not allowed in JSON"),
        BadInput("# note\n{}", "1:1: comments are not allowed in JSON"),
        BadInput("/", "1:1: unexpected character '/'; expected a JSON value"),
        BadInput("[1] 2", "1:5: unexpected character '2' after the JSON value"),
        BadInput("{}}", "1:3: unexpected character '}' after the JSON value"),
        BadInput("01", "1:1: invalid number: leading zeros are not allowed"),
        BadInput("[-]", "1:2: invalid number: expected a digit after '-'"),
        BadInput("1.", "1:1: invalid number: expected a digit after '.'"),
        BadInput("1.e5", "1:1: invalid number: expected a digit after '.'"),
        BadInput("2e", "1:1: invalid number: expected a digit in the exponent"),
        BadInput("2e+", "1:1: invalid number: expected a digit in the exponent"),
        BadInput("+1", "1:1: unexpected character '+'; expected a JSON value"),
        BadInput(".5", "1:1: unexpected character '.'; expected a JSON value"),
        BadInput(
            "True", "1:1: invalid literal 'True'; expected true, false, null, a number, or a string in double quotes"),
        BadInput(
            "[NaN]", "1:2: invalid literal 'NaN'; expected true, false, null, a number, or a string in double quotes"),
        BadInput(
            "nul", "1:1: invalid literal 'nul'; expected true, false, null, a number, or a string in double quotes"),
        BadInput(
            "truex",
            "1:1: invalid literal 'truex'; expected true, false, null, a number, or a string in double quotes"),
        BadInput(
            "[\"é\", x]",
            "1:7: invalid literal 'x'; expected true, false, null, a number, or a string in double quotes"),
        BadInput("\"abc", "1:1: unterminated string"),
        BadInput("\"abc\\", "1:1: unterminated string"),
        BadInput("[\"a\\n\nb\"]", "1:2: unterminated string (a string cannot contain a raw line break; write \\n)"),
        BadInput("\"a\tb\"", "1:3: control character U+0009 must be escaped in a string; write \\t"),
        BadInput("\"a\u{01}b\"", "1:3: control character U+0001 must be escaped in a string; write \\u0001"),
        BadInput(#""\x""#, "1:2: invalid escape sequence '\\x' in string"),
        BadInput(#""ok\é""#, "1:4: invalid escape sequence '\\é' in string"),
        BadInput(#""\u12""#, "1:2: invalid \\u escape: expected 4 hexadecimal digits"),
        BadInput(#""\u12G4""#, "1:2: invalid \\u escape: expected 4 hexadecimal digits"),
        BadInput(#""\uD83D""#, "1:2: invalid \\u escape: unpaired UTF-16 surrogate \\uD83D"),
        BadInput(#""\uD83D\u0041""#, "1:2: invalid \\u escape: unpaired UTF-16 surrogate \\uD83D"),
        BadInput(#""x\uDE00""#, "1:3: invalid \\u escape: unpaired UTF-16 surrogate \\uDE00"),
        BadInput(bytes: [0x22, 0xC3, 0x28, 0x22], "1:2: invalid UTF-8 (byte 0xC3); the text must be UTF-8"),
        BadInput(bytes: [0x22, 0xED, 0xA0, 0x80, 0x22], "1:2: invalid UTF-8 (byte 0xED); the text must be UTF-8"),
        BadInput(bytes: [0x22, 0xC0, 0xAF, 0x22], "1:2: invalid UTF-8 (byte 0xC0); the text must be UTF-8"),
        BadInput(bytes: [0x22, 0xF0, 0x9F, 0x98, 0x22], "1:2: invalid UTF-8 (byte 0xF0); the text must be UTF-8"),
        BadInput(bytes: [0x22, 0x61, 0x22, 0xFF], "1:4: invalid UTF-8 (byte 0xFF); the text must be UTF-8"),
        BadInput(bytes: [0xFF], "1:1: invalid UTF-8 (byte 0xFF); the text must be UTF-8"),
        BadInput("é", "1:1: unexpected character 'é'; expected a JSON value"),
        BadInput("\u{01}", "1:1: unexpected character U+0001; expected a JSON value"),
    ]

    @Test(arguments: badInputs)
    func syntaxErrorsNameLineColumnAndCause(input: BadInput) {
        switch JSONParser.parseResult(input.bytes) {
        case .success(let value):
            Issue.record("parsed \(value)")
        case .failure(let error):
            #expect(error.description == input.expected)
        }
    }

    @Test func errorKinds() throws {
        #expect(parseError("[1,]")?.kind == .syntax)
        #expect(parseError("\"\u{FF}")?.kind == .syntax)
        #expect(try #require(parseError(bytes: [0x22, 0xFF, 0x22])).kind == .invalidUTF8)
        #expect(parseError(#"{"a":1,"a":2}"#)?.kind == .duplicateKey)
    }

    @Test func throwingParseThrowsTheSameError() {
        #expect(
            throws: JSONParseError(
                kind: .syntax, message: "trailing comma is not allowed",
                position: JSONPosition(line: 1, column: 4), path: JSONPath([.index(0)]))
        ) {
            try JSONParser.parse("[[1,]]")
        }
    }

    @Test func duplicateKeysAreErrorsWithThePathAndBothPositions() throws {
        let error = try #require(parseError(#"{"a":1,"a":2}"#))
        #expect(error.description == #"1:8: duplicate key "a" (first defined at 1:2)"#)
        #expect(error.path.description == "a")

        let nested = try #require(parseError("{\"x\": [{\"a\": 1,\n  \"a\": 2}]}"))
        #expect(nested.description == #"2:3: duplicate key "a" (first defined at 1:9)"#)
        #expect(nested.path.description == "x[0].a")
        #expect(nested.kind == .duplicateKey)
    }

    @Test func duplicateKeysAreFoundInLargeObjects() throws {
        let keys = (0..<100).map { "\"k\($0)\": \($0)" }
        let ok = try JSONParser.parse("{" + keys.joined(separator: ", ") + "}")
        #expect(ok.members?.count == 100)
        let error = try #require(parseError("{" + keys.joined(separator: ", ") + ", \"k57\": 0}"))
        #expect(error.message.hasPrefix(#"duplicate key "k57" (first defined at 1:"#))
        #expect(error.path.description == "k57")
        let error2 = try #require(parseError("{" + keys.joined(separator: ", ") + ", \"x\": 0, \"x\": 1}"))
        #expect(error2.path.description == "x")
    }

    @Test func errorPathsNameTheEnclosingValues() throws {
        let error = try #require(parseError("{\"policies\": [{}, {\"match\": {\"domains\": [\"a\" \"b\"]}}]}"))
        // The missing comma is an error of the array, after its element 0.
        #expect(error.path.description == "policies[1].match.domains")
        let inner = try #require(parseError("{\"policies\": [{}, {\"match\": {\"domains\": [\"a\", tru]}}]}"))
        #expect(inner.path.description == "policies[1].match.domains[1]")
    }

    @Test func deepNestingIsAnErrorNotACrash() throws {
        let depth = JSONParser.maxNestingDepth
        let ok = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(try JSONParser.parse(ok).elements?.count == 1)
        let tooDeep = try #require(parseError(String(repeating: "[", count: 100_000)))
        #expect(tooDeep.kind == .tooDeep)
        #expect(tooDeep.description == "1:\(depth + 1): nesting is deeper than \(depth) levels")
        let objects = try #require(parseError(String(repeating: "{\"a\":", count: depth + 1)))
        #expect(objects.kind == .tooDeep)
    }

    @Test(.timeLimit(.minutes(1)))
    func largeSingleLineDocumentsParseInLinearTime() throws {
        // 200k values on one line: column tracking must not rescan the line for every value.
        let count = 200_000
        let text = "[" + (0..<count).map { "{\"k\":\($0),\"s\":\"é\"}" }.joined(separator: ",") + "]"
        let value = try JSONParser.parse(text)
        let elements = try #require(value.elements)
        #expect(elements.count == count)
        #expect(elements[1].position == JSONPosition(line: 1, column: 18))
        #expect(elements[count - 1]["s"]?.string == "é")
    }

    @Test func malformedInputNeverCrashes() {
        // Deterministic mutations of a valid document: every result is a value or an error, never a trap.
        let base = Array(
            """
            {"version": 1, "policies": [{"name": "web-tier", "match": {"domains": ["web-*"]},
             "maxDepth": 3, "protect": ["/a/\\u00e9\\ud83d\\ude00"], "x": [true, false, null, -1.5e3]}]}
            """.utf8)
        var generator = SplitMix64(seed: 42)
        let alphabet =
            Array("{}[]\",:\\/*-+.0123456789eEtrufalsn \n\r\t'#".utf8) + [0x00, 0x80, 0xC3, 0xED, 0xF4, 0xFF]
        var parsed = 0
        for _ in 0..<3000 {
            var bytes = base
            for _ in 0..<Int(generator.next() % 4 + 1) {
                let position = Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 3 {
                case 0: bytes[position] = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                case 1: bytes.remove(at: position)
                default: bytes.insert(alphabet[Int(generator.next() % UInt64(alphabet.count))], at: position)
                }
            }
            if case .success = JSONParser.parseResult(bytes) { parsed += 1 }
            for cut in [bytes.count / 3, bytes.count / 2] {
                _ = JSONParser.parseResult(Array(bytes[..<cut]))
            }
        }
        #expect(parsed < 3000)
    }

    // MARK: Paths

    @Test func pathsRenderLikeDiagnostics() {
        #expect(JSONPath.root.description == "")
        #expect(JSONPath([.key("version")]).description == "version")
        #expect(
            JSONPath([.key("policies"), .index(0), .key("match"), .key("domains"), .index(2)]).description
                == "policies[0].match.domains[2]")
        #expect(JSONPath([.key("policies"), .index(1), .key("a b")]).description == #"policies[1]["a b"]"#)
        #expect(JSONPath([.key("")]).description == #"[""]"#)
        #expect(JSONPath.root.appending("x").appending(index: 3).description == "x[3]")
    }

    // MARK: Helpers

    func parseError(_ text: String) -> JSONParseError? {
        parseError(bytes: Array(text.utf8))
    }

    func parseError(bytes: [UInt8]) -> JSONParseError? {
        if case .failure(let error) = JSONParser.parseResult(bytes) { return error }
        return nil
    }
}

