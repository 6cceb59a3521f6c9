import CompressNIO
import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

/// One request to an aggregate route (SPEC §2.7 `aggregate`): its backend calls, started as
/// their `after` dependencies complete, each within its own timeout and what is left of the
/// aggregate's; then the merge. Loop-confined, like the exchange it answers.
final class AggregateCall {
    enum Outcome: String {
        case ok, error, timeout, skipped
    }
    enum State {
        case waiting
        case running(BackendCall)
        case done(Outcome, JSON?)
    }

    let handler: ProxyHandler
    let ex: Exchange
    let route: CompiledRoute
    let policy: AggregatePolicy
    let admission: ProxyHandler.Admission
    /// Uptime nanoseconds when the backends' time is up.
    let deadline: UInt64
    private(set) var states: [State]
    private var params: [(String, String)] = []
    private var query: [(String, String)] = []
    private var finished = false

    init(handler: ProxyHandler, ex: Exchange, route: CompiledRoute, policy: AggregatePolicy, admission: ProxyHandler.Admission) {
        self.handler = handler
        self.ex = ex
        self.route = route
        self.policy = policy
        self.admission = admission
        let total = policy.timeoutNanos ?? route.timeoutNanos ?? admission.snapshot.server.requestTimeoutNanos
        deadline = ex.start.uptimeNanoseconds &+ UInt64(max(1, total))
        states = Array(repeating: .waiting, count: policy.backends.count)
        params = route.pathPattern?.captures(admission.path) ?? []
        query = Router.queryPairs(admission.query).filter { !$0.name.isEmpty }.map { ($0.name, $0.value) }
    }

    func start() { advance() }

    /// Starts every backend whose dependencies are done; skips those whose dependencies
    /// failed; finishes when nothing runs any more.
    private func advance() {
        guard !finished else { return }
        var progressed = true
        while progressed {
            progressed = false
            for (i, b) in policy.backends.enumerated() {
                guard case .waiting = states[i] else { continue }
                var ready = true
                var blocked = false
                for d in b.after {
                    switch states[d] {
                    case .done(.ok, _): continue
                    case .done: blocked = true
                    default: ready = false
                    }
                }
                if blocked {
                    complete(i, .skipped, nil)
                    progressed = true
                } else if ready {
                    launch(i)
                    progressed = true
                }
                if finished { return }
            }
        }
        if states.allSatisfy({ if case .done = $0 { return true } else { return false } }) { finish() }
    }

    private func launch(_ i: Int) {
        let b = policy.backends[i]
        guard let path = b.template.render(value) else {
            // A value the template needs is missing (no such claim, header or field).
            return complete(i, .skipped, nil)
        }
        let now = handler.loopContext.time.uptime()
        var until = deadline
        if let t = b.timeoutNanos { until = min(until, now &+ UInt64(max(1, t))) }
        guard until > now,
            let upstream = handler.loopContext.upstreams.indices.contains(b.upstream) ? handler.loopContext.upstreams[b.upstream] : nil
        else {
            return complete(i, until > now ? .error : .timeout, nil)
        }
        let call = BackendCall(aggregate: self, index: i, upstream: upstream, path: path, until: until)
        states[i] = .running(call)
        call.start()
    }

    /// A template value: a path parameter, a claim, a header, a query parameter, or a field
    /// of an earlier backend's response (before that backend's `shape`).
    private func value(_ source: PathTemplate.Source) -> String? {
        switch source {
        case .param(let n): return params.first { $0.0 == n }?.1
        case .claim(let n): return ex.identity?.claimText(n)
        case .header(let n): return ex.head.headers.first(name: n)
        case .query(let n): return query.first { $0.0 == n }?.1
        case .backend(let name, let path):
            guard let i = policy.backends.firstIndex(where: { $0.name == name }), case .done(.ok, let json?) = states[i] else { return nil }
            var v = json
            for key in path {
                guard let next = v[key] else { return nil }
                v = next
            }
            return v.templateText
        }
    }

    /// A backend call ended.
    func complete(_ i: Int, _ outcome: Outcome, _ json: JSON?) {
        guard !finished else { return }
        states[i] = .done(outcome, json)
        handler.loopContext.metrics.aggregateBackend(route: route.name, backend: policy.backends[i].name, outcome: outcome.rawValue)
        let b = policy.backends[i]
        if b.required && outcome != .ok {
            // A required backend failed: the answer is known; the others stop.
            return finish()
        }
        advance()
    }

