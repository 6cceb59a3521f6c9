import GatewayConfig
import NIOCore
import NIOHTTP1
import NIOPosix

/// Keep-alive connections from one event loop to one target. Loop-confined: no locks.
/// Limits (`max_connections_per_target`) are this loop's share of the upstream's limit.
final class TargetPool {
    enum Acquired {
        case ready(UpstreamConnection)
        case waiting(Waiter)
        case rejected(GatewayError)
    }

    /// A request waiting for a connection; `cancel()` when that request goes away first.
    final class Waiter {
        var callback: ((Result<UpstreamConnection, GatewayError>) -> Void)?
        weak var upstream: UpstreamRuntime?
        init(_ callback: @escaping (Result<UpstreamConnection, GatewayError>) -> Void, upstream: UpstreamRuntime) {
            self.callback = callback
            self.upstream = upstream
        }
        func cancel() {
            if callback != nil {
                callback = nil
                upstream?.pending -= 1
            }
        }
    }

    let key: String
    let target: UpstreamSpec.TargetSpec
    let loop: any EventLoop
    private let address: SocketAddress?
    var maxConnections: Int
    var connectTimeout: TimeAmount
    private var idle: [UpstreamConnection] = []
    private var waiters = CircularBuffer<Waiter>()
    /// Connections open or being opened.
    private(set) var open = 0
    /// Requests in flight on this target from this loop (least_request reads it).
    var active = 0
    private var closed = false

    init(target: UpstreamSpec.TargetSpec, loop: any EventLoop, maxConnections: Int, connectTimeout: TimeAmount) {
        self.key = target.url
        self.target = target
        self.loop = loop
        self.maxConnections = max(1, maxConnections)
        self.connectTimeout = connectTimeout
        self.address = try? SocketAddress(ipAddress: target.host, port: target.port)
    }

    /// An idle connection now, or a place in line, or a refusal when the upstream's line is full.
    func acquire(for upstream: UpstreamRuntime, _ callback: @escaping (Result<UpstreamConnection, GatewayError>) -> Void) -> Acquired {
        while let c = idle.popLast() {
            if c.isUsable { return .ready(c) }
        }
        if open >= maxConnections && upstream.pending >= upstream.maxPending {
            return .rejected(.unavailable("upstream \(upstream.spec.name) has too many pending requests"))
        }
        let waiter = Waiter(callback, upstream: upstream)
        upstream.pending += 1
        waiters.append(waiter)
        if open < maxConnections { connect() }
        return .waiting(waiter)
    }

    /// Gives a connection back after a complete exchange; closes it when it cannot be reused.
    func release(_ c: UpstreamConnection, reusable: Bool) {
        c.handler.delegate = nil
        if reusable && c.isUsable && !closed {
            if let w = nextWaiter() {
                hand(c, to: w)
            } else {
                idle.append(c)
            }
        } else {
            c.handler.closing = true
            c.channel.close(mode: .all, promise: nil)
        }
    }

    /// The connection leaves the pool for good (it became a WebSocket tunnel).
    func detach(_ c: UpstreamConnection) {
        c.handler.onClose = nil
        c.handler.delegate = nil
        open -= 1
    }

    /// Closes idle connections (on reload removal or shutdown); busy ones close when released.
    func shutdown() {
        closed = true
        for c in idle { c.channel.close(promise: nil) }
        idle.removeAll()
        while let w = nextWaiter() {
            let cb = w.callback
            w.cancel()
            cb?(.failure(.unavailable("the upstream was removed")))
        }
    }

    private func nextWaiter() -> Waiter? {
        while let w = waiters.popFirst() {
            if w.callback != nil { return w }
        }
        return nil
    }

    private func hand(_ c: UpstreamConnection, to w: Waiter) {
        let cb = w.callback
        w.cancel()
        cb?(.success(c))
    }

    private func connect() {
        open += 1
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Framing headers are set by the gateway itself and inbound headers were already
                    // validated by the request decoder, so the encoder does neither again.
                    var encoder = HTTPRequestEncoder.Configuration()
                    encoder.automaticallySetFramingHeaders = false
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes, enableOutboundHeaderValidation: false, encoderConfiguration: encoder)
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
                }
            }
        let future: EventLoopFuture<any Channel>
        if let address {
            future = bootstrap.connect(to: address)
        } else {
            future = bootstrap.connect(host: target.host, port: target.port)
        }
        future.hop(to: loop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                guard let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self) else {
                    channel.close(promise: nil)
                    self.connectFailed(.badGateway("could not set up the upstream connection"))
                    return
                }
                let conn = UpstreamConnection(channel: channel, handler: handler, pool: self)
                handler.onClose = { [weak self, weak conn] in self?.connectionClosed(conn) }
                if self.closed {
                    channel.close(promise: nil)
                } else if let w = self.nextWaiter() {
                    self.hand(conn, to: w)
                } else {
                    self.idle.append(conn)
                }
            case .failure(let error):
                let message: String
                if case ChannelError.connectTimeout = error {
                    message = "connecting to \(self.target.url) timed out"
                } else {
                    message = "could not connect to \(self.target.url)"
                }
                self.connectFailed(.init(.badGateway, "bad_gateway", message, source: .upstream, retryable: true))
            }
        }
    }

    private func connectFailed(_ error: GatewayError) {
        open -= 1
        if let w = nextWaiter() {
            let cb = w.callback
            w.cancel()
            cb?(.failure(error))
        }
    }

    private func connectionClosed(_ c: UpstreamConnection?) {
        open -= 1
        if let i = idle.firstIndex(where: { $0 === c }) { idle.remove(at: i) }
        // Someone is waiting and a slot is free again: open a fresh connection for them.
        if !closed, open < maxConnections, waiters.contains(where: { $0.callback != nil }) { connect() }
    }
}
