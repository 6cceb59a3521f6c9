import GatewayAuth
import GatewayConfig
import GatewayPolicies
import Logging
import NIOCore
import NIOSSL

/// Everything one event loop keeps for itself: its view of the current snapshot, its
/// connection pools and balancer state, its id generator. Only touched on its own loop,
/// so the data path takes no locks (the per-worker model of Envoy and NGINX).
final class LoopContext {
    let loop: any EventLoop
    let shared: SharedState
    private(set) var snapshot: Snapshot
    private var generation: Int
    /// Indexed like `snapshot.upstreams`.
    private(set) var upstreams: [UpstreamRuntime] = []
    var ids: IDGenerator
    var rng: SplitMix64
    let loopCount: Int
    /// The loop's one clock (a test may set it by hand).
    let time = LoopClock()
    let clock: ConnectionClock
    /// Access-log lines of this loop, handed to the writer on the clock's tick (one lock per
    /// tick instead of one per request) or when they pass 64 KiB.
    var accessLogBuffer: [UInt8] = []
    var wallClock = WallClockCache()
    let metrics: LoopMetrics
    /// Indexed like `snapshot.jwtProviders`.
    private(set) var jwtProviders: [JWTProviderRuntime] = []
    private(set) var apiKeys = APIKeyTable(nil)
    /// Indexed like `snapshot.loginProviders`.
    private(set) var loginProviders: [LoginProviderRuntime] = []
    let tokenCache = VerifiedTokenCache()
    /// Copies of requests for routes with `mirror`.
    let mirrors: MirrorSender
    /// The Redis rate-limit store's connection of this loop, when the file asks for Redis.
    private(set) var redisLimiter: RedisLimiter?
    private var redisSettings: RateLimits.Store?
    /// Redis is failing: logged once when it starts and once when it ends.
    private var limitStoreDown = false
    private static let limitLogger = Logger(label: "gateway.ratelimit")

    func flushAccessLog() {
        guard !accessLogBuffer.isEmpty, let writer = shared.accessLog else { return }
        writer.append(lines: accessLogBuffer)
        accessLogBuffer.removeAll(keepingCapacity: true)
    }

