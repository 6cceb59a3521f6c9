/// SPEC §2.4 `health_check`: active probes of each target.
public struct HealthCheck: Sendable, Codable, Hashable {
    public var path: String = "/healthz"
    public var interval: ConfigDuration = .seconds(5)
    public var timeout: ConfigDuration = .seconds(1)
    public var healthyThreshold: Int = 2
    public var unhealthyThreshold: Int = 3
    /// An inclusive range of statuses that pass: `[low, high]`.
    public var expectedStatus: [Int] = [200, 299]
    /// The gRPC health check (`grpc.health.v1.Health/Check`) instead of a GET of `path`;
    /// for HTTP/2 upstreams (`protocol: h2` or `h2c`).
    public var grpc: GRPCHealthCheck?

    public struct GRPCHealthCheck: Sendable, Codable, Hashable {
        /// The service asked about; "" (the default) asks about the server as a whole.
        public var service: String = ""
        enum CodingKeys: String, CodingKey, CaseIterable { case service }
        public init() {}
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            service = try c.decodeIfPresent(String.self, forKey: .service) ?? ""
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case path, interval, timeout, grpc
        case healthyThreshold = "healthy_threshold"
        case unhealthyThreshold = "unhealthy_threshold"
        case expectedStatus = "expected_status"
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        path = try c.decodeIfPresent(String.self, forKey: .path) ?? path
        interval = try c.decodeIfPresent(ConfigDuration.self, forKey: .interval) ?? interval
        timeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .timeout) ?? timeout
        healthyThreshold = try c.decodeIfPresent(Int.self, forKey: .healthyThreshold) ?? healthyThreshold
        unhealthyThreshold = try c.decodeIfPresent(Int.self, forKey: .unhealthyThreshold) ?? unhealthyThreshold
        expectedStatus = try c.decodeIfPresent([Int].self, forKey: .expectedStatus) ?? expectedStatus
        grpc = try c.decodeIfPresent(GRPCHealthCheck.self, forKey: .grpc)
    }
}

/// SPEC §2.4 `outlier_detection`: passive ejection of targets that fail.
public struct OutlierDetection: Sendable, Codable, Hashable {
    public var consecutive5xx: Int = 5
    public var consecutiveGatewayFailures: Int = 5
    public var interval: ConfigDuration = .seconds(10)
    public var baseEjectionTime: ConfigDuration = .seconds(30)
    public var maxEjectionTime: ConfigDuration = .seconds(300)
    public var maxEjectionPercent: Int = 50
    /// Success-rate ejection runs only when this is given.
    public var successRate: SuccessRate?

    public struct SuccessRate: Sendable, Codable, Hashable {
        public var minimumHosts: Int = 3
        public var requestVolume: Int = 100
        public var stdevFactor: Double = 1.9
        enum CodingKeys: String, CodingKey, CaseIterable {
            case minimumHosts = "minimum_hosts"
            case requestVolume = "request_volume"
            case stdevFactor = "stdev_factor"
        }
        public init() {}
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            minimumHosts = try c.decodeIfPresent(Int.self, forKey: .minimumHosts) ?? minimumHosts
            requestVolume = try c.decodeIfPresent(Int.self, forKey: .requestVolume) ?? requestVolume
            stdevFactor = try c.decodeIfPresent(Double.self, forKey: .stdevFactor) ?? stdevFactor
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case consecutive5xx = "consecutive_5xx"
        case consecutiveGatewayFailures = "consecutive_gateway_failures"
        case interval
        case baseEjectionTime = "base_ejection_time"
        case maxEjectionTime = "max_ejection_time"
        case maxEjectionPercent = "max_ejection_percent"
        case successRate = "success_rate"
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        consecutive5xx = try c.decodeIfPresent(Int.self, forKey: .consecutive5xx) ?? consecutive5xx
        consecutiveGatewayFailures = try c.decodeIfPresent(Int.self, forKey: .consecutiveGatewayFailures) ?? consecutiveGatewayFailures
        interval = try c.decodeIfPresent(ConfigDuration.self, forKey: .interval) ?? interval
        baseEjectionTime = try c.decodeIfPresent(ConfigDuration.self, forKey: .baseEjectionTime) ?? baseEjectionTime
        maxEjectionTime = try c.decodeIfPresent(ConfigDuration.self, forKey: .maxEjectionTime) ?? maxEjectionTime
        maxEjectionPercent = try c.decodeIfPresent(Int.self, forKey: .maxEjectionPercent) ?? maxEjectionPercent
        successRate = try c.decodeIfPresent(SuccessRate.self, forKey: .successRate)
    }
}

/// SPEC §2.7 route `retry`.
public struct RetryConfig: Sendable, Codable, Hashable {
    /// Tries in all, the first one included.
    public var attempts: Int = 2
    public var on: [String] = ["connect-failure", "reset", "gateway-error"]
    public var perTryTimeout: ConfigDuration?
    public var backoff: Backoff = Backoff()
    public var methods: [String] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
    public var budgetPercent: Double = 20

