import GatewayPolicies

/// `health_check`, compiled.
public struct HealthCheckSpec: Sendable, Hashable {
    public var path: String
    public var intervalNanos: Int64
    public var timeoutNanos: Int64
    public var healthyThreshold: Int
    public var unhealthyThreshold: Int
    public var expected: ClosedRange<Int>
    /// `grpc.service`: a gRPC health check of this service.
    public var grpcService: String?

    init(_ h: HealthCheck) {
        path = h.path
        intervalNanos = max(1_000_000, h.interval.nanoseconds)
        timeoutNanos = max(1_000_000, h.timeout.nanoseconds)
        healthyThreshold = max(1, h.healthyThreshold)
        unhealthyThreshold = max(1, h.unhealthyThreshold)
        let low = h.expectedStatus.first ?? 200
        let high = h.expectedStatus.count > 1 ? h.expectedStatus[1] : low
        expected = min(low, high)...max(low, high)
        grpcService = h.grpc?.service
    }
}

extension OutlierDetector.Config {
    init(_ o: OutlierDetection) {
        self.init(
            consecutive5xx: max(0, o.consecutive5xx), consecutiveGatewayFailures: max(0, o.consecutiveGatewayFailures),
            intervalNanos: max(1_000_000, o.interval.nanoseconds), baseEjectionNanos: max(0, o.baseEjectionTime.nanoseconds),
            maxEjectionNanos: max(0, o.maxEjectionTime.nanoseconds), maxEjectionPercent: min(100, max(0, o.maxEjectionPercent)),
            successRate: o.successRate.map {
                SuccessRate(minimumHosts: $0.minimumHosts, requestVolume: $0.requestVolume, stdevFactor: $0.stdevFactor)
            })
    }
}

/// Route `retry`, compiled.
public struct RetryPolicy: Sendable {
    public var attempts: Int
    public var on: RetryOn
    /// 0: no per-try timeout (the route's timeout bounds all tries).
    public var perTryTimeoutNanos: Int64
    public var backoffBaseNanos: Int64
    public var backoffMaxNanos: Int64
    /// Upper-cased; a method outside it is retried only with an `Idempotency-Key` header.
    public var methods: Set<String>
    public var budgetPercent: Double
    /// What the retry decision reads (`RetryRule.decide`).
    public var rule: RetryRule {
        RetryRule(
            on: on, attempts: attempts, backoffBaseNanos: backoffBaseNanos, backoffMaxNanos: backoffMaxNanos, budgetPercent: budgetPercent)
    }

    init(_ r: RetryConfig) {
        attempts = max(1, r.attempts)
        on = RetryOn(r.on.compactMap(RetryCondition.init))
        perTryTimeoutNanos = max(0, r.perTryTimeout?.nanoseconds ?? 0)
        backoffBaseNanos = max(0, r.backoff.base.nanoseconds)
        backoffMaxNanos = max(0, r.backoff.max.nanoseconds)
        methods = Set(r.methods.map { $0.uppercased() })
        budgetPercent = r.budgetPercent
    }
}

/// Route `fault`, compiled: shares as parts per million of requests.
public struct FaultPolicy: Sendable {
    public var delayNanos: Int64
    public var delayPerMillion: UInt64
    public var abortStatus: Int
    public var abortPerMillion: UInt64

    init(_ f: FaultConfig) {
        delayNanos = max(0, f.delay?.duration.nanoseconds ?? 0)
        delayPerMillion = Self.perMillion(f.delay?.percent ?? 0)
        abortStatus = f.abort?.status ?? 503
        abortPerMillion = Self.perMillion(f.abort?.percent ?? 0)
    }

    static func perMillion(_ percent: Double) -> UInt64 {
        guard percent.isFinite else { return 0 }
        return UInt64(min(100, max(0, percent)) * 10_000)
    }

    /// Whether a uniform random draw falls in a share of `perMillion`.
    @inline(__always)
    public static func hits(_ perMillion: UInt64, _ random: UInt64) -> Bool {
        perMillion >= 1_000_000 || (perMillion > 0 && random % 1_000_000 < perMillion)
    }
}

/// Route `split`, compiled: members as indexes into `Snapshot.upstreams`.
public struct SplitPolicy: Sendable {
    public var upstreams: [Int]
    public var names: [String]
    public var split: CanarySplit
    public var sticky: HashOn?
    /// Lowercased.
    public var overrideHeader: String?

    init(_ s: SplitConfig, upstreams index: [String: Int]) {
        upstreams = s.to.map { index[$0.upstream] ?? -1 }
        names = s.to.map(\.upstream)
        split = CanarySplit(weights: s.to.map(\.weight))
        sticky = s.sticky.flatMap(HashOn.init)
        overrideHeader = s.overrideHeader?.lowercased()
    }

    /// The member an override header value names, if any.
    public func member(named name: String) -> Int? { names.firstIndex(of: name) }
}

/// Route `mirror`, compiled.
public struct MirrorPolicy: Sendable {
    public var upstream: Int
    public var name: String
    public var perMillion: UInt64

    init(_ m: MirrorConfig, upstreams index: [String: Int]) {
        upstream = index[m.upstream] ?? -1
        name = m.upstream
        perMillion = FaultPolicy.perMillion(m.percent)
    }
}

/// Route `shape`, compiled.
public struct ShapePolicy: Sendable {
    public var spec: ShapeSpec
    public var maxBytes: Int

    public init(_ c: ShapeConfig) {
        spec = ShapeSpec(
            target: c.target.flatMap(ShapeSpec.path), collection: c.collection, allow: c.allow.map { $0.compactMap(ShapeSpec.path) },
            deny: c.deny.compactMap(ShapeSpec.path), rename: c.rename, group: c.group)
        maxBytes = max(0, c.maxBytes.bytes)
    }
}
