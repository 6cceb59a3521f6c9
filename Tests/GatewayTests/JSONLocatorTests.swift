import Testing

@testable import GatewayConfig

// Note: `Testing` also exports a type named `SourceLocation`, so locations are
// compared through their "line:column" description instead of by type name.

private func locate(_ text: String) throws -> JSONLocator {
    try JSONLocator(parsing: Array(text.utf8))
}

private func syntaxError(_ bytes: [UInt8]) -> JSONSyntaxError? {
    do {
        _ = try JSONLocator(parsing: bytes)
        return nil
    } catch {
        return error
    }
}

private func syntaxError(_ text: String) -> JSONSyntaxError? {
    syntaxError(Array(text.utf8))
}

/// SplitMix64: a tiny deterministic generator so the fuzz test is reproducible.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private struct TestKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue; self.intValue = Int(stringValue) }
    init(intValue: Int) { self.stringValue = "Index \(intValue)"; self.intValue = intValue }
}

struct JSONLocatorSyntaxCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: String
    var location: String
    var fragment: String
    var testDescription: String { name }
}

private let sampleDocument = """
    {
      "listeners": [
        { "name": "public", "address": "0.0.0.0:8443" }
      ],
      "upstreams": {
        "users": { "targets": ["http://127.0.0.1:9001", { "url": "http://x", "weight": 3 }] },
        "my.svc": { "targets": [] }
      },
      "routes": [
        {},
        { "name": "b" },
        { "match": { "path_prefix": "/api/users" } }
      ]
    }

    """

@Suite struct JSONLocatorTests {

    // MARK: Locations

