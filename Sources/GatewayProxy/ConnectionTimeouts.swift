import NIOCore

/// Sits below the HTTP decoder and watches raw bytes, to tell a slow client (408 after
/// `header_read_timeout` from its first byte) from an idle keep-alive connection (closed
/// quietly after `idle_timeout`). The request handler tells it when a head was decoded and when
/// the exchange is over.
final class ConnectionTimeouts: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum State { case idle, readingHead, busy }
    private var state = State.idle
    private var timer: Scheduled<Void>?
    private let headerTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var context: ChannelHandlerContext?
    /// Produces the 408 body with a fresh request id.
    private let requestID: () -> String

    init(headerTimeout: TimeAmount, idleTimeout: TimeAmount, requestID: @escaping () -> String) {
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.requestID = requestID
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { arm(headerTimeout) }  // a new connection must send its first request in time
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(headerTimeout)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if state == .idle {
            state = .readingHead
            arm(headerTimeout)
        }
        context.fireChannelRead(data)
    }

    /// A request head was decoded: the request timeout takes over.
    func headReceived() {
        state = .busy
        timer?.cancel()
        timer = nil
    }

    /// The exchange is over; the connection waits for the next request.
    func exchangeFinished() {
        state = .idle
        arm(idleTimeout)
    }

    private func arm(_ amount: TimeAmount) {
        timer?.cancel()
        guard let context else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: amount) { [weak self] in
            self?.fire()
        }
    }

    private func fire() {
        timer = nil
        guard let context else { return }
        switch state {
        case .busy:
            return
        case .idle:
            // An idle keep-alive connection (or one that never sent a byte): close it quietly.
            context.close(promise: nil)
        case .readingHead:
            state = .busy
            let response = GatewayError.requestTimeout().rawResponse(requestID: requestID(), allocator: context.channel.allocator)
            context.writeAndFlush(NIOAny(response), promise: nil)
            context.close(promise: nil)
        }
    }
}
