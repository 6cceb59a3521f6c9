import Crypto
import Foundation
import GatewayConfig

/// Cookie values sealed with AES-256-GCM (SPEC §2.5: sessions live in encrypted cookies, so
/// any instance with the same secret can serve any browser). A sealed value is
/// `base64url(nonce ‖ ciphertext ‖ tag)`; the cookie's name is the associated data, so a
/// value cannot be moved to a cookie of another purpose. Tampering, truncation or another
/// secret make `open` fail; nothing is ever decrypted without being authenticated.
public struct CookieSealer: Sendable {
    private let key: SymmetricKey

    /// The key from `cookie_secret_env`: 32 bytes written as 64 hex digits or as base64
    /// (standard or URL alphabet). Anything else is nil.
    public init?(secret: String) {
        guard let bytes = CookieSecret.bytes(secret) else { return nil }
        key = SymmetricKey(data: bytes)
    }

    public init(key bytes: [UInt8]) { key = SymmetricKey(data: bytes) }

    public func seal(_ plaintext: [UInt8], name: String) -> String? {
        guard let box = try? AES.GCM.seal(plaintext, using: key, authenticating: Array(name.utf8)), let combined = box.combined else {
            return nil
        }
        return Base64URL.encode(Array(combined))
    }

    public func open(_ value: String, name: String) -> [UInt8]? {
        guard let bytes = Base64URL.decode(Substring(value)), bytes.count >= 12 + 16,
            let box = try? AES.GCM.SealedBox(combined: bytes),
            let plain = try? AES.GCM.open(box, using: key, authenticating: Array(name.utf8))
        else { return nil }
        return Array(plain)
    }

}

/// A sealed value too long for one cookie goes in several: `NAME.0`, `NAME.1`, … each at
/// most `chunk` characters (browsers keep cookies up to about 4 KB, name and attributes
/// included), and `NAME` itself holds the count.
public enum CookieChunks {
    public static let chunk = 3800

    /// `(name, value)` pairs for a value; one cookie when it fits.
    public static func split(_ value: String, name: String) -> [(String, String)] {
        guard value.utf8.count > chunk else { return [(name, value)] }
        let bytes = Array(value.utf8)
        var parts: [(String, String)] = []
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + chunk)
            parts.append(("\(name).\(parts.count)", String(decoding: bytes[i..<end], as: UTF8.self)))
            i = end
        }
        return [(name, "chunks:\(parts.count)")] + parts
    }

    /// The value back from the request's cookies (nil when a part is missing).
    public static func join(name: String, cookies: [String: String]) -> String? {
        guard let head = cookies[name] else { return nil }
        guard head.hasPrefix("chunks:"), let n = Int(head.dropFirst(7)), (1...16).contains(n) else { return head }
        var out = ""
        for i in 0..<n {
            guard let part = cookies["\(name).\(i)"] else { return nil }
            out += part
        }
        return out
    }

    /// Every cookie of the request, by name (the first of a repeated name).
    public static func parse(_ cookieHeaders: [String]) -> [String: String] {
        var out: [String: String] = [:]
        pairs(cookieHeaders) { name, value in
            let name = String(name)
            if out[name] == nil { out[name] = String(value) }
            return true
        }
        return out
    }

    /// The value of the first cookie called `name`.
    public static func value(named name: String, in cookieHeaders: [String]) -> String? {
        var found: String?
        pairs(cookieHeaders) { n, v in
            guard n.utf8.elementsEqual(name.utf8) else { return true }
            found = String(v)
            return false
        }
        return found
    }

    /// The one cookie-header parser: each `name=value` pair of the `Cookie` lines in order
    /// (pairs without `=` skipped), until `body` returns false. Split on the bytes `;` and
    /// `=`, not on characters: a `;` after a prepended mark or before a combining one is one
    /// `Character` with it, and would otherwise stay inside a value.
    static func pairs(_ cookieHeaders: [String], _ body: (Substring, Substring) -> Bool) {
        for line in cookieHeaders {
            let bytes = line.utf8
            let scalars = line.unicodeScalars
            var start = bytes.startIndex
            while start < bytes.endIndex {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: ";")) ?? bytes.endIndex
                var from = start
                while from < end && bytes[from] == UInt8(ascii: " ") { from = bytes.index(after: from) }
                if let eq = bytes[from..<end].firstIndex(of: UInt8(ascii: "=")) {
                    let name = Substring(scalars[from..<eq])
                    let value = Substring(scalars[bytes.index(after: eq)..<end])
                    if !body(name, value) { return }
                }
                start = end == bytes.endIndex ? end : bytes.index(after: end)
            }
        }
    }
}

/// PKCE (RFC 7636) with S256 only: a fresh 32-byte verifier and its challenge.
public enum PKCE {
    public static func verifier() -> String {
        var rng = SystemRandomNumberGenerator()
        return Base64URL.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }

    public static func challenge(for verifier: String) -> String {
        Base64URL.encode(Array(SHA256.hash(data: Array(verifier.utf8))))
    }

    /// A random token for `state` and `nonce` (32 bytes, base64url).
    public static func token() -> String { verifier() }
}

/// Where a login may send the browser back to: a path on this host, never another site.
public enum LocalRedirect {
    /// `/path?query` only: not `//host`, not `/\host`, no scheme, no control characters.
    public static func isSafe(_ target: String) -> Bool {
        guard target.hasPrefix("/"), !target.hasPrefix("//"), !target.hasPrefix("/\\") else { return false }
        for u in target.unicodeScalars where u.value < 0x21 || u.value == 0x7F || u == "\\" { return false }
        return true
    }
}
