/// ASCII case-insensitive comparison of a header name with a lowercase literal, without allocating.
@inline(__always)
func nameEquals(_ name: String, _ lower: StaticString) -> Bool {
    var name = name
    return name.withUTF8 { asciiCaseInsensitiveEquals(UnsafeRawBufferPointer($0), lower) }
}

@inline(__always)
func nameEquals(_ name: String, lowercased other: String) -> Bool {
    var name = name
    return name.withUTF8 { asciiCaseInsensitiveEquals(UnsafeRawBufferPointer($0), other) }
}

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1, SPEC §3).
/// `upgrade` is included; callers let it pass on a WebSocket upgrade.
@inline(__always)
func isHopByHop(_ name: String) -> Bool {
    var name = name
    return name.withUTF8 { isHopByHop(UnsafeRawBufferPointer($0)) }
}

/// `isHopByHop` on raw bytes (the upstream response head is never made into `String`s).
@inline(__always)
func isHopByHop(_ a: UnsafeRawBufferPointer) -> Bool {
    guard let f = a.first else { return false }
    switch f | 0x20 {
    case UInt8(ascii: "c"): return asciiCaseInsensitiveEquals(a, "connection")
    case UInt8(ascii: "k"): return asciiCaseInsensitiveEquals(a, "keep-alive")
    case UInt8(ascii: "p"): return a.count > 6 && asciiCaseInsensitiveEquals(UnsafeRawBufferPointer(rebasing: a[0..<6]), "proxy-")
    case UInt8(ascii: "t"):
        return asciiCaseInsensitiveEquals(a, "te") || asciiCaseInsensitiveEquals(a, "trailer")
            || asciiCaseInsensitiveEquals(a, "transfer-encoding")
    case UInt8(ascii: "u"): return asciiCaseInsensitiveEquals(a, "upgrade")
    default: return false
    }
}

/// ASCII case-insensitive equality of raw bytes and a lowercase literal.
@inline(__always)
func asciiCaseInsensitiveEquals(_ a: UnsafeRawBufferPointer, _ lower: StaticString) -> Bool {
    guard a.count == lower.utf8CodeUnitCount else { return false }
    guard let p = a.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return true }
    let b = lower.utf8Start
    for i in 0..<a.count {
        var c = p[i]
        if c >= 65 && c <= 90 { c |= 0x20 }
        if c != b[i] { return false }
    }
    return true
}

/// ASCII case-insensitive equality of raw bytes and a `String`.
@inline(__always)
func asciiCaseInsensitiveEquals(_ a: UnsafeRawBufferPointer, _ other: String) -> Bool {
    var other = other
    return other.withUTF8 { b in
        guard a.count == b.count else { return false }
        guard let p = a.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return true }
        for i in 0..<a.count {
            var c = p[i]
            if c >= 65 && c <= 90 { c |= 0x20 }
            var d = b[i]
            if d >= 65 && d <= 90 { d |= 0x20 }
            if c != d { return false }
        }
        return true
    }
}

/// The comma-separated tokens of `Connection` headers, lowercased.
func connectionTokens(_ values: [String]) -> [String] {
    var out: [String] = []
    for v in values {
        for t in v.split(separator: ",") {
            let token = t.trimmingCharacters(in: " \t").lowercased()
            if !token.isEmpty { out.append(token) }
        }
    }
    return out
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
