/// SPEC §2.6: `rate_limits`.
public struct RateLimits: Sendable, Codable, Hashable {
    public var store: Store = Store()
    public var tierFrom: [String] = ["claim:tier", "api_key"]
    public var defaultTier: String = "anonymous"
    public var keyFrom: [String] = ["claim:sub", "api_key", "client_ip"]
    public var tiers: [String: Tier] = [:]
    public var perIP: [Limit] = []
    public var shadow: Bool = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case store
        case tierFrom = "tier_from"
        case defaultTier = "default_tier"
        case keyFrom = "key_from"
        case tiers
        case perIP = "per_ip"
        case shadow
    }

    public init(tiers: [String: Tier] = [:]) { self.tiers = tiers }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        store = try c.decodeIfPresent(Store.self, forKey: .store) ?? Store()
        tierFrom = try c.decodeIfPresent([String].self, forKey: .tierFrom) ?? tierFrom
        defaultTier = try c.decodeIfPresent(String.self, forKey: .defaultTier) ?? defaultTier
        keyFrom = try c.decodeIfPresent([String].self, forKey: .keyFrom) ?? keyFrom
        tiers = try c.decodeEntries(Tier.self, forKey: .tiers) ?? [:]
        perIP = try c.decodeIfPresent([Limit].self, forKey: .perIP) ?? []
        shadow = try c.decodeIfPresent(Bool.self, forKey: .shadow) ?? false
    }

    /// Where the counters live.
    public struct Store: Sendable, Codable, Hashable {
        public var kind: String = "memory"
        public var url: String?
        public var prefix: String = "gw"
        public var onError: String = "allow"
        public var timeout: ConfigDuration = .milliseconds(100)

        enum CodingKeys: String, CodingKey, CaseIterable {
            case kind, url, prefix
            case onError = "on_error"
            case timeout
        }

        public init() {}

        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? kind
            url = try c.decodeIfPresent(String.self, forKey: .url)
            prefix = try c.decodeIfPresent(String.self, forKey: .prefix) ?? prefix
            onError = try c.decodeIfPresent(String.self, forKey: .onError) ?? onError
            timeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .timeout) ?? timeout
        }
    }

    /// `limit` requests per `per`, `burst` at once (default: `limit`).
    public struct Limit: Sendable, Codable, Hashable {
        public var limit: Int
        public var per: ConfigDuration
        public var burst: Int?

        enum CodingKeys: String, CodingKey, CaseIterable { case limit, per, burst }

        public init(limit: Int, per: ConfigDuration, burst: Int? = nil) {
            self.limit = limit
            self.per = per
            self.burst = burst
        }

        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            limit = try c.decode(Int.self, forKey: .limit)
            per = try c.decode(ConfigDuration.self, forKey: .per)
            burst = try c.decodeIfPresent(Int.self, forKey: .burst)
        }
    }

    /// A tier: its limits, or `"unlimited"`.
    public enum Tier: Sendable, Codable, Hashable {
        case unlimited
        case limits([Limit])

        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                guard s == "unlimited" else {
                    throw DecodingError.dataCorruptedError(in: c, debugDescription: "a tier is a list of limits or \"unlimited\"")
                }
                self = .unlimited
            } else {
                self = .limits(try c.decode([Limit].self))
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .unlimited: try c.encode("unlimited")
            case .limits(let l): try c.encode(l)
            }
        }
    }
}

/// A route's `rate_limit`: `false` turns limiting off for the route; an object overrides
/// the tiers (and optionally `shadow`) for it.
public enum RouteRateLimit: Sendable, Codable, Hashable {
    case disabled
    case override(tiers: [String: RateLimits.Tier], shadow: Bool?)

    enum CodingKeys: String, CodingKey, CaseIterable { case tiers, shadow }

    public init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let b = try? single.decode(Bool.self) {
            guard !b else {
                throw DecodingError.dataCorruptedError(
                    in: single, debugDescription: "`rate_limit` is false or an object with `tiers`; true is not a setting")
            }
            self = .disabled
            return
        }
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self = .override(
            tiers: try c.decodeEntries(RateLimits.Tier.self, forKey: .tiers) ?? [:],
            shadow: try c.decodeIfPresent(Bool.self, forKey: .shadow))
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .disabled:
            var c = encoder.singleValueContainer()
            try c.encode(false)
        case .override(let tiers, let shadow):
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(tiers, forKey: .tiers)
            try c.encodeIfPresent(shadow, forKey: .shadow)
        }
    }
}
