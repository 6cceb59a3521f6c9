// JSONLocator: a strict, non-recursive JSON scanner that records where every
// value and every object key starts, so that errors found later (by
// JSONDecoder or by validation) can be reported as `path (line:column)`.
//
// Standard library only (no Foundation), so it can be type-checked and fuzzed
// on its own.

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
        var parser = JSONLocatorParser(bytes: bytes)
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

struct JSONLocatorParser {
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
}
