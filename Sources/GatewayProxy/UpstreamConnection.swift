import NIOCore

/// Who uses an upstream connection while it is lent out: a client's `Exchange`, or an
/// aggregate route's `BackendCall`. All calls happen on the connection's event loop.
protocol UpstreamClient: AnyObject {
    /// The request was HEAD: the response has no body whatever its headers say.
    var isHead: Bool { get }
    /// Whether whoever takes the response body can take more now (backpressure).
    var downstreamWritable: Bool { get }
    func upstreamHead(_ head: ResponseParser.Head)
    func upstreamBody(_ buffer: ByteBuffer)
    func upstreamEnd(_ trailers: ByteBuffer?)
    func upstreamReadComplete()
    func upstreamFailed(_ error: GatewayError)
    func upstreamWritabilityChanged()
    /// The pool hands over a connection the client waited for.
    func connectionReady(_ c: UpstreamConnection)
    /// The pool could not open the connection the client waited for.
    func connectFailed(_ error: GatewayError)
}

/// One keep-alive connection to a target, owned by its `TargetPool` and lent to one request at a time.
final class UpstreamConnection: PoolConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    let pool: TargetPool
    /// It holds one of the gateway-wide slots of `max_connections_per_target` (it carries a
    /// request or a tunnel, or was just opened for one).
    var holdsSlot = false

    init(channel: any Channel, handler: UpstreamHandler, pool: TargetPool) {
        self.channel = channel
        self.handler = handler
        self.pool = pool
    }

    /// `closing` is set when the channel goes inactive, so no channel state is read here.
    var isUsable: Bool { !handler.closing }

    /// Ends the connection mid-exchange (it cannot be reused): no longer reporting to its
    /// client, closed. (`UpstreamTry.drop` counts it out of the pool's active ones.)
    func abandon() {
        handler.delegate = nil
        handler.closing = true
        channel.close(promise: nil)
    }
}

/// The client side of an upstream connection: parses responses with `ResponseParser`,
/// forwards their parts to the delegate, and stops reading while the client cannot take more
/// (backpressure). Requests are written as bytes the proxy serialized itself.
final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The client using this connection; strong, and cleared whenever the client lets go
    /// (a weak reference would slow every retain of the exchange).
    var delegate: (any UpstreamClient)? {
        didSet { if let delegate { parser.requestIsHead = delegate.isHead } }
    }
    /// The connection object this handler belongs to, until the channel closes.
    var connection: UpstreamConnection?
    private(set) var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Set when the response said `Connection: close` or the connection misbehaved.
    var closing = false
    private var parser = ResponseParser()
    /// Bytes of an incomplete head or chunk line, kept for the next read; after a `101`, the
    /// bytes that followed it (handed to the tunnel when this handler is removed).
    private var leftover: ByteBuffer?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        if let rest = leftover, rest.readableBytes > 0 {
            leftover = nil
            context.fireChannelRead(wrapInboundOut(rest))
            context.fireChannelReadComplete()
        }
    }

    typealias InboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if var kept = leftover {
            leftover = nil
            kept.writeBuffer(&buffer)
            buffer = kept
        }
        if parser.isUpgraded {
            leftover = buffer
            return
        }
        guard delegate != nil else {
            // Bytes on an idle connection: the server broke protocol; never reuse it.
            fail(context, "the upstream sent bytes without a request")
            return
        }
        do {
            while let delegate, let event = try parser.next(&buffer) {
                switch event {
                case .head(let head):
                    if !head.keepAlive { closing = true }
                    delegate.upstreamHead(head)
                    if head.status == 101 {
                        // The rest is the upgraded protocol's: the tunnel takes it from here.
                        leftover = buffer
                        delegate.upstreamEnd(nil)
                        return
                    }
                case .body(let slice):
                    delegate.upstreamBody(slice)
                case .end(let trailers):
                    // More bytes after a complete response, unasked for: never reuse this connection.
                    if buffer.readableBytes > 0 { closing = true }
                    delegate.upstreamEnd(trailers)
                    if closing { context.close(promise: nil) }
                    return
                }
            }
        } catch {
            fail(context, "the upstream sent an invalid response")
            return
        }
        if buffer.readableBytes > 0 { leftover = buffer }
    }

    private func fail(_ context: ChannelHandlerContext, _ message: String, refused: Bool = false) {
        closing = true
        leftover = nil
        if let delegate {
            self.delegate = nil
            delegate.upstreamFailed(refused ? .streamRefused() : .badGateway(message))
        }
        context.close(promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()  // nothing follows this handler: the event stops here
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        if let delegate {
            self.delegate = nil
            if parser.endsAtClose {
                // A body delimited by the close of the connection (no length, not chunked) is complete now.
                delegate.upstreamEnd(nil)
                delegate.upstreamReadComplete()
            } else {
                delegate.upstreamFailed(.badGateway("the upstream closed the connection before the response was complete"))
            }
        }
        if let c = connection {
            connection = nil
            c.pool.connectionClosed(c)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, "upstream connection error", refused: error is HTTP2StreamRefused)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        delegate?.upstreamWritabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let delegate, !delegate.downstreamWritable {
            pendingRead = true
            return
        }
        context.read()
    }

    /// Called when the client can take more again.
    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    @inline(__always)
    func write(_ bytes: ByteBuffer) {
        context?.write(wrapOutboundOut(bytes), promise: nil)
    }

    func flush() { context?.flush() }

    @inline(__always)
    func writeAndFlush(_ bytes: ByteBuffer) {
        context?.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }

    /// Tracked from writability events (cheaper than asking the channel on every read).
    private(set) var isWritable = true
}
