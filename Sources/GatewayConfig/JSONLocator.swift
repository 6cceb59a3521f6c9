// JSONLocator: a strict, non-recursive JSON scanner that records where every
// value and every object key starts, so that errors found later (by
// JSONDecoder or by validation) can be reported as `path (line:column)`.
//
// Standard library only (no Foundation), so it can be type-checked and fuzzed
// on its own.

/// A position in the source text.
///
/// Both fields are 1-based. `line` counts `"\n"` characters (so `"\r\n"` counts
/// once; a lone `"\r"` does not start a line). `column` counts **Unicode
/// scalars** from the start of the line, not UTF-8 bytes or UTF-16 units: in
/// `{"é": 1}` the `1` is at column 7. A leading UTF-8 byte order mark is not
/// counted. A tab counts as one column.
public struct SourceLocation: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    /// `"line:column"`, e.g. `"12:5"`.
    public var description: String { "\(line):\(column)" }

    public static func < (lhs: SourceLocation, rhs: SourceLocation) -> Bool {
        lhs.line != rhs.line ? lhs.line < rhs.line : lhs.column < rhs.column
    }
}

/// One step of a path into a JSON document.
public enum JSONPathComponent: Sendable, Hashable {
    case key(String)
    case index(Int)
}

/// Formats and parses the path notation used in every config error message.
///
/// - The root is `""`.
/// - A key matching `[A-Za-z_][A-Za-z0-9_-]*` is written `.key` (no dot at the
///   very start): `routes[2].match.path_prefix`, `upstreams.users.targets[0]`.
/// - Any other key is written `["key"]` with `"` and `\` escaped as `\"` and
///   `\\`, and control characters (U+0000–U+001F, U+007F) as `\u00XX`:
///   `upstreams["my.svc"]`, `["2fa"]`, `[""]`.
/// - An array index is written `[N]`.
public enum JSONPath {
    public static func format(_ components: [JSONPathComponent]) -> String {
        var out = ""
        for component in components {
            switch component {
            case .index(let index):
                out += "["
                out += String(index)
                out += "]"
            case .key(let key):
                if isIdentifier(key) {
                    if !out.isEmpty { out += "." }
                    out += key
                } else {
                    out += "[\""
                    for scalar in key.unicodeScalars {
                        switch scalar.value {
                        case 0x22: out += "\\\""
                        case 0x5C: out += "\\\\"
                        case 0x00...0x1F, 0x7F:
                            out += "\\u"
                            out += hex4(scalar.value)
                        default: out.unicodeScalars.append(scalar)
                        }
                    }
                    out += "\"]"
                }
            }
        }
        return out
    }

    /// The inverse of `format`. Also accepts a leading `.` and bare identifiers
    /// made of `[A-Za-z0-9_-]`. Returns nil for a malformed path.
    public static func parse(_ path: String) -> [JSONPathComponent]? {
        let (components, complete) = parsePrefix(path)
        return complete ? components : nil
    }