    /// The route's deadline passed or the client left: every call stops.
    func cancel() {
        guard !finished else { return }
        finished = true
        for s in states { if case .running(let call) = s { call.cancel() } }
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        for (i, s) in states.enumerated() {
            if case .running(let call) = s {
                call.cancel()
                states[i] = .done(.skipped, nil)
                handler.loopContext.metrics.aggregateBackend(route: route.name, backend: policy.backends[i].name, outcome: "skipped")
            }
        }
        var members: [JSON.Member] = []
        var complete = true
        var failedRequired: Outcome?
        var summary: [String] = []
        for (i, b) in policy.backends.enumerated() {
            guard case .done(let outcome, let json) = states[i] else { continue }
            summary.append("\(b.name)=\(outcome.rawValue)")
            guard outcome == .ok, let json else {
                complete = false
                if b.required && failedRequired == nil { failedRequired = outcome }
                continue
            }
            let shaped = b.shape?.apply(json) ?? json
            if let group = b.group {
                Self.set(group, shaped, in: &members)
            } else if case .object(let fields) = shaped {
                for f in fields { Self.set(f.key, f.value, in: &members) }
            } else {
                Self.set(b.name, shaped, in: &members)
            }
        }
        var headers: [(String, String)] = [
            ("x-gateway-completed", complete ? "true" : "false"), ("x-gateway-aggregate", summary.joined(separator: ", ")),
        ]
        if let failed = failedRequired {
            let error: GatewayError =
                failed == .timeout
                ? .upstreamTimeout()
                : .init(.badGateway, "bad_gateway", "a required backend of this aggregate failed", source: .upstream)
            handler.aggregateFailed(ex, error, headers: headers)
            return
        }
        var result = JSON.object(members)
        if let shape = route.shape { result = shape.spec.apply(result) }
        headers.append(("content-type", "application/json"))
        handler.aggregateDone(ex, body: result.serialized(), headers: headers)
    }

    private static func set(_ key: String, _ value: JSON, in members: inout [JSON.Member]) {
        if let i = members.firstIndex(where: { $0.key == key }) {
            members[i].value = value
        } else {
            members.append(JSON.Member(key, value))
        }
    }
}

/// One backend request of an aggregate: a GET through the upstream's pools, balancer and
/// health, with the route's `retry` policy, its JSON response held whole (up to 8 MiB).
final class BackendCall: UpstreamClient {
    static let maxBody = 8 * 1024 * 1024
    let aggregate: AggregateCall
    let index: Int
    let path: String
    let until: UInt64
    /// Its tries at the backend's upstream: the same machinery as a proxied request's.
    private var tries = UpstreamTry()
    private var status = 0
    private var gzip = false
    private var body: [ByteBuffer] = []
    private var bodyBytes = 0
    private var done = false
    private var timer: Scheduled<Void>?
    /// Uptime nanoseconds when the current try started (the upstream duration histogram).
    private var tryStart: UInt64 = 0
    private var backoff: Scheduled<Void>?

    init(aggregate: AggregateCall, index: Int, upstream: UpstreamRuntime, path: String, until: UInt64) {
        self.aggregate = aggregate
        self.index = index
        tries.upstream = upstream
        self.path = path
        self.until = until
    }

    var isHead: Bool { false }
    var downstreamWritable: Bool { true }
    private var context: LoopContext { aggregate.handler.loopContext }

