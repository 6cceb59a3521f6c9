import Crypto
import GatewayAuth
import Testing

/// The pure pieces of browser login (issue 9): sealed cookies, their chunks, PKCE, and the
/// local-redirect check.
@Suite struct SealedCookieTests {
    static let hexSecret = String(repeating: "0123456789abcdef", count: 4)

    @Test func secretsAre32BytesInHexOrBase64() {
        #expect(CookieSealer(secret: Self.hexSecret) != nil)
        let b64 = "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8="  // the same 32 bytes
        #expect(CookieSealer(secret: b64) != nil)
        #expect(CookieSealer(secret: "short") == nil)
        #expect(CookieSealer(secret: String(repeating: "ab", count: 31)) == nil)  // 31 bytes
        #expect(CookieSealer(secret: String(repeating: "zz", count: 32)) == nil)  // not hex, not 32 bytes of base64
    }

    @Test func sealedValuesOpenOnlyUntouchedUnderTheirNameAndKey() throws {
        let sealer = try #require(CookieSealer(secret: Self.hexSecret))
        let value = try #require(sealer.seal(Array("session for alice".utf8), name: "gw_session"))
        #expect(sealer.open(value, name: "gw_session") == Array("session for alice".utf8))
        // Another cookie's name, another key, one flipped character, a truncation: refused.
        #expect(sealer.open(value, name: "gw_login") == nil)
        #expect(CookieSealer(key: Array(repeating: 7, count: 32)).open(value, name: "gw_session") == nil)
        var tampered = Array(value.utf8)
        tampered[tampered.count / 2] = tampered[tampered.count / 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(sealer.open(String(decoding: tampered, as: UTF8.self), name: "gw_session") == nil)
        #expect(sealer.open(String(value.dropLast(4)), name: "gw_session") == nil)
        #expect(sealer.open("", name: "gw_session") == nil)
        // Each seal has a fresh nonce.
        #expect(sealer.seal([1, 2, 3], name: "n") != sealer.seal([1, 2, 3], name: "n"))
    }

    @Test func longValuesSplitAcrossCookiesAndJoinBack() {
        let long = String(repeating: "x", count: 9000)
        let parts = CookieChunks.split(long, name: "gw_session")
        #expect(parts.count == 4)  // the count, then 3 chunks
        #expect(parts[0] == ("gw_session", "chunks:3") as (String, String))
        #expect(parts.dropFirst().allSatisfy { $0.1.utf8.count <= CookieChunks.chunk })
        let header = parts.map { "\($0.0)=\($0.1)" }.joined(separator: "; ")
        let cookies = CookieChunks.parse(["theme=dark; " + header])
        #expect(CookieChunks.join(name: "gw_session", cookies: cookies) == long)
        // A missing chunk: nothing.
        var partial = cookies
        partial["gw_session.1"] = nil
        #expect(CookieChunks.join(name: "gw_session", cookies: partial) == nil)
        #expect(CookieChunks.split("short", name: "c").count == 1)
        #expect(CookieChunks.join(name: "c", cookies: ["c": "short"]) == "short")
    }

    @Test func pkceS256MatchesRFC7636AppendixB() {
        // RFC 7636, Appendix B.
        #expect(PKCE.challenge(for: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        let v = PKCE.verifier()
        #expect(v.utf8.count == 43)  // 32 bytes, base64url without padding
        #expect(v != PKCE.verifier())
    }

    @Test func onlyLocalPathsAreRedirectTargets() {
        for ok in ["/", "/app", "/app/page?x=1&y=%2F", "/a#frag"] { #expect(LocalRedirect.isSafe(ok), "\(ok)") }
        for bad in [
            "https://evil.example", "//evil.example/x", "/\\evil.example", "evil", "", "/a b", "/a\r\nSet-Cookie: x", "javascript:alert(1)",
        ] {
            #expect(!LocalRedirect.isSafe(bad), "\(bad)")
        }
    }
}
