import NIOCore
import Testing

@testable import GatewayProxy

/// Helpers on every request's path that were rewritten for fewer instructions (issue 12):
/// the same answers as their plain definitions.
@Suite struct HotPathHelperTests {
    /// The one query parser (`/explain`, the login callback, aggregate `{query.NAME}`).
    @Test func queryPairsDecodeInOrderAndNeverTrap() {
        func pairs(_ q: String?) -> [String] { Router.queryPairs(q.map { Substring($0) }).map { "\($0.name)=\($0.value)" } }
        #expect(pairs(nil) == [])
        #expect(pairs("") == [])
        #expect(pairs("a=1&b=2&a=3") == ["a=1", "b=2", "a=3"])
        #expect(pairs("q=a+b%2Bc&x") == ["q=a b+c", "x="])
        #expect(pairs("k%3D=v%3D1=2") == ["k==v=1=2"])
        #expect(pairs("==&%&=x&&") == ["==", "%=", "=x"])
        #expect(pairs("%C3%A9=%E2%9C%93") == ["é=✓"])
    }

    /// Every byte alone and in a longer host: the two-mask check against the set as written.
    @Test func hostBytesAreThoseOfTheSetAsWritten() {
        let allowed = Set(Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%:[]".utf8))
        for b in UInt8.min...UInt8.max {
            let host = String(decoding: [UInt8(ascii: "a"), b, UInt8(ascii: "z")], as: UTF8.self)
            let want = host.utf8.allSatisfy { allowed.contains($0) }
            #expect(HeadGuards.isValidHost(host) == want, "byte \(b)")
        }
        #expect(HeadGuards.isValidHost("api.example.com:8080"))
        #expect(HeadGuards.isValidHost("[::1]:8080"))
        #expect(!HeadGuards.isValidHost("a b"))
        #expect(!HeadGuards.isValidHost("a/b"))
        #expect(!HeadGuards.isValidHost("caf\u{e9}"))
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
            let (failure, value) = Self.scan(Array("X-A: a".utf8) + [b] + Array("b \t\r\n\r\n".utf8))
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

    /// The field-line scanner's verdict on one line, and the value it read.
    static func scan(_ line: [UInt8]) -> (HTTP1ParseError?, [UInt8]?) {
        var value: [UInt8]? = nil
        let failure = line.withUnsafeBytes { raw in
            scanFieldLines(raw, from: 0) { _, v in
                value = Array(raw[v])
                return nil
            }
        }
        return (failure, value)
    }

    /// The same verdicts in long values, read eight bytes at a time: every byte at every
    /// position of a 24-byte value (so in every lane of a word, and in the bytes after the
    /// last whole word), with spaces and tabs trimmed at the end.
    @Test func everyByteAtEveryPositionOfALongValue() {
        let body = Array("abcdefghijklmnopqrstuvwx".utf8)
        for b in UInt8.min...UInt8.max {
            for k in 0..<body.count {
                var v = body
                v[k] = b
                let (failure, value) = Self.scan(Array("X-Long: ".utf8) + v + Array(" \t \r\n\r\n".utf8))
                let passes = (b >= 0x20 && b != 0x7F) || b == 0x09 || b >= 0x80
                if passes && b != UInt8(ascii: "\r") {
                    #expect(failure == nil, "byte \(b) at \(k)")
                    // A space or tab at either end of the value is trimmed.
                    var want = v
                    while let l = want.last, l == 0x20 || l == 0x09 { want.removeLast() }
                    while let f = want.first, f == 0x20 || f == 0x09 { want.removeFirst() }
                    #expect(value == want, "byte \(b) at \(k)")
                } else {
                    #expect(failure != nil, "byte \(b) at \(k)")
                }
            }
        }
    }

    /// The end of a head found with memchr: at the right place in a long head, not before it
    /// arrives whole, and a bare LF anywhere in it refused.
    @Test func headEndInALongHead() throws {
        let head = Array("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(String(repeating: "t", count: 300))\r\nX-B: c\r\n\r\n".utf8)
        var scanned = 0
        for cut in 1..<head.count {
            var buffer = ByteBuffer(bytes: head[..<cut])
            scanned = 0
            #expect(try findHeadEnd(buffer, scanned: &scanned, max: 16_384) == nil, "cut at \(cut)")
            buffer.writeBytes(head[cut...])
            #expect(try findHeadEnd(buffer, scanned: &scanned, max: 16_384) == head.count, "cut at \(cut)")
        }
        for i in 0..<(head.count - 4) where head[i] == UInt8(ascii: "\r") {
            var bare = head
            bare.remove(at: i)
            var s = 0
            #expect(throws: HTTP1ParseError.self, "a bare LF where the CR at \(i) was") {
                _ = try findHeadEnd(ByteBuffer(bytes: bare), scanned: &s, max: 16_384)
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
