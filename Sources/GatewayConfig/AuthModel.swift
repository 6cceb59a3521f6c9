/// SPEC §2.5: the `auth` section: JWT providers, browser login providers, API keys.
public struct AuthSection: Sendable, Codable, Hashable {
    public var jwt: [String: JWTProvider] = [:]
    public var login: [String: LoginProvider] = [:]
    public var apiKeys: APIKeys?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case jwt, login
        case apiKeys = "api_keys"
    }

    public init(jwt: [String: JWTProvider] = [:], apiKeys: APIKeys? = nil) {
        self.jwt = jwt
        self.apiKeys = apiKeys
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        jwt = try c.decodeIfPresent([String: Collected<JWTProvider>].self, forKey: .jwt)?.compactMapValues(\.value) ?? [:]
        login = try c.decodeIfPresent([String: Collected<LoginProvider>].self, forKey: .login)?.compactMapValues(\.value) ?? [:]
        apiKeys = try c.decodeIfPresent(Collected<APIKeys>.self, forKey: .apiKeys)?.value
    }

    /// One identity provider whose tokens the gateway verifies.
    public struct JWTProvider: Sendable, Codable, Hashable {
        public var issuer: String?
        public var audiences: [String] = []
        public var jwksURI: String?
        public var jwksFile: String?
        public var jwksRefresh: ConfigDuration = .seconds(600)
        public var algorithms: [String] = ["RS256", "PS256", "ES256", "EdDSA"]
        public var hmacSecretEnv: String?
        public var clockSkew: ConfigDuration = .seconds(60)
        public var from: [String] = ["header:authorization"]
        public var forwardClaims: [String: String] = [:]
        /// How long a JWKS fetch may take.
        public var jwksTimeout: ConfigDuration = .seconds(5)
        /// How long `/readyz` waits for the first fetch of the keys (as Envoy's
        /// `initial_fetch_timeout`): after it the gateway is ready, and this provider's routes
        /// answer 401 until keys arrive.
        public var jwksInitialFetchTimeout: ConfigDuration = .seconds(5)

        enum CodingKeys: String, CodingKey, CaseIterable {
            case issuer, audiences
            case jwksURI = "jwks_uri"
            case jwksFile = "jwks_file"
            case jwksRefresh = "jwks_refresh"
            case algorithms
            case hmacSecretEnv = "hmac_secret_env"
            case clockSkew = "clock_skew"
            case from
            case forwardClaims = "forward_claims"
            case jwksTimeout = "jwks_timeout"
            case jwksInitialFetchTimeout = "jwks_initial_fetch_timeout"
        }

        public init(
            issuer: String? = nil, audiences: [String] = [], jwksURI: String? = nil, jwksFile: String? = nil,
            algorithms: [String] = ["RS256", "PS256", "ES256", "EdDSA"], hmacSecretEnv: String? = nil,
            from: [String] = ["header:authorization"],
            forwardClaims: [String: String] = [:]
        ) {
            self.issuer = issuer
            self.audiences = audiences
            self.jwksURI = jwksURI
            self.jwksFile = jwksFile
            self.algorithms = algorithms
            self.hmacSecretEnv = hmacSecretEnv
            self.from = from
            self.forwardClaims = forwardClaims
        }

        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            issuer = try c.decodeIfPresent(String.self, forKey: .issuer)
            audiences = try c.decodeIfPresent([String].self, forKey: .audiences) ?? []
            jwksURI = try c.decodeIfPresent(String.self, forKey: .jwksURI)
            jwksFile = try c.decodeIfPresent(String.self, forKey: .jwksFile)
            jwksRefresh = try c.decodeIfPresent(ConfigDuration.self, forKey: .jwksRefresh) ?? jwksRefresh
            algorithms = try c.decodeIfPresent([String].self, forKey: .algorithms) ?? algorithms
            hmacSecretEnv = try c.decodeIfPresent(String.self, forKey: .hmacSecretEnv)
            clockSkew = try c.decodeIfPresent(ConfigDuration.self, forKey: .clockSkew) ?? clockSkew
            from = try c.decodeIfPresent([String].self, forKey: .from) ?? from
            forwardClaims = try c.decodeEntries(String.self, forKey: .forwardClaims) ?? [:]
            jwksTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .jwksTimeout) ?? jwksTimeout
            jwksInitialFetchTimeout =
                try c.decodeIfPresent(ConfigDuration.self, forKey: .jwksInitialFetchTimeout) ?? jwksInitialFetchTimeout
        }
    }

    /// A browser login (OAuth 2.0 authorization code with PKCE, OpenID Connect).
    public struct LoginProvider: Sendable, Codable, Hashable {
        public var issuer: String
        public var authorizationEndpoint: String?
        public var tokenEndpoint: String?
        public var endSessionEndpoint: String?
        public var clientID: String
        public var clientSecretEnv: String?
        /// `client_secret_basic`, `client_secret_post` or `none`; by default basic with a
        /// secret, none without.
        public var clientAuth: String?
        public var scopes: [String] = ["openid"]
        public var callbackPath: String = "/oauth2/callback"
        public var logoutPath: String = "/oauth2/logout"
        public var cookieSecretEnv: String
        public var sessionTTL: ConfigDuration = .seconds(8 * 3600)
        public var cookieSecure: Bool = true
        /// The JWT provider that verifies the ID tokens (its keys; `aud` is the client id).
        public var jwt: String
        /// Where the browser goes after logout when the provider has no end-session endpoint.
        public var postLogoutPath: String = "/"
        /// `scheme://host[:port]` the browser reaches the gateway at: the `redirect_uri` and the
        /// logout return URL are built on it. Without it they are built on the request's
        /// `Host`, and only a trusted one: a loopback name or address, or a host a login route
        /// names in `match.host`.
        public var externalURL: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case issuer
            case authorizationEndpoint = "authorization_endpoint"
            case tokenEndpoint = "token_endpoint"
            case endSessionEndpoint = "end_session_endpoint"
            case clientID = "client_id"
            case clientSecretEnv = "client_secret_env"
            case clientAuth = "client_auth"
            case scopes
            case callbackPath = "callback_path"
            case logoutPath = "logout_path"
            case cookieSecretEnv = "cookie_secret_env"
            case sessionTTL = "session_ttl"
            case cookieSecure = "cookie_secure"
            case jwt
            case postLogoutPath = "post_logout_path"
            case externalURL = "external_url"
        }

        public init(issuer: String, clientID: String, cookieSecretEnv: String, jwt: String) {
            self.issuer = issuer
            self.clientID = clientID
            self.cookieSecretEnv = cookieSecretEnv
            self.jwt = jwt
        }

        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            issuer = try c.decode(String.self, forKey: .issuer)
            authorizationEndpoint = try c.decodeIfPresent(String.self, forKey: .authorizationEndpoint)
            tokenEndpoint = try c.decodeIfPresent(String.self, forKey: .tokenEndpoint)
            endSessionEndpoint = try c.decodeIfPresent(String.self, forKey: .endSessionEndpoint)
            clientID = try c.decode(String.self, forKey: .clientID)
            clientSecretEnv = try c.decodeIfPresent(String.self, forKey: .clientSecretEnv)
            clientAuth = try c.decodeIfPresent(String.self, forKey: .clientAuth)
            scopes = try c.decodeIfPresent([String].self, forKey: .scopes) ?? scopes
            callbackPath = try c.decodeIfPresent(String.self, forKey: .callbackPath) ?? callbackPath
            logoutPath = try c.decodeIfPresent(String.self, forKey: .logoutPath) ?? logoutPath
            cookieSecretEnv = try c.decode(String.self, forKey: .cookieSecretEnv)
            sessionTTL = try c.decodeIfPresent(ConfigDuration.self, forKey: .sessionTTL) ?? sessionTTL
            cookieSecure = try c.decodeIfPresent(Bool.self, forKey: .cookieSecure) ?? true
            jwt = try c.decode(String.self, forKey: .jwt)
            postLogoutPath = try c.decodeIfPresent(String.self, forKey: .postLogoutPath) ?? postLogoutPath
            externalURL = try c.decodeIfPresent(String.self, forKey: .externalURL)
        }
    }

    /// Static API keys, stored as the sha256 of the key.
    public struct APIKeys: Sendable, Codable, Hashable {
        public var header: String = "x-api-key"
        public var keys: [Key] = []

        public struct Key: Sendable, Codable, Hashable {
            public var id: String
            public var sha256: String
            public var tier: String?
            enum CodingKeys: String, CodingKey, CaseIterable { case id, sha256, tier }
            public init(id: String, sha256: String, tier: String? = nil) {
                self.id = id
                self.sha256 = sha256
                self.tier = tier
            }
            public init(from decoder: any Decoder) throws {
                try decoder.rejectUnknownKeys(CodingKeys.self)
                let c = try decoder.container(keyedBy: CodingKeys.self)
                id = try c.decode(String.self, forKey: .id)
                sha256 = try c.decode(String.self, forKey: .sha256)
                tier = try c.decodeIfPresent(String.self, forKey: .tier)
            }
        }

        enum CodingKeys: String, CodingKey, CaseIterable { case header, keys }
        public init(header: String = "x-api-key", keys: [Key]) {
            self.header = header
            self.keys = keys
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            header = try c.decodeIfPresent(String.self, forKey: .header) ?? header
            keys = try c.decodeIfPresent([Key].self, forKey: .keys) ?? []
        }
    }
}