    /// Parses as many components as are well formed; `complete` is false when
    /// the path is malformed after `components`.
    static func parsePrefix(_ path: String) -> (components: [JSONPathComponent], complete: Bool) {
        let b = Array(path.utf8)
        let n = b.count
        var components: [JSONPathComponent] = []
        var i = 0
        while i < n {
            let c = b[i]
            if c == UInt8(ascii: ".") || (i == 0 && isIdentifierByte(c)) {
                if c == UInt8(ascii: ".") { i += 1 }
                let start = i
                while i < n && isIdentifierByte(b[i]) { i += 1 }
                guard i > start else { return (components, false) }
                components.append(.key(String(decoding: b[start..<i], as: UTF8.self)))
            } else if c == UInt8(ascii: "[") {
                i += 1
                guard i < n else { return (components, false) }
                if b[i] == UInt8(ascii: "\"") {
                    i += 1
                    var buffer: [UInt8] = []
                    var closed = false
                    while i < n {
                        let d = b[i]
                        if d == UInt8(ascii: "\"") {
                            closed = true
                            i += 1
                            break
                        }
                        if d == UInt8(ascii: "\\") {
                            guard i + 1 < n else { return (components, false) }
                            let e = b[i + 1]
                            if e == UInt8(ascii: "\"") || e == UInt8(ascii: "\\") {
                                buffer.append(e)
                                i += 2
                            } else if e == UInt8(ascii: "u"), let v = hexValue(b, at: i + 2),
                                !(0xD800...0xDFFF).contains(v)
                            {
                                appendUTF8(v, to: &buffer)
                                i += 6
                            } else {
                                return (components, false)
                            }
                        } else {
                            buffer.append(d)
                            i += 1
                        }
                    }
                    guard closed, i < n, b[i] == UInt8(ascii: "]") else { return (components, false) }
                    i += 1
                    components.append(.key(String(decoding: buffer, as: UTF8.self)))
                } else {
                    let start = i
                    var value = 0
                    while i < n, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") {
                        let (m, o1) = value.multipliedReportingOverflow(by: 10)
                        let (s, o2) = m.addingReportingOverflow(Int(b[i] &- UInt8(ascii: "0")))
                        guard !o1, !o2 else { return (components, false) }
                        value = s
                        i += 1
                    }
                    guard i > start, i < n, b[i] == UInt8(ascii: "]") else { return (components, false) }
                    i += 1
                    components.append(.index(value))
                }
            } else {
                return (components, false)
            }
        }
        return (components, true)
    }

    static func isIdentifier(_ key: String) -> Bool {
        var first = true
        for byte in key.utf8 {
            if first {
                guard isLetter(byte) || byte == UInt8(ascii: "_") else { return false }
                first = false
            } else if !isIdentifierByte(byte) {
                return false
            }
        }
        return !first
    }

    static func isIdentifierByte(_ b: UInt8) -> Bool {
        isLetter(b) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
            || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
    }

    static func isLetter(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
    }

    static func hex4(_ v: UInt32) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}

/// A JSON syntax error with the position of the offending token.
public struct JSONSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var location: SourceLocation

    public init(message: String, location: SourceLocation) {
        self.message = message
        self.location = location
    }

    /// `"line:column: message"`.
    public var description: String { "\(location): \(message)" }
}

/// A strict JSON parser that keeps only positions: where each value and each
/// object key starts, addressed by `JSONPath` strings.
///
/// Duplicate keys: Foundation's `JSONDecoder` keeps the *first* value of a
/// repeated key, so lookups here resolve to the first occurrence too; every
/// later occurrence is listed in `duplicateKeys`. Keys are compared with
/// `String` equality (canonical equivalence), as `JSONDecoder`'s dictionary does.
public struct JSONLocator: Sendable {
    /// Containers nested deeper than this are a syntax error.
    public static let maximumDepth = 512

    enum Kind: UInt8, Sendable { case scalar, object, array }

    struct Node: Sendable {
        var parent: Int  // -1 for the root
        var component: JSONPathComponent?
        var location: SourceLocation
        var keyLocation: SourceLocation?
        var kind: Kind
    }

    struct ChildKey: Hashable, Sendable {
        var parent: Int
        var component: JSONPathComponent
    }

    let nodes: [Node]  // nodes[0] is the root value
    let children: [ChildKey: Int]

    /// Every repeated key (second and later occurrences), in document order:
    /// the member's path and the location of the repeated key token.
    public let duplicateKeys: [(path: String, location: SourceLocation)]

    /// Parses UTF-8 JSON text strictly (RFC 8259: no comments, no trailing
    /// commas, no leading zeros, valid escapes incl. surrogate pairs, valid
    /// UTF-8, control chars in strings rejected, nothing but whitespace after
    /// the top value, nesting depth capped at `maximumDepth`) and records
    /// where every value and every key starts. A leading UTF-8 BOM is skipped.
    /// Numbers are only checked syntactically. Never recurses.
    public init(parsing bytes: [UInt8]) throws(JSONSyntaxError) {
        var parser = Parser(bytes: bytes)
        try parser.run()
        nodes = parser.nodes
        children = parser.children
        duplicateKeys = parser.duplicates
    }

