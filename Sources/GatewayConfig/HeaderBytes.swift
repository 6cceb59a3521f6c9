/// Checks of header names, header values and host names on their bytes (`.utf8`), never on
/// `Character`s: `"\r\n"` is one `Character` in Swift, so a Character test for `"\r"` or `"\n"`
/// lets the pair through. Every name or value that can reach a header line — from the config,
/// a request, a query string, a token's claims or an upstream's answer — passes one of these
/// first (`HTTPHeaders` traps on a name that is not ASCII; a head writer would split the message
/// on a CR or LF).
public enum HeaderBytes {
    /// tchar of RFC 9110 §5.6.2, as two 64-bit masks over ASCII (no table: a global would cost
    /// a once-check per byte).
    @inlinable @inline(__always)
    public static func isTokenByte(_ c: UInt8) -> Bool {
        if c < 64 { return (0x03FF_6CFA_0000_0000 as UInt64) >> c & 1 == 1 }
        if c < 128 { return (0x57FF_FFFF_C7FF_FFFE as UInt64) >> (c - 64) & 1 == 1 }
        return false
    }

    /// A field-value byte (RFC 9110 §5.5): visible ASCII, space, horizontal tab and obs-text
    /// (0x80 and up, so UTF-8 passes); no other control byte, so never CR, LF or NUL.
    @inlinable @inline(__always)
    public static func isFieldValueByte(_ c: UInt8) -> Bool { c >= 0x20 ? c != 0x7F : c == 0x09 }

    /// A header name: one or more tchar.
    @inlinable
    public static func isToken<S: StringProtocol>(_ s: S) -> Bool {
        !s.utf8.isEmpty && s.utf8.allSatisfy(isTokenByte)
    }

    @inlinable
    public static func isToken(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if bytes.isEmpty { return false }
        for c in bytes where !isTokenByte(c) { return false }
        return true
    }

    /// A header value (it may be empty).
    @inlinable
    public static func isFieldValue<S: StringProtocol>(_ s: S) -> Bool {
        s.utf8.allSatisfy(isFieldValueByte)
    }

    @inlinable
    public static func isFieldValue(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for c in bytes where !isFieldValueByte(c) { return false }
        return true
    }

    /// A host of a URI authority as it may be sent in `Host`: the bytes of a reg-name or an IPv4
    /// address (unreserved, `%`, sub-delims), or, with `bracketed`, of an IPv6 literal (hex, `:`,
    /// `.`, and `%` for a zone). Nothing that could end the header line or the authority.
    public static func isHost<S: StringProtocol>(_ s: S, bracketed: Bool = false) -> Bool {
        if s.utf8.isEmpty { return false }
        return s.utf8.allSatisfy { c in
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            case UInt8(ascii: "."), UInt8(ascii: "%"): return true
            case UInt8(ascii: ":"): return bracketed
            case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"),
                UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","),
                UInt8(ascii: ";"), UInt8(ascii: "="):
                return !bracketed
            default: return false
            }
        }
    }
}
