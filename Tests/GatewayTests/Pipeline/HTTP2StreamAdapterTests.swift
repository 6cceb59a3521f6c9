import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import GatewayProxy

/// An HTTP/2 stream's frames handed to its `ProxyHandler` as request parts (no HTTP/1.1
/// bytes between them), on an `EmbeddedChannel`: the same phases answer, and the checks the
/// HTTP/1.1 parser makes on bytes hold on the fields.
@Suite struct HTTP2StreamAdapterTests {
    final class Stream {
        let channel: EmbeddedChannel
        init(_ rig: PipelineRig) throws {
            let proxy = ProxyHandler(loopContext: rig.context, server: rig.snapshot.server, listenerName: "h2", isStream: true)
            channel = EmbeddedChannel(loop: rig.loop)
            try channel.connect(to: SocketAddress(ipAddress: "192.0.2.20", port: 4001)).wait()
            try channel.pipeline.syncOperations.addHandler(
                HTTP2StreamAdapter(maxHeadBytes: rig.snapshot.server.maxHeaderBytes, proxy: proxy))
            try channel.pipeline.syncOperations.addHandler(proxy)
        }
        deinit { _ = try? channel.finish() }

        func send(_ payload: HTTP2Frame.FramePayload) throws { try channel.writeInbound(payload) }

        /// `:status` of the HEADERS written so far, and the DATA bytes.
        func answer() throws -> (status: String?, body: String) {
            var status: String?
            var body = ""
            while let frame = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) {
                switch frame {
                case .headers(let h): status = status ?? h.headers.first(name: ":status")
                case .data(let d): if case .byteBuffer(let b) = d.data { body += String(buffer: b) }
                default: break
                }
            }
            return (status, body)
        }
    }

    static func request(_ path: String, _ extra: [(String, String)] = [], endStream: Bool = true) -> HTTP2Frame.FramePayload {
        var h: HPACKHeaders = [":method": "GET", ":path": path, ":scheme": "http", ":authority": "h"]
        for (n, v) in extra { h.add(name: n, value: v) }
        return .headers(.init(headers: h, endStream: endStream))
    }

    @Test func aStreamRunsThePhases() throws {
        let rig = try PipelineRig(PipelineRig.config())
        let stream = try Stream(rig)
        try stream.send(Self.request("/x", [("cookie", "a=1"), ("cookie", "b=2")]))
        let answer = try stream.answer()
        #expect(answer.status == "200" && answer.body == "hi")
    }

    @Test func fieldsAreCheckedAsBytesWouldBe() throws {
        let rig = try PipelineRig(PipelineRig.config())
        let control = try Stream(rig)
        try control.send(Self.request("/x", [("x-odd", "a\u{01}b")]))
        #expect(try control.answer().status == "400")
        let large = try Stream(rig)
        try large.send(Self.request("/x", [("x-big", String(repeating: "a", count: rig.snapshot.server.maxHeaderBytes))]))
        #expect(try large.answer().status == "431")
        let space = try Stream(rig)
        try space.send(Self.request("/a b"))
        #expect(try space.answer().status == "400")
    }

    /// `/slow` holds the request a second (a fault delay), then answers 503.
    static func heldRig() throws -> PipelineRig {
        try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "slow", "match": { "path_prefix": "/slow" }, "upstream": "app",
                      "fault": { "delay": { "duration": "1s", "percent": 100 }, "abort": { "status": 503, "percent": 100 } } },
                    """))
    }

    @Test func aBodyArrivingWhileTheRequestIsHeldWaitsForIt() throws {
        let rig = try Self.heldRig()
        let stream = try Stream(rig)
        try stream.send(Self.request("/slow", [("content-length", "2")], endStream: false))
        try stream.send(.data(.init(data: .byteBuffer(ByteBuffer(string: "hi")), endStream: true)))
        #expect(try stream.answer().status == nil)  // held
        rig.loop.advanceTime(by: .seconds(1))
        #expect(try stream.answer().status == "503")
    }

    /// `content-length` as the HTTP/1.1 parser wants it: digits only, one value.
    @Test(arguments: [["+5"], ["-0"], ["5,5"], [" 5"], ["0x5"], ["5", "6"], ["1234567890123456789"]])
    func aContentLengthThatIsNotOneDecimalIsRefused(_ values: [String]) throws {
        let rig = try PipelineRig(PipelineRig.config())
        let stream = try Stream(rig)
        try stream.send(Self.request("/x", values.map { ("content-length", $0) }, endStream: false))
        #expect(try stream.answer().status == "400")
    }

    @Test func aRepeatedEqualContentLengthIsOneLength() throws {
        let rig = try PipelineRig(PipelineRig.config())
        let stream = try Stream(rig)
        try stream.send(Self.request("/x", [("content-length", "2"), ("content-length", "2")], endStream: false))
        try stream.send(.data(.init(data: .byteBuffer(ByteBuffer(string: "hi")), endStream: true)))
        #expect(try stream.answer().status == "200")
    }

    /// Trailers are checked as an HTTP/1.1 trailer section is.
    @Test(arguments: [("x-a b", "1"), ("x-ok", "a\u{7F}b"), ("x-big", String(repeating: "a", count: 70_000))])
    func badTrailersAreRefused(_ name: String, _ value: String) throws {
        let rig = try Self.heldRig()
        let stream = try Stream(rig)
        try stream.send(Self.request("/slow", endStream: false))
        try stream.send(.headers(.init(headers: [name: value], endStream: true)))
        rig.loop.advanceTime(by: .seconds(1))
        let status = try stream.answer().status
        #expect(status == "400" || status == "431")
    }
}