    // MARK: Lookups by path string

    /// Location of the first character of the value at `path` (`""` is the root).
    public func location(of path: String) -> SourceLocation? {
        guard let components = JSONPath.parse(path) else { return nil }
        return location(of: components)
    }

    /// Location of the opening quote of the key of the object member at `path`;
    /// nil for the root, for array elements and for missing paths.
    public func keyLocation(of path: String) -> SourceLocation? {
        guard let components = JSONPath.parse(path) else { return nil }
        return keyLocation(of: components)
    }

    /// Best location for a path that may not exist (e.g. a missing required
    /// key): the location of the deepest existing ancestor's value. A
    /// malformed path is resolved as far as it parses.
    public func nearestLocation(of path: String) -> SourceLocation {
        nearestLocation(of: JSONPath.parsePrefix(path).components)
    }

    // MARK: Lookups by components

    public func location(of components: [JSONPathComponent]) -> SourceLocation? {
        let (node, matched) = resolve(components)
        guard matched == components.count, let node else { return nil }
        return nodes[node].location
    }

    public func keyLocation(of components: [JSONPathComponent]) -> SourceLocation? {
        let (node, matched) = resolve(components)
        guard matched == components.count, let node else { return nil }
        return nodes[node].keyLocation
    }

    public func nearestLocation(of components: [JSONPathComponent]) -> SourceLocation {
        let (node, _) = resolve(components)
        guard let node else { return SourceLocation(line: 1, column: 1) }
        return nodes[node].location
    }

    /// Converts a `Decoder` coding path to path components using the shape of
    /// this document: a key with an `intValue` is an index only where the
    /// document has an array (so a dictionary key `"0"` stays a key). Past the
    /// end of the document, an int key whose `stringValue` is `"Index N"`
    /// (JSONDecoder's array keys) is an index; anything else is a key.
    public func components(forCodingPath codingPath: [any CodingKey]) -> [JSONPathComponent] {
        var result: [JSONPathComponent] = []
        result.reserveCapacity(codingPath.count)
        var current: Int? = nodes.isEmpty ? nil : 0
        for key in codingPath {
            let component: JSONPathComponent
            if let c = current, nodes[c].kind == .array, let i = key.intValue {
                component = .index(i)
            } else if let c = current, nodes[c].kind == .object {
                component = .key(key.stringValue)
            } else if let i = key.intValue, key.stringValue == "Index \(i)" {
                component = .index(i)
            } else {
                component = .key(key.stringValue)
            }
            result.append(component)
            if let c = current {
                current = children[ChildKey(parent: c, component: component)]
            }
        }
        return result
    }

    /// The deepest node reached and how many components matched.
    private func resolve(_ components: [JSONPathComponent]) -> (node: Int?, matched: Int) {
        guard !nodes.isEmpty else { return (nil, 0) }
        var current = 0
        var matched = 0
        for component in components {
            guard let next = children[ChildKey(parent: current, component: component)] else { break }
            current = next
            matched += 1
        }
        return (current, matched)
    }
}

// MARK: - Parser

private struct Parser {
    struct Frame {
        var node: Int
        var isObject: Bool
        var count: Int  // array: index of the current element
    }

    let bytes: [UInt8]
    let end: Int
    var pos = 0

    // Position bookkeeping: column = pos - lineStart - lineExtra + 1, where
    // lineExtra counts UTF-8 continuation bytes seen on the current line (they
    // occur only inside strings, which cannot contain raw newlines).
    var line = 1
    var lineStart = 0
    var lineExtra = 0

    var nodes: [JSONLocator.Node] = []
    var children: [JSONLocator.ChildKey: Int] = [:]
    var duplicates: [(path: String, location: SourceLocation)] = []
    var stack: [Frame] = []

    var pendingKey = ""
    var pendingKeyLocation: SourceLocation?
    var pendingIsDuplicate = false

