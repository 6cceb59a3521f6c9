/// ASCII case-insensitive comparison of a header name with a lowercase literal, without allocating.
@inline(__always)
func nameEquals(_ name: String, _ lower: StaticString) -> Bool {
    var name = name
    return name.withUTF8 { eq($0, lower) }
}

@inline(__always)
func nameEquals(_ name: String, lowercased other: String) -> Bool {
    var name = name
    var other = other
    return name.withUTF8 { a in
        other.withUTF8 { b in
            guard a.count == b.count else { return false }
            for i in 0..<a.count {
                var c = a[i]
                if c >= 65 && c <= 90 { c |= 0x20 }
                var d = b[i]
                if d >= 65 && d <= 90 { d |= 0x20 }
                if c != d { return false }
            }
            return true
        }
    }
}

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1, SPEC §3).
/// `upgrade` is handled separately: it passes on a WebSocket upgrade.
@inline(__always)
func isHopByHop(_ name: String) -> Bool {
    var name = name
    return name.withUTF8 { a in
        guard let f = a.first else { return false }
        switch f | 0x20 {
        case UInt8(ascii: "c"): return eq(a, "connection")
        case UInt8(ascii: "k"): return eq(a, "keep-alive")
        case UInt8(ascii: "p"): return a.count > 6 && eq(UnsafeBufferPointer(rebasing: a[0..<6]), "proxy-")
        case UInt8(ascii: "t"): return eq(a, "te") || eq(a, "trailer") || eq(a, "transfer-encoding")
        case UInt8(ascii: "u"): return eq(a, "upgrade")
        default: return false
        }
    }
}

@inline(__always)
private func eq(_ a: UnsafeBufferPointer<UInt8>, _ lower: StaticString) -> Bool {
    guard a.count == lower.utf8CodeUnitCount else { return false }
    let b = lower.utf8Start
    for i in 0..<a.count {
        var c = a[i]
        if c >= 65 && c <= 90 { c |= 0x20 }
        if c != b[i] { return false }
    }
    return true
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
