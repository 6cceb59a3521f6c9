/// SPEC §2.7: one entry of `routes`.
public struct Route: Sendable, Codable, Hashable {
    /// Position in the file's `routes` array (for diagnostics); not part of the file.
    public var sourceIndex = 0
    public var name: String?
    public var match: Match
    public var upstream: String?
    public var rewrite: Rewrite?
    public var timeout: ConfigDuration?
    /// For a streaming response (`text/event-stream`, gRPC, a chunked body), the longest
    /// time without a byte in either direction; it replaces `timeout` once the response
    /// head came.
    public var streamIdleTimeout: ConfigDuration?
    public var requestHeaders: HeaderOps?
    public var responseHeaders: HeaderOps?
    public var respond: Respond?
    public var auth: RouteAuth?
    public var cors: RouteCORS?
    public var rateLimit: RouteRateLimit?
    public var retry: RetryConfig?
    public var fault: FaultConfig?
    public var split: SplitConfig?
    public var mirror: MirrorConfig?
    public var shape: ShapeConfig?
    public var aggregate: AggregateConfig?
    /// Send the client's request trailers on to the upstream (default false: dropped, as
    /// NGINX and Envoy do). Even then, trailers that name a forwarded-claim, credential,
    /// framing, hop-by-hop or forwarding header are never sent.
    public var forwardRequestTrailers = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, match, upstream, rewrite, timeout
        case forwardRequestTrailers = "forward_request_trailers"
        case streamIdleTimeout = "stream_idle_timeout"
        case requestHeaders = "request_headers"
        case responseHeaders = "response_headers"
        case respond, auth, cors
        case rateLimit = "rate_limit"
        case retry, fault, split, mirror, shape, aggregate
    }

    static let later: Set<String> = []

    public init(name: String? = nil, match: Match = Match(), upstream: String? = nil, respond: Respond? = nil) {
        self.name = name
        self.match = match
        self.upstream = upstream
        self.respond = respond
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self, reserved: Self.later)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        match = try c.decodeIfPresent(Match.self, forKey: .match) ?? Match()
        upstream = try c.decodeIfPresent(String.self, forKey: .upstream)
        rewrite = try c.decodeIfPresent(Rewrite.self, forKey: .rewrite)
        timeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .timeout)
        streamIdleTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .streamIdleTimeout)
        requestHeaders = try c.decodeIfPresent(HeaderOps.self, forKey: .requestHeaders)
        responseHeaders = try c.decodeIfPresent(HeaderOps.self, forKey: .responseHeaders)
        respond = try c.decodeIfPresent(Respond.self, forKey: .respond)
        auth = try c.decodeIfPresent(RouteAuth.self, forKey: .auth)
        cors = try c.decodeIfPresent(RouteCORS.self, forKey: .cors)
        rateLimit = try c.decodeIfPresent(RouteRateLimit.self, forKey: .rateLimit)
        retry = try c.decodeIfPresent(RetryConfig.self, forKey: .retry)
        fault = try c.decodeIfPresent(FaultConfig.self, forKey: .fault)
        split = try c.decodeIfPresent(SplitConfig.self, forKey: .split)
        mirror = try c.decodeIfPresent(MirrorConfig.self, forKey: .mirror)
        shape = try c.decodeIfPresent(ShapeConfig.self, forKey: .shape)
        aggregate = try c.decodeIfPresent(AggregateConfig.self, forKey: .aggregate)
        forwardRequestTrailers = try c.decodeIfPresent(Bool.self, forKey: .forwardRequestTrailers) ?? false
    }

    public struct Match: Sendable, Codable, Hashable {
        public var path: String?
        public var pathPrefix: String?
        public var methods: [String]?
        public var host: String?
        public var headers: [String: String]?
        public var query: [String: String]?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case path
            case pathPrefix = "path_prefix"
            case methods, host, headers, query
        }

        public init(
            path: String? = nil, pathPrefix: String? = nil, methods: [String]? = nil, host: String? = nil, headers: [String: String]? = nil,
            query: [String: String]? = nil
        ) {
            self.path = path
            self.pathPrefix = pathPrefix
            self.methods = methods
            self.host = host
            self.headers = headers
            self.query = query
        }

        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            path = try c.decodeIfPresent(String.self, forKey: .path)
            pathPrefix = try c.decodeIfPresent(String.self, forKey: .pathPrefix)
            methods = try c.decodeIfPresent([String].self, forKey: .methods)
            host = try c.decodeIfPresent(String.self, forKey: .host)
            headers = try c.decodeEntries(String.self, forKey: .headers)
            query = try c.decodeEntries(String.self, forKey: .query)
        }
    }

    public struct Rewrite: Sendable, Codable, Hashable {
        public var stripPrefix: String?
        public var addPrefix: String?
        public var host: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case stripPrefix = "strip_prefix"
            case addPrefix = "add_prefix"
            case host
        }
        public init(stripPrefix: String? = nil, addPrefix: String? = nil, host: String? = nil) {
            self.stripPrefix = stripPrefix
            self.addPrefix = addPrefix
            self.host = host
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            stripPrefix = try c.decodeIfPresent(String.self, forKey: .stripPrefix)
            addPrefix = try c.decodeIfPresent(String.self, forKey: .addPrefix)
            host = try c.decodeIfPresent(String.self, forKey: .host)
        }
    }

    public struct HeaderOps: Sendable, Codable, Hashable {
        public var set: [String: String] = [:]
        public var add: [String: String] = [:]
        public var remove: [String] = []
        enum CodingKeys: String, CodingKey, CaseIterable { case set, add, remove }
        public init(set: [String: String] = [:], add: [String: String] = [:], remove: [String] = []) {
            self.set = set
            self.add = add
            self.remove = remove
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            set = try c.decodeEntries(String.self, forKey: .set) ?? [:]
            add = try c.decodeEntries(String.self, forKey: .add) ?? [:]
            remove = try c.decodeIfPresent([String].self, forKey: .remove) ?? []
        }
    }

    public struct Respond: Sendable, Codable, Hashable {
        public var status: Int = 200
        public var headers: [String: String] = [:]
        public var body: JSONValue?
        enum CodingKeys: String, CodingKey, CaseIterable { case status, headers, body }
        public init(status: Int = 200, headers: [String: String] = [:], body: JSONValue? = nil) {
            self.status = status
            self.headers = headers
            self.body = body
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            status = try c.decodeIfPresent(Int.self, forKey: .status) ?? 200
            headers = try c.decodeEntries(String.self, forKey: .headers) ?? [:]
            body = try c.decodeIfPresent(JSONValue.self, forKey: .body)
        }
    }
}
