import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

extension ProxyHandler {
    /// The admitted request goes to the route's upstream: the first try.
    func firstTry(_ ex: Exchange, route: CompiledRoute, _ a: Admission) {
        guard let context else { return }
        if route.retry != nil {
            ex.admission = a
            ex.keepsReplay = ex.expectsBody
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
        guard let i = upstream.pick(hashKey: hashKey, rng: &loopContext.rng, now: loopContext.clock.lastTick.asInt64, avoid: ex.tried)
        else {
            return sendError(.unavailable("no target available"), ex)
        }
        ex.poolIndex = i
        ex.pool = upstream.pools[i]
        ex.attempts += 1
        if i < 64 { ex.tried |= 1 << UInt64(i) }
        if ex.requestEnded { armTryTimeout(ex) }
        forward(ex, snapshot: a.snapshot, route: route, path: a.path, query: a.query, trusted: a.trusted)
    }

    // MARK: retries

    /// Request bodies up to this size are kept for another try (SPEC §2.7).
    static let maxReplayBody = 64 * 1024

    func keepForReplay(_ ex: Exchange, _ bytes: ByteBuffer) {
        ex.replayBytes += bytes.readableBytes
        if ex.replayBytes > Self.maxReplayBody {
            ex.keepsReplay = false
            ex.replayLost = true
            ex.replay = []
        } else {
            ex.replay.append(bytes)
        }
    }

    func armTryTimeout(_ ex: Exchange) {
        guard let perTry = ex.route?.retry?.perTryTimeoutNanos, perTry > 0 else { return }
        ex.tryDeadline = NIODeadline.now().uptimeNanoseconds &+ UInt64(perTry)
    }

    /// The current try got no response in `per_try_timeout`: another try, or 504.
    func perTryTimedOut(_ ex: Exchange) {
        ex.tryDeadline = 0
        guard exchange === ex, !ex.responseStarted, !ex.backingOff, ex.phase == .waitingForConnection || ex.phase == .forwarding
        else { return }
        // Only a target that held the request and did not answer is blamed: time spent
        // waiting for a connection of this loop's own pool is not the target's doing.
        if ex.connection != nil {
            ex.upstream?.health?.record(ex.poolIndex, .gatewayFailure, now: NIODeadline.now().uptimeNanoseconds.asInt64)
        }
        if let policy = ex.route?.retry, policy.on.allows(failure: .reset), retry(ex, reason: "per-try-timeout") { return }
        abortUpstream(ex)
        sendError(.upstreamTimeout(), ex)
    }

    /// Starts another try when the route's policy allows one now: the method (or an
    /// `Idempotency-Key`), tries left, a body still kept, the retry budget, and time left
    /// for the backoff within the route's timeout. The caller has checked the condition
    /// against `retry.on`; nothing of the response has reached the client.
    func retry(_ ex: Exchange, reason: String) -> Bool {
        guard let context, let route = ex.route, let policy = route.retry, let upstream = ex.upstream, let a = ex.admission,
            !ex.responseStarted, ex.attempts < policy.attempts, !ex.replayLost, !ex.isUpgrade
        else { return false }
        guard policy.methods.contains(ex.head.method.rawValue) || ex.head.headers.contains(name: "idempotency-key") else { return false }
        if !ex.holdsRetrySlot {
            let counted = ex.connection != nil || ex.waiter?.exchange != nil || ex.backingOff
            guard upstream.allowsRetry(percent: policy.budgetPercent, retryingIsCounted: counted) else { return false }
        }
        let wait = Backoff.delay(
            retry: ex.attempts, baseNanos: policy.backoffBaseNanos, maxNanos: policy.backoffMaxNanos, random: loopContext.rng.next())
        if ex.deadline != 0 && NIODeadline.now().uptimeNanoseconds &+ UInt64(wait) >= ex.deadline { return false }
        if !ex.holdsRetrySlot {
            ex.holdsRetrySlot = true
            upstream.activeRetries += 1
        }
        loopContext.metrics.retry(route: route.name, reason: reason)
        // This try is over; its connection is mid-exchange and cannot be reused.
        ex.waiter?.cancel()
        ex.waiter = nil
        dropConnection(ex)
        ex.tryDeadline = 0
        ex.pendingHead = nil
        ex.shaping = nil
        ex.phase = .waitingForConnection
        ex.buffered = ex.replay
        ex.bufferedBytes = ex.replayBytes
        ex.backingOff = true
        upstream.backingOff += 1
        context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(wait)) { [self] in
            guard exchange === ex, ex.backingOff, ex.phase == .waitingForConnection else { return }
            endBackoff(ex)
            startTry(ex, route: route, a)
        }
        return true
    }

    func forward(_ ex: Exchange, snapshot: Snapshot, route: CompiledRoute, path: String, query: Substring?, trusted: Bool) {
        guard let pool = ex.pool, let upstream = ex.upstream else { return }
        ex.isUpgrade = ex.asksUpgrade && ForwardHeaders.isWebSocketUpgrade(ex.head.headers)
        let upgrade = ex.isUpgrade ? (ex.head.headers.first(name: "upgrade") ?? "websocket") : nil
        let room = 384 + ex.head.uri.utf8.count + ex.head.headers.count * 64
        var bytes = allocator.buffer(capacity: room)
        ex.upstreamChunked = bytes.writeHead(capacity: room) { out in
            ForwardHeaders.requestHead(
                ex.head, route: route, path: path, query: query, target: pool.target, requestID: ex.requestID,
                peerIP: peerIP, trusted: trusted, upgrade: upgrade, identity: ex.identity, authority: ex.authority,
                scheme: tls ? "https" : "http", ids: &loopContext.ids, into: &out)
        }
        ex.pendingHead = bytes
        ex.phase = .waitingForConnection
        let acquired = pool.acquire(for: upstream, exchange: ex)
        switch acquired {
        case .ready(let c): connected(ex, c)
        case .waiting(let w): ex.waiter = w
        case .rejected(let e): sendError(e, ex)
        }
    }

    func connected(_ ex: Exchange, _ c: UpstreamConnection) {
        ex.connection = c
        ex.phase = .forwarding
        c.pool.active += 1
        c.handler.delegate = ex
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
        dropConnection(ex)
        if !ex.responseStarted, let condition = error.retry {
            ex.tryDeadline = 0
            ex.upstream?.health?.record(ex.poolIndex, .gatewayFailure, now: NIODeadline.now().uptimeNanoseconds.asInt64)
            if let policy = ex.route?.retry, policy.on.allows(failure: condition),
                retry(ex, reason: condition == .connectFailure ? "connect-failure" : "reset")
            {
                return
            }
        }
        if ex.responseStarted {
            // Bytes already reached the client: the only honest thing left is to cut the connection.
            closeNow()
        } else {
            sendError(error, ex)
        }
    }
}