    init(bytes: [UInt8]) {
        self.bytes = bytes
        self.end = bytes.count
        // About one value per 16 bytes of a formatted file: reserving up front saves the
        // rehashing that growing would cost on large files.
        nodes.reserveCapacity(bytes.count / 16)
        children.reserveCapacity(bytes.count / 16)
    }

    func location(at offset: Int) -> SourceLocation {
        SourceLocation(line: line, column: offset - lineStart - lineExtra + 1)
    }

    func fail(_ message: String, at offset: Int) -> JSONSyntaxError {
        JSONSyntaxError(message: message, location: location(at: offset))
    }

    mutating func skipWhitespace() {
        while pos < end {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0D:
                pos += 1
            case 0x0A:
                pos += 1
                line += 1
                lineStart = pos
                lineExtra = 0
            default:
                return
            }
        }
    }

    mutating func run() throws(JSONSyntaxError) {
        if end >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF {
            pos = 3
            lineStart = 3
        }
        skipWhitespace()
        if pos >= end {
            throw fail("empty document: expected a JSON value", at: pos)
        }
        var needValue = true
        while true {
            if needValue {
                needValue = try parseValue()
                continue
            }
            guard let top = stack.last else {
                skipWhitespace()
                if pos < end {
                    throw unexpected(after: "after the top-level value")
                }
                return
            }
            skipWhitespace()
            guard pos < end else {
                let opener = nodes[top.node].location
                throw fail(
                    "unexpected end of input: '\(top.isObject ? "{" : "[")' opened at \(opener) is not closed",
                    at: pos)
            }
            let c = bytes[pos]
            let close: UInt8 = top.isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            if c == UInt8(ascii: ",") {
                let comma = pos
                let commaLocation = location(at: comma)
                pos += 1
                skipWhitespace()
                if pos < end && bytes[pos] == close {
                    throw JSONSyntaxError(
                        message: "trailing comma before '\(top.isObject ? "}" : "]")'", location: commaLocation)
                }
                let last = stack.count - 1
                stack[last].count += 1
                if top.isObject {
                    try parseMemberKey(parent: top.node)
                }
                needValue = true
            } else if c == close {
                pos += 1
                stack.removeLast()
            } else {
                throw unexpected(expecting: top.isObject ? "',' or '}'" : "',' or ']'")
            }
        }
    }

    /// Parses a value starting at `pos`. A scalar or an empty container is
    /// consumed whole (returns false). A non-empty container is opened: its
    /// frame is pushed and, for an object, the first key is consumed; returns
    /// true so the caller parses its first value next.
    mutating func parseValue() throws(JSONSyntaxError) -> Bool {
        skipWhitespace()
        guard pos < end else { throw unexpected(expecting: "a value") }
        let start = pos
        let b = bytes[pos]
        switch b {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let isObject = b == UInt8(ascii: "{")
            guard stack.count < JSONLocator.maximumDepth else {
                throw fail("nesting too deep: more than \(JSONLocator.maximumDepth) levels of arrays and objects", at: start)
            }
            let id = addNode(at: start, kind: isObject ? .object : .array)
            pos += 1
            skipWhitespace()
            if pos < end && bytes[pos] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                pos += 1
                return false
            }
            stack.append(Frame(node: id, isObject: isObject, count: 0))
            if isObject {
                try parseMemberKey(parent: id)
            }
            return true
        case UInt8(ascii: "\""):
            _ = addNode(at: start, kind: .scalar)
            _ = try scanString(decode: false)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            _ = addNode(at: start, kind: .scalar)
            try scanNumber()
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
            _ = addNode(at: start, kind: .scalar)
            try scanLiteral()
        default:
            throw unexpected(expecting: "a value")
        }
        return false
    }

    mutating func addNode(at offset: Int, kind: JSONLocator.Kind) -> Int {
        let id = nodes.count
        let loc = location(at: offset)
        if let top = stack.last {
            if top.isObject {
                let component = JSONPathComponent.key(pendingKey)
                nodes.append(
                    .init(
                        parent: top.node, component: component, location: loc,
                        keyLocation: pendingKeyLocation, kind: kind))
                if !pendingIsDuplicate {
                    children[.init(parent: top.node, component: component)] = id
                }
            } else {
                let component = JSONPathComponent.index(top.count)
                nodes.append(
                    .init(
                        parent: top.node, component: component, location: loc,
                        keyLocation: nil, kind: kind))
                children[.init(parent: top.node, component: component)] = id
            }
        } else {
            nodes.append(.init(parent: -1, component: nil, location: loc, keyLocation: nil, kind: kind))
        }
        return id
    }

    /// Parses `"key" :` and leaves `pos` at the value.
    mutating func parseMemberKey(parent: Int) throws(JSONSyntaxError) {
        skipWhitespace()
        guard pos < end, bytes[pos] == UInt8(ascii: "\"") else {
            if pos < end, bytes[pos] == UInt8(ascii: "'") || JSONPath.isIdentifierByte(bytes[pos]) {
                throw fail("object keys must be double-quoted strings", at: pos)
            }
            throw unexpected(expecting: "a string key")
        }
        let keyOffset = pos
        let keyLocation = location(at: keyOffset)
        let key = try scanString(decode: true) ?? ""
        pendingKey = key
        pendingKeyLocation = keyLocation
        let childKey = JSONLocator.ChildKey(parent: parent, component: .key(key))
        if children[childKey] != nil {
            pendingIsDuplicate = true
            duplicates.append((path: path(of: parent, appending: .key(key)), location: keyLocation))
        } else {
            pendingIsDuplicate = false
        }
        skipWhitespace()
        guard pos < end, bytes[pos] == UInt8(ascii: ":") else {
            throw unexpected(expecting: "':' after the object key")
        }
        pos += 1
        skipWhitespace()
    }

    func path(of node: Int, appending last: JSONPathComponent) -> String {
        var components = [last]
        var current = node
        var steps = 0
        while current > 0 && current < nodes.count && steps <= nodes.count {
            if let component = nodes[current].component { components.append(component) }
            current = nodes[current].parent
            steps += 1
        }
        return JSONPath.format(components.reversed())
    }

    // MARK: Scalars

    /// Scans a string starting at the opening quote. Returns its decoded value
    /// when `decode` is true (keys), nil otherwise (values are only validated).
    mutating func scanString(decode: Bool) throws(JSONSyntaxError) -> String? {
        let quote = pos
        let quoteLocation = location(at: quote)
        pos += 1
        var segmentStart = pos
        var buffer: [UInt8] = []
        var escaped = false
        while true {
            guard pos < end else {
                throw JSONSyntaxError(message: "unterminated string", location: quoteLocation)
            }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                var result: String?
                if decode {
                    if escaped {
                        buffer.append(contentsOf: bytes[segmentStart..<pos])
                        result = String(decoding: buffer, as: UTF8.self)
                    } else {
                        result = String(decoding: bytes[segmentStart..<pos], as: UTF8.self)
                    }
                }
                pos += 1
                return result
            } else if b == UInt8(ascii: "\\") {
                if decode {
                    buffer.append(contentsOf: bytes[segmentStart..<pos])
                    escaped = true
                }
                try scanEscape(into: &buffer, decode: decode, quoteLocation: quoteLocation)
                segmentStart = pos
            } else if b < 0x20 {
                if b == 0x0A || b == 0x0D {
                    throw JSONSyntaxError(
                        message: "unterminated string (a line break inside a string must be written \\n)",
                        location: quoteLocation)
                }
                throw fail("control character U+\(JSONPath.hex4(UInt32(b))) in string must be escaped", at: pos)
            } else if b < 0x80 {
                pos += 1
            } else {
                guard let length = utf8SequenceLength(at: pos) else {
                    throw fail("invalid UTF-8 in string", at: pos)
                }
                pos += length
                lineExtra += length - 1
            }
        }
    }

    /// Scans one escape sequence starting at the backslash.
    mutating func scanEscape(into buffer: inout [UInt8], decode: Bool, quoteLocation: SourceLocation) throws(JSONSyntaxError) {
        let backslash = pos
        guard pos + 1 < end else {
            throw JSONSyntaxError(message: "unterminated string", location: quoteLocation)
        }
        let e = bytes[pos + 1]
        var simple: UInt8?
        switch e {
        case UInt8(ascii: "\""): simple = 0x22
        case UInt8(ascii: "\\"): simple = 0x5C
        case UInt8(ascii: "/"): simple = 0x2F
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "n"): simple = 0x0A
        case UInt8(ascii: "r"): simple = 0x0D
        case UInt8(ascii: "t"): simple = 0x09
        case UInt8(ascii: "u"): simple = nil
        default:
            throw fail("invalid escape sequence '\\\(printable(e))' in string", at: backslash)
        }
        if let simple {
            if decode { buffer.append(simple) }
            pos += 2
            return
        }
        guard let unit = hexValue(bytes, at: pos + 2) else {
            throw fail("invalid \\u escape: expected 4 hex digits", at: backslash)
        }
        var scalar = unit
        var length = 6
        if (0xD800...0xDBFF).contains(unit) {
            guard pos + 7 < end, bytes[pos + 6] == UInt8(ascii: "\\"), bytes[pos + 7] == UInt8(ascii: "u"),
                let low = hexValue(bytes, at: pos + 8), (0xDC00...0xDFFF).contains(low)
            else {
                throw fail("unpaired UTF-16 surrogate \\u\(JSONPath.hex4(unit)) in string", at: backslash)
            }
            scalar = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            length = 12
        } else if (0xDC00...0xDFFF).contains(unit) {
            throw fail("unpaired UTF-16 surrogate \\u\(JSONPath.hex4(unit)) in string", at: backslash)
        }
        if decode { appendUTF8(scalar, to: &buffer) }
        pos += length
    }

    /// Length of the valid UTF-8 sequence at `i` (whose first byte is >= 0x80), or nil.
    func utf8SequenceLength(at i: Int) -> Int? {
        let b0 = bytes[i]
        var need = 0
        var lo: UInt8 = 0x80
        var hi: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: need = 2
        case 0xED: need = 2; hi = 0x9F
        case 0xF0: need = 3; lo = 0x90
        case 0xF1...0xF3: need = 3
        case 0xF4: need = 3; hi = 0x8F
        default: return nil
        }
        guard end - i > need else { return nil }
        let b1 = bytes[i + 1]
        guard b1 >= lo && b1 <= hi else { return nil }
        var k = 2
        while k <= need {
            guard bytes[i + k] & 0xC0 == 0x80 else { return nil }
            k += 1
        }
        return need + 1
    }

    mutating func scanNumber() throws(JSONSyntaxError) {
        let start = pos
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        guard pos < end, isDigit(bytes[pos]) else {
            throw fail("invalid number: expected a digit after '-'", at: start)
        }
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if pos < end && isDigit(bytes[pos]) {
                throw fail("invalid number: leading zeros are not allowed", at: start)
            }
        } else {
            while pos < end && isDigit(bytes[pos]) { pos += 1 }
        }
        if pos < end && bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            guard pos < end, isDigit(bytes[pos]) else {
                throw fail("invalid number: expected a digit after '.'", at: start)
            }
            while pos < end && isDigit(bytes[pos]) { pos += 1 }
        }
        if pos < end && (bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E")) {
            pos += 1
            if pos < end && (bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-")) { pos += 1 }
            guard pos < end, isDigit(bytes[pos]) else {
                throw fail("invalid number: expected a digit in the exponent", at: start)
            }
            while pos < end && isDigit(bytes[pos]) { pos += 1 }
        }
    }

    mutating func scanLiteral() throws(JSONSyntaxError) {
        let start = pos
        var i = pos
        while i < end && i - start < 40 && JSONPath.isIdentifierByte(bytes[i]) { i += 1 }
        let word = bytes[start..<i]
        if word.elementsEqual("true".utf8) || word.elementsEqual("false".utf8) || word.elementsEqual("null".utf8) {
            pos = i
            return
        }
        let shown = String(decoding: word.prefix(32), as: UTF8.self)
        throw fail("invalid literal '\(shown)' (expected true, false, null, a number, a string, an object or an array)", at: start)
    }

    // MARK: Messages

    func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    func printable(_ b: UInt8) -> String {
        if b >= 0x21 && b <= 0x7E { return String(decoding: [b], as: UTF8.self) }
        return "byte 0x" + String(b, radix: 16, uppercase: true)
    }

    func describe(_ b: UInt8) -> String {
        if b >= 0x21 && b <= 0x7E { return "'" + String(decoding: [b], as: UTF8.self) + "'" }
        let hex = String(b, radix: 16, uppercase: true)
        return "byte 0x" + (hex.count < 2 ? "0" + hex : hex)
    }

    func commentOrQuoteMessage() -> String? {
        guard pos < end else { return nil }
        let b = bytes[pos]
        if b == UInt8(ascii: "/"), pos + 1 < end, bytes[pos + 1] == UInt8(ascii: "/") || bytes[pos + 1] == UInt8(ascii: "*") {
            return "comments are not allowed in JSON"
        }
        if b == UInt8(ascii: "'") { return "strings must use double quotes" }
        return nil
    }

    func unexpected(expecting: String) -> JSONSyntaxError {
        guard pos < end else {
            return fail("unexpected end of input: expected \(expecting)", at: pos)
        }
        if let special = commentOrQuoteMessage() { return fail(special, at: pos) }
        return fail("expected \(expecting), found \(describe(bytes[pos]))", at: pos)
    }

    func unexpected(after context: String) -> JSONSyntaxError {
        if let special = commentOrQuoteMessage() { return fail(special, at: pos) }
        let found = pos < end ? describe(bytes[pos]) : "end of input"
        return fail("unexpected \(found) \(context)", at: pos)
    }
}

