import NIOCore
import NIOPosix

/// An upstream on a loopback socket that answers every request head with the same bytes,
/// written as given (so tests can send framings and mistakes no HTTP library would), then
/// closes the connection when `close` is set.
final class CannedUpstream: Sendable {
    let channel: any Channel
    let port: Int

    static func start(_ response: String, close: Bool, group: any EventLoopGroup) async throws -> CannedUpstream {
        let bytes = Array(response.utf8)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Answer(bytes: bytes, close: close))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return CannedUpstream(channel: channel, port: channel.localAddress?.port ?? 0)
    }

    init(channel: any Channel, port: Int) {
        self.channel = channel
        self.port = port
    }

    var url: String { "http://127.0.0.1:\(port)" }

    func stop() async { try? await channel.close() }

    private final class Answer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let bytes: [UInt8]
        let close: Bool
        var seen: [UInt8] = []
        init(bytes: [UInt8], close: Bool) {
            self.bytes = bytes
            self.close = close
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var b = unwrapInboundIn(data)
            seen += b.readBytes(length: b.readableBytes) ?? []
            // One answer per request head seen (requests in these tests have no body).
            while let end = seen.firstRange(of: [13, 10, 13, 10]) {
                seen.removeSubrange(..<end.upperBound)
                let write = context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)))
                if close {
                    write.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                    return
                }
            }
        }
    }
}
