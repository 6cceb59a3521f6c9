import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

/// One request's tries at its upstream, the same for a proxied request and for each backend
/// call of an aggregate: the target picked (another one than those tried, where one is
/// available), the connection or the wait for one, and the request's share of the
/// upstream's counts (`active` of the pool, retries in flight, backing off). Those counts
/// change here and nowhere else. Kept inline in its owner: nothing is allocated per try.
struct UpstreamTry {
    var upstream: UpstreamRuntime?
    private(set) var pool: TargetPool?
    /// Index of `pool` among its upstream's targets.
    private(set) var poolIndex = -1
    private(set) var connection: UpstreamConnection?
    var waiter: TargetPool.Waiter?
    /// Tries started at a target (`X-Upstream-Attempts`, the access log's `attempts`).
    private(set) var attempts = 0
    /// Bit `i` set: target `i` was tried (a retry goes elsewhere when it can).
    private var tried: UInt64 = 0
    /// Counted in the upstream's retries in flight (the retry budget) until `settle`.
    private var holdsRetrySlot = false
    /// Waiting out the backoff before the next try.
    private(set) var backingOff = false

    /// Picks the target of the next try; false when none is available.
    mutating func pick(hashKey: UInt64?, _ ctx: LoopContext) -> Bool {
        guard let upstream, let i = upstream.pick(hashKey: hashKey, rng: &ctx.rng, now: ctx.clock.lastTick.asInt64, avoid: tried) else {
            return false
        }
        poolIndex = i
        pool = upstream.pools[i]
        attempts += 1
        if i < 64 { tried |= 1 << UInt64(i) }
        return true
    }

    /// The picked target's pool and its upstream, read out before asking the pool for a
    /// connection. The pool can hand one over (or fail the wait) before its `acquire`
    /// returns, which calls back into this try's owner; the owner's access to this struct
    /// must not be open then (an overlapping access traps), so the owner calls the pool.
    var picked: (pool: TargetPool, upstream: UpstreamRuntime)? {
        guard let pool, let upstream else { return nil }
        return (pool, upstream)
    }

    /// The pool put the request in line: its wait is the one `drop` cancels. Not kept when
    /// the pool already served or failed it while `acquire` ran.
    mutating func wait(on w: TargetPool.Waiter) {
        if w.isLive { waiter = w }
    }

    /// The connection carries this try: counted active; its reports go to `client`.
    mutating func attach(_ c: UpstreamConnection, _ client: any UpstreamClient) {
        waiter = nil
        connection = c
        c.pool.active += 1
        c.handler.delegate = client
    }

    /// The response ended: the connection goes back to its pool, kept open when `reusable`.
    mutating func release(reusable: Bool) {
        guard let c = connection else { return }
        connection = nil
        c.pool.active -= 1
        c.pool.release(c, reusable: reusable && !c.handler.closing)
    }

    /// The connection leaves the pool for good (it became a WebSocket tunnel).
    mutating func detach() -> UpstreamConnection? {
        guard let c = connection else { return nil }
        connection = nil
        c.pool.active -= 1
        c.pool.detach(c)
        return c
    }

    /// The try is abandoned: the wait for a connection ends, and a connection mid-exchange
    /// is closed (it cannot be reused).
    mutating func drop() {
        waiter?.cancel()
        waiter = nil
        guard let c = connection else { return }
        connection = nil
        c.pool.active -= 1
        c.abandon()
    }

    /// The response head came: the upstream's duration histogram and the target's health
    /// (`health`: the status outlier detection counts; nil when it is known only at the end,
    /// as a gRPC response's `grpc-status` in its trailers: `recordHealth` then).
    func recordResponse(status: Int, health: Int?, nanos: Int64, now: UInt64, _ ctx: LoopContext) {
        guard let upstream, let pool else { return }
        ctx.metrics.upstream(upstream.spec.name, pool: pool, code: status, nanos: nanos)
        if let health { recordHealth(health, now: now) }
    }

