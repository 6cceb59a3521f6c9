import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

/// An h2c upstream that, as NGINX does at `keepalive_requests`, answers `limit` streams on a
/// connection, then sends GOAWAY naming the last of them and closes the connection at once:
/// streams the client opened after that one were never processed.
final class GoAwayUpstream: Sendable {
    let channel: any Channel
    let port: Int
    private let answered: NIOLockedValueBox<Int>
    /// Streams answered, over every connection.
    var requests: Int { answered.withLockedValue { $0 } }

    static func start(limit: Int, group: any EventLoopGroup) async throws -> GoAwayUpstream {
        let box = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let counter = Counter(limit: limit, answered: box)
                    let bound = NIOLoopBound(counter, eventLoop: channel.eventLoop)
                    let http2 = NIOHTTP2Handler(
                        mode: .server, eventLoop: channel.eventLoop,
                        inboundStreamInitializer: { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try stream.pipeline.syncOperations.addHandler(Answer(counter: bound.value))
                            }
                        })
                    try channel.pipeline.syncOperations.addHandler(http2)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return GoAwayUpstream(channel: channel, answered: box)
    }

    private init(channel: any Channel, answered: NIOLockedValueBox<Int>) {
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
        self.answered = answered
    }

    var url: String { "http://127.0.0.1:\(port)" }
    func stop() async { try? await channel.close() }

    /// Per connection: how many streams were answered, and whether it is going away.
    final class Counter {
        let limit: Int
        let answered: NIOLockedValueBox<Int>
        var count = 0
        var gone = false
        init(limit: Int, answered: NIOLockedValueBox<Int>) {
            self.limit = limit
            self.answered = answered
        }
    }

    final class Answer: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias OutboundOut = HTTP2Frame.FramePayload
        let counter: Counter
        init(counter: Counter) { self.counter = counter }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .headers(let frame) = unwrapInboundIn(data), frame.endStream else { return }
            guard !counter.gone, let parent = context.channel.parent else { return }  // after GOAWAY: never answered
            counter.count += 1
            counter.answered.withLockedValue { $0 += 1 }
            let headers: HPACKHeaders = [":status": "200", "content-type": "text/plain"]
            context.write(wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer(string: "ok")), endStream: true))), promise: nil)
            if counter.count == counter.limit, let id = try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID) {
                counter.gone = true
                let goAway = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: id, errorCode: .noError, opaqueData: nil))
                parent.writeAndFlush(goAway).whenComplete { _ in parent.close(promise: nil) }
            }
        }
    }
}
