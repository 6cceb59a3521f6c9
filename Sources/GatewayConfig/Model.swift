/// The whole file, as SPEC §2 defines it. Decoded with `ConfigLoader`, which also reports
/// unknown keys and every validation error with its path and line:column.
public struct GatewayFile: Sendable, Codable {
    public var listeners: [Listener]
    public var admin: Admin?
    public var server: Server
    public var upstreams: [String: Upstream]
    public var routes: [Route]
    public var accessLog: AccessLog
    public var auth: AuthSection
    public var rateLimits: RateLimits?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case listeners, admin, server, upstreams, routes
        case accessLog = "access_log"
        case auth
        case rateLimits = "rate_limits"
    }

    public init(
        listeners: [Listener], admin: Admin? = nil, server: Server = Server(), upstreams: [String: Upstream], routes: [Route],
        accessLog: AccessLog = AccessLog(), auth: AuthSection = AuthSection()
    ) {
        self.auth = auth
        self.listeners = listeners
        self.admin = admin
        self.server = server
        self.upstreams = upstreams
        self.routes = routes
        self.accessLog = accessLog
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Elements that failed to decode are left out, but the others keep their index in the
        // file so that later diagnostics name the right element.
        listeners =
            try c.decodeIfPresent([Collected<Listener>].self, forKey: .listeners)?.enumerated().compactMap { i, e in
                e.value.map {
                    var l = $0; l.sourceIndex = i; return l
                }
            } ?? []
        admin = try c.decodeIfPresent(Collected<Admin>.self, forKey: .admin)?.value
        server = try c.decodeIfPresent(Collected<Server>.self, forKey: .server)?.value ?? Server()
        upstreams = try c.decodeIfPresent([String: Collected<Upstream>].self, forKey: .upstreams)?.compactMapValues(\.value) ?? [:]
        routes =
            try c.decodeIfPresent([Collected<Route>].self, forKey: .routes)?.enumerated().compactMap { i, e in
                e.value.map {
                    var r = $0; r.sourceIndex = i; return r
                }
            } ?? []
        accessLog = try c.decodeIfPresent(Collected<AccessLog>.self, forKey: .accessLog)?.value ?? AccessLog()
        auth = try c.decodeIfPresent(Collected<AuthSection>.self, forKey: .auth)?.value ?? AuthSection()
        rateLimits = try c.decodeIfPresent(Collected<RateLimits>.self, forKey: .rateLimits)?.value
    }
}

/// SPEC §2.1.
public struct Listener: Sendable, Codable, Hashable {
    public var name: String
    public var address: String
    public var tls: TLS?
    /// HTTP/2 as well as HTTP/1.1: offered by ALPN with `tls`, else h2c with prior knowledge.
    public var http2 = false
    /// Open client connections at most; one more is closed as soon as it is accepted (not in SPEC).
    public var maxConnections = 20000
    /// Position in the file's `listeners` array (for diagnostics); not part of the file.
    public var sourceIndex = 0

    /// TLS termination: the default certificate, more by SNI name, the lowest version.
    public struct TLS: Sendable, Codable, Hashable {
        public var certificateFile: String
        public var privateKeyFile: String
        public var sni: [String: Pair] = [:]
        public var minVersion: String = "1.2"

        public struct Pair: Sendable, Codable, Hashable {
            public var certificateFile: String
            public var privateKeyFile: String
            enum CodingKeys: String, CodingKey, CaseIterable {
                case certificateFile = "certificate_file"
                case privateKeyFile = "private_key_file"
            }
            public init(from decoder: any Decoder) throws {
                try decoder.rejectUnknownKeys(CodingKeys.self)
                let c = try decoder.container(keyedBy: CodingKeys.self)
                certificateFile = try c.decode(String.self, forKey: .certificateFile)
                privateKeyFile = try c.decode(String.self, forKey: .privateKeyFile)
            }
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case certificateFile = "certificate_file"
            case privateKeyFile = "private_key_file"
            case sni
            case minVersion = "min_version"
        }

        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            certificateFile = try c.decode(String.self, forKey: .certificateFile)
            privateKeyFile = try c.decode(String.self, forKey: .privateKeyFile)
            sni = try c.decodeEntries(Pair.self, forKey: .sni) ?? [:]
            minVersion = try c.decodeIfPresent(String.self, forKey: .minVersion) ?? minVersion
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, address, tls, http2
        case maxConnections = "max_connections"
    }

