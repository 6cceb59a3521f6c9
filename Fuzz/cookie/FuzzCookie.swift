import FuzzSupport
import GatewayAuth
import Glibc

/// The cookie and session decoders. The first byte picks what the rest is:
/// 0: `Cookie` header lines (one per input line) as a browser would send them: parsed,
///    the session's chunks joined, opened with the key and decoded as a session;
/// 1: a plaintext: sealed, split into cookies, sent back as a header, parsed, joined,
///    opened (and decoded as a session, as the gateway would after a key change);
/// 2: base64url text decoded.
/// Properties: nothing decodes that was not sealed with the key and that cookie's name;
/// seal → split → header → parse → join → open gives the plaintext back; parsed names and
/// values never contain the byte `;`; base64url decode ∘ encode is the identity.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCookie(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    guard let mode = bytes.first else { return 0 }
    let rest = Array(bytes.dropFirst())
    let text = String(decoding: rest, as: UTF8.self)
    let name = LoginFlow.sessionCookieName
    switch mode % 3 {
    case 0:
        let cookies = CookieChunks.parse(text.split(separator: "\n").map(String.init))
        // On bytes: a `String` compare would take U+037E (GREEK QUESTION MARK, canonically
        // a `;`) for a `;`; the header's separator is the byte.
        let semicolon = UInt8(ascii: ";")
        for (k, v) in cookies { require(!k.utf8.contains(semicolon) && !v.utf8.contains(semicolon), "a parsed cookie holds a ;") }
        if let value = CookieChunks.join(name: name, cookies: cookies) {
            let session = LoginFlow.open(LoginFlow.Session.self, value, name: name, with: sealer)
            require(session == nil, "a session decoded from bytes nobody sealed")
        }
    case 1:
        guard let sealed = sealer.seal(rest, name: name) else {
            require(false, "sealing failed")
            return 0
        }
        let parts = CookieChunks.split(sealed, name: name)
        let header = parts.map { "\($0.0)=\($0.1)" }.joined(separator: "; ")
        let cookies = CookieChunks.parse(["theme=dark; " + header])
        let joined = CookieChunks.join(name: name, cookies: cookies)
        require(joined == sealed, "split and join lost the sealed value")
        require(sealer.open(sealed, name: name) == rest, "open did not give the plaintext back")
        require(sealer.open(sealed, name: "__gw_login_x") == nil, "a value opened under another cookie's name")
        require(other.open(sealed, name: name) == nil, "a value opened with another key")
        _ = LoginFlow.open(LoginFlow.Session.self, sealed, name: name, with: sealer)
    default:
        if let decoded = Base64URL.decode(text) {
            require(Base64URL.decode(Base64URL.encode(decoded)) == decoded, "base64url round trip failed")
        }
    }
    return 0
}

let sealer = CookieSealer(key: Array(repeating: 7, count: 32))
let other = CookieSealer(key: Array(repeating: 8, count: 32))

/// The entry point SwiftPM links as `main` (see CFuzzDriver.h).
@_cdecl("fuzz_cookie_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzCookie)
}