/// A route's `auth`: one JWT provider, the API keys, or `any_of` several of those; `scopes`
/// and `claims` are required of whichever credential is accepted.
public struct RouteAuth: Sendable, Codable, Hashable {
    /// A browser login provider: the route needs a session (and sends browsers to log in).
    public var login: String?
    public var jwt: String?
    public var apiKey: Bool?
    public var anyOf: [RouteAuth]?
    public var scopes: [String] = []
    public var claims: [String: [String]] = [:]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case login, jwt
        case apiKey = "api_key"
        case anyOf = "any_of"
        case scopes, claims
    }

    public init(jwt: String? = nil, apiKey: Bool? = nil, anyOf: [RouteAuth]? = nil, scopes: [String] = [], claims: [String: [String]] = [:])
    {
        self.jwt = jwt
        self.apiKey = apiKey
        self.anyOf = anyOf
        self.scopes = scopes
        self.claims = claims
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        login = try c.decodeIfPresent(String.self, forKey: .login)
        jwt = try c.decodeIfPresent(String.self, forKey: .jwt)
        apiKey = try c.decodeIfPresent(Bool.self, forKey: .apiKey)
        anyOf = try c.decodeIfPresent([RouteAuth].self, forKey: .anyOf)
        scopes = try c.decodeIfPresent([String].self, forKey: .scopes) ?? []
        claims = try c.decodeIfPresent([String: [String]].self, forKey: .claims) ?? [:]
    }
}

/// A route's `cors` (SPEC §2.7).
public struct RouteCORS: Sendable, Codable, Hashable {
    public var origins: [String] = []
    public var methods: [String] = ["GET", "HEAD", "POST"]
    public var headers: [String] = []
    public var exposeHeaders: [String] = []
    public var credentials: Bool = false
    public var maxAge: ConfigDuration?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case origins, methods, headers
        case exposeHeaders = "expose_headers"
        case credentials
        case maxAge = "max_age"
    }

    public init(origins: [String], methods: [String] = ["GET", "HEAD", "POST"], headers: [String] = [], credentials: Bool = false) {
        self.origins = origins
        self.methods = methods
        self.headers = headers
        self.credentials = credentials
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        origins = try c.decodeIfPresent([String].self, forKey: .origins) ?? []
        methods = try c.decodeIfPresent([String].self, forKey: .methods) ?? methods
        headers = try c.decodeIfPresent([String].self, forKey: .headers) ?? []
        exposeHeaders = try c.decodeIfPresent([String].self, forKey: .exposeHeaders) ?? []
        credentials = try c.decodeIfPresent(Bool.self, forKey: .credentials) ?? false
        maxAge = try c.decodeIfPresent(ConfigDuration.self, forKey: .maxAge)
    }
}