    public init(name: String, address: String) {
        self.name = name
        self.address = address
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        address = try c.decode(String.self, forKey: .address)
        tls = try c.decodeIfPresent(TLS.self, forKey: .tls)
        http2 = try c.decodeIfPresent(Bool.self, forKey: .http2) ?? false
        maxConnections = try c.decodeIfPresent(Int.self, forKey: .maxConnections) ?? maxConnections
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? address
    }
}

/// SPEC §2.2.
public struct Admin: Sendable, Codable, Hashable {
    public var address: String
    public var tokenEnv: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case address
        case tokenEnv = "token_env"
    }

    public init(address: String, tokenEnv: String? = nil) {
        self.address = address
        self.tokenEnv = tokenEnv
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        address = try c.decodeIfPresent(String.self, forKey: .address) ?? "127.0.0.1:9901"
        tokenEnv = try c.decodeIfPresent(String.self, forKey: .tokenEnv)
    }
}

/// SPEC §2.3, with its defaults.
public struct Server: Sendable, Codable, Hashable {
    public var workers: Int = 0
    public var requestTimeout: ConfigDuration = .seconds(30)
    public var idleTimeout: ConfigDuration = .seconds(60)
    public var headerReadTimeout: ConfigDuration = .seconds(10)
    public var maxHeaderBytes: ByteSize = ByteSize(bytes: 32768)
    public var maxBodyBytes: ByteSize = ByteSize(bytes: 10 * 1024 * 1024)
    public var drainTimeout: ConfigDuration = .seconds(20)
    public var trustedProxies: [String] = []
    public var compression: Compression = Compression()
    /// SETTINGS_MAX_CONCURRENT_STREAMS of HTTP/2 connections (not in SPEC; NGINX's default).
    public var http2MaxConcurrentStreams = 128
    /// A WebSocket tunnel with no byte in either direction for this long is closed.
    public var tunnelIdleTimeout: ConfigDuration = .seconds(300)

    public struct Compression: Sendable, Codable, Hashable {
        public var gzip: Bool = true
        public var minBytes: ByteSize = ByteSize(bytes: 1024)
        enum CodingKeys: String, CodingKey, CaseIterable {
            case gzip
            case minBytes = "min_bytes"
        }
        public init() {}
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            gzip = try c.decodeIfPresent(Bool.self, forKey: .gzip) ?? gzip
            minBytes = try c.decodeIfPresent(ByteSize.self, forKey: .minBytes) ?? minBytes
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case workers
        case requestTimeout = "request_timeout"
        case idleTimeout = "idle_timeout"
        case headerReadTimeout = "header_read_timeout"
        case maxHeaderBytes = "max_header_bytes"
        case maxBodyBytes = "max_body_bytes"
        case drainTimeout = "drain_timeout"
        case trustedProxies = "trusted_proxies"
        case compression
        case http2MaxConcurrentStreams = "http2_max_concurrent_streams"
        case tunnelIdleTimeout = "tunnel_idle_timeout"
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        workers = try c.decodeIfPresent(Int.self, forKey: .workers) ?? workers
        requestTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .requestTimeout) ?? requestTimeout
        idleTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .idleTimeout) ?? idleTimeout
        headerReadTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .headerReadTimeout) ?? headerReadTimeout
        maxHeaderBytes = try c.decodeIfPresent(ByteSize.self, forKey: .maxHeaderBytes) ?? maxHeaderBytes
        maxBodyBytes = try c.decodeIfPresent(ByteSize.self, forKey: .maxBodyBytes) ?? maxBodyBytes
        drainTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .drainTimeout) ?? drainTimeout
        trustedProxies = try c.decodeIfPresent([String].self, forKey: .trustedProxies) ?? trustedProxies
        compression = try c.decodeIfPresent(Compression.self, forKey: .compression) ?? compression
        http2MaxConcurrentStreams = try c.decodeIfPresent(Int.self, forKey: .http2MaxConcurrentStreams) ?? http2MaxConcurrentStreams
        tunnelIdleTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .tunnelIdleTimeout) ?? tunnelIdleTimeout
    }
}

