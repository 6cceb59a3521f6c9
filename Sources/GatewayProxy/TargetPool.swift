import GatewayConfig
import NIOCore
import NIOPosix
import NIOSSL

/// Keep-alive connections from one event loop to one target: the shell that runs what its
/// state machine (`TargetPoolState`) decides — opening connections, handing them to waiting
/// requests, closing them. Loop-confined: no locks, but for the gateway-wide count of
/// connections in use (`TargetLimits`, one atomic).
final class TargetPool {
    enum Acquired {
        case ready(UpstreamConnection)
        case waiting(Waiter)
        case rejected(GatewayError)
    }

    /// A request waiting for a connection; `cancel()` when that request goes away first.
    /// References are strong and cleared explicitly: weak references would give these
    /// objects side tables and slow every retain and release on the hot path.
    final class Waiter: PoolWaiter {
        var exchange: (any UpstreamClient)?
        var isLive: Bool { exchange != nil }
        let upstream: UpstreamRuntime
        /// HTTP/2: streams that could not be opened for it (another connection is tried).
        var streamFailures = 0
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
    let address: SocketAddress?
    /// `http1`, or HTTP/2 (`h2`, `h2c`): then requests are streams of `sessions`
    /// (TargetPool+HTTP2.swift) and the state machine is not used.
    let httpProtocol: UpstreamProtocol
    var sessions: [HTTP2Session] = []
    /// Requests waiting for a stream of an HTTP/2 connection, oldest first.
    var http2Waiters: [Waiter] = []
    var http2Connecting = 0
    /// `shutdown` ran: no new streams or connections.
    var http2ShutDown = false
    /// The upstream's `max_connections_per_target`: a limit of the gateway (`limits`).
    var maxConnections: Int {
        get { state.maxConnections }
        set { state.setMaxConnections(newValue) }
    }
    let limits: TargetLimits
    var connectTimeout: TimeAmount
    /// For an `https://` target: the TLS context and the name to send and verify.
    var tls: (context: NIOSSLContext, serverName: String?)?
    private var state: TargetPoolState<UpstreamConnection, Waiter>
    var idleCount: Int { httpProtocol.isHTTP2 ? sessions.reduce(0) { $0 + ($1.openStreams == 0 ? 1 : 0) } : state.idle.count }
    /// Connections open or being opened.
    var open: Int { httpProtocol.isHTTP2 ? sessions.count + http2Connecting : state.open }
    /// Requests in flight on this target from this loop (least_request reads it).
    var active = 0
    /// This pool's cells of the upstream request series on its loop (set on first use).
    var metricCells: LoopMetrics.UpstreamCells?

    init(
        target: UpstreamSpec.TargetSpec, loop: any EventLoop, maxConnections: Int, connectTimeout: TimeAmount,
        limits: TargetLimits? = nil, protocol httpProtocol: UpstreamProtocol = .http1
    ) {
        self.httpProtocol = httpProtocol
        self.key = target.url
        self.target = target
        self.loop = loop
        self.limits = limits ?? TargetLimits(url: target.url)
        self.state = TargetPoolState(maxConnections: maxConnections)
        self.connectTimeout = connectTimeout
        self.address = try? SocketAddress(ipAddress: target.host, port: target.port)
    }

    /// The gateway-wide slots, as the state machine asks for them.
    /// (`max` is read before the state machine runs: reading it through the pool meanwhile
    /// would overlap the state's own access.)
    private struct Slots: PoolSlots {
        let pool: TargetPool
        let limits: TargetLimits
        let max: Int
        func tryReserve() -> Bool { limits.tryReserve(max: max) }
        func release() { limits.release() }
        func waitForSlot() { limits.waitForSlot(pool) }
    }
    private var slots: Slots { Slots(pool: self, limits: limits, max: state.maxConnections) }

    /// An idle connection now, or a place in line (the exchange is told through
    /// `connectionReady` / `connectFailed`), or a refusal when no slot is free and the line is full.
    func acquire(for upstream: UpstreamRuntime, exchange: any UpstreamClient) -> Acquired {
        if httpProtocol.isHTTP2 { return http2Acquire(for: upstream, exchange: exchange) }
        let reserved: Bool
        switch state.acquire(slots) {
        case .ready(let c): return .ready(c)
        case .queue(let r): reserved = r
        }
        // Refused only when no slot is free and the queue is full: a request behind others of
        // this loop (their connections being opened) queues while slots are free.
        if !reserved, limits.current >= maxConnections, upstream.limits.pending.load(ordering: .relaxed) >= upstream.maxPending {
            return .rejected(.unavailable("upstream \(upstream.spec.name) has too many pending requests"))
        }
        let waiter = Waiter(exchange, upstream: upstream)
        upstream.pending += 1
        upstream.limits.pending.wrappingIncrement(ordering: .relaxed)
        run(state.enqueue(waiter, reserved: reserved, slots))
        return .waiting(waiter)
    }

