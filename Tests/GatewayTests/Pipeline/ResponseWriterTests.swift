import NIOCore
import NIOHTTP1
import Testing

@testable import GatewayProxy

/// `ResponseWriter` fed an upstream's response as the upstream connection reports it (head,
/// body, end), on an `EmbeddedChannel`: what the client receives.
@Suite struct ResponseWriterTests {
    static let json = PipelineRig.config(
        routes:
            #"{ "name": "up", "match": { "path_prefix": "/up" }, "upstream": "app", "response_headers": { "set": { "x-via": "gw" } } },"#)

    /// An exchange of `method` on the route `up`, forwarded, its request over.
    static func exchange(_ rig: PipelineRig, method: HTTPMethod = .GET) -> Exchange {
        let ex = Exchange(
            handler: rig.handler, head: HTTPRequestHead(version: .http1_1, method: method, uri: "/up", headers: ["host": "h"]),
            requestID: "rid-1", clientIP: "192.0.2.1", start: rig.context.time.deadline())
        ex.route = rig.snapshot.routes.first { $0.name == "up" }
        ex.requestEnded = true
        ex.phase = .forwarding
        rig.handler.exchange = ex
        return ex
    }

    /// Feeds `response` (an upstream's bytes) as the upstream handler would.
    static func respond(_ rig: PipelineRig, _ ex: Exchange, _ response: String, isHead: Bool = false) throws {
        var parser = ResponseParser()
        parser.requestIsHead = isHead
        var bytes = ByteBuffer(string: response)
        while let event = try parser.next(&bytes) {
            switch event {
            case .head(let head): rig.handler.upstreamHead(head, ex)
            case .body(let body): rig.handler.upstreamBody(body, ex)
            case .end(let trailers): rig.handler.upstreamEnd(ex, trailers: trailers)
            }
        }
        rig.handler.upstreamReadComplete()
    }

    @Test func aSmallResponseIsOneWriteWithTheGatewaysHeaders() throws {
        let rig = try PipelineRig(Self.json)
        let ex = Self.exchange(rig)
        try Self.respond(
            rig, ex,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\nhello"
        )
        let first = try #require(try rig.channel.readOutbound(as: ByteBuffer.self))
        #expect(try rig.channel.readOutbound(as: ByteBuffer.self) == nil)  // head and body: one buffer
        let text = String(buffer: first).lowercased()
        #expect(text.hasPrefix("http/1.1 200 ok\r\n"))
        #expect(text.contains("x-request-id: rid-1") && text.contains("x-via: gw"))
        #expect(!text.contains("keep-alive: timeout"))  // hop-by-hop fields stay behind
        #expect(text.hasSuffix("\r\n\r\nhello"))
        #expect(rig.handler.exchange == nil)  // the exchange is over
    }

    @Test func aChunkedBodyStaysChunkedWithItsTrailers() throws {
        let rig = try PipelineRig(Self.json)
        let ex = Self.exchange(rig)
        try Self.respond(rig, ex, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n")
        let text = try rig.written()
        #expect(text.lowercased().contains("transfer-encoding: chunked"))
        #expect(text.hasSuffix("3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n"))
    }

    @Test func aHeadRequestGetsTheHeadersWithoutABody() throws {
        let rig = try PipelineRig(Self.json)
        let ex = Self.exchange(rig, method: .HEAD)
        try Self.respond(rig, ex, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", isHead: true)
        let text = try rig.written()
        #expect(text.lowercased().contains("content-length: 5"))
        #expect(text.hasSuffix("\r\n\r\n"))
    }

    @Test func aConnectionCloseFromTheUpstreamDoesNotCloseTheClient() throws {
        let rig = try PipelineRig(Self.json)
        let ex = Self.exchange(rig)
        try Self.respond(rig, ex, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        #expect(PipelineRig.statuses(try rig.written()) == [204])
        #expect(rig.channel.isActive)
    }
}
