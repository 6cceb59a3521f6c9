import NIOCore

/// Sits below the HTTP decoder and watches raw bytes, to tell a slow client (408 after
/// `header_read_timeout` from its first byte) from an idle keep-alive connection (closed
/// quietly after `idle_timeout`). The request handler tells it when a head was decoded and when
/// the exchange is over.
///
/// No timer is scheduled per connection or per request: a deadline is stored and the loop's
/// `ConnectionClock` checks it on its tick (NGINX and Envoy keep timers as coarse for the same
/// reason: a scheduled task per request costs more than the request).
final class ConnectionTimeouts: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum State { case idle, readingHead, busy }
    private var state = State.idle
    /// Uptime nanoseconds after which the current state times out; 0 for none.
    private var deadline: UInt64 = 0
    private let headerTimeout: UInt64
    private let idleTimeout: UInt64
    private var context: ChannelHandlerContext?
    /// Produces the 408 body with a fresh request id.
    private let requestID: () -> String

    init(headerTimeout: TimeAmount, idleTimeout: TimeAmount, requestID: @escaping () -> String) {
        self.headerTimeout = UInt64(max(1, headerTimeout.nanoseconds))
        self.idleTimeout = UInt64(max(1, idleTimeout.nanoseconds))
        self.requestID = requestID
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        arm(headerTimeout)  // a new connection must send its first request in time
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline = 0
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if state == .idle {
            state = .readingHead
            arm(headerTimeout)
        }
        context.fireChannelRead(data)
    }

    /// A request head was decoded: the request timeout takes over.
    @inline(__always)
    func headReceived() {
        state = .busy
        deadline = 0
    }

    /// The exchange is over; the connection waits for the next request.
    @inline(__always)
    func exchangeFinished() {
        state = .idle
        arm(idleTimeout)
    }

    @inline(__always)
    private func arm(_ amount: UInt64) {
        deadline = NIODeadline.now().uptimeNanoseconds &+ amount
    }

    /// Called by the loop's clock.
    func tick(now: UInt64) {
        guard deadline != 0, now >= deadline else { return }
        deadline = 0
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
            context.writeAndFlush(NIOAny(response)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }
}

/// One per event loop: ticks every `interval` and lets each connection check its deadlines.
/// Connections register when they start and leave when they close (swap-remove, O(1)).
final class ConnectionClock {
    private var handlers: [ProxyHandler] = []
    static let interval = TimeAmount.milliseconds(50)

    func register(_ h: ProxyHandler) {
        h.clockSlot = handlers.count
        handlers.append(h)
    }

    func unregister(_ h: ProxyHandler) {
        let i = h.clockSlot
        guard i >= 0, i < handlers.count, handlers[i] === h else { return }
        let last = handlers.removeLast()
        if i < handlers.count {
            handlers[i] = last
            last.clockSlot = i
        }
        h.clockSlot = -1
    }

    var count: Int { handlers.count }

    func tick() {
        let now = NIODeadline.now().uptimeNanoseconds
        // A tick may close connections, which unregisters them: walk a copy.
        let current = handlers
        for h in current { h.tick(now: now) }
    }
}
