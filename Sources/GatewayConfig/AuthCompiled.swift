/// A JWT provider with its settings resolved (durations in nanoseconds, sources parsed).
public struct JWTProviderSpec: Sendable, Hashable {
    public var name: String
    public var index: Int
    public var config: AuthSection.JWTProvider
    public var sources: [CredentialSource]
    /// Claim name → header name, in claim order.
    public var forwardClaims: [(claim: String, header: String)]

    public static func == (a: JWTProviderSpec, b: JWTProviderSpec) -> Bool { a.name == b.name && a.config == b.config }
    public func hash(into h: inout Hasher) {
        h.combine(name)
        h.combine(config)
    }

    init(name: String, index: Int, config: AuthSection.JWTProvider) {
        self.name = name
        self.index = index
        self.config = config
        sources = config.from.compactMap(CredentialSource.init)
        forwardClaims = config.forwardClaims.sorted { $0.key < $1.key }.map { (claim: $0.key, header: $0.value.lowercased()) }
    }
}

/// What a route asks of a request before it is forwarded: one of the alternatives must hold.
public struct AuthRequirement: Sendable {
    public enum Method: Sendable, Equatable {
        /// Index into `Snapshot.jwtProviders`.
        case jwt(Int)
        case apiKey
    }
    public struct Alternative: Sendable {
        public var method: Method
        public var scopes: [String]
        public var claims: [(name: String, values: [String])]
    }
    public let alternatives: [Alternative]
    /// Every header a forwarded claim is written to, over all alternatives: removed from the
    /// incoming request whatever credential is accepted.
    public let forwardedHeaders: [String]
    /// Readable summary for `/routes` and `/explain`.
    public let summary: String

    init?(_ a: RouteAuth, providers: [String: Int], specs: [JWTProviderSpec]) {
        func alternative(_ x: RouteAuth, outerScopes: [String], outerClaims: [String: [String]]) -> Alternative? {
            let method: Method
            if let j = x.jwt, let i = providers[j] {
                method = .jwt(i)
            } else if x.apiKey == true {
                method = .apiKey
            } else {
                return nil
            }
            var claims = outerClaims
            for (k, v) in x.claims { claims[k] = v }
            return Alternative(
                method: method, scopes: outerScopes + x.scopes,
                claims: claims.sorted { $0.key < $1.key }.map { (name: $0.key, values: $0.value) })
        }
        var alts: [Alternative] = []
        if let any = a.anyOf {
            alts = any.compactMap { alternative($0, outerScopes: a.scopes, outerClaims: a.claims) }
        } else if let one = alternative(a, outerScopes: [], outerClaims: [:]) {
            alts = [one]
        }
        guard !alts.isEmpty else { return nil }
        alternatives = alts
        var headers: [String] = []
        for alt in alts {
            if case .jwt(let i) = alt.method {
                for f in specs[i].forwardClaims where !headers.contains(f.header) { headers.append(f.header) }
            }
        }
        forwardedHeaders = headers
        summary = alts.map { alt in
            var s: String
            switch alt.method {
            case .jwt(let i): s = "jwt:\(specs[i].name)"
            case .apiKey: s = "api_key"
            }
            if !alt.scopes.isEmpty { s += " scopes=\(alt.scopes.joined(separator: ","))" }
            for c in alt.claims { s += " \(c.name)∈{\(c.values.joined(separator: ","))}" }
            return s
        }.joined(separator: " | ")
    }
}

/// A route's CORS policy, with its response header values precomputed.
public struct CORSPolicy: Sendable {
    public let origins: Set<String>
    public let anyOrigin: Bool
    public let credentials: Bool
    public let allowMethods: String
    public let allowHeaders: String
    public let exposeHeaders: String
    public let maxAge: String?

    init(_ c: RouteCORS) {
        origins = Set(c.origins.filter { $0 != "*" })
        anyOrigin = c.origins.contains("*") && !c.credentials
        credentials = c.credentials
        allowMethods = c.methods.map { $0.uppercased() }.joined(separator: ", ")
        allowHeaders = c.headers.map { $0.lowercased() }.joined(separator: ", ")
        exposeHeaders = c.exposeHeaders.map { $0.lowercased() }.joined(separator: ", ")
        maxAge = c.maxAge.map { String($0.nanoseconds / 1_000_000_000) }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, or nil when the
    /// origin is not allowed. An allowed origin is echoed exactly; `*` only without credentials.
    public func allowedOrigin(_ origin: String) -> String? {
        if origins.contains(origin) { return origin }
        return anyOrigin ? "*" : nil
    }
}
