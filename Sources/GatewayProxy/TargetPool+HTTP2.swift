import GatewayConfig
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL

/// A pool of an HTTP/2 target (`protocol: h2` or `h2c`): per event loop, one connection
/// carries the requests as streams; another opens only when every open one has as many
/// streams as its peer allows (SETTINGS_MAX_CONCURRENT_STREAMS), up to
/// `max_connections_per_target` of this loop. A connection that sent GOAWAY keeps its
/// streams in flight to their end and gets no new ones; the next request opens a fresh
/// connection. Requests wait in line for a stream (`max_pending_requests` applies).
extension TargetPool {
    /// How often an idle-looking connection is asked for a PING answer.
    static let http2PingInterval = TimeAmount.seconds(20)

    func http2Acquire(for upstream: UpstreamRuntime, exchange: any UpstreamClient) -> Acquired {
        if http2ShutDown { return .rejected(.unavailable("the upstream was removed")) }
        // Refused only when no stream is free, no connection can be opened for it, and the
        // queue is full (`max_pending_requests: 0`: no queue, but a connection still opens).
        if !sessions.contains(where: \.hasRoom), http2Connecting > 0 || usableSessions >= max(1, maxConnections),
            upstream.limits.pending.load(ordering: .relaxed) >= upstream.maxPending
        {
            return .rejected(.unavailable("upstream \(upstream.spec.name) has too many pending requests"))
        }
        let waiter = Waiter(exchange, upstream: upstream)
        upstream.pending += 1
        upstream.limits.pending.wrappingIncrement(ordering: .relaxed)
        http2Waiters.append(waiter)
        http2Dispatch()
        return .waiting(waiter)
    }

    /// Gives waiting requests streams while connections have room; opens a connection when
    /// none has and the loop's limit allows.
    func http2Dispatch() {
        http2Waiters.removeAll { !$0.isLive }
        while !http2Waiters.isEmpty {
            guard let session = sessions.first(where: \.hasRoom) else {
                // One connection opens at a time, and only once the open ones said how many
                // streams they take.
                if http2Connecting == 0 && !sessions.contains(where: { $0.isUsable && !$0.settled })
                    && usableSessions < max(1, maxConnections)
                {
                    http2Connect()
                }
                return
            }
            let waiter = http2Waiters.removeFirst()
            session.openStreams += 1
            openStream(on: session, for: waiter)
        }
    }

    /// Connections open for new streams.
    private var usableSessions: Int { sessions.reduce(0) { $0 + ($1.isUsable ? 1 : 0) } }

    /// The peer's stream limit changed or it sent GOAWAY: waiting requests may go elsewhere,
    /// and a connection going away with no stream left closes.
    func http2RoomChanged() {
        sessions.removeAll { $0.closed }
        for s in sessions { closeIfDrained(s) }
        http2Dispatch()
    }

    func http2SessionClosed(_ session: HTTP2Session) {
        sessions.removeAll { $0 === session }
        if !session.settled && !http2Waiters.isEmpty {
            // It never said how many streams it takes (a TLS or ALPN failure, a peer that
            // does not speak HTTP/2): the waiting requests fail as for a connect failure
            // (the next request tries again), rather than a new connection right away.
            return http2ConnectFailed(.connectFailure("\(target.url) did not speak HTTP/2"))
        }
        http2Dispatch()
    }

    /// A connection that sent GOAWAY (or failed) is closed once its last stream ended.
    func closeIfDrained(_ s: HTTP2Session) {
        if s.goingAway && s.openStreams == 0 && !s.closed { s.channel.close(mode: .all, promise: nil) }
    }

    /// The pool is removed (reload, shutdown): no new streams; connections close as their
    /// streams in flight end.
    func http2Shutdown() {
        http2ShutDown = true
        let waiting = http2Waiters
        http2Waiters = []
        for w in waiting {
            let ex = w.exchange
            w.cancel()
            ex?.connectFailed(.unavailable("the upstream was removed"))
        }
        for s in sessions {
            s.goingAway = true
            closeIfDrained(s)
        }
    }

