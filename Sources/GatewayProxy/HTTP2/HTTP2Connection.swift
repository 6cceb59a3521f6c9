import GatewayConfig
import NIOCore
import NIOHTTP2

/// An HTTP/2 connection (SPEC §2.1 `http2`): NIOHTTP2 speaks the protocol, each stream gets an
/// `HTTP2StreamAdapter` and a `ProxyHandler` of its own, and this handler, last in the
/// connection's pipeline, is what the loop's `ConnectionClock` and the metrics see of it.
///
/// - Drain (SPEC §9): `quiesce` sends the connection into NIOHTTP2's graceful shutdown
///   (`NIOHTTP2ServerConnectionManagementHandler`): GOAWAY, streams in flight finish, then
///   the connection closes (`drain_timeout` at most).
/// - Idle: the management handler closes a connection without streams after `idle_timeout`;
///   a connection that opens no stream within `header_read_timeout` is closed here.
/// - Limits: `http2_max_concurrent_streams` and `max_header_bytes` (as
///   SETTINGS_MAX_HEADER_LIST_SIZE) are advertised and enforced by NIOHTTP2.
final class HTTP2Connection: ChannelInboundHandler, ClockedConnection {
    typealias InboundIn = HTTP2Frame

    let listenerName: String
    var clockSlot = -1
    var isConnection: Bool { true }
    private let loopContext: LoopContext
    private var context: ChannelHandlerContext?
    /// Streams the peer opened on this connection so far.
    fileprivate(set) var streamsOpened = 0
    private var firstStreamDeadline: UInt64 = 0
    private let headerTimeout: UInt64

    init(loopContext: LoopContext, listenerName: String, headerTimeoutNanos: Int64) {
        self.loopContext = loopContext
        self.listenerName = listenerName
        self.headerTimeout = UInt64(max(0, headerTimeoutNanos))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        firstStreamDeadline = NIODeadline.now().uptimeNanoseconds &+ headerTimeout
        loopContext.clock.register(self)
        loopContext.metrics.connectionOpened(listener: listenerName)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        loopContext.clock.unregister(self)
        loopContext.metrics.connectionClosed(listener: listenerName)
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        loopContext.clock.unregister(self)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Connection-level frames (SETTINGS, PING, GOAWAY) end here; NIOHTTP2 has acted on them.
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A connection error (NIOHTTP2 has sent GOAWAY where the protocol asks for it).
        context.close(promise: nil)
    }

    func tick(now: UInt64) {
        if streamsOpened == 0 && now >= firstStreamDeadline { context?.close(promise: nil) }
    }

    func quiesce() {
        guard let channel = context?.channel else { return }
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        // The management handler defers its flush while it believes a read is in progress;
        // a drain happens between reads, so the GOAWAY is pushed out now.
        channel.flush()
    }

    /// Makes `channel` (after TLS and ALPN `h2`, or a cleartext connection that began with the
    /// HTTP/2 preface) an HTTP/2 server connection whose streams are proxied.
    static func configure(
        _ channel: any Channel, loopContext: LoopContext, server: ServerSettings, listener: String, tls: Bool
    ) throws {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: server.http2MaxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: server.maxHeaderBytes),
        ]
        var stream = NIOHTTP2Handler.StreamConfiguration()
        // A stream stays writable with a response slice or two queued (NIO's default is 8 KiB).
        stream.outboundBufferSizeHighWatermark = 64 * 1024
        stream.outboundBufferSizeLowWatermark = 16 * 1024
        let management = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(
                maxIdleTime: .nanoseconds(server.idleTimeoutNanos), maxAge: nil,
                maxGraceTime: .nanoseconds(server.drainTimeoutNanos), keepalive: nil))
        let handler = HTTP2Connection(loopContext: loopContext, listenerName: listener, headerTimeoutNanos: server.headerReadTimeoutNanos)
        // Streams are children of this channel, on its event loop, like the loop context.
        let bound = NIOLoopBound((loopContext, handler), eventLoop: channel.eventLoop)
        let http2 = NIOHTTP2Handler(
            mode: .server, eventLoop: channel.eventLoop, connectionConfiguration: connection, streamConfiguration: stream,
            // Stream openings and closings reach the management handler only through its delegate.
            streamDelegate: management.http2StreamDelegate,
            inboundStreamInitializer: { stream in
                stream.eventLoop.makeCompletedFuture {
                    let (loopContext, connection) = bound.value
                    connection.streamsOpened += 1
                    let ops = stream.pipeline.syncOperations
                    let proxy = ProxyHandler(loopContext: loopContext, server: server, listenerName: listener, tls: tls, isStream: true)
                    try ops.addHandler(HTTP2StreamAdapter(maxHeadBytes: server.maxHeaderBytes, proxy: proxy))
                    try ops.addHandler(proxy)
                }
            })
        let ops = channel.pipeline.syncOperations
        try ops.addHandler(FlushCoalescer())
        try ops.addHandler(http2)
        try ops.addHandler(management)
        try ops.addHandler(handler)
    }
}

