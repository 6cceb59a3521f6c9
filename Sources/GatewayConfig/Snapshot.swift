import Foundation
import GatewayPolicies

/// The compiled, immutable form of a valid file: what the data path reads, once per request.
/// A reload builds a new one and swaps it in; requests keep the snapshot they started with.
public final class Snapshot: Sendable {
    public let file: GatewayFile
    public let version: String
    public let routes: [CompiledRoute]
    /// Upstreams in name order; `CompiledRoute.upstreamIndex` points into this array.
    public let upstreams: [UpstreamSpec]
    public let server: ServerSettings
    /// JWT providers in name order; `AuthRequirement.Method.jwt` points into this array.
    public let jwtProviders: [JWTProviderSpec]
    /// `rate_limits`, compiled; nil when the file has none.
    public let rateLimits: RateLimitPolicy?
    /// Browser login providers in name order; `CompiledRoute.login` points into this array.
    public let loginProviders: [LoginProviderSpec]

    public init(file: GatewayFile, version: String) {
        self.file = file
        self.version = version
        let names = file.upstreams.keys.sorted()
        var index: [String: Int] = [:]
        for (i, n) in names.enumerated() { index[n] = i }
        self.upstreams = names.enumerated().compactMap { i, n in file.upstreams[n].map { UpstreamSpec(name: n, index: i, config: $0) } }
        let providerNames = file.auth.jwt.keys.sorted()
        let providers = providerNames.enumerated().compactMap { i, n in
            file.auth.jwt[n].map { JWTProviderSpec(name: n, index: i, config: $0) }
        }
        var providerIndex: [String: Int] = [:]
        for p in providers { providerIndex[p.name] = p.index }
        self.jwtProviders = providers
        self.rateLimits = file.rateLimits.map(RateLimitPolicy.init)
        let logins = file.auth.login.keys.sorted().enumerated().compactMap { i, n in
            file.auth.login[n].map { c in LoginProviderSpec(name: n, index: i, config: c, jwt: providers.first { $0.name == c.jwt }) }
        }
        var loginIndex: [String: Int] = [:]
        for l in logins { loginIndex[l.name] = l.index }
        self.loginProviders = logins
        self.routes = file.routes.enumerated().map { i, r in
            CompiledRoute(
                index: i, config: r, upstreamIndex: r.upstream.flatMap { index[$0] },
                auth: r.auth.flatMap { AuthRequirement($0, providers: providerIndex, specs: providers) }, upstreams: index,
                login: r.auth?.login.flatMap { name in logins.first { $0.name == name } })
        }
        self.server = ServerSettings(file.server)
    }

    public func upstream(named name: String) -> UpstreamSpec? { upstreams.first { $0.name == name } }
}

/// `server` with durations in nanoseconds and parsed CIDRs.
public struct ServerSettings: Sendable {
    public var workers: Int
    public var requestTimeoutNanos: Int64
    public var idleTimeoutNanos: Int64
    public var headerReadTimeoutNanos: Int64
    public var maxHeaderBytes: Int
    public var maxBodyBytes: Int
    public var drainTimeoutNanos: Int64
    public var trustedProxies: [CIDR]
    /// `compression.gzip`, and its `min_bytes`.
    public var gzip: Bool
    public var gzipMinBytes: Int
    public var http2MaxConcurrentStreams: Int
    public var tunnelIdleTimeoutNanos: Int64

    public init(_ s: Server) {
        workers = s.workers
        requestTimeoutNanos = s.requestTimeout.nanoseconds
        idleTimeoutNanos = s.idleTimeout.nanoseconds
        headerReadTimeoutNanos = s.headerReadTimeout.nanoseconds
        maxHeaderBytes = s.maxHeaderBytes.bytes
        maxBodyBytes = s.maxBodyBytes.bytes
        drainTimeoutNanos = s.drainTimeout.nanoseconds
        trustedProxies = s.trustedProxies.compactMap(CIDR.init)
        gzip = s.compression.gzip
        gzipMinBytes = s.compression.minBytes.bytes
        http2MaxConcurrentStreams = s.http2MaxConcurrentStreams
        tunnelIdleTimeoutNanos = s.tunnelIdleTimeout.nanoseconds
    }