// MARK: - Helpers shared by the parser and JSONPath

/// The value of 4 hex digits at `i`, or nil.
private func hexValue(_ bytes: [UInt8], at i: Int) -> UInt32? {
    guard i >= 0, bytes.count - i >= 4 else { return nil }
    var v: UInt32 = 0
    for k in i..<(i + 4) {
        let b = bytes[k]
        let d: UInt8
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b &- UInt8(ascii: "A") &+ 10
        default: return nil
        }
        v = v << 4 | UInt32(d)
    }
    return v
}

/// Appends the UTF-8 encoding of a (valid, non-surrogate) scalar value.
private func appendUTF8(_ v: UInt32, to buffer: inout [UInt8]) {
    switch v {
    case 0..<0x80:
        buffer.append(UInt8(truncatingIfNeeded: v))
    case 0x80..<0x800:
        buffer.append(UInt8(truncatingIfNeeded: 0xC0 | (v >> 6)))
        buffer.append(UInt8(truncatingIfNeeded: 0x80 | (v & 0x3F)))
    case 0x800..<0x10000:
        buffer.append(UInt8(truncatingIfNeeded: 0xE0 | (v >> 12)))
        buffer.append(UInt8(truncatingIfNeeded: 0x80 | ((v >> 6) & 0x3F)))
        buffer.append(UInt8(truncatingIfNeeded: 0x80 | (v & 0x3F)))
    default:
        buffer.append(UInt8(truncatingIfNeeded: 0xF0 | ((v >> 18) & 0x07)))
        buffer.append(UInt8(truncatingIfNeeded: 0x80 | ((v >> 12) & 0x3F)))
        buffer.append(UInt8(truncatingIfNeeded: 0x80 | ((v >> 6) & 0x3F)))
        buffer.append(UInt8(truncatingIfNeeded: 0x80 | (v & 0x3F)))
    }
}