/// SPEC §2.4.
public struct Upstream: Sendable, Codable, Hashable {
    public var targets: [Target]
    public var balancer: String = "round_robin"
    public var hashOn: String?
    public var connectTimeout: ConfigDuration = .seconds(1)
    public var maxConnectionsPerTarget: Int = 256
    public var maxPendingRequests: Int = 1024
    public var healthCheck: HealthCheck?
    public var outlierDetection: OutlierDetection?
    /// TLS to `https://` targets.
    public var tls: UpstreamTLS?
    /// What the targets speak: `http1` (default), `h2` (HTTP/2 over TLS, ALPN `h2`; targets
    /// are https://) or `h2c` (HTTP/2 in clear text, prior knowledge; targets are http://).
    public var `protocol`: String = "http1"

    public struct UpstreamTLS: Sendable, Codable, Hashable {
        /// PEM file of the CAs to trust instead of the system's.
        public var caFile: String?
        /// The name to send (SNI) and verify; by default the target's host.
        public var serverName: String?
        public var verify: Bool = true
        enum CodingKeys: String, CodingKey, CaseIterable {
            case caFile = "ca_file"
            case serverName = "server_name"
            case verify
        }
        public init() {}
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            caFile = try c.decodeIfPresent(String.self, forKey: .caFile)
            serverName = try c.decodeIfPresent(String.self, forKey: .serverName)
            verify = try c.decodeIfPresent(Bool.self, forKey: .verify) ?? true
        }
    }

    public struct Target: Sendable, Codable, Hashable {
        public var url: String
        public var weight: Int = 1
        enum CodingKeys: String, CodingKey, CaseIterable { case url, weight }
        public init(url: String, weight: Int = 1) {
            self.url = url
            self.weight = weight
        }
        public init(from decoder: any Decoder) throws {
            if let single = try? decoder.singleValueContainer(), let s = try? single.decode(String.self) {
                url = s
                return
            }
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            url = try c.decode(String.self, forKey: .url)
            weight = try c.decodeIfPresent(Int.self, forKey: .weight) ?? 1
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case targets, balancer
        case hashOn = "hash_on"
        case connectTimeout = "connect_timeout"
        case maxConnectionsPerTarget = "max_connections_per_target"
        case maxPendingRequests = "max_pending_requests"
        case healthCheck = "health_check"
        case outlierDetection = "outlier_detection"
        case tls
        case `protocol`
    }

    public init(targets: [Target], balancer: String = "round_robin") {
        self.targets = targets
        self.balancer = balancer
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        targets = try c.decode([Target].self, forKey: .targets)
        balancer = try c.decodeIfPresent(String.self, forKey: .balancer) ?? balancer
        hashOn = try c.decodeIfPresent(String.self, forKey: .hashOn)
        connectTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .connectTimeout) ?? connectTimeout
        maxConnectionsPerTarget = try c.decodeIfPresent(Int.self, forKey: .maxConnectionsPerTarget) ?? maxConnectionsPerTarget
        maxPendingRequests = try c.decodeIfPresent(Int.self, forKey: .maxPendingRequests) ?? maxPendingRequests
        healthCheck = try c.decodeIfPresent(HealthCheck.self, forKey: .healthCheck)
        outlierDetection = try c.decodeIfPresent(OutlierDetection.self, forKey: .outlierDetection)
        tls = try c.decodeIfPresent(UpstreamTLS.self, forKey: .tls)
        `protocol` = try c.decodeIfPresent(String.self, forKey: .protocol) ?? `protocol`
    }
}

/// SPEC §2.8.
public struct AccessLog: Sendable, Codable, Hashable {
    public var enabled: Bool = true
    public var format: String = "json"
    public var path: String = "stdout"
    enum CodingKeys: String, CodingKey, CaseIterable { case enabled, format, path }
    public init(enabled: Bool = true, format: String = "json", path: String = "stdout") {
        self.enabled = enabled
        self.format = format
        self.path = path
    }
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? true
        format = try c.decodeIfPresent(String.self, forKey: .format) ?? "json"
        path = try c.decodeIfPresent(String.self, forKey: .path) ?? "stdout"
    }
}

/// Any JSON value, for `respond.body` (and later shaping).
public indirect enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}
