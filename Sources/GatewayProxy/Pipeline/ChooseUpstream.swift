import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

// Where an admitted request goes: its route's action, the split member, the mirror's copy, a fault.
extension ProxyHandler {
    /// Where the admitted request goes: the route's fixed response, its upstream, the split
    /// member it falls in, or an aggregate of backend calls.
    func chooseUpstream(_ ex: Exchange, _ a: Admission) -> PhaseResult {
        guard let route = ex.route else { return .done }
        // Back from a fault's delay: the upstream was chosen before it.
        if case .delayed? = ex.resumed, let fault = route.fault {
            ex.resumed = nil
            return abortOrForward(ex, fault, route: route, a)
        }
        switch route.action {
        case .respond(let status, let headers, let body):
            return .reply(.response(status: status, headers: headers, body: body))
        case .upstream(let index):
            return toUpstream(ex, index, route: route, a)
        case .split(let split):
            let member = splitMember(ex, split)
            return toUpstream(ex, member < split.upstreams.count ? split.upstreams[member] : -1, route: route, a)
        case .aggregate(let policy):
            // The client's body, if any, goes nowhere: it is read and dropped.
            ex.phase = .forwarding
            let call = AggregateCall(handler: self, ex: ex, route: route, policy: policy, admission: a)
            ex.aggregate = call
            call.start()
            return .done
        }
    }

    /// The aggregate's merged answer.
    func aggregateDone(_ ex: Exchange, body: [UInt8], headers: [(String, String)]) {
        guard exchange === ex, !ex.responseStarted else { return }
        ex.aggregate = nil
        respondLocally(ex, status: 200, headers: headers, body: body)
    }

    /// A required backend failed (502) or timed out (504).
    func aggregateFailed(_ ex: Exchange, _ error: GatewayError, headers: [(String, String)]) {
        guard exchange === ex, !ex.responseStarted else { return }
        ex.aggregate = nil
        sendError(error, ex, extraHeaders: headers)
    }

    func toUpstream(_ ex: Exchange, _ index: Int, route: CompiledRoute, _ a: Admission) -> PhaseResult {
        guard index >= 0, index < loopContext.upstreams.count else {
            return .reply(.error(.unavailable("the route's upstream is not configured")))
        }
        ex.tries.upstream = loopContext.upstreams[index]
        guard let fault = route.fault else {
            firstTry(ex, route: route, a)
            return .done
        }
        // `fault`: the delay first (held like a request waiting for keys: what follows it on
        // the connection waits too), then the abort, each for its share of requests.
        if fault.delayNanos > 0, FaultPolicy.hits(fault.delayPerMillion, loopContext.rng.next()), let context {
            let delay = context.eventLoop.scheduleTask(in: .nanoseconds(fault.delayNanos)) {}
            return hold(ex, a, at: .chooseUpstream, until: delay.futureResult) { _ in .delayed }
        }
        return abortOrForward(ex, fault, route: route, a)
    }

    /// The split member for this request: the one `override_header` names, else the one the
    /// sticky key's bucket falls in, else one drawn by weight.
    func splitMember(_ ex: Exchange, _ split: SplitPolicy) -> Int {
        if let header = split.overrideHeader, let value = ex.head.headers.first(name: header), let m = split.member(named: value) {
            return m
        }
        if let sticky = split.sticky, let hash = hashKey(sticky, ex) {
            return split.split.member(forBucket: CanarySplit.bucket(hash))
        }
        return split.split.member(random: loopContext.rng.next())
    }

    /// Starts collecting a copy of the request for the route's mirror upstream.
    func startMirror(_ ex: Exchange, _ mirror: MirrorPolicy, route: CompiledRoute, _ a: Admission) {
        guard mirror.upstream >= 0, mirror.upstream < loopContext.upstreams.count else { return }
        let upstream = loopContext.upstreams[mirror.upstream]
        guard let i = upstream.pick(hashKey: nil, rng: &loopContext.rng, now: loopContext.clock.lastTick.asInt64) else { return }
        let target = upstream.pools[i].target
        let room = 448 + ex.head.uri.utf8.count + ex.head.headers.count * 64
        var head = allocator.buffer(capacity: room)
        _ = head.writeHead(capacity: room) { out in
            ForwardHeaders.requestHead(
                ex.head, route: route, path: a.path, query: a.query, target: target, requestID: ex.requestID,
                peerIP: peerIP, trusted: a.trusted, upgrade: nil, identity: ex.identity, authority: ex.authority, ids: &loopContext.ids,
                into: &out)
        }
        // Marked as a copy, and asked to close after its answer (mirrors never use the pools).
        head.moveWriterIndex(to: head.writerIndex - 2)
        head.writeStaticString("x-gateway-mirror: 1\r\nconnection: close\r\n\r\n")
        let timeout = route.timeoutNanos ?? a.snapshot.server.requestTimeoutNanos
        ex.mirror = MirrorRequest(
            route: route.name, head: head, target: target, tls: upstream.pools[i].tls,
            connectTimeout: .nanoseconds(upstream.spec.connectTimeoutNanos),
            timeout: .nanoseconds(timeout))
    }

    func abortOrForward(_ ex: Exchange, _ f: FaultPolicy, route: CompiledRoute, _ a: Admission) -> PhaseResult {
        if FaultPolicy.hits(f.abortPerMillion, loopContext.rng.next()) { return .reply(.error(.faultAbort(f.abortStatus))) }
        firstTry(ex, route: route, a)
        return .done
    }

    func hashKey(_ on: HashOn, _ ex: Exchange) -> UInt64? {
        switch on {
        case .clientIP: return StableHash.hash(ex.clientIP)
        case .header(let name): return ex.head.headers.first(name: name).map(StableHash.hash)
        case .cookie(let name): return CookieChunks.value(named: name, in: ex.head.headers["cookie"]).map(StableHash.hash)
        case .claim(let name): return ex.identity?.claimText(name).map(StableHash.hash)
        }
    }
}