    public struct Backoff: Sendable, Codable, Hashable {
        public var base: ConfigDuration = .milliseconds(25)
        public var max: ConfigDuration = .milliseconds(250)
        enum CodingKeys: String, CodingKey, CaseIterable { case base, max }
        public init() {}
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            base = try c.decodeIfPresent(ConfigDuration.self, forKey: .base) ?? base
            max = try c.decodeIfPresent(ConfigDuration.self, forKey: .max) ?? max
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case attempts, on
        case perTryTimeout = "per_try_timeout"
        case backoff, methods
        case budgetPercent = "budget_percent"
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        attempts = try c.decodeIfPresent(Int.self, forKey: .attempts) ?? attempts
        on = try c.decodeIfPresent([String].self, forKey: .on) ?? on
        perTryTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .perTryTimeout)
        backoff = try c.decodeIfPresent(Backoff.self, forKey: .backoff) ?? backoff
        methods = try c.decodeIfPresent([String].self, forKey: .methods) ?? methods
        budgetPercent = try c.decodeIfPresent(Double.self, forKey: .budgetPercent) ?? budgetPercent
    }
}

/// SPEC §2.7 route `fault`: delays or fails a share of the route's requests (chaos drills).
public struct FaultConfig: Sendable, Codable, Hashable {
    public var delay: Delay?
    public var abort: Abort?

    public struct Delay: Sendable, Codable, Hashable {
        public var duration: ConfigDuration
        public var percent: Double = 100
        enum CodingKeys: String, CodingKey, CaseIterable { case duration, percent }
        public init(duration: ConfigDuration, percent: Double = 100) {
            self.duration = duration
            self.percent = percent
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            duration = try c.decode(ConfigDuration.self, forKey: .duration)
            percent = try c.decodeIfPresent(Double.self, forKey: .percent) ?? percent
        }
    }

    public struct Abort: Sendable, Codable, Hashable {
        public var status: Int
        public var percent: Double = 100
        enum CodingKeys: String, CodingKey, CaseIterable { case status, percent }
        public init(status: Int, percent: Double = 100) {
            self.status = status
            self.percent = percent
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            status = try c.decode(Int.self, forKey: .status)
            percent = try c.decodeIfPresent(Double.self, forKey: .percent) ?? percent
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case delay, abort }

    public init(delay: Delay? = nil, abort: Abort? = nil) {
        self.delay = delay
        self.abort = abort
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        delay = try c.decodeIfPresent(Delay.self, forKey: .delay)
        abort = try c.decodeIfPresent(Abort.self, forKey: .abort)
    }
}

/// SPEC §2.7 route `split`: a canary split across upstreams.
public struct SplitConfig: Sendable, Codable, Hashable {
    public var to: [Member]
    /// `claim:NAME`, `header:NAME`, `cookie:NAME` or `client_ip`; without it, each request is drawn at random.
    public var sticky: String?
    /// A request header whose value, when it names a member's upstream, sends the request there.
    public var overrideHeader: String?

    public struct Member: Sendable, Codable, Hashable {
        public var upstream: String
        public var weight: Int = 1
        enum CodingKeys: String, CodingKey, CaseIterable { case upstream, weight }
        public init(upstream: String, weight: Int = 1) {
            self.upstream = upstream
            self.weight = weight
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            upstream = try c.decode(String.self, forKey: .upstream)
            weight = try c.decodeIfPresent(Int.self, forKey: .weight) ?? weight
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case to, sticky
        case overrideHeader = "override_header"
    }

    public init(to: [Member], sticky: String? = nil, overrideHeader: String? = nil) {
        self.to = to
        self.sticky = sticky
        self.overrideHeader = overrideHeader
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        to = try c.decode([Member].self, forKey: .to)
        sticky = try c.decodeIfPresent(String.self, forKey: .sticky)
        overrideHeader = try c.decodeIfPresent(String.self, forKey: .overrideHeader)
    }
}

/// SPEC §2.7 route `mirror`: a copy of a share of the requests to another upstream.
public struct MirrorConfig: Sendable, Codable, Hashable {
    public var upstream: String
    public var percent: Double = 100
    enum CodingKeys: String, CodingKey, CaseIterable { case upstream, percent }
    public init(upstream: String, percent: Double = 100) {
        self.upstream = upstream
        self.percent = percent
    }
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        upstream = try c.decode(String.self, forKey: .upstream)
        percent = try c.decodeIfPresent(Double.self, forKey: .percent) ?? percent
    }
}

/// SPEC §2.7 route `shape`: BFF response shaping of 2xx JSON bodies.
public struct ShapeConfig: Sendable, Codable, Hashable {
    public var target: String?
    public var collection: Bool = false
    public var allow: [String]?
    public var deny: [String] = []
    public var rename: [String: String] = [:]
    public var group: String?
    /// Bodies larger than this (after decompression) pass unshaped.
    public var maxBytes: ByteSize = ByteSize(bytes: 2 * 1024 * 1024)

    enum CodingKeys: String, CodingKey, CaseIterable {
        case target, collection, allow, deny, rename, group
        case maxBytes = "max_bytes"
    }

    public init(allow: [String]? = nil) { self.allow = allow }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        target = try c.decodeIfPresent(String.self, forKey: .target)
        collection = try c.decodeIfPresent(Bool.self, forKey: .collection) ?? false
        allow = try c.decodeIfPresent([String].self, forKey: .allow)
        deny = try c.decodeIfPresent([String].self, forKey: .deny) ?? []
        rename = try c.decodeEntries(String.self, forKey: .rename) ?? [:]
        group = try c.decodeIfPresent(String.self, forKey: .group)
        maxBytes = try c.decodeIfPresent(ByteSize.self, forKey: .maxBytes) ?? maxBytes
    }
}
