// Where a value stands in a config file: positions, paths and syntax errors (JSONLocator.swift
// records them).

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
