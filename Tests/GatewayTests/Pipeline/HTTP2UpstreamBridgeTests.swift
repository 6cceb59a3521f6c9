import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import GatewayConfig
@testable import GatewayProxy

/// An upstream HTTP/2 stream's bridge and its connection's watcher, on `EmbeddedChannel`s:
/// the exchange's HTTP/1.1 request becomes frames (trailers included), the response frames
/// become the HTTP/1.1 bytes `ResponseParser` reads (trailers as a chunked trailer section),
/// and an unanswered PING closes the connection.
@Suite struct HTTP2UpstreamBridgeTests {
    static func frames(_ channel: EmbeddedChannel) throws -> [HTTP2Frame.FramePayload] {
        var out: [HTTP2Frame.FramePayload] = []
        while let f = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) { out.append(f) }
        return out
    }

    @Test func aRequestWithTrailersBecomesHeadersDataAndTrailers() throws {
        let channel = EmbeddedChannel(handler: HTTP2UpstreamBridge(scheme: "http", maxHeadBytes: 65_536))
        let request =
            "POST /svc/Call HTTP/1.1\r\nHost: up:50051\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n"
            + "Connection: keep-alive\r\nX-Test: 1\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: 9\r\n\r\n"
        try channel.writeOutbound(ByteBuffer(string: request))
        let out = try Self.frames(channel)
        guard out.count == 3, case .headers(let head) = out[0], case .data(let data) = out[1], case .headers(let trailers) = out[2] else {
            Issue.record("frames: \(out)")
            return
        }
        #expect(head.headers.map(\.name) == [":method", ":scheme", ":authority", ":path", "content-type", "x-test", "te"])
        #expect(head.headers.first(name: ":authority") == "up:50051" && head.headers.first(name: "te") == "trailers")
        #expect(!head.endStream)
        if case .byteBuffer(let b) = data.data { #expect(String(buffer: b) == "hello") }
        #expect(trailers.endStream && trailers.headers.first(name: "x-checksum") == "9")
        _ = try channel.finish()
    }

    @Test func responseFramesBecomeAChunkedResponseWithTrailers() throws {
        let channel = EmbeddedChannel(handler: HTTP2UpstreamBridge(scheme: "http", maxHeadBytes: 65_536))
        try channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: [":status": "100"])))  // informational: dropped
        try channel.writeInbound(
            HTTP2Frame.FramePayload.headers(.init(headers: [":status": "200", "content-type": "application/grpc", "content-length": "7"])))
        try channel.writeInbound(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer(string: "abc")))))
        try channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: ["grpc-status": "0"], endStream: true)))
        var text = ""
        while var b = try channel.readInbound(as: ByteBuffer.self) { text += b.readString(length: b.readableBytes) ?? "" }
        #expect(
            text
                == "HTTP/1.1 200 \r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\ngrpc-status: 0\r\n\r\n"
        )
        _ = try channel.finish()
    }

    @Test func anUnansweredPingClosesTheConnection() throws {
        let loop = EmbeddedEventLoop()
        let pool = TargetPool(
            target: .init(url: "http://127.0.0.1:1", host: "127.0.0.1", port: 1, weight: 1, authority: "127.0.0.1:1"), loop: loop,
            maxConnections: 1, connectTimeout: .seconds(1), protocol: .h2c)
        let channel = EmbeddedChannel(handler: HTTP2SessionHandler(pool: pool, pingInterval: .seconds(20)), loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        loop.advanceTime(by: .seconds(20))
        guard case .ping(_, ack: false)? = try channel.readOutbound(as: HTTP2Frame.self)?.payload else {
            Issue.record("no PING after the interval")
            return
        }
        // Answered: the connection stays.
        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 1), ack: true)))
        loop.advanceTime(by: .seconds(20))
        #expect(channel.isActive)
        _ = try channel.readOutbound(as: HTTP2Frame.self)
        // Not answered within the next interval: closed.
        loop.advanceTime(by: .seconds(20))
        #expect(!channel.isActive)
    }
}
