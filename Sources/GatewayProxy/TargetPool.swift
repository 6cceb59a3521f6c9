import GatewayConfig
import NIOCore
import NIOPosix
import NIOSSL

/// Keep-alive connections from one event loop to one target. Loop-confined: no locks, but
/// for the gateway-wide count of connections in use (`TargetLimits`, one atomic): a
/// connection is handed out, or opened, only with a slot of `max_connections_per_target`
/// taken there, and gives it back when released, closed, or when its tunnel ends.
final class TargetPool {
    enum Acquired {
        case ready(UpstreamConnection)
        case waiting(Waiter)
        case rejected(GatewayError)
    }

    /// A request waiting for a connection; `cancel()` when that request goes away first.
    /// References are strong and cleared explicitly: weak references would give these
    /// objects side tables and slow every retain and release on the hot path.
    final class Waiter {
        var exchange: (any UpstreamClient)?
        let upstream: UpstreamRuntime
        init(_ exchange: any UpstreamClient, upstream: UpstreamRuntime) {
            self.exchange = exchange
            self.upstream = upstream
        }
        func cancel() {
            if exchange != nil {
                exchange = nil
                upstream.pending -= 1
                upstream.limits.pending.wrappingDecrement(ordering: .relaxed)
            }
        }
    }

    let key: String
    let target: UpstreamSpec.TargetSpec
    let loop: any EventLoop
    private let address: SocketAddress?
    /// The upstream's `max_connections_per_target`: a limit of the gateway (`limits`).
    var maxConnections: Int
    let limits: TargetLimits
    var connectTimeout: TimeAmount
    /// For an `https://` target: the TLS context and the name to send and verify.
    var tls: (context: NIOSSLContext, serverName: String?)?
    private var idle: [UpstreamConnection] = []
    var idleCount: Int { idle.count }
    private var waiters = CircularBuffer<Waiter>()
    /// Connections open or being opened.
    private(set) var open = 0
    /// Connections being opened (each holds a slot of `limits`).
    private var connecting = 0
    /// Requests in flight on this target from this loop (least_request reads it).
    var active = 0
    /// This pool's cells of the upstream request series on its loop (set on first use).
    var metricCells: LoopMetrics.UpstreamCells?
    private var closed = false

    init(
        target: UpstreamSpec.TargetSpec, loop: any EventLoop, maxConnections: Int, connectTimeout: TimeAmount,
        limits: TargetLimits? = nil
    ) {
        self.key = target.url
        self.target = target
        self.loop = loop
        self.limits = limits ?? TargetLimits(url: target.url)
        self.maxConnections = max(1, maxConnections)
        self.connectTimeout = connectTimeout
        self.address = try? SocketAddress(ipAddress: target.host, port: target.port)
    }

    /// An idle connection now, or a place in line (the exchange is told through
    /// `ProxyHandler.connectionReady` / `upstreamFailed`), or a refusal when the line is full.
    func acquire(for upstream: UpstreamRuntime, exchange: any UpstreamClient) -> Acquired {
        var reserved = false
        dropCancelledWaiters()
        if waiters.isEmpty, limits.tryReserve(max: maxConnections) {
            while let c = idle.popLast() {
                if c.isUsable {
                    c.holdsSlot = true
                    return .ready(c)
                }
            }
            reserved = true
        }
        // Refused only when no slot is free and the queue is full: a request behind others of
        // this loop (their connections being opened) queues while slots are free.
        if !reserved, limits.current >= maxConnections, upstream.limits.pending.load(ordering: .relaxed) >= upstream.maxPending {
            return .rejected(.unavailable("upstream \(upstream.spec.name) has too many pending requests"))
        }
        let waiter = Waiter(exchange, upstream: upstream)
        upstream.pending += 1
        upstream.limits.pending.wrappingIncrement(ordering: .relaxed)
        waiters.append(waiter)
        if reserved {
            if open < maxConnections {
                connect()
            } else {
                limits.release()
                limits.waitForSlot(self)
            }
        } else {
            limits.waitForSlot(self)
            dispatch()
        }
        return .waiting(waiter)
    }

    /// Serves waiting requests while the gateway-wide limit has room: an idle connection
    /// each, or a connection opened for them. Runs on this pool's loop (another loop that
    /// frees a slot schedules it here).
    func dispatch() {
        dropCancelledWaiters()
        while !closed, needsConnection {
            if !limits.tryReserve(max: maxConnections) {
                // Registered first, then tried once more: a slot freed in between is not missed.
                limits.waitForSlot(self)
                guard limits.tryReserve(max: maxConnections) else { return }
            }
            if let c = takeIdle(), let w = nextWaiter() {
                c.holdsSlot = true
                hand(c, to: w)
            } else if open < maxConnections {
                connect()
            } else {
                limits.release()
                return
            }
        }
    }