    public func isTrusted(_ ip: IPAddressBytes?) -> Bool {
        guard let ip, !trustedProxies.isEmpty else { return false }
        return trustedProxies.contains { $0.contains(ip) }
    }
}

/// What an upstream's targets speak (`protocol`).
public enum UpstreamProtocol: String, Sendable {
    case http1, h2, h2c
    public var isHTTP2: Bool { self != .http1 }
}

public enum BalancerKind: String, Sendable {
    case roundRobin = "round_robin", leastRequest = "least_request", random, consistentHash = "consistent_hash"
}

/// A login provider with its JWT provider resolved.
public struct LoginProviderSpec: Sendable {
    public var name: String
    public var index: Int
    public var config: AuthSection.LoginProvider
    /// Index into `Snapshot.jwtProviders` of the provider that verifies ID tokens.
    public var jwtIndex: Int?
    /// The headers the JWT provider forwards claims into (lowercased).
    public var forwardedHeaders: [String]

    init(name: String, index: Int, config: AuthSection.LoginProvider, jwt: JWTProviderSpec?) {
        self.name = name
        self.index = index
        self.config = config
        jwtIndex = jwt?.index
        forwardedHeaders = jwt?.forwardClaims.map(\.header) ?? []
    }
}

public struct UpstreamSpec: Sendable {
    public struct TargetSpec: Sendable, Hashable {
        public var url: String
        public var host: String
        public var port: Int
        public var weight: Int
        public var authority: String
        /// `https://`: the connection is TLS.
        public var tls: Bool = false
    }
    public var name: String
    public var index: Int
    public var targets: [TargetSpec]
    public var balancer: BalancerKind
    public var hashOn: HashOn
    public var connectTimeoutNanos: Int64
    public var maxConnectionsPerTarget: Int
    public var maxPendingRequests: Int
    public var healthCheck: HealthCheckSpec?
    public var outlierDetection: OutlierDetector.Config?
    /// How `https://` targets are verified.
    public var tls: Upstream.UpstreamTLS
    public var `protocol`: UpstreamProtocol

    init(name: String, index: Int, config u: Upstream) {
        self.name = name
        self.index = index
        targets = u.targets.compactMap { t in
            TargetURL(t.url).map {
                TargetSpec(
                    url: t.url, host: $0.host, port: $0.port, weight: max(1, t.weight), authority: $0.authority, tls: $0.scheme == "https")
            }
        }
        balancer = BalancerKind(rawValue: u.balancer) ?? .roundRobin
        hashOn = u.hashOn.flatMap(HashOn.init) ?? .clientIP
        connectTimeoutNanos = u.connectTimeout.nanoseconds
        maxConnectionsPerTarget = u.maxConnectionsPerTarget
        maxPendingRequests = u.maxPendingRequests
        tls = u.tls ?? Upstream.UpstreamTLS()
        `protocol` = UpstreamProtocol(rawValue: u.protocol) ?? .http1
        healthCheck = u.healthCheck.map(HealthCheckSpec.init)
        outlierDetection = u.outlierDetection.map(OutlierDetector.Config.init)
    }
}