    func start() {
        let now = context.time.uptime()
        timer = context.loop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(until &- now))) { [self] in
            finish(.timeout, nil)
        }
        tryOnce()
    }

    private func tryOnce() {
        guard tries.pick(hashKey: nil, context) else { return finish(.error, nil) }
        status = 0
        body = []
        bodyBytes = 0
        tryStart = context.time.uptime()
        // Not a mutating call on `tries`: the pool may call `connectionReady` before it returns.
        guard let (pool, upstream) = tries.picked else { return finish(.error, nil) }
        switch pool.acquire(for: upstream, exchange: self) {
        case .ready(let c): connectionReady(c)
        case .waiting(let w): tries.wait(on: w)
        case .rejected: finish(.error, nil)
        }
    }

    /// The request head: GET of the rendered path, with the caller's headers (its
    /// credentials included) and the forwarding headers, as any proxied request gets them.
    private func requestHead(_ target: UpstreamSpec.TargetSpec) -> ByteBuffer {
        let ex = aggregate.ex
        var headers = ex.head.headers
        for name in ["content-length", "transfer-encoding", "expect", "upgrade", "accept-encoding"] { headers.remove(name: name) }
        // Bodies come back as they are or gzip; nothing else is decoded.
        headers.add(name: "accept-encoding", value: "gzip")
        let split = path.split(separator: "?", maxSplits: 1)
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        let room = 448 + path.utf8.count + headers.count * 64
        var out = ByteBufferAllocator().buffer(capacity: room)
        let ctx = context
        _ = out.writeHead(capacity: room) { sink in
            ForwardHeaders.requestHead(
                head, route: aggregate.route, path: String(split.first ?? "/"), query: split.count > 1 ? split[1] : nil, target: target,
                requestID: ex.requestID, peerIP: ex.clientIP, trusted: aggregate.admission.trusted, upgrade: nil,
                identity: ex.identity, authority: ex.authority, ids: &ctx.ids, into: &sink)
        }
        return out
    }

    func connectionReady(_ c: UpstreamConnection) {
        tries.waiter = nil
        guard !done else { return c.pool.release(c, reusable: true) }
        tries.attach(c, self)
        c.handler.writeAndFlush(requestHead(c.pool.target))
    }

    func connectFailed(_ error: GatewayError) {
        tries.waiter = nil
        upstreamFailed(error)
    }

    func upstreamHead(_ head: ResponseParser.Head) {
        guard !done else { return }
        status = head.status
        let now = context.time.uptime()
        tries.recordResponse(status: head.status, health: head.status, nanos: Int64(truncatingIfNeeded: now &- tryStart), now: now, context)
        if retry(.status(head.status)) { return }
        let encoding = ForwardHeaders.value(of: "content-encoding", in: head)?.lowercased()
        gzip = encoding == "gzip" || encoding == "x-gzip"
    }

    func upstreamBody(_ buffer: ByteBuffer) {
        guard !done else { return }
        bodyBytes += buffer.readableBytes
        if bodyBytes > Self.maxBody { return finish(.error, nil) }
        body.append(buffer)
    }

    func upstreamEnd(_ trailers: ByteBuffer?) {
        guard !done else { return }
        tries.release(reusable: true)
        guard (200..<300).contains(status) else { return finish(.error, nil) }
        var whole = ByteBufferAllocator().buffer(capacity: bodyBytes)
        for var part in body { whole.writeBuffer(&part) }
        if gzip {
            guard let plain = try? whole.decompress(with: .gzip(), maxSize: Self.maxBody) else { return finish(.error, nil) }
            whole = plain
        }
        let json: JSON? = whole.withUnsafeReadableBytes { raw in try? JSON.parse(raw) }
        finish(json == nil ? .error : .ok, json)
    }

    func upstreamReadComplete() {}
    func upstreamWritabilityChanged() {}

    func upstreamFailed(_ error: GatewayError) {
        guard !done else { return }
        tries.drop()
        if status == 0, let condition = error.retry {
            tries.recordFailure(now: context.time.uptime())
            if retry(.failed(condition)) { return }
        }
        finish(.error, nil)
    }

    /// Another try, as the route's `retry` allows (`UpstreamTry.retryDecision`: attempts,
    /// budget, backoff within the time left).
    private func retry(_ outcome: TryOutcome) -> Bool {
        guard let policy = aggregate.route.retry,
            case .retry(let wait) = tries.retryDecision(outcome, policy, replayable: true, deadline: until, context)
        else { return false }
        context.metrics.retry(route: aggregate.route.name, reason: outcome.reason)
        tries.backOff()
        backoff = context.loop.assumeIsolated().scheduleTask(in: .nanoseconds(wait)) { [self] in
            tries.endBackoff()
            backoff = nil
            if !done { tryOnce() }
        }
        return true
    }

    func cancel() {
        guard !done else { return }
        done = true
        timer?.cancel()
        backoff?.cancel()
        backoff = nil
        tries.drop()
        tries.settle()
    }

    private func finish(_ outcome: AggregateCall.Outcome, _ json: JSON?) {
        guard !done else { return }
        if outcome == .timeout, status == 0, tries.connection != nil { tries.recordFailure(now: context.time.uptime()) }
        cancel()
        aggregate.complete(index, outcome, json)
    }
}
