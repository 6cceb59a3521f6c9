import NIOCore
import Testing

@testable import GatewayProxy

/// The upstream response parser, fed byte strings: every framing, every split point, and the
/// inputs it must refuse.
@Suite struct ResponseParserTests {
    /// What a parse produced, flattened for comparison.
    struct Parsed: Equatable {
        var status = 0
        var headers: [String] = []
        var keepAlive = false
        var body = ""
        var trailers: String?
        var ended = false
        var framing: ResponseParser.Framing?
    }

    /// Parses `input` delivered in pieces of `chunk` bytes, keeping unconsumed bytes for the
    /// next piece as the upstream handler does.
    static func parse(_ input: String, chunk: Int = .max, head: Bool = false) throws(ResponseParser.Error) -> Parsed {
        var parser = ResponseParser()
        parser.requestIsHead = head
        var out = Parsed()
        let bytes = Array(input.utf8)
        var kept = ByteBuffer()
        var offset = 0
        while offset < bytes.count && !out.ended {
            let end = min(bytes.count, offset + max(1, chunk))
            kept.writeBytes(bytes[offset..<end])
            offset = end
            while let event = try parser.next(&kept) {
                switch event {
                case .head(let h):
                    out.status = h.status
                    out.keepAlive = h.keepAlive
                    out.framing = h.framing
                    out.headers = h.fields.map { f in
                        h.block.getString(at: Int(f.nameStart), length: Int(f.nameEnd - f.nameStart))! + "="
                            + h.block.getString(at: Int(f.valueStart), length: Int(f.valueEnd - f.valueStart))!
                    }
                case .body(var b):
                    out.body += b.readString(length: b.readableBytes)!
                case .end(let t):
                    out.trailers = t.map { String(buffer: $0) }
                    out.ended = true
                }
                if out.ended { break }
            }
            kept.discardReadBytes()
        }
        return out
    }

    @Test func contentLengthBodyAtEverySplit() throws {
        let input = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
        for chunk in 1...input.utf8.count {
            let p = try Self.parse(input, chunk: chunk)
            #expect(p.status == 200)
            #expect(p.headers == ["Content-Type=text/plain", "Content-Length=11"])
            #expect(p.body == "hello world")
            #expect(p.ended)
            #expect(p.keepAlive)
            #expect(p.framing == .length(11))
        }
    }

    @Test func chunkedBodyWithExtensionsAndTrailersAtEverySplit() throws {
        let input =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
        for chunk in 1...input.utf8.count {
            let p = try Self.parse(input, chunk: chunk)
            #expect(p.body == "hello world")
            #expect(p.trailers == "X-Checksum: abc\r\nX-Other: 1\r\n")
            #expect(p.ended)
            #expect(p.framing == .chunked)
        }
        let noTrailers = try Self.parse("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n")
        #expect(noTrailers.body == "0123456789")
        #expect(noTrailers.trailers == nil)
        #expect(noTrailers.ended)
    }

    @Test func bodylessResponses() throws {
        for status in [204, 304] {
            let p = try Self.parse("HTTP/1.1 \(status) X\r\nContent-Length: 10\r\n\r\n")
            #expect(p.ended && p.body.isEmpty && p.framing == ResponseParser.Framing.none)
        }
        let head = try Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head: true)
        #expect(head.ended && head.body.isEmpty)
        let empty = try Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(empty.ended && empty.keepAlive)
    }

    @Test func interimResponsesAreSkipped() throws {
        let p = try Self.parse(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )
        #expect(p.status == 201)
        #expect(p.body == "ok")
    }

    @Test func bodyUntilCloseAndConnectionHeaders() throws {
        var parser = ResponseParser()
        var b = ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\nsome bytes")
        guard case .head(let h) = try parser.next(&b) else {
            Issue.record("no head")
            return
        }
        #expect(h.framing == .untilClose && !h.keepAlive)
        guard case .body(let body) = try parser.next(&b) else {
            Issue.record("no body")
            return
        }
        #expect(String(buffer: body) == "some bytes")
        #expect(parser.endsAtClose)

        #expect(try !Self.parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keepAlive)
        #expect(try !Self.parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keepAlive)
        #expect(try Self.parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").keepAlive)
        #expect(try Self.parse("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").status == 200)  // no reason phrase
    }

    @Test func twoResponsesInARow() throws {
        var parser = ResponseParser()
        var b = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 No\r\nContent-Length: 1\r\n\r\nb")
        var statuses: [Int] = []
        var bodies = ""
        while let e = try parser.next(&b) {
            switch e {
            case .head(let h): statuses.append(h.status)
            case .body(let x): bodies += String(buffer: x)
            case .end: break
            }
        }
        #expect(statuses == [200, 404])
        #expect(bodies == "ab")
    }

    @Test(arguments: [
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\u{0}b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer\r\n\r\n",
    ])
    func invalidResponsesAreRefused(_ input: String) {
        #expect(throws: ResponseParser.Error.self) { _ = try Self.parse(input) }
    }

    @Test func oversizedHeadAndChunkLineAreRefused() {
        let big = "HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 70_000)
        #expect(throws: ResponseParser.Error.self) { _ = try Self.parse(big, chunk: 4096) }
        let ext = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + String(repeating: "e", count: 5000)
        #expect(throws: ResponseParser.Error.self) { _ = try Self.parse(ext, chunk: 512) }
    }

    @Test func chunkSizeLinesAreWrittenInHex() {
        for n in [1, 9, 10, 15, 16, 255, 4096, 65535, 1 << 20] {
            var b = ByteBuffer()
            b.writeChunkSize(n)
            #expect(String(buffer: b) == String(n, radix: 16) + "\r\n")
        }
    }

    @Test func headsLargerThanTheirReservationAreWrittenWhole() {
        var b = ByteBuffer()
        let long = String(repeating: "v", count: 5000)
        var runs = 0
        let result = b.writeHead(capacity: 1) { out -> Int in
            runs += 1
            out.writeStaticString("x-long: ")
            out.writeString(long)
            out.writeStaticString("\r\n")
            return 7
        }
        #expect(result == 7)
        #expect(runs > 1)
        #expect(String(buffer: b) == "x-long: " + long + "\r\n")
    }
}
