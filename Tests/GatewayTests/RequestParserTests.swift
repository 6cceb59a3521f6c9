import NIOCore
import NIOHTTP1
import Testing

@testable import GatewayProxy

/// The request parser, fed byte strings: each framing at every split point, pipelining, and
/// the inputs a front door must refuse.
@Suite struct RequestParserTests {
    struct Parsed: Equatable {
        var method = ""
        var uri = ""
        var minor = -1
        var headers: [String] = []
        var body = ""
        var trailers: [String]?
        var ended = false
    }

    /// Parses every request in `input`, delivered in pieces of `chunk` bytes.
    static func parse(_ input: String, chunk: Int = .max, limit: Int = 32768) throws(HTTP1ParseError) -> [Parsed] {
        var parser = RequestParser(maxHeadBytes: limit)
        var out: [Parsed] = []
        let bytes = Array(input.utf8)
        var kept = ByteBuffer()
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + max(1, chunk))
            kept.writeBytes(bytes[offset..<end])
            offset = end
            while let part = try parser.next(&kept) {
                switch part {
                case .head(let h):
                    out.append(
                        Parsed(
                            method: h.method.rawValue, uri: h.uri, minor: h.version.minor,
                            headers: h.headers.map { "\($0.name)=\($0.value)" }))
                case .body(var b):
                    out[out.count - 1].body += b.readString(length: b.readableBytes) ?? ""
                case .end(let t):
                    out[out.count - 1].trailers = t.map { $0.map { "\($0.name)=\($0.value)" } }
                    out[out.count - 1].ended = true
                }
            }
            kept.discardReadBytes()
        }
        return out
    }

    @Test func simpleRequestsAtEverySplit() throws {
        let input = "\r\nGET /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\nX-Pad:  v  \r\n\r\n"
        for chunk in 1...input.utf8.count {
            let r = try Self.parse(input, chunk: chunk)
            #expect(r.count == 1)
            #expect(r.first?.method == "GET" && r.first?.uri == "/a/b?c=1" && r.first?.minor == 1)
            #expect(r.first?.headers == ["Host=example.com", "X-Empty=", "X-Pad=v"])
            #expect(r.first?.ended == true)
        }
    }

    @Test func bodiesAndPipeliningAtEverySplit() throws {
        let input =
            "POST /l HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
            + "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
            + "GET /g HTTP/1.0\r\n\r\n"
        for chunk in [1, 2, 3, 7, 16, 64, 1000] {
            let r = try Self.parse(input, chunk: chunk)
            #expect(r.map(\.uri) == ["/l", "/c", "/g"])
            #expect(r.map(\.body) == ["hello", "abcde", ""])
            #expect(r[1].trailers == ["X-T=1"])
            #expect(r[2].minor == 0)
            #expect(r.allSatisfy { $0.ended })
        }
    }

    @Test func utf8TargetsPassAndInvalidOnesDoNot() throws {
        #expect(try Self.parse("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n").first?.uri == "/caf\u{e9}")
        var bytes = Array("GET /x".utf8) + [0xFF] + Array(" HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        var parser = RequestParser(maxHeadBytes: 1024)
        var b = ByteBuffer(bytes: bytes)
        #expect(throws: HTTP1ParseError.self) { _ = try parser.next(&b) }
        bytes = []
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\u{0}b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",
        "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "G\nET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        "GET / HTTX/1.1\r\nHost: a\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nbad trailer\r\n\r\n",
    ])
    func malformedRequestsAreRefused(_ input: String) {
        #expect(throws: HTTP1ParseError.self) { _ = try Self.parse(input) }
    }

    @Test func garbageIsRefusedBeforeTheHeadLimit() {
        // No CRLFCRLF ever comes, but the first bytes are already not a method.
        var parser = RequestParser(maxHeadBytes: 32768)
        var b = ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x02, 0x00])  // a TLS ClientHello on the cleartext port
        #expect(throws: HTTP1ParseError.self) { _ = try parser.next(&b) }
    }

    @Test func headOverTheLimitIsTooLarge() {
        let big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "a", count: 3000) + "\r\n\r\n"
        do {
            _ = try Self.parse(big, chunk: 512, limit: 2048)
            Issue.record("a head over the limit was accepted")
        } catch {
            #expect(error.tooLarge)
        }
        #expect(throws: Never.self) { _ = try Self.parse(big, limit: 4096) }
    }

    @Test func keepAliveFollowsVersionAndConnection() throws {
        let cases: [(String, Bool)] = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Close\r\n\r\n", false),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ]
        for (raw, expected) in cases {
            var parser = RequestParser(maxHeadBytes: 1024)
            var b = ByteBuffer(string: raw)
            _ = try parser.next(&b)
            #expect(parser.lastHeadKeepsAlive == expected, "\(raw.debugDescription)")
        }
    }
}