    init(loop: any EventLoop, shared: SharedState, loopCount: Int, seed: UInt64) {
        self.metrics = LoopMetrics(shared.metrics)
        self.clock = ConnectionClock(time: time)
        self.mirrors = MirrorSender(loop: loop, metrics: metrics)
        self.loop = loop
        self.shared = shared
        self.loopCount = max(1, loopCount)
        self.ids = IDGenerator(seed: seed)
        self.rng = SplitMix64(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        let (snap, gen) = shared.snapshots.current()
        self.snapshot = snap
        self.generation = gen
        rebuild(previous: [])
    }

    /// The snapshot a new request pins; picks up a reload with one atomic load in the common case.
    @inline(__always)
    func currentSnapshot() -> Snapshot {
        if shared.snapshots.generation != generation {
            let (snap, gen) = shared.snapshots.current()
            snapshot = snap
            generation = gen
            metrics.snapshotChanged()
            rebuild(previous: upstreams)
        }
        return snapshot
    }

    /// Reconciles runtime state with a new snapshot: pools of targets that stay keep their connections.
    private func rebuild(previous: [UpstreamRuntime]) {
        jwtProviders = shared.auth.providers(for: snapshot)
        loginProviders = shared.login.providers(for: snapshot)
        // The Redis connection stays across reloads that keep the store's settings.
        let store = snapshot.rateLimits?.store
        if store?.kind == "redis", let store, let url = store.url.flatMap(RedisURL.init) {
            if store != redisSettings {
                redisLimiter?.connection.close()
                let c = RedisConnection(
                    loop: loop, host: url.host, port: url.port, database: url.database, password: url.password,
                    connectTimeout: .nanoseconds(max(store.timeout.nanoseconds, 100_000_000)))
                redisLimiter = RedisLimiter(connection: c, prefix: store.prefix, timeout: .nanoseconds(store.timeout.nanoseconds))
                redisSettings = store
            }
        } else if redisLimiter != nil {
            redisLimiter?.connection.close()
            redisLimiter = nil
            redisSettings = nil
        }
        apiKeys = APIKeyTable(snapshot.file.auth.apiKeys)
        var oldPools: [String: TargetPool] = [:]
        for u in previous {
            for p in u.pools { oldPools[u.spec.name + "\u{0}" + p.key] = p }
        }
        upstreams = snapshot.upstreams.map { spec in
            // Limits of the gateway, not of each loop: the counts behind them are shared.
            let limits = shared.limits.limits(for: spec)
            let maxConns = spec.maxConnectionsPerTarget
            let tlsContext = spec.targets.contains(where: \.tls) ? Self.tlsContext(spec) : nil
            let pools = spec.targets.enumerated().map { i, t -> TargetPool in
                let k = spec.name + "\u{0}" + t.url
                let tls = t.tls ? tlsContext.map { ($0, spec.tls.serverName ?? (IPAddressBytes(t.host) == nil ? t.host : nil)) } : nil
                if let p = oldPools[k], p.limits === limits.targets[i], p.httpProtocol == spec.protocol {
                    oldPools[k] = nil
                    p.maxConnections = max(1, maxConns)
                    p.connectTimeout = .nanoseconds(spec.connectTimeoutNanos)
                    p.tls = tls  // new connections use the new settings
                    return p
                }
                let p = TargetPool(
                    target: t, loop: loop, maxConnections: maxConns, connectTimeout: .nanoseconds(spec.connectTimeoutNanos),
                    limits: limits.targets[i], protocol: spec.protocol)
                p.tls = tls
                return p
            }
            return UpstreamRuntime(
                spec: spec, pools: pools, maxPending: spec.maxPendingRequests, limits: limits,
                start: Int(rng.next() % UInt64(max(1, pools.count))), health: shared.health.health(for: spec))
        }
        for p in oldPools.values { p.shutdown() }
    }

    /// The client TLS context of an upstream with `https://` targets: the system's trust
    /// roots or `tls.ca_file`, verification unless `tls.verify` is false, ALPN `http/1.1` (or
    /// `h2` for `protocol: h2`).
    static func tlsContext(_ spec: UpstreamSpec) -> NIOSSLContext? {
        var config = TLSConfiguration.makeClientConfiguration()
        if let ca = spec.tls.caFile { config.trustRoots = .file(ca) }
        if !spec.tls.verify { config.certificateVerification = .none }
        config.applicationProtocols = spec.protocol == .h2 ? ["h2"] : ["http/1.1"]
        do {
            return try NIOSSLContext(configuration: config)
        } catch {
            Logger(label: "gateway.tls").error(
                "cannot set up TLS to the upstream's targets", metadata: ["upstream": "\(spec.name)", "error": "\(error)"])
            return nil
        }
    }

    func limitStoreFailed(_ error: any Error) {
        guard !limitStoreDown else { return }
        limitStoreDown = true
        Self.limitLogger.warning(
            "the redis rate-limit store is failing; decisions follow on_error until it answers", metadata: ["error": "\(error)"])
    }

    func limitStoreRecovered() {
        guard limitStoreDown else { return }
        limitStoreDown = false
        Self.limitLogger.info("the redis rate-limit store answers again")
    }

    func shutdownPools() {
        redisLimiter?.connection.close()
        for u in upstreams { for p in u.pools { p.shutdown() } }
    }
}

/// One upstream as one loop sees it: its pools, its balancer, and the shared health of its targets.
final class UpstreamRuntime {
    let spec: UpstreamSpec
    let pools: [TargetPool]
    /// Requests of this loop waiting for a connection.
    var pending = 0
    /// `max_pending_requests`, against `limits.pending` (every loop's waiting requests).
    let maxPending: Int
    let limits: LimitRegistry.Upstream
    /// Retries in flight on this loop (the retry budget is kept per loop, like the pools).
    var activeRetries = 0
    /// Nil when the upstream has neither health checks nor outlier detection.
    let health: UpstreamHealth?
    private var roundRobin: WeightedRoundRobin
    private let leastRequest: LeastRequest
    private let random: WeightedRandom
    private let ring: ConsistentHashRing?