    /// What outlier detection counts of the response: a failure for a 5xx.
    func recordHealth(_ status: Int, now: UInt64) {
        upstream?.health?.record(poolIndex, status >= 500 ? .status(status) : .success, now: now.asInt64)
    }

    /// The try got no response (connect failure, reset, timeout): the target's fault.
    func recordFailure(now: UInt64) {
        upstream?.health?.record(poolIndex, .gatewayFailure, now: now.asInt64)
    }

    /// Whether the route's `retry` allows another try now (`RetryRule.decide`), with the
    /// upstream's budget as it stands: a request that already holds a retry slot is not
    /// counted twice, one still at a target (or waiting, or backing off) is already active.
    func retryDecision(
        _ outcome: TryOutcome, _ policy: RetryPolicy, replayable: Bool, deadline: UInt64, _ ctx: LoopContext
    ) -> RetryRule.Decision {
        guard let upstream else { return .giveUp(.notRetryable) }
        var load: RetryRule.Load?
        if !holdsRetrySlot {
            let counted = connection != nil || waiter?.exchange != nil || backingOff
            load = RetryRule.Load(activeRequests: upstream.activeRequests + (counted ? 0 : 1), activeRetries: upstream.activeRetries)
        }
        return policy.rule.decide(
            outcome, replayable: replayable, attempts: attempts, now: ctx.time.uptime(), deadline: deadline,
            budget: load, random: ctx.rng.next())
    }

    /// A retry was decided: this try ends; the request holds a retry slot and counts as
    /// backing off (still an active request) until `endBackoff`.
    mutating func backOff() {
        drop()
        guard let upstream else { return }
        if !holdsRetrySlot {
            holdsRetrySlot = true
            upstream.activeRetries += 1
        }
        backingOff = true
        upstream.backingOff += 1
    }

    mutating func endBackoff() {
        guard backingOff else { return }
        backingOff = false
        upstream?.backingOff -= 1
    }

    /// The request is over: its backoff and its retry slot are given back.
    mutating func settle() {
        endBackoff()
        if holdsRetrySlot {
            holdsRetrySlot = false
            upstream?.activeRetries -= 1
        }
    }
}

