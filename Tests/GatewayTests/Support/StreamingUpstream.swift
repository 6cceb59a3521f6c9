import NIOCore
import NIOPosix
import Synchronization

/// An upstream that answers every request with `length` bytes of body, written only while
/// its socket is writable (as a well-behaved server does), and counts what the kernel took.
/// A proxy that stops reading holds this upstream to what the socket buffers take.
final class StreamingUpstream: Sendable {
    struct Stats: Sendable {
        /// Body bytes whose writes completed (handed to the kernel).
        var written = 0
        var connections = 0
        /// Connections that ended (the peer closed or reset them).
        var closed = 0
    }

    let channel: any Channel
    let port: Int
    private let box: StatsBox

    static func start(length: Int, group: any EventLoopGroup) async throws -> StreamingUpstream {
        let box = StatsBox()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Pump(length: length, stats: box))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return StreamingUpstream(channel: channel, port: channel.localAddress?.port ?? 0, box: box)
    }

    private init(channel: any Channel, port: Int, box: StatsBox) {
        self.channel = channel
        self.port = port
        self.box = box
    }

    var url: String { "http://127.0.0.1:\(port)" }
    var snapshot: Stats { box.stats.withLock { $0 } }

    func stop() async { try? await channel.close() }

    /// The counters, shared by reference with every connection's handler.
    final class StatsBox: Sendable {
        let stats = Mutex(Stats())
    }

    private final class Pump: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let length: Int
        let stats: StatsBox
        var seen: [UInt8] = []
        var remaining = 0
        var streaming = false
        var chunk = ByteBuffer()

        init(length: Int, stats: StatsBox) {
            self.length = length
            self.stats = stats
        }

        func channelActive(context: ChannelHandlerContext) {
            stats.stats.withLock { $0.connections += 1 }
            chunk = context.channel.allocator.buffer(repeating: UInt8(ascii: "x"), count: 64 * 1024)
            context.fireChannelActive()
        }

        func channelInactive(context: ChannelHandlerContext) {
            stats.stats.withLock { $0.closed += 1 }
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var b = unwrapInboundIn(data)
            seen += b.readBytes(length: b.readableBytes) ?? []
            guard !streaming, seen.firstRange(of: [13, 10, 13, 10]) != nil else { return }
            streaming = true
            remaining = length
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \(length)\r\n\r\n"
            context.write(wrapOutboundOut(context.channel.allocator.buffer(string: head)), promise: nil)
            pump(context: context)
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            if streaming { pump(context: context) }
            context.fireChannelWritabilityChanged()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }

        private func pump(context: ChannelHandlerContext) {
            while remaining > 0 && context.channel.isWritable {
                let n = min(remaining, chunk.readableBytes)
                remaining -= n
                let promise = context.eventLoop.makePromise(of: Void.self)
                let stats = self.stats
                promise.futureResult.whenSuccess { stats.stats.withLock { $0.written += n } }
                context.write(wrapOutboundOut(chunk.getSlice(at: chunk.readerIndex, length: n) ?? chunk), promise: promise)
            }
            context.flush()
        }
    }
}
