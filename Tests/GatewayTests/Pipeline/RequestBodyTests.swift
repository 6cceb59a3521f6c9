import NIOCore
import NIOHTTP1
import Testing

@testable import GatewayProxy

/// The request body on its way up, before a connection takes it: framed (chunked stays
/// chunked), buffered, its trailers forwarded only where the route asks, and bounded.
@Suite struct RequestBodyTests {
    static func rig(trailers: Bool, maxBody: String = "1KiB") throws -> PipelineRig {
        try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "up", "match": { "path_prefix": "/up" }, "upstream": "app", "forward_request_trailers": \(trailers) },
                    """, extra: #""server": { "max_body_bytes": "\#(maxBody)" },"#))
    }

    /// An exchange of the route `up` waiting for its connection, its body going up chunked.
    static func waiting(_ rig: PipelineRig) -> Exchange {
        let ex = Exchange(
            handler: rig.handler,
            head: HTTPRequestHead(version: .http1_1, method: .POST, uri: "/up", headers: ["host": "h", "transfer-encoding": "chunked"]),
            requestID: "r", clientIP: "192.0.2.1", start: rig.context.time.deadline())
        ex.route = rig.snapshot.routes.first { $0.name == "up" }
        ex.phase = .waitingForConnection
        ex.upstreamChunked = true
        ex.expectsBody = true
        rig.handler.exchange = ex
        return ex
    }

    static func buffered(_ ex: Exchange) -> String { ex.buffered.map { String(buffer: $0) }.joined() }

    @Test func aChunkedBodyIsFramedAndKeptUntilTheConnection() throws {
        let rig = try Self.rig(trailers: false)
        let ex = Self.waiting(rig)
        rig.handler.requestBody(ByteBuffer(string: "hello"), ex)
        rig.handler.requestBody(ByteBuffer(), ex)  // an empty part is no chunk (it would end the body)
        rig.handler.requestEnd(["x-checksum": "1", "authorization": "Bearer t"], ex)
        #expect(Self.buffered(ex) == "5\r\nhello\r\n0\r\n\r\n")
        #expect(ex.bufferedBytes == 5 && ex.requestEnded)
    }

    @Test func trailersGoOnFilteredWhereTheRouteAsks() throws {
        let rig = try Self.rig(trailers: true)
        let ex = Self.waiting(rig)
        rig.handler.requestBody(ByteBuffer(string: "hi"), ex)
        rig.handler.requestEnd(["x-checksum": "1", "authorization": "Bearer t"], ex)
        let sent = Self.buffered(ex).lowercased()
        #expect(sent.hasPrefix("2\r\nhi\r\n0\r\n"))
        #expect(sent.contains("x-checksum: 1\r\n"))
        #expect(!sent.contains("authorization"))
        #expect(sent.hasSuffix("\r\n\r\n"))
    }

    @Test func aBodyOverTheLimitIs413AndClosesTheConnection() throws {
        let rig = try Self.rig(trailers: false)
        let ex = Self.waiting(rig)
        rig.handler.requestBody(ByteBuffer(repeating: 0x61, count: 1000), ex)
        #expect(try rig.written().isEmpty)
        rig.handler.requestBody(ByteBuffer(repeating: 0x61, count: 100), ex)
        let out = try rig.written()
        #expect(PipelineRig.statuses(out) == [413])
        #expect(out.lowercased().contains("connection: close"))
    }
}