/// Below NIOHTTP2: a flush that comes outside a read of the connection (a stream's answer,
/// after its upstream read) is done once the event loop has handled all the I/O it is on, so
/// the answers of several streams that arrive in one loop iteration leave in one write (one
/// TLS record run, one syscall, one wake-up of the client) rather than one each.
final class FlushCoalescer: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var reading = false
    private var flushScheduled = false
    private var flushAfterRead = false
    private var removed = false

    func handlerRemoved(context: ChannelHandlerContext) { removed = true }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // What is written goes out before the close (GOAWAY's close comes right after the last stream's end).
        if flushScheduled || flushAfterRead {
            flushAfterRead = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        reading = false
        if flushAfterRead {
            flushAfterRead = false
            context.flush()
        }
    }

    func flush(context: ChannelHandlerContext) {
        if reading {
            flushAfterRead = true  // the end of this read flushes
            return
        }
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.flushScheduled = false
            if !handler.removed { context.flush() }
        }
    }
}

/// On a cleartext listener with `http2`: the first bytes tell the HTTP/2 connection preface
/// ("PRI * HTTP/2.0", h2c with prior knowledge) from an HTTP/1.1 request. "PRI " decides: no
/// HTTP/1.1 method is PRI (RFC 9113 §3.4). Until then the `ProxyHandler` behind it keeps the
/// connection's idle deadline; for HTTP/2 it is replaced by `HTTP2Connection.configure`.
final class HTTP2PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var seen: ByteBuffer?
    private let http1: ProxyHandler
    private let startHTTP2: (any Channel) throws -> Void
    private static let prefix: [UInt8] = Array("PRI ".utf8)

    init(http1: ProxyHandler, startHTTP2: @escaping (any Channel) throws -> Void) {
        self.http1 = http1
        self.startHTTP2 = startHTTP2
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if var kept = seen {
            kept.writeBuffer(&bytes)
            bytes = kept
        }
        let n = min(bytes.readableBytes, Self.prefix.count)
        let start = bytes.getBytes(at: bytes.readerIndex, length: n) ?? []
        guard start == Array(Self.prefix[0..<n]) else { return hand(bytes, context: context, http2: false) }
        if n == Self.prefix.count { return hand(bytes, context: context, http2: true) }
        seen = bytes
    }

    func channelInactive(context: ChannelHandlerContext) {
        seen = nil
        context.fireChannelInactive()
    }

    private func hand(_ bytes: ByteBuffer, context: ChannelHandlerContext, http2: Bool) {
        seen = nil
        let ops = context.pipeline.syncOperations
        if http2 {
            do {
                // A removal without a custom `removeHandler` is done before this returns.
                ops.removeHandler(http1, promise: nil)
                try startHTTP2(context.channel)
            } catch {
                context.close(promise: nil)
                return
            }
        }
        context.fireChannelRead(wrapInboundOut(bytes))
        context.fireChannelReadComplete()
        ops.removeHandler(context: context, promise: nil)
    }
}