    /// Serves waiting requests while the gateway-wide limit has room. Runs on this pool's
    /// loop (another loop that frees a slot schedules it here).
    func dispatch() {
        if httpProtocol.isHTTP2 { return http2Dispatch() }
        run(state.dispatch(slots))
    }

    /// Gives a connection back after a complete exchange; closes it when it cannot be reused.
    func release(_ c: UpstreamConnection, reusable: Bool) {
        c.handler.delegate = nil
        // A stream is never reused: closed (a reset if the request was still being sent).
        if httpProtocol.isHTTP2 { return c.channel.close(promise: nil) }
        switch state.release(c, reusable: reusable, slots) {
        case .idle: break
        case .hand(let c, let w): hand(c, to: w)
        case .close(let c): close(c)
        }
    }

    /// The connection leaves the pool for good (it became a WebSocket tunnel). It keeps its
    /// slot of `max_connections_per_target` until `tunnelEnded`.
    func detach(_ c: UpstreamConnection) {
        if httpProtocol.isHTTP2 { return }
        c.handler.connection = nil
        c.handler.delegate = nil
        state.detach()
    }

    /// A tunnel made from one of this pool's connections has closed: its slot is free.
    func tunnelEnded(_ c: UpstreamConnection) {
        if httpProtocol.isHTTP2 { return }
        run(state.tunnelEnded(c, slots))
    }

    /// Closes idle connections (on reload removal or shutdown); busy ones close when released.
    func shutdown() {
        if httpProtocol.isHTTP2 { return http2Shutdown() }
        run(state.shutdown(), failing: .unavailable("the upstream was removed"))
    }

    func connectionClosed(_ c: UpstreamConnection?) {
        // A stream's end is counted by its session (TargetPool+HTTP2.swift).
        if httpProtocol.isHTTP2 { return }
        run(state.connectionClosed(c, slots))
    }

    /// Runs the state machine's actions; a waiter that gets no connection fails with `error`.
    private func run(_ actions: [TargetPoolState<UpstreamConnection, Waiter>.Action], failing error: GatewayError? = nil) {
        for action in actions { perform(action, failing: error ?? GatewayError.unavailable("no connection to \(target.url)")) }
    }

    private func perform(_ action: TargetPoolState<UpstreamConnection, Waiter>.Action, failing error: GatewayError) {
        switch action {
        case .connect: connect()
        case .hand(let c, let w): hand(c, to: w)
        case .close(let c): close(c)
        case .fail(let w):
            let ex = w.exchange
            w.cancel()
            ex?.connectFailed(error)
        }
    }

    private func close(_ c: UpstreamConnection) {
        c.handler.closing = true
        c.channel.close(mode: .all, promise: nil)
    }

    private func hand(_ c: UpstreamConnection, to w: Waiter) {
        let ex = w.exchange
        w.cancel()
        if let ex { ex.connectionReady(c) } else { release(c, reusable: true) }
    }

    /// Opens a connection; the state machine has taken a slot of `limits` for it.
    private func connect() {
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
        let future = connect(bootstrap)
        future.hop(to: loop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                guard let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self) else {
                    channel.close(promise: nil)
                    self.connectFailed(.connectFailure("could not set up the upstream connection"))
                    return
                }
                let conn = UpstreamConnection(channel: channel, handler: handler, pool: self)
                handler.connection = conn
                if let action = self.state.connected(conn, self.slots) { self.perform(action, failing: .unavailable("")) }
            case .failure(let error):
                self.connectFailed(self.connectError(error))
            }
        }
    }

    /// The target's address when it is an IP address, else its name (resolved on connect).
    func connect(_ bootstrap: ClientBootstrap) -> EventLoopFuture<any Channel> {
        if let address { return bootstrap.connect(to: address) }
        return bootstrap.connect(host: target.host, port: target.port)
    }

    /// What a request learns of a connection that could not be opened.
    func connectError(_ error: any Error) -> GatewayError {
        if case ChannelError.connectTimeout = error { return .connectFailure("connecting to \(target.url) timed out") }
        return .connectFailure("could not connect to \(target.url)")
    }

    private func connectFailed(_ error: GatewayError) {
        if let action = state.connectFailed(slots) { perform(action, failing: error) }
    }
}