    @Test func valueLocationsInMultiLineDocument() throws {
        let doc = try locate(sampleDocument)
        let expected: [(String, String)] = [
            ("", "1:1"),
            ("listeners", "2:16"),
            ("listeners[0]", "3:5"),
            ("listeners[0].name", "3:15"),
            ("listeners[0].address", "3:36"),
            ("upstreams", "5:16"),
            ("upstreams.users", "6:14"),
            ("upstreams.users.targets", "6:27"),
            ("upstreams.users.targets[0]", "6:28"),
            ("upstreams.users.targets[1]", "6:53"),
            ("upstreams.users.targets[1].weight", "6:84"),
            (#"upstreams["my.svc"]"#, "7:15"),
            ("routes", "9:13"),
            ("routes[0]", "10:5"),
            ("routes[1]", "11:5"),
            ("routes[2]", "12:5"),
            ("routes[2].match", "12:16"),
            ("routes[2].match.path_prefix", "12:33"),
        ]
        for (path, location) in expected {
            #expect(doc.location(of: path)?.description == location, "value at \(path)")
        }
        #expect(doc.location(of: "routes[3]") == nil)
        #expect(doc.location(of: "routes.x") == nil)
        #expect(doc.location(of: "upstreams.my.svc") == nil)
        #expect(doc.location(of: "routes[") == nil)
        #expect(doc.duplicateKeys.isEmpty)
    }

    @Test func keyLocationsInMultiLineDocument() throws {
        let doc = try locate(sampleDocument)
        let expected: [(String, String)] = [
            ("listeners", "2:3"),
            ("listeners[0].name", "3:7"),
            ("listeners[0].address", "3:25"),
            ("upstreams", "5:3"),
            ("upstreams.users", "6:5"),
            ("upstreams.users.targets", "6:16"),
            ("upstreams.users.targets[1].weight", "6:74"),
            (#"upstreams["my.svc"]"#, "7:5"),
            ("routes[2].match", "12:7"),
            ("routes[2].match.path_prefix", "12:18"),
        ]
        for (path, location) in expected {
            #expect(doc.keyLocation(of: path)?.description == location, "key at \(path)")
        }
        #expect(doc.keyLocation(of: "") == nil, "the root has no key")
        #expect(doc.keyLocation(of: "routes[2]") == nil, "array elements have no key")
        #expect(doc.keyLocation(of: "routes[2].match.host") == nil)
    }

    @Test func nearestLocationFallsBackToDeepestAncestor() throws {
        let doc = try locate(sampleDocument)
        #expect(doc.nearestLocation(of: "routes[2].match.host").description == "12:16")
        #expect(doc.nearestLocation(of: "routes[2].match.path_prefix").description == "12:33")
        #expect(doc.nearestLocation(of: "routes[7].upstream").description == "9:13")
        #expect(doc.nearestLocation(of: "nope.deeper").description == "1:1")
        #expect(doc.nearestLocation(of: "").description == "1:1")
        #expect(doc.nearestLocation(of: "routes[2].match[").description == "12:16", "malformed tail")
        #expect(doc.nearestLocation(of: [.key("upstreams"), .key("my.svc"), .key("tls")]).description == "7:15")
    }

    @Test func columnsCountUnicodeScalarsAndCRLFCountsOnce() throws {
        let doc = try locate(#"{"é": 1, "b": 2}"#)
        #expect(doc.keyLocation(of: "b")?.description == "1:10")
        #expect(doc.location(of: "b")?.description == "1:15")
        #expect(doc.location(of: #"["é"]"#)?.description == "1:7")

        let emoji = try locate(#"["😀", 1]"#)
        #expect(emoji.location(of: "[1]")?.description == "1:7")

        let crlf = try locate("{\r\n  \"a\": 1,\r\n\r\n  \"b\": [true]\r\n}")
        #expect(crlf.keyLocation(of: "a")?.description == "2:3")
        #expect(crlf.location(of: "a")?.description == "2:8")
        #expect(crlf.location(of: "b[0]")?.description == "4:9")
        let error = try #require(syntaxError("{\r\n  \"a\": 01\r\n}"))
        #expect(error.location.description == "2:8")
    }

    // MARK: Paths

    @Test func pathFormatting() {
        #expect(JSONPath.format([]) == "")
        #expect(
            JSONPath.format([.key("routes"), .index(2), .key("match"), .key("path_prefix")])
                == "routes[2].match.path_prefix")
        #expect(
            JSONPath.format([.key("upstreams"), .key("users"), .key("targets"), .index(0)])
                == "upstreams.users.targets[0]")
        #expect(JSONPath.format([.key("upstreams"), .key("my.svc")]) == #"upstreams["my.svc"]"#)
        #expect(JSONPath.format([.key("upstreams"), .key("users-v2")]) == "upstreams.users-v2")
        #expect(JSONPath.format([.index(0), .key("x")]) == "[0].x")
        #expect(JSONPath.format([.key("_x"), .key("2fa")]) == #"_x["2fa"]"#)
        #expect(JSONPath.format([.key("")]) == #"[""]"#)
        #expect(JSONPath.format([.key("-a")]) == #"["-a"]"#)
        #expect(JSONPath.format([.key("é")]) == #"["é"]"#)
        #expect(JSONPath.format([.key("a b")]) == #"["a b"]"#)
        #expect(JSONPath.format([.key(#"a"b\c"#)]) == #"["a\"b\\c"]"#)
        #expect(JSONPath.format([.key("a\nb")]) == #"["a\u000Ab"]"#)
        #expect(
            JSONPath.format([.key("auth"), .key("jwt"), .key("idp"), .key("audiences"), .index(10)])
                == "auth.jwt.idp.audiences[10]")
    }

    @Test func pathParsingRoundTrips() {
        let samples: [[JSONPathComponent]] = [
            [],
            [.key("routes"), .index(2), .key("match"), .key("path_prefix")],
            [.index(0), .index(1), .key("x")],
            [.key("my.svc"), .key(#"a"b\c"#), .key(""), .key("2fa"), .key("é"), .key("a\nb\u{7F}"), .key("]")],
        ]
        for components in samples {
            let text = JSONPath.format(components)
            #expect(JSONPath.parse(text) == components, "round trip of \(text)")
        }
        #expect(JSONPath.parse("a[") == nil)
        #expect(JSONPath.parse("a..b") == nil)
        #expect(JSONPath.parse(#"a["x"#) == nil)
        #expect(JSONPath.parse("a[99999999999999999999999]") == nil)
        #expect(JSONPath.parse(".a.b") == [.key("a"), .key("b")])
    }

    @Test func oddKeysAreFoundThroughFormattedPaths() throws {
        let text = #"{"my.svc": {"a\"b\\c": 1, "": 2, "2fa": 3, "x\ny": 4, "é": [5]}}"#
        let doc = try locate(text)
        let keys = [#"a"b\c"#, "", "2fa", "x\ny", "é"]
        for key in keys {
            let path = JSONPath.format([.key("my.svc"), .key(key)])
            #expect(doc.location(of: path) != nil, "lookup of \(path)")
            #expect(doc.keyLocation(of: path) != nil, "key lookup of \(path)")
        }
        #expect(doc.location(of: #"["my.svc"]["2fa"]"#)?.description == "1:41")
        #expect(doc.location(of: #"["my.svc"]["é"][0]"#)?.description == "1:61")
        // Escaped and raw spellings of a key are the same key.
        let escaped = try locate(#"{"\u00e9t\u00E9": 1}"#)
        #expect(escaped.location(of: #"["été"]"#)?.description == "1:19")
        let astral = try locate(#"{"\ud83d\ude00": true}"#)
        #expect(astral.location(of: #"["😀"]"#) != nil)
    }

    @Test func codingPathsUseTheDocumentShape() throws {
        let doc = try locate(#"{"upstreams": {"0": {"targets": ["a", "b"]}}}"#)
        let path: [any CodingKey] = [
            TestKey(stringValue: "upstreams"), TestKey(stringValue: "0"),
            TestKey(stringValue: "targets"), TestKey(intValue: 1),
        ]
        let components = doc.components(forCodingPath: path)
        #expect(components == [.key("upstreams"), .key("0"), .key("targets"), .index(1)])
        #expect(JSONPath.format(components) == #"upstreams["0"].targets[1]"#)
        #expect(doc.location(of: components)?.description == "1:39")
        // Past the end of the document JSONDecoder's "Index N" keys are still indices.
        let missing = doc.components(forCodingPath: [TestKey(stringValue: "routes"), TestKey(intValue: 3)])
        #expect(missing == [.key("routes"), .index(3)])
    }

    // MARK: Duplicates

    @Test func duplicateKeysAreRecordedAndFirstOccurrenceWins() throws {
        let doc = try locate(#"{"a": 1, "b": {"c": 1, "c": 2, "c": 3}, "a": [4], "d": [{"e": 0, "e": 1}]}"#)
        let found = doc.duplicateKeys.map { "\($0.path)@\($0.location)" }
        #expect(found == ["b.c@1:24", "b.c@1:32", "a@1:41", "d[0].e@1:66"])
        // Like JSONDecoder, lookups resolve to the first occurrence.
        #expect(doc.location(of: "a")?.description == "1:7")
        #expect(doc.location(of: "b.c")?.description == "1:21")
        #expect(doc.location(of: "a[0]") == nil, "the second value of a is not addressable")
        // Same key in different objects is not a duplicate.
        let distinct = try locate(#"[{"a": 1}, {"a": 2}, {"x": {"a": 3}, "a": 4}]"#)
        #expect(distinct.duplicateKeys.isEmpty)
    }

    // MARK: Syntax errors

    static let syntaxCases: [JSONLocatorSyntaxCase] = [
        JSONLocatorSyntaxCase(
            name: "unterminated string at end of input", input: #"{"a": "abc"#, location: "1:7", fragment: "unterminated string"),
        JSONLocatorSyntaxCase(
            name: "unterminated string at line break", input: "{\n  \"a\": \"abc\n}", location: "2:8", fragment: "unterminated string"),
        JSONLocatorSyntaxCase(name: "unterminated key", input: #"{"ab"#, location: "1:2", fragment: "unterminated string"),
        JSONLocatorSyntaxCase(name: "trailing comma in array", input: "[1, 2,]", location: "1:6", fragment: "trailing comma"),
        JSONLocatorSyntaxCase(name: "trailing comma in object", input: "{\"a\": 1,\n}", location: "1:8", fragment: "trailing comma"),
        JSONLocatorSyntaxCase(name: "bad escape", input: #"["a\qb"]"#, location: "1:4", fragment: "invalid escape"),
        JSONLocatorSyntaxCase(name: "short unicode escape", input: #"["\u12G4"]"#, location: "1:3", fragment: "hex digits"),
        JSONLocatorSyntaxCase(name: "lone high surrogate", input: #"["x\uD800"]"#, location: "1:4", fragment: "surrogate"),
        JSONLocatorSyntaxCase(name: "high surrogate + non-low", input: #"["\uD800\u0041"]"#, location: "1:3", fragment: "surrogate"),
        JSONLocatorSyntaxCase(name: "lone low surrogate", input: #"["\uDC00"]"#, location: "1:3", fragment: "surrogate"),
        JSONLocatorSyntaxCase(name: "leading zero", input: #"{"n": 012}"#, location: "1:7", fragment: "leading zero"),
        JSONLocatorSyntaxCase(name: "negative leading zero", input: "[-01]", location: "1:2", fragment: "leading zero"),
        JSONLocatorSyntaxCase(name: "bare minus", input: "[-]", location: "1:2", fragment: "invalid number"),
        JSONLocatorSyntaxCase(name: "fraction without digits", input: "[1.]", location: "1:2", fragment: "invalid number"),
        JSONLocatorSyntaxCase(name: "exponent without digits", input: "[1e+]", location: "1:2", fragment: "exponent"),
        JSONLocatorSyntaxCase(name: "leading dot", input: "[.5]", location: "1:2", fragment: "expected a value"),
        JSONLocatorSyntaxCase(name: "leading plus", input: "[+1]", location: "1:2", fragment: "expected a value"),
        JSONLocatorSyntaxCase(name: "garbage after object", input: "{} x", location: "1:4", fragment: "after the top-level value"),
        JSONLocatorSyntaxCase(name: "second top-level value", input: "1 2", location: "1:3", fragment: "after the top-level value"),
        JSONLocatorSyntaxCase(name: "extra closing brace", input: "{\"a\":1}}", location: "1:8", fragment: "after the top-level value"),
        JSONLocatorSyntaxCase(name: "control char in string", input: "[\"a\tb\"]", location: "1:4", fragment: "U+0009"),
        JSONLocatorSyntaxCase(name: "NUL in string", input: "[\"a\u{0}\"]", location: "1:4", fragment: "U+0000"),
        JSONLocatorSyntaxCase(name: "line comment", input: "{\n  // no\n}", location: "2:3", fragment: "comments"),
        JSONLocatorSyntaxCase(name: "block comment", input: "[1 /* no */]", location: "1:4", fragment: "comments"),
        JSONLocatorSyntaxCase(name: "single quotes", input: "['a']", location: "1:2", fragment: "double quotes"),
        JSONLocatorSyntaxCase(name: "unquoted key", input: "{a: 1}", location: "1:2", fragment: "double-quoted"),
        JSONLocatorSyntaxCase(name: "missing colon", input: #"{"a" 1}"#, location: "1:6", fragment: "':'"),
        JSONLocatorSyntaxCase(name: "missing comma", input: #"{"a": 1 "b": 2}"#, location: "1:9", fragment: "',' or '}'"),
        JSONLocatorSyntaxCase(name: "mismatched bracket", input: "[1}", location: "1:3", fragment: "',' or ']'"),
        JSONLocatorSyntaxCase(name: "leading comma", input: "[,1]", location: "1:2", fragment: "expected a value"),
        JSONLocatorSyntaxCase(name: "empty member", input: "{,}", location: "1:2", fragment: "string key"),
        JSONLocatorSyntaxCase(name: "missing value", input: #"{"a":}"#, location: "1:6", fragment: "expected a value"),
        JSONLocatorSyntaxCase(name: "bad literal", input: "[True]", location: "1:2", fragment: "invalid literal 'True'"),
        JSONLocatorSyntaxCase(name: "literal with tail", input: "[nulll]", location: "1:2", fragment: "invalid literal"),
        JSONLocatorSyntaxCase(name: "NaN", input: "[NaN]", location: "1:2", fragment: "invalid literal"),
        JSONLocatorSyntaxCase(name: "unclosed array", input: #"{"a": [1, 2"#, location: "1:12", fragment: "opened at 1:7"),
        JSONLocatorSyntaxCase(name: "unclosed object on later line", input: "{\n\"a\": 1\n", location: "3:1", fragment: "opened at 1:1"),
        JSONLocatorSyntaxCase(name: "whitespace only", input: "  \n ", location: "2:2", fragment: "empty"),
        JSONLocatorSyntaxCase(name: "form feed is not whitespace", input: "[1,\u{0C}2]", location: "1:4", fragment: "0x0C"),
    ]

    @Test(arguments: syntaxCases)
    func syntaxErrorsHaveLocations(_ c: JSONLocatorSyntaxCase) throws {
        let error = try #require(syntaxError(c.input), "\(c.name) must be rejected")
        #expect(error.location.description == c.location, "\(error)")
        #expect(error.message.contains(c.fragment), "\(error)")
        #expect(error.description == "\(c.location): \(error.message)")
    }

    @Test func emptyInputIsAnError() throws {
        let error = try #require(syntaxError([]))
        #expect(error.location.description == "1:1")
        #expect(error.message.contains("empty"))
    }

    @Test func invalidUTF8IsRejected() throws {
        let inputs: [[UInt8]] = [
            [0x5B, 0x22, 0xC3, 0x22, 0x5D],  // truncated 2-byte sequence
            [0x5B, 0x22, 0xC0, 0xAF, 0x22, 0x5D],  // overlong '/'
            [0x5B, 0x22, 0xED, 0xA0, 0x80, 0x22, 0x5D],  // encoded surrogate
            [0x5B, 0x22, 0xF4, 0x90, 0x80, 0x80, 0x22, 0x5D],  // > U+10FFFF
            [0x5B, 0x22, 0x80, 0x22, 0x5D],  // stray continuation byte
        ]
        for bytes in inputs {
            let error = try #require(syntaxError(bytes), "\(bytes)")
            #expect(error.location.description == "1:3")
            #expect(error.message.contains("UTF-8"))
        }
        #expect(syntaxError([0x5B, 0xC3, 0xA9, 0x5D])?.location.description == "1:2", "non-ASCII outside a string")
    }

    @Test func nestingDepthIsCapped() throws {
        let deep = String(repeating: "[", count: 10_000)
        let error = try #require(syntaxError(deep))
        #expect(error.message.contains("too deep"))
        #expect(error.location.description == "1:513")

        let closedDeep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(syntaxError(closedDeep) != nil)
        let objects = String(repeating: #"{"a":"#, count: 600) + "1" + String(repeating: "}", count: 600)
        #expect(syntaxError(objects)?.message.contains("too deep") == true)

        let limit = JSONLocator.maximumDepth
        let atLimit = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
        let doc = try locate(atLimit)
        let innermost = String(repeating: "[0]", count: limit - 1)
        #expect(doc.location(of: innermost)?.description == "1:\(limit)")
        let overLimit = String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)
        #expect(syntaxError(overLimit) != nil)
    }

    // MARK: Accepted input

    @Test func byteOrderMarkIsSkipped() throws {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let doc = try JSONLocator(parsing: bom + Array(#"{"a": 1}"#.utf8))
        #expect(doc.location(of: "")?.description == "1:1")
        #expect(doc.keyLocation(of: "a")?.description == "1:2")
        #expect(doc.location(of: "a")?.description == "1:7")

        #expect(syntaxError(bom)?.message.contains("empty") == true)
        #expect(syntaxError(Array(#"{"a": 1}"#.utf8) + bom)?.location.description == "1:9")
        #expect(syntaxError(bom + bom + Array("1".utf8)) != nil, "only one leading BOM")
        #expect(syntaxError([0xEF, 0xBB] + Array("1".utf8)) != nil)
    }

    @Test func validDocumentsAreAccepted() throws {
        let accepted = [
            "0", "-0", "1.5e10", "-2E-3", "1E+2", "0.25",
            "123456789012345678901234567890e999999999999999999999999",
            "-0.000000000000000000000000000001e-99999999999999999999999999",
            "true", "false", "null", #""""#, "[]", "{}", " [ ] ", "[[], {}]",
            #"["\"\\\/\b\f\n\r\t\u0000\uFFFF\uD83D\uDE00", "é😀", "\u007f"]"#,
            "\n\t\r [1]\r\n",
            #"{"a": {"b": {"c": [1, [2, [3]]]}}}"#,
        ]
        for text in accepted {
            #expect(syntaxError(text) == nil, "\(text) should parse: \(String(describing: syntaxError(text)))")
        }
        let doc = try locate("  \n  42 ")
        #expect(doc.location(of: "")?.description == "2:3")
        #expect(doc.location(of: "[0]") == nil)
    }

    // MARK: Robustness

    @Test func randomInputsNeverCrash() throws {
        var rng = SplitMix64(state: 0x6A7E_3A11_C0FF_EE00)
        let alphabet = Array(#"{}[]",:0123456789-+.eE tfnrulase\/"#.utf8) + [0x0A, 0x0D, 0x09, 0xC3, 0xA9, 0x00]
        let seeds = [Array(sampleDocument.utf8), Array(#"{"a": [1, 2.5e3, "x\u00e9", true, null, {"b": {}}]}"#.utf8)]
        var accepted = 0
        var rejected = 0
        for round in 0..<10_000 {
            var bytes: [UInt8]
            switch round % 3 {
            case 0:  // arbitrary bytes
                bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:  // JSON-ish alphabet
                bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in
                    alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]
                }
            default:  // a few mutations of a valid document
                bytes = seeds[round % seeds.count]
                for _ in 0..<Int.random(in: 0...3, using: &rng) where !bytes.isEmpty {
                    let i = Int.random(in: 0..<bytes.count, using: &rng)
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: bytes[i] = alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]
                    case 1: bytes.remove(at: i)
                    default: bytes.insert(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)], at: i)
                    }
                }
            }
            let lines = bytes.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
            do {
                let doc = try JSONLocator(parsing: bytes)
                accepted += 1
                #expect(doc.location(of: "") != nil)
                for duplicate in doc.duplicateKeys {
                    // A repeated key inside a shadowed (second) value may not resolve.
                    if let first = doc.keyLocation(of: duplicate.path) {
                        #expect(first < duplicate.location)
                    }
                }
                _ = doc.nearestLocation(of: "routes[2].match.path_prefix")
            } catch {
                rejected += 1
                #expect(error.location.line >= 1 && error.location.line <= lines, "\(error) in \(bytes)")
                #expect(error.location.column >= 1 && error.location.column <= bytes.count + 1, "\(error) in \(bytes)")
                #expect(!error.message.isEmpty)
            }
        }
        #expect(accepted > 0, "the generator should produce some valid documents")
        #expect(rejected > 0)
    }
}