/// One route with its matchers precomputed. A class: a route travels with each request, and
/// passing a reference costs one retain where copying this struct cost one per field.
public final class CompiledRoute: Sendable {
    public enum Action: Sendable {
        case upstream(Int)
        /// A canary split across upstreams.
        case split(SplitPolicy)
        /// Several backend calls merged into one response.
        case aggregate(AggregatePolicy)
        case respond(status: Int, headers: [(String, String)], body: [UInt8])
    }
    public struct HeaderOps: Sendable {
        public var set: [(String, String)]
        public var add: [(String, String)]
        public var remove: [String]
        public var isEmpty: Bool { self.set.isEmpty && self.add.isEmpty && self.remove.isEmpty }
        init(_ ops: Route.HeaderOps?) {
            set = (ops?.set ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            add = (ops?.add ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            remove = ops?.remove ?? []
        }
    }

    public let index: Int
    public let name: String
    public let pathPattern: PathPattern?
    /// `path_prefix` without a trailing slash ("" for "/"), matched on whole segments.
    public let pathPrefix: [UInt8]?
    public let methods: [String]?
    /// Lowercased; a leading `*.` matches any subdomain.
    public let host: String?
    public let headers: [(name: String, value: String)]
    public let query: [(name: String, value: String)]
    public let action: Action
    public let stripPrefix: [UInt8]?
    public let addPrefix: String?
    public let hostRewrite: String?
    public let timeoutNanos: Int64?
    /// `stream_idle_timeout` (SPEC §2.7; default 5 minutes).
    public let streamIdleTimeoutNanos: Int64
    /// `forward_request_trailers`.
    public let forwardRequestTrailers: Bool
    public let requestHeaders: HeaderOps
    public let responseHeaders: HeaderOps
    public let config: Route
    public let auth: AuthRequirement?
    public let cors: CORSPolicy?
    public let rateLimit: RouteLimitMode
    public let retry: RetryPolicy?
    public let fault: FaultPolicy?
    public let mirror: MirrorPolicy?
    public let shape: ShapePolicy?
    /// `auth: { "login": … }`: the login provider's index; the route needs a session.
    public let login: Int?
    /// Headers never taken from the client on a login route: `Authorization` (the session's
    /// access token replaces it) and those the provider forwards claims into.
    public let loginHeaders: [String]

    init(
        index: Int, config r: Route, upstreamIndex: Int?, auth: AuthRequirement? = nil, upstreams: [String: Int] = [:],
        login: LoginProviderSpec? = nil
    ) {
        self.login = login?.index
        self.loginHeaders = login.map { ["authorization"] + $0.forwardedHeaders } ?? []
        self.index = index
        self.auth = auth
        self.cors = r.cors.map(CORSPolicy.init)
        self.rateLimit = RouteLimitMode(r.rateLimit)
        self.retry = r.retry.map(RetryPolicy.init)
        self.fault = r.fault.map(FaultPolicy.init)
        self.mirror = r.mirror.map { MirrorPolicy($0, upstreams: upstreams) }
        self.shape = r.shape.map(ShapePolicy.init)
        self.config = r
        name = r.name ?? "route-\(index)"
        pathPattern = r.match.path.flatMap { try? PathPattern.parse($0).get() }
        pathPrefix = r.match.pathPrefix.map { p in
            var b = Array(p.utf8)
            while b.last == UInt8(ascii: "/") { b.removeLast() }
            return b
        }
        methods = r.match.methods?.map { $0.uppercased() }
        host = r.match.host?.lowercased()
        headers = (r.match.headers ?? [:]).sorted { $0.key < $1.key }.map { (name: $0.key.lowercased(), value: $0.value) }
        query = (r.match.query ?? [:]).sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
        if let resp = r.respond {
            var headers = resp.headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            var body: [UInt8] = []
            let hasType = headers.contains { $0.0.lowercased() == "content-type" }
            switch resp.body {
            case .none: break
            case .string(let s)?:
                body = Array(s.utf8)
                if !hasType { headers.append(("content-type", "text/plain; charset=utf-8")) }
            case let value?:
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                body = (try? enc.encode(value)).map { Array($0) } ?? []
                if !hasType { headers.append(("content-type", "application/json")) }
            }
            action = .respond(status: resp.status, headers: headers, body: body)
        } else if let split = r.split {
            action = .split(SplitPolicy(split, upstreams: upstreams))
        } else if let aggregate = r.aggregate {
            action = .aggregate(AggregatePolicy(aggregate, upstreams: upstreams))
        } else {
            action = .upstream(upstreamIndex ?? -1)
        }
        stripPrefix = r.rewrite?.stripPrefix.map { p in
            var b = Array(p.utf8)
            while b.last == UInt8(ascii: "/") { b.removeLast() }
            return b
        }
        addPrefix = r.rewrite?.addPrefix.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        hostRewrite = r.rewrite?.host
        timeoutNanos = r.timeout?.nanoseconds
        streamIdleTimeoutNanos = r.streamIdleTimeout?.nanoseconds ?? 300_000_000_000
        forwardRequestTrailers = r.forwardRequestTrailers
        requestHeaders = HeaderOps(r.requestHeaders)
        responseHeaders = HeaderOps(r.responseHeaders)
    }

    /// Whether the normalized path matches `path` and `path_prefix` (both when both are given).
    @inlinable
    public func matchesPath(_ path: UnsafeRawBufferPointer) -> Bool {
        if let prefix = pathPrefix {
            guard path.count >= prefix.count else { return false }
            var k = 0
            while k < prefix.count {
                if path[k] != prefix[k] { return false }
                k += 1
            }
            if path.count > prefix.count && path[prefix.count] != UInt8(ascii: "/") { return false }
        }
        if let pattern = pathPattern, !pattern.matches(path) { return false }
        return true
    }

    /// Host header (port stripped, ASCII case-insensitive) against `match.host`. Compared
    /// byte by byte: a combining mark or a compatibility character (KELVIN SIGN for `k`)
    /// in a Host header never matches an ASCII name.
    public func matchesHost(_ hostHeader: Substring?) -> Bool {
        guard let want = host else { return true }
        guard let hostHeader else { return false }
        var h = hostHeader.utf8[...]
        if h.first == UInt8(ascii: "[") {
            if let close = h.firstIndex(of: UInt8(ascii: "]")) { h = h[...close] }
        } else if let colon = h.lastIndex(of: UInt8(ascii: ":")) {
            h = h[..<colon]
        }
        let w = want.utf8
        if w.starts(with: "*.".utf8) {
            let suffix = w.dropFirst(1)  // ".example.com"
            return h.count > suffix.count && Self.equalIgnoringASCIICase(h.suffix(suffix.count), suffix)
        }
        return Self.equalIgnoringASCIICase(h, w[...])
    }

    /// `a` equals `lowered` (already lowercase) when ASCII letters in `a` are lowercased.
    static func equalIgnoringASCIICase(_ a: Substring.UTF8View.SubSequence, _ lowered: String.UTF8View.SubSequence) -> Bool {
        guard a.count == lowered.count else { return false }
        for (x, y) in zip(a, lowered) {
            let lx = (x >= UInt8(ascii: "A") && x <= UInt8(ascii: "Z")) ? x | 0x20 : x
            if lx != y { return false }
        }
        return true
    }

    public func allowsMethod(_ method: String) -> Bool {
        guard let methods else { return true }
        return methods.contains(method)
    }

    /// The upstream path after `rewrite` (query appended by the caller).
    public func rewrittenPath(_ path: String) -> String {
        if stripPrefix == nil && addPrefix == nil { return path }
        var p = path
        if let strip = stripPrefix, !strip.isEmpty {
            let u = Array(p.utf8)
            if u.count >= strip.count && u[0..<strip.count].elementsEqual(strip)
                && (u.count == strip.count || u[strip.count] == UInt8(ascii: "/"))
            {
                p = String(decoding: u[strip.count...], as: UTF8.self)
                if p.isEmpty { p = "/" }
            }
        }
        if let add = addPrefix {
            p = p == "/" ? (add.isEmpty ? "/" : add + "/") : add + p
        }
        return p
    }
}
