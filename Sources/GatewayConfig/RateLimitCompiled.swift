import GatewayPolicies

/// Where a request's tier or rate-limit key comes from.
public enum LimitSource: Sendable, Hashable, CustomStringConvertible {
    case claim(String)
    case apiKey
    case clientIP
    case header(String)

    /// `claim:NAME`, `api_key`, `client_ip` (keys only), `header:NAME`.
    public init?(_ text: String, allowClientIP: Bool) {
        if text == "api_key" { self = .apiKey; return }
        if text == "client_ip" {
            guard allowClientIP else { return nil }
            self = .clientIP
            return
        }
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, !parts[1].isEmpty else { return nil }
        switch parts[0] {
        case "claim": self = .claim(String(parts[1]))
        case "header":
            guard isToken(String(parts[1])) else { return nil }
            self = .header(parts[1].lowercased())
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .claim(let c): return "claim:\(c)"
        case .apiKey: return "api_key"
        case .clientIP: return "client_ip"
        case .header(let h): return "header:\(h)"
        }
    }
}

/// A tier's limits, ready for the limiter, with the header values that describe each.
public struct CompiledTier: Sendable {
    public let name: String
    /// Empty for `"unlimited"`.
    public let limits: [GCRALimit]
    /// `RateLimit-Policy` for each limit: `5;w=1;burst=10`.
    public let policies: [String]
    public var isUnlimited: Bool { limits.isEmpty }

    init(name: String, _ tier: RateLimits.Tier) {
        self.name = name
        switch tier {
        case .unlimited:
            limits = []
            policies = []
        case .limits(let list):
            limits = list.map { GCRALimit(limit: $0.limit, periodNanos: $0.per.nanoseconds, burst: $0.burst) }
            policies = list.map { l in
                let w = max(1, l.per.nanoseconds / 1_000_000_000)
                var p = "\(l.limit);w=\(w)"
                if let b = l.burst, b != l.limit { p += ";burst=\(b)" }
                return p
            }
        }
    }
}

/// `rate_limits` compiled: sources parsed, tiers ready.
public struct RateLimitPolicy: Sendable {
    public let tierFrom: [LimitSource]
    /// Each source with the prefix of the keys it makes (`claim:sub=`), built once here
    /// rather than per request.
    public let keyFrom: [(source: LimitSource, prefix: String)]
    public let defaultTier: String
    public let tiers: [String: CompiledTier]
    public let perIP: CompiledTier?
    public let shadow: Bool
    public let store: RateLimits.Store

    init(_ r: RateLimits) {
        tierFrom = r.tierFrom.compactMap { LimitSource($0, allowClientIP: false) }
        keyFrom = r.keyFrom.compactMap { LimitSource($0, allowClientIP: true) }.map { ($0, $0.description + "=") }
        defaultTier = r.defaultTier
        var t: [String: CompiledTier] = [:]
        for (name, tier) in r.tiers { t[name] = CompiledTier(name: name, tier) }
        tiers = t
        perIP = r.perIP.isEmpty ? nil : CompiledTier(name: "per_ip", .limits(r.perIP))
        shadow = r.shadow
        store = r.store
    }
}

/// What a route does about rate limits.
public enum RouteLimitMode: Sendable {
    /// The top-level `rate_limits` as they are.
    case inherit
    /// `"rate_limit": false`.
    case disabled
    /// Its own tiers (by name, over the top-level ones) and `shadow`.
    case override(tiers: [String: CompiledTier], shadow: Bool?)

    init(_ r: RouteRateLimit?) {
        switch r {
        case nil: self = .inherit
        case .disabled?: self = .disabled
        case .override(let tiers, let shadow)?:
            var t: [String: CompiledTier] = [:]
            for (name, tier) in tiers { t[name] = CompiledTier(name: name, tier) }
            self = .override(tiers: t, shadow: shadow)
        }
    }
}

/// `redis://[user:password@]host[:port][/db]`.
public struct RedisURL: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var database: Int
    public var password: String?

    public init?(_ text: String) {
        guard text.hasPrefix("redis://") else { return nil }
        var rest = Substring(text.dropFirst(8))
        if let at = rest.lastIndex(of: "@") {
            let user = rest[..<at]
            password = user.split(separator: ":", maxSplits: 1).last.map(String.init)
            rest = rest[rest.index(after: at)...]
        }
        var db = 0
        if let slash = rest.firstIndex(of: "/") {
            let d = rest[rest.index(after: slash)...]
            if !d.isEmpty {
                guard let n = Int(d), n >= 0, n < 10_000 else { return nil }
                db = n
            }
            rest = rest[..<slash]
        }
        database = db
        if let colon = rest.lastIndex(of: ":") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
            host = String(rest[..<colon])
        } else {
            port = 6379
            host = String(rest)
        }
        guard !host.isEmpty else { return nil }
    }
}
