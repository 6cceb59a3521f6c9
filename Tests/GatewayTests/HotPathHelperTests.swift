import NIOCore
import Testing

@testable import GatewayProxy

/// Helpers on every request's path that were rewritten for fewer instructions (issue 12):
/// the same answers as their plain definitions.
@Suite struct HotPathHelperTests {
    /// Every byte alone and in a longer host: the two-mask check against the set as written.
    @Test func hostBytesAreThoseOfTheSetAsWritten() {
        let allowed = Set(Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%:[]".utf8))
        for b in UInt8.min...UInt8.max {
            let host = String(decoding: [UInt8(ascii: "a"), b, UInt8(ascii: "z")], as: UTF8.self)
            let want = host.utf8.allSatisfy { allowed.contains($0) }
            #expect(ProxyHandler.isValidHost(host) == want, "byte \(b)")
        }
        #expect(ProxyHandler.isValidHost("api.example.com:8080"))
        #expect(ProxyHandler.isValidHost("[::1]:8080"))
        #expect(!ProxyHandler.isValidHost("a b"))
        #expect(!ProxyHandler.isValidHost("a/b"))
        #expect(!ProxyHandler.isValidHost("caf\u{e9}"))
    }

    /// Request ids are 32 lowercase hex digits, traceparents valid W3C ones, and the digits
    /// are the value's own (checked against String(radix:)).
    @Test func idsAreLowercaseHexOfTheirValue() {
        var ids = IDGenerator(seed: 42)
        var reference = IDGenerator(seed: 42).rng
        for _ in 0..<1000 {
            let id = ids.requestID()
            let a = reference.next()
            let b = reference.next()
            func hex16(_ v: UInt64) -> String {
                let s = String(v, radix: 16)
                return String(repeating: "0", count: 16 - s.count) + s
            }
            #expect(id == hex16(a) + hex16(b))
        }
        var head = ByteBuffer()
        ids.writeTraceparent(into: &head)
        let text = head.readString(length: head.readableBytes) ?? ""
        #expect(TraceContext.isValid(text), "\(text)")
    }

    /// The header-value loop's fast path: for every byte inside a value, the verdict and
    /// the trimmed value are those of the rule (visible ASCII, space, HTAB and obs-text pass,
    /// other controls and DEL do not; spaces and tabs at the ends are trimmed).
    @Test func everyByteInAHeaderValueGetsTheRulesVerdict() {
        for b in UInt8.min...UInt8.max {
            let line: [UInt8] = Array("X-A: a".utf8) + [b] + Array("b \t\r\n\r\n".utf8)
            var value: [UInt8]? = nil
            let failure = line.withUnsafeBytes { raw in
                scanFieldLines(raw, from: 0) { _, v in
                    value = Array(raw[v])
                    return nil
                }
            }
            let passes = (b >= 0x20 && b != 0x7F) || b == 0x09 || b >= 0x80
            if b == UInt8(ascii: "\r") {
                #expect(failure != nil, "a bare CR in a value")
            } else if passes {
                #expect(failure == nil, "byte \(b)")
                #expect(value == [UInt8(ascii: "a"), b, UInt8(ascii: "b")], "byte \(b)")
            } else {
                #expect(failure != nil, "byte \(b)")
            }
        }
    }

    /// `Authorization: Bearer` read on the bytes: any case, extra spaces, and nothing else.
    @Test func bearerPrefixReadOnTheBytes() {
        #expect(LoopContext.afterBearer("Bearer abc.def") == "abc.def")
        #expect(LoopContext.afterBearer("bEaReR    abc") == "abc")
        #expect(LoopContext.afterBearer("BEARER x") == "x")
        #expect(LoopContext.afterBearer("Bearer ") == "")
        #expect(LoopContext.afterBearer("Bearer") == nil)
        #expect(LoopContext.afterBearer("Bearerabc") == nil)
        #expect(LoopContext.afterBearer("Basic abc") == nil)
        #expect(LoopContext.afterBearer("") == nil)
        #expect(LoopContext.afterBearer("Bearer t\u{301}ok") == "t\u{301}ok", "what follows is the bytes as sent")
    }
}