    /// More live waiters than connections being opened for them (counted only that far).
    private var needsConnection: Bool {
        var n = 0
        for w in waiters where w.exchange != nil {
            n += 1
            if n > connecting { return true }
        }
        return false
    }

    /// Waiters whose request went away are dropped from the front of the line.
    private func dropCancelledWaiters() {
        while let w = waiters.first, w.exchange == nil { waiters.removeFirst() }
    }

    private func takeIdle() -> UpstreamConnection? {
        while let c = idle.popLast() {
            if c.isUsable { return c }
        }
        return nil
    }

    /// Gives a connection's slot back (it was released, closed or its tunnel ended).
    private func freeSlot(_ c: UpstreamConnection) {
        guard c.holdsSlot else { return }
        c.holdsSlot = false
        limits.release()
    }

    /// Gives a connection back after a complete exchange; closes it when it cannot be reused.
    func release(_ c: UpstreamConnection, reusable: Bool) {
        c.handler.delegate = nil
        if reusable && c.isUsable && !closed {
            if c.holdsSlot, let w = nextWaiter() {
                hand(c, to: w)  // the slot goes with it
            } else {
                freeSlot(c)
                idle.append(c)
            }
        } else {
            freeSlot(c)
            c.handler.closing = true
            c.channel.close(mode: .all, promise: nil)
        }
    }

    /// The connection leaves the pool for good (it became a WebSocket tunnel). It keeps its
    /// slot of `max_connections_per_target` until `tunnelEnded`.
    func detach(_ c: UpstreamConnection) {
        c.handler.connection = nil
        c.handler.delegate = nil
        open -= 1
    }

    /// A tunnel made from one of this pool's connections has closed: its slot is free.
    func tunnelEnded(_ c: UpstreamConnection) {
        freeSlot(c)
        if !closed { dispatch() }
    }

    /// Closes idle connections (on reload removal or shutdown); busy ones close when released.
    func shutdown() {
        closed = true
        for c in idle { c.channel.close(promise: nil) }
        idle.removeAll()
        while let w = nextWaiter() {
            let ex = w.exchange
            w.cancel()
            ex?.connectFailed(.unavailable("the upstream was removed"))
        }
    }

    private func nextWaiter() -> Waiter? {
        while let w = waiters.popFirst() {
            if w.exchange != nil { return w }
        }
        return nil
    }

    private func hand(_ c: UpstreamConnection, to w: Waiter) {
        let ex = w.exchange
        w.cancel()
        if let ex { ex.connectionReady(c) } else { release(c, reusable: true) }
    }

    /// Opens a connection; the caller has taken a slot of `limits` for it.
    private func connect() {
        open += 1
        connecting += 1
        if target.tls && tls == nil {
            // Never plain text to an https:// target, even when its TLS settings are unusable.
            return loop.assumeIsolated().execute { self.connectFailed(.connectFailure("TLS to \(self.target.url) is not set up")) }
        }
        let tls = self.tls
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
                    }
                    // The gateway parses responses and writes requests itself (HTTP1/).
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
                    self.connectFailed(.connectFailure("could not set up the upstream connection"))
                    return
                }
                self.connecting -= 1
                let conn = UpstreamConnection(channel: channel, handler: handler, pool: self)
                conn.holdsSlot = true
                handler.connection = conn
                if self.closed {
                    self.freeSlot(conn)
                    channel.close(promise: nil)
                } else if let w = self.nextWaiter() {
                    self.hand(conn, to: w)
                } else {
                    self.freeSlot(conn)
                    self.idle.append(conn)
                }
            case .failure(let error):
                let message: String
                if case ChannelError.connectTimeout = error {
                    message = "connecting to \(self.target.url) timed out"
                } else {
                    message = "could not connect to \(self.target.url)"
                }
                self.connectFailed(.connectFailure(message))
            }
        }
    }

    private func connectFailed(_ error: GatewayError) {
        open -= 1
        connecting -= 1
        limits.release()
        if let w = nextWaiter() {
            let ex = w.exchange
            w.cancel()
            ex?.connectFailed(error)
        }
    }

    func connectionClosed(_ c: UpstreamConnection?) {
        open -= 1
        if let c { freeSlot(c) }
        if let i = idle.firstIndex(where: { $0 === c }) { idle.remove(at: i) }
        // Someone is waiting and a slot is free again: open a fresh connection for them.
        if !closed { dispatch() }
    }
}