extension ProxyHandler {
    /// The admitted request goes to the route's upstream: the first try.
    func firstTry(_ ex: Exchange, route: CompiledRoute, _ a: Admission) {
        guard let context else { return }
        if route.retry != nil {
            ex.admission = a
            if ex.expectsBody { ex.replay = .keeping([], bytes: 0) }
        }
        // The client waits for a go-ahead before sending its body: the gateway gives it
        // (and strips `Expect`), as the upstream's own 100 would not come through.
        if ex.head.version.minor >= 1 && a.expectsContinue {
            context.writeAndFlush(wrapOutboundOut(allocator.buffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
        if let mirror = route.mirror, !ex.asksUpgrade, FaultPolicy.hits(mirror.perMillion, loopContext.rng.next()) {
            startMirror(ex, mirror, route: route, a)
        }
        startTry(ex, route: route, a)
    }

    /// Picks a target (another one than those tried, where one is available) and sends the request there.
    func startTry(_ ex: Exchange, route: CompiledRoute, _ a: Admission) {
        guard let upstream = ex.upstream else { return }
        let hashKey = upstream.spec.balancer == .consistentHash ? self.hashKey(upstream.spec.hashOn, ex) : nil
        guard ex.tries.pick(hashKey: hashKey, loopContext) else { return sendError(.unavailable("no target available"), ex) }
        if ex.requestEnded { armTryTimeout(ex) }
        forward(ex, snapshot: a.snapshot, route: route, path: a.path, query: a.query, trusted: a.trusted)
    }

    // MARK: retries

    /// Request bodies up to this size are kept for another try (SPEC §2.7).
    static let maxReplayBody = 64 * 1024

    func keepForReplay(_ ex: Exchange, _ bytes: ByteBuffer) {
        guard case .keeping(var parts, let kept) = ex.replay else { return }
        ex.replay = .off  // `parts` is now the array's only owner: appending does not copy it
        let total = kept + bytes.readableBytes
        if total > Self.maxReplayBody {
            ex.replay = .lost
        } else {
            parts.append(bytes)
            ex.replay = .keeping(parts, bytes: total)
        }
    }

    func armTryTimeout(_ ex: Exchange) {
        guard let perTry = ex.route?.retry?.perTryTimeoutNanos, perTry > 0 else { return }
        ex.tryDeadline = loopContext.time.uptime() &+ UInt64(perTry)
    }

    /// The current try got no response in `per_try_timeout`: another try, or 504.
    /// The route's timeout passed: 504, or 408 when the client is still sending its body.
    func timedOut(_ ex: Exchange) {
        guard exchange === ex, !ex.responseEnded else { return }
        ex.deadline = 0
        // A held request (keys being fetched, Redis deciding) has not been read to its end:
        // the wait is the gateway's, not the client's.
        let wasHeld = ex.phase == .held
        abortUpstream(ex)
        if ex.responseStarted {
            closeNow()
        } else {
            // Still waiting for the client's body: the client is the slow one (SPEC §4: 408).
            if !ex.requestEnded && !wasHeld {
                closeAfterResponse = true
                sendError(.requestTimeout(), ex)
            } else {
                sendError(.upstreamTimeout(), ex)
                if wasHeld { resumeParsing(ex) }
            }
        }
    }

    func perTryTimedOut(_ ex: Exchange) {
        ex.tryDeadline = 0
        guard exchange === ex, !ex.responseStarted, !ex.backingOff, ex.phase == .waitingForConnection || ex.phase == .forwarding
        else { return }
        // Only a target that held the request and did not answer is blamed: time spent
        // waiting for a connection of this loop's own pool is not the target's doing.
        if ex.connection != nil { ex.tries.recordFailure(now: loopContext.time.uptime()) }
        if ex.route?.retry != nil, retry(ex, .failed(.reset), reason: "per-try-timeout") { return }
        abortUpstream(ex)
        sendError(.upstreamTimeout(), ex)
    }

    /// After a try failed, or answered with a status: another try when the route's `retry`
    /// allows one now (`RetryRule.decide`: `retry.on`, the method or an `Idempotency-Key`, a
    /// body still kept, tries left, the budget, time left for the backoff within the route's
    /// timeout), after its backoff. Nothing of the response has reached the client.
    func retry(_ ex: Exchange, _ outcome: TryOutcome, reason: String? = nil) -> Bool {
        guard let context, let route = ex.route, let policy = route.retry, let a = ex.admission, !ex.responseStarted else {
            return false
        }
        let replayable =
            !ex.replayIsLost && !ex.isUpgrade
            && (policy.methods.contains(ex.head.method.rawValue) || ex.isGRPC || ex.head.headers.contains(name: "idempotency-key"))
        guard case .retry(let wait) = ex.tries.retryDecision(outcome, policy, replayable: replayable, deadline: ex.deadline, loopContext)
        else { return false }
        loopContext.metrics.retry(route: route.name, reason: reason ?? outcome.reason)
        ex.grpcStatus = -1
        // This try is over; its connection is mid-exchange and cannot be reused.
        ex.tries.backOff()
        ex.tryDeadline = 0
        ex.pendingHead = nil
        ex.response = .waiting
        ex.phase = .waitingForConnection
        if case .keeping(let parts, let kept) = ex.replay {
            ex.buffered = parts
            ex.bufferedBytes = kept
        } else {
            ex.buffered = []
            ex.bufferedBytes = 0
        }
        context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(wait)) { [self] in
            guard exchange === ex, ex.backingOff, ex.phase == .waitingForConnection else { return }
            ex.tries.endBackoff()
            startTry(ex, route: route, a)
        }
        return true
    }

    func forward(_ ex: Exchange, snapshot: Snapshot, route: CompiledRoute, path: String, query: Substring?, trusted: Bool) {
        guard let pool = ex.pool else { return }
        ex.isUpgrade = ex.asksUpgrade && ForwardHeaders.isWebSocketUpgrade(ex.head.headers)
        if pool.httpProtocol.isHTTP2 && (ex.isUpgrade || ex.head.method == .CONNECT) {
            // An HTTP/2 stream cannot become a WebSocket or a tunnel here (RFC 8441 is not
            // spoken upstream, and CONNECT has no :path).
            return sendError(.badGateway("WebSocket upgrades and CONNECT need an http1 upstream", retry: nil), ex)
        }
        let upgrade = ex.isUpgrade ? (ex.head.headers.first(name: "upgrade") ?? "websocket") : nil
        let room = 384 + ex.head.uri.utf8.count + ex.head.headers.count * 64
        var bytes = allocator.buffer(capacity: room)
        ex.upstreamChunked = bytes.writeHead(capacity: room) { out in
            ForwardHeaders.requestHead(
                ex.head, route: route, path: path, query: query, target: pool.target, requestID: ex.requestID,
                peerIP: peerIP, trusted: trusted, upgrade: upgrade, identity: ex.identity, authority: ex.authority,
                scheme: tls ? "https" : "http", grpcWeb: ex.grpcWeb, ids: &loopContext.ids, into: &out)
        }
        ex.pendingHead = bytes
        acquireConnection(ex)
    }

    /// A connection (or a stream) of the picked target for the request's head.
    func acquireConnection(_ ex: Exchange) {
        ex.phase = .waitingForConnection
        // Not a mutating call on `ex.tries`: the pool may call `connectionReady` before it returns.
        guard let (picked, upstream) = ex.tries.picked else { return sendError(.unavailable("no target available"), ex) }
        switch picked.acquire(for: upstream, exchange: ex) {
        case .ready(let c): connected(ex, c)
        case .waiting(let w): ex.tries.wait(on: w)
        case .rejected(let e): sendError(e, ex)
        }
    }

    func connected(_ ex: Exchange, _ c: UpstreamConnection) {
        ex.tries.attach(c, ex)
        ex.phase = .forwarding
        if c.pool.httpProtocol.isHTTP2 { ex.sentHead = ex.pendingHead }
        if ex.buffered.isEmpty, let head = ex.pendingHead {
            ex.pendingHead = nil
            c.handler.writeAndFlush(head)
        } else {
            if let head = ex.pendingHead {
                ex.pendingHead = nil
                c.handler.write(head)
            }
            for part in ex.buffered { c.handler.write(part) }
            ex.buffered = []
            c.handler.flush()
        }
        ex.bufferedBytes = 0
        resumeReadingIfPossible()
    }

    func upstreamFailed(_ error: GatewayError, _ ex: Exchange) {
        ex.tries.drop()
        if error.isStreamRefused, resendRefused(ex) { return }
        if !ex.responseStarted, let condition = error.retry {
            ex.tryDeadline = 0
            ex.tries.recordFailure(now: loopContext.time.uptime())
            if ex.route?.retry != nil, retry(ex, .failed(condition)) { return }
        }
        if ex.responseStarted {
            // Bytes already reached the client: the only honest thing left is to cut the connection.
            closeNow()
        } else {
            sendError(error, ex)
        }
    }

    /// The HTTP/2 upstream refused the stream unprocessed (its GOAWAY did not cover it, or
    /// RST_STREAM REFUSED_STREAM): the request goes again to the same target, on another
    /// stream (a connection that sent GOAWAY takes no more), when all of it is at hand — a
    /// request without a body, or one whose body is kept for retries. Not a retry: nothing
    /// reached the service, and no budget or attempt is spent.
    func resendRefused(_ ex: Exchange) -> Bool {
        guard !ex.responseStarted, ex.refusals < Exchange.maxRefusals, let head = ex.sentHead else { return false }
        if ex.expectsBody {
            guard ex.requestEnded, case .keeping(let parts, let kept) = ex.replay else { return false }
            ex.buffered = parts
            ex.bufferedBytes = kept
        }
        ex.refusals += 1
        ex.pendingHead = head
        acquireConnection(ex)
        return true
    }
}
