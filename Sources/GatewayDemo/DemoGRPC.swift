import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

/// The demo's gRPC service, h2c on its own port, speaking gRPC's framing by hand (the
/// messages are bytes: no `.proto` is needed to try the gateway's gRPC routes):
///
/// - `/demo.Echo/Unary`: one message back, `hello, ` and the message.
/// - `/demo.Echo/ServerStream`: the message is a count N (ASCII digits, at most 100): N
///   messages `tick i`, 200 ms apart.
/// - `/grpc.health.v1.Health/Check`: SERVING, for every service.
///
/// Anything else ends with UNIMPLEMENTED; a message over 64 KiB with RESOURCE_EXHAUSTED.
public final class DemoGRPC: Sendable {
    let channel: any Channel
    public let port: Int

    public static func start(port: Int, group: any EventLoopGroup) async throws -> DemoGRPC {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let http2 = NIOHTTP2Handler(
                        mode: .server, eventLoop: channel.eventLoop,
                        inboundStreamInitializer: { stream in
                            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(Call()) }
                        })
                    try channel.pipeline.syncOperations.addHandler(http2)
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        return DemoGRPC(channel: channel, port: channel.localAddress?.port ?? port)
    }

    private init(channel: any Channel, port: Int) {
        self.channel = channel
        self.port = port
    }

    public func stop() async { try? await channel.close() }

    /// One call: the request's messages are gathered to its end, then answered.
    final class Call: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias OutboundOut = HTTP2Frame.FramePayload

        private var path = ""
        private var body = ByteBuffer()
        private var tooLarge = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .headers(let frame):
                if path.isEmpty { path = frame.headers.first(name: ":path") ?? "/" }
                if frame.endStream { answer(context) }
            case .data(let frame):
                if case .byteBuffer(var bytes) = frame.data {
                    if body.readableBytes + bytes.readableBytes > 65_536 { tooLarge = true } else { body.writeBuffer(&bytes) }
                }
                if frame.endStream { answer(context) }
            default:
                break
            }
        }

        /// The first message's bytes (gRPC framing: flag, 4-byte length, bytes).
        private var message: [UInt8] {
            let bytes = Array(body.readableBytesView)
            guard bytes.count >= 5 else { return [] }
            let n = Int(bytes[1]) << 24 | Int(bytes[2]) << 16 | Int(bytes[3]) << 8 | Int(bytes[4])
            return Array(bytes[5..<min(bytes.count, 5 + n)])
        }

        private func answer(_ context: ChannelHandlerContext) {
            if tooLarge { return end(context, status: 8, message: "message over 64 KiB", sentHead: false) }
            switch path {
            case "/demo.Echo/Unary":
                head(context)
                send(context, Array("hello, ".utf8) + message)
                end(context, status: 0)
            case "/demo.Echo/ServerStream":
                let n = min(100, Int(String(decoding: message, as: UTF8.self)) ?? 3)
                head(context)
                tick(context, i: 0, of: n)
            case "/grpc.health.v1.Health/Check":
                head(context)
                send(context, [0x08, 0x01])  // HealthCheckResponse { status: SERVING }
                end(context, status: 0)
            default:
                end(context, status: 12, message: "no method \(path)", sentHead: false)
            }
        }

        private func tick(_ context: ChannelHandlerContext, i: Int, of n: Int) {
            guard i < n else { return end(context, status: 0) }
            send(context, Array("tick \(i)".utf8))
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(200)) { [self] in
                guard context.channel.isActive else { return }
                tick(context, i: i + 1, of: n)
            }
        }

        private func head(_ context: ChannelHandlerContext) {
            let h: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
            context.write(wrapOutboundOut(.headers(.init(headers: h))), promise: nil)
        }

        private func send(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
            var frame = context.channel.allocator.buffer(capacity: bytes.count + 5)
            frame.writeInteger(UInt8(0))
            frame.writeInteger(UInt32(bytes.count))
            frame.writeBytes(bytes)
            context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(frame)))), promise: nil)
        }

        /// Trailers (or, with no head sent, a trailers-only answer).
        private func end(_ context: ChannelHandlerContext, status: Int, message: String? = nil, sentHead: Bool = true) {
            var h: HPACKHeaders = sentHead ? [:] : [":status": "200", "content-type": "application/grpc"]
            h.add(name: "grpc-status", value: String(status))
            if let message { h.add(name: "grpc-message", value: message) }
            context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: h, endStream: true))), promise: nil)
        }
    }
}
