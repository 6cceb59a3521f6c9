// The scalar scanners of the JSONLocator parser: strings, escapes, numbers, literals,
// and the messages of its syntax errors.

extension JSONLocatorParser {
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
func hexValue(_ bytes: [UInt8], at i: Int) -> UInt32? {
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
func appendUTF8(_ v: UInt32, to buffer: inout [UInt8]) {
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