    init(
        spec: UpstreamSpec, pools: [TargetPool], maxPending: Int, limits: LimitRegistry.Upstream, start: Int,
        health: UpstreamHealth? = nil
    ) {
        self.spec = spec
        self.pools = pools
        self.maxPending = maxPending
        self.limits = limits
        self.health = health
        let weights = spec.targets.map(\.weight)
        roundRobin = WeightedRoundRobin(weights: weights, start: start)
        leastRequest = LeastRequest(weights: weights)
        random = WeightedRandom(weights: weights)
        ring = spec.balancer == .consistentHash ? ConsistentHashRing(targets: spec.targets.map(\.url), weights: weights) : nil
    }

    /// Requests waiting out a retry backoff (in no pool meanwhile).
    var backingOff = 0

    /// Requests of this loop on this upstream: holding a connection, waiting for one, or
    /// waiting to retry (the retry budget's base: a request does not stop being active while
    /// its retry backs off).
    var activeRequests: Int { pools.reduce(pending + backingOff) { $0 + $1.active } }

    /// Whether the retry budget allows one more retry now. `retryingIsCounted` says whether
    /// the request to retry is still in `activeRequests` (holding a connection, in line, or
    /// backing off); when its failed try has already given up its connection it is not, but
    /// it is one of the active requests all the same (without it, a loop whose every request
    /// in flight failed at once refused the last retry).
    func allowsRetry(percent: Double, retryingIsCounted: Bool) -> Bool {
        RetryBudget.allows(
            activeRequests: activeRequests + (retryingIsCounted ? 0 : 1), activeRetries: activeRetries, percent: percent)
    }

    /// The index of the target for the next try. `hashKey` is used by consistent_hash only.
    /// `avoid` has bit `i` set for targets this request already tried (a retry goes
    /// elsewhere when it can). Only available targets are picked (not ejected, not failing
    /// health checks); when none is, any target (panic mode, SPEC §2.4).
    @inline(__always)
    func pick(hashKey: UInt64?, rng: inout SplitMix64, now: Int64, avoid: UInt64 = 0) -> Int? {
        if pools.count <= 1 { return pools.isEmpty ? nil : 0 }  // validation keeps pools non-empty; never trap if not
        guard health != nil || avoid != 0 else {
            // The common case: every target takes traffic.
            if spec.balancer == .roundRobin { return roundRobin.next() }
            return choose(hashKey: hashKey, rng: &rng) { _ in true }
        }
        let untried: (Int) -> Bool = { $0 >= 64 || avoid & (1 << UInt64($0)) == 0 }
        let available: (Int) -> Bool = { self.health?.isAvailable($0, now: now) ?? true }
        if let i = choose(hashKey: hashKey, rng: &rng, { untried($0) && available($0) }) { return i }
        // Every untried target is out: an available one that was tried beats a known-bad one.
        if let i = choose(hashKey: hashKey, rng: &rng, available) { return i }
        // Panic: nothing is available; spread over all, untried first.
        if let i = choose(hashKey: hashKey, rng: &rng, untried) { return i }
        return choose(hashKey: hashKey, rng: &rng) { _ in true }
    }

    @inline(__always)
    private func choose(hashKey: UInt64?, rng: inout SplitMix64, _ ok: (Int) -> Bool) -> Int? {
        let index: Int?
        switch spec.balancer {
        case .roundRobin:
            index = roundRobin.next(isAvailable: ok)
        case .leastRequest:
            index = leastRequest.pick(inFlight: { self.pools[$0].active }, isAvailable: ok, using: &rng)
        case .random:
            index = random.pick(isAvailable: ok, using: &rng)
        case .consistentHash:
            index = ring?.pick(hash: hashKey ?? rng.next(), isAvailable: ok)
        }
        guard let index, index >= 0, index < pools.count else { return nil }
        return index
    }
}