    private func openStream(on session: HTTP2Session, for waiter: Waiter) {
        let scheme = httpProtocol == .h2 ? "https" : "http"
        let promise = loop.makePromise(of: (any Channel).self)
        // The stream is a child of the session's channel: on this loop too.
        let bound = NIOLoopBound(session, eventLoop: loop)
        session.multiplexer.createStreamChannel(promise: promise) { stream in
            stream.eventLoop.makeCompletedFuture {
                let ops = stream.pipeline.syncOperations
                // A head as large as `max_header_bytes` allows (1 MiB) and the forwarding fields.
                try ops.addHandler(HTTP2UpstreamBridge(scheme: scheme, maxHeadBytes: 1_114_112, session: bound.value))
                try ops.addHandler(UpstreamHandler())
            }
        }
        promise.futureResult.hop(to: loop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let stream):
                stream.closeFuture.hop(to: self.loop).assumeIsolated().whenComplete { _ in
                    session.openStreams -= 1
                    self.closeIfDrained(session)
                    self.http2Dispatch()
                }
                guard let handler = try? stream.pipeline.syncOperations.handler(type: UpstreamHandler.self) else {
                    stream.close(promise: nil)
                    return self.fail(waiter, .connectFailure("could not open a stream to \(self.target.url)"))
                }
                let conn = UpstreamConnection(channel: stream, handler: handler, pool: self)
                handler.connection = conn
                let ex = waiter.exchange
                waiter.cancel()
                if let ex { ex.connectionReady(conn) } else { stream.close(promise: nil) }
            case .failure:
                session.openStreams -= 1
                session.goingAway = true  // a stream that cannot open (GOAWAY came): no more on this connection
                waiter.streamFailures += 1
                if waiter.isLive && waiter.streamFailures < 3 {
                    self.http2Waiters.insert(waiter, at: 0)  // first in line for the next connection
                } else {
                    self.fail(waiter, .connectFailure("could not open a stream to \(self.target.url)"))
                }
                self.http2Dispatch()
            }
        }
    }

    private func fail(_ waiter: Waiter, _ error: GatewayError) {
        let ex = waiter.exchange
        waiter.cancel()
        ex?.connectFailed(error)
    }

    /// Opens an HTTP/2 connection: TLS with ALPN `h2` for `h2`, the preface in clear text for
    /// `h2c`. Waiting requests get its streams once it is up; they fail if it cannot open.
    private func http2Connect() {
        if target.tls && tls == nil {
            // Never clear text to an https:// target; told after `acquire` has returned.
            return loop.assumeIsolated().execute { self.http2ConnectFailed(.connectFailure("TLS to \(self.target.url) is not set up")) }
        }
        http2Connecting += 1
        let tls = self.tls
        let loop = self.loop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if let tls {
                        try ops.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
                    }
                    var connection = NIOHTTP2Handler.ConnectionConfiguration()
                    connection.initialSettings = [
                        HTTP2Setting(parameter: .maxConcurrentStreams, value: 0),  // no pushes or peer streams
                        HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
                        HTTP2Setting(parameter: .maxHeaderListSize, value: 64 * 1024),
                    ]
                    var stream = NIOHTTP2Handler.StreamConfiguration()
                    stream.targetWindowSize = 1 << 20
                    let http2 = NIOHTTP2Handler(
                        mode: .client, eventLoop: channel.eventLoop, connectionConfiguration: connection, streamConfiguration: stream,
                        inboundStreamInitializer: { peerStream in peerStream.close() })
                    // Streams' writes that come from other connections' reads leave in one
                    // write at the end of the loop's turn, not one syscall each.
                    try ops.addHandler(FlushCoalescer())
                    try ops.addHandler(http2)
                    try ops.addHandler(HTTP2SessionHandler(pool: bound.value, pingInterval: Self.http2PingInterval))
                }
            }
        let future = connect(bootstrap)
        future.hop(to: loop).assumeIsolated().whenComplete { result in
            self.http2Connecting -= 1
            switch result {
            case .success(let channel):
                let ops = channel.pipeline.syncOperations
                guard let http2 = try? ops.handler(type: NIOHTTP2Handler.self), let multiplexer = try? http2.syncMultiplexer(),
                    let watcher = try? ops.handler(type: HTTP2SessionHandler.self)
                else {
                    channel.close(promise: nil)
                    return self.http2ConnectFailed(.connectFailure("could not set up HTTP/2 to \(self.target.url)"))
                }
                let session = HTTP2Session(channel: channel, multiplexer: multiplexer)
                watcher.session = session
                if !channel.isActive { session.closed = true }
                self.sessions.append(session)
                if self.http2ShutDown { session.goingAway = true }
                // A peer that never sends its SETTINGS is given up on after the connect timeout.
                self.loop.assumeIsolated().scheduleTask(in: self.connectTimeout) {
                    if !session.settled && !session.closed { channel.close(mode: .all, promise: nil) }
                }
                self.http2Dispatch()
            case .failure(let error):
                self.http2ConnectFailed(self.connectError(error))
            }
        }
    }

    /// The connection could not open: every request waiting for it fails (each may retry).
    private func http2ConnectFailed(_ error: GatewayError) {
        let waiting = http2Waiters
        http2Waiters = []
        for w in waiting { fail(w, error) }
    }
}
