import NIOCore
import NIOHTTP1

/// One keep-alive connection to a target, owned by its `TargetPool` and lent to one request at a time.
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    let pool: TargetPool

    init(channel: any Channel, handler: UpstreamHandler, pool: TargetPool) {
        self.channel = channel
        self.handler = handler
        self.pool = pool
    }

    /// `closing` is set when the channel goes inactive, so no channel state is read here.
    var isUsable: Bool { !handler.closing }
}

/// The client side of an upstream connection: forwards response parts to the delegate and
/// stops reading while the client cannot take more (backpressure).
final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// The exchange using this connection; strong, and cleared whenever the exchange lets go
    /// (a weak reference would slow every retain of the exchange).
    var delegate: Exchange?
    /// The connection object this handler belongs to, until the channel closes.
    var connection: UpstreamConnection?
    private(set) var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Set when the response said `Connection: close` or the connection misbehaved.
    var closing = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard let delegate else {
            // Bytes on an idle connection: the server broke protocol; never reuse it.
            closing = true
            context.close(promise: nil)
            return
        }
        switch part {
        case .head(let head):
            if head.status.code < 200 && head.status != .switchingProtocols { return }  // 1xx are dropped by the decoder too
            if !head.isKeepAlive { closing = true }
            delegate.upstreamHead(head)
        case .body(let buf):
            delegate.upstreamBody(buf)
        case .end(let trailers):
            delegate.upstreamEnd(trailers)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        if let delegate {
            self.delegate = nil
            delegate.upstreamFailed(.badGateway("the upstream closed the connection before the response was complete"))
        }
        if let c = connection {
            connection = nil
            c.pool.connectionClosed(c)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closing = true
        if let delegate {
            self.delegate = nil
            let message = error is HTTPParserError ? "the upstream sent an invalid response" : "upstream connection error"
            delegate.upstreamFailed(.badGateway(message))
        }
        context.close(promise: nil)
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
    func write(_ part: HTTPClientRequestPart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() { context?.flush() }

    /// Tracked from writability events (cheaper than asking the channel on every read).
    private(set) var isWritable = true
}
