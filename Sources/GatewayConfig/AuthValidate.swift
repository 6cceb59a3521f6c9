import Foundation

extension GatewayFile {
    static let asymmetricAlgorithms: Set<String> = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
    static let hmacAlgorithms: Set<String> = ["HS256", "HS384", "HS512"]
    /// An HMAC secret shorter than the hash output weakens HS256 (RFC 7518 §3.2).
    static let minHMACSecretBytes = 32

    /// `auth` and every route's `auth` and `cors`.
    func validateAuth(environment: [String: String], into out: inout [Diagnostic]) {
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: path, message: message)) }
        func warn(_ path: String, _ message: String) { out.append(Diagnostic(.warning, path: path, message: message)) }

        for (name, j) in auth.jwt.sorted(by: { $0.key < $1.key }) {
            let p = JSONPath.format([.key("auth"), .key("jwt"), .key(name)])
            if j.algorithms.isEmpty { error("\(p).algorithms", "name at least one algorithm") }
            var hmac = false, asymmetric = false
            for (i, a) in j.algorithms.enumerated() {
                if Self.hmacAlgorithms.contains(a) {
                    hmac = true
                } else if Self.asymmetricAlgorithms.contains(a) {
                    asymmetric = true
                } else if a.lowercased() == "none" {
                    error("\(p).algorithms[\(i)]", "unsigned tokens (`none`) are never accepted")
                } else {
                    error(
                        "\(p).algorithms[\(i)]",
                        "unknown algorithm \"\(a)\"; one of \((Self.asymmetricAlgorithms.sorted() + Self.hmacAlgorithms.sorted()).joined(separator: ", "))"
                    )
                }
            }
            if hmac && asymmetric {
                error(
                    "\(p).algorithms",
                    "a provider uses either HMAC (HS*) with `hmac_secret_env` or public keys (RS*, PS*, ES*, EdDSA) from a JWKS, not both")
            }
            let sources = [j.jwksURI != nil, j.jwksFile != nil, j.hmacSecretEnv != nil].filter { $0 }.count
            if sources != 1 {
                error(p, "give exactly one of `jwks_uri`, `jwks_file`, `hmac_secret_env`")
            }
            if hmac && j.hmacSecretEnv == nil { error("\(p).hmac_secret_env", "HS* algorithms need a secret: set `hmac_secret_env`") }
            if asymmetric && j.hmacSecretEnv != nil { error("\(p).hmac_secret_env", "a secret is used only with HS256/384/512") }
            if let uri = j.jwksURI {
                let u = URL(string: uri)
                if u == nil || (u?.scheme != "http" && u?.scheme != "https") || (u?.host ?? "").isEmpty {
                    error("\(p).jwks_uri", "\"\(uri)\" is not an http:// or https:// URL")
                }
            }
            if let f = j.jwksFile, f.isEmpty { error("\(p).jwks_file", "must be a file path") }
            if let env = j.hmacSecretEnv, !environment.isEmpty {
                let secret = environment[env] ?? ""
                if secret.isEmpty {
                    error("\(p).hmac_secret_env", "environment variable \(env) is not set or empty")
                } else {
                    // As long as the hash output of the largest HS algorithm named (RFC 7518 §3.2).
                    let need = j.algorithms.contains("HS512") ? 64 : j.algorithms.contains("HS384") ? 48 : Self.minHMACSecretBytes
                    if secret.utf8.count < need {
                        error(
                            "\(p).hmac_secret_env",
                            "the secret in \(env) must be at least \(need) bytes for \(j.algorithms.joined(separator: ", "))")
                    }
                }
            }
            if j.jwksRefresh.nanoseconds < 1_000_000_000 { error("\(p).jwks_refresh", "must be at least 1s") }
            if j.jwksTimeout.nanoseconds <= 0 { error("\(p).jwks_timeout", "must be more than 0") }
            if j.jwksInitialFetchTimeout.nanoseconds < 0 { error("\(p).jwks_initial_fetch_timeout", "must be 0 or more") }
            if j.clockSkew.nanoseconds < 0 || j.clockSkew.nanoseconds > 600_000_000_000 {
                error("\(p).clock_skew", "must be between 0s and 10m")
            }
            if j.from.isEmpty { error("\(p).from", "name at least one place to read the token from") }
            for (i, f) in j.from.enumerated() where CredentialSource(f) == nil {
                error("\(p).from[\(i)]", "\"\(f)\" is not header:NAME or cookie:NAME")
            }
            for (claim, header) in j.forwardClaims.sorted(by: { $0.key < $1.key }) {
                let hp = p + JSONPath.format([.key("x"), .key("forward_claims"), .key(claim)]).dropFirst(1)
                if claim.isEmpty { error(hp, "the claim name must not be empty") }
                if !isToken(header) {
                    error(hp, "\"\(header)\" is not a header name")
                } else if Self.framingHeaders.contains(header.lowercased()) || header.lowercased() == "host" {
                    error(hp, "`\(header)` is managed by the gateway")
                }
            }
            if j.issuer == nil { warn("\(p).issuer", "no issuer: tokens of any issuer signed by these keys are accepted") }
            if j.audiences.isEmpty { warn("\(p).audiences", "no audiences: tokens meant for any audience are accepted") }
        }

        if let k = auth.apiKeys {
            if !isToken(k.header) { error("auth.api_keys.header", "\"\(k.header)\" is not a header name") }
            var ids = Set<String>(), hashes = Set<String>()
            for (i, key) in k.keys.enumerated() {
                let p = "auth.api_keys.keys[\(i)]"
                if key.id.isEmpty { error("\(p).id", "must not be empty") }
                if !ids.insert(key.id).inserted { error("\(p).id", "key id \"\(key.id)\" is used twice") }
                if HexBytes.decode(key.sha256)?.count != 32 {
                    error("\(p).sha256", "must be the sha256 of the key as 64 hex digits")
                } else if !hashes.insert(key.sha256.lowercased()).inserted {
                    error("\(p).sha256", "the same key is listed twice")
                }
                if let t = key.tier, t.isEmpty { error("\(p).tier", "must not be empty") }
            }
            if k.keys.isEmpty { warn("auth.api_keys.keys", "no keys: every API key is refused") }
        }

        validateLogin(environment: environment, into: &out)

        for r in routes {
            let p = "routes[\(r.sourceIndex)]"
            if let a = r.auth { validateRouteAuth(a, path: "\(p).auth", nested: false, into: &out) }
            if let c = r.cors { validateCORS(c, path: "\(p).cors", into: &out) }
        }
    }

    private func validateRouteAuth(_ a: RouteAuth, path p: String, nested: Bool, into out: inout [Diagnostic]) {
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: path, message: message)) }
        if let l = a.login {
            if nested { error("\(p).login", "a login cannot be one of `any_of`: it sends browsers away to log in") }
            if a.jwt != nil || a.apiKey != nil || a.anyOf != nil || !a.scopes.isEmpty || !a.claims.isEmpty {
                error(p, "`login` stands alone (no `jwt`, `api_key`, `any_of`, `scopes` or `claims` beside it)")
            }
            if auth.login[l] == nil {
                let hint = Array(auth.login.keys).nearest(to: l).map { "; did you mean \"\($0)\"?" } ?? ""
                error("\(p).login", "no login provider named \"\(l)\" in auth.login\(hint)")
            }
            return
        }
        let kinds = [a.jwt != nil, a.apiKey != nil, a.anyOf != nil].filter { $0 }.count
        if kinds != 1 { error(p, "give exactly one of `login`, `jwt`, `api_key`, `any_of`") }
        if let j = a.jwt, auth.jwt[j] == nil {
            let hint = Array(auth.jwt.keys).nearest(to: j).map { "; did you mean \"\($0)\"?" } ?? ""
            error("\(p).jwt", "no JWT provider named \"\(j)\" in auth.jwt\(hint)")
        }
        if let k = a.apiKey {
            if !k { error("\(p).api_key", "leave `auth` out for a public route; `api_key` can only be true") }
            if auth.apiKeys == nil { error("\(p).api_key", "there are no API keys: add auth.api_keys") }
        }
        if let any = a.anyOf {
            if nested { error("\(p).any_of", "`any_of` cannot be nested") }
            if any.isEmpty { error("\(p).any_of", "list at least one way to authenticate") }
            for (i, alt) in any.enumerated() { validateRouteAuth(alt, path: "\(p).any_of[\(i)]", nested: true, into: &out) }
        }
        for (i, s) in a.scopes.enumerated() where s.isEmpty || s.contains(" ") { error("\(p).scopes[\(i)]", "\"\(s)\" is not a scope") }
        for (name, values) in a.claims.sorted(by: { $0.key < $1.key }) where values.isEmpty {
            error(p + JSONPath.format([.key("x"), .key("claims"), .key(name)]).dropFirst(1), "list at least one accepted value")
        }
    }

    /// `auth.login`: endpoints, client, paths, the cookie secret (32 bytes), the JWT provider.
    private func validateLogin(environment: [String: String], into out: inout [Diagnostic]) {
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: path, message: message)) }
        func warn(_ path: String, _ message: String) { out.append(Diagnostic(.warning, path: path, message: message)) }
        var paths = Set<String>()
        for (name, l) in auth.login.sorted(by: { $0.key < $1.key }) {
            let p = JSONPath.format([.key("auth"), .key("login"), .key(name)])
            // On the bytes: these reach `Location` and `Set-Cookie` lines (a Character test for " "
            // or "\r" lets "\r\n" through).
            func isVisible(_ s: String) -> Bool { s.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F } }
            func isURL(_ s: String) -> Bool { (s.hasPrefix("https://") || s.hasPrefix("http://")) && isVisible(s) }
            if !isURL(l.issuer) { error("\(p).issuer", "\"\(l.issuer)\" is not an http(s) URL") }
            for (key, v) in [
                ("authorization_endpoint", l.authorizationEndpoint), ("token_endpoint", l.tokenEndpoint),
                ("end_session_endpoint", l.endSessionEndpoint),
            ] {
                if let v, !isURL(v) { error("\(p).\(key)", "\"\(v)\" is not an http(s) URL") }
            }
            if l.clientID.isEmpty { error("\(p).client_id", "must not be empty") }
            if let u = l.externalURL, !isURL(u) || TargetURL(u) == nil || u.hasSuffix("/") {
                error("\(p).external_url", "\"\(u)\" is not scheme://host[:port] like https://app.example.com")
            }
            let auths = ["client_secret_basic", "client_secret_post", "none"]
            if let a = l.clientAuth, !auths.contains(a) { error("\(p).client_auth", "one of \(auths.joined(separator: ", "))") }
            if l.clientAuth != nil && l.clientAuth != "none" && l.clientSecretEnv == nil {
                error("\(p).client_secret_env", "`\(l.clientAuth ?? "")` needs the client secret: name its variable")
            }
            if let env = l.clientSecretEnv, !environment.isEmpty, (environment[env] ?? "").isEmpty {
                error("\(p).client_secret_env", "environment variable \(env) is not set or empty")
            }
            if !environment.isEmpty {
                let secret = environment[l.cookieSecretEnv] ?? ""
                if secret.isEmpty {
                    warn(
                        "\(p).cookie_secret_env",
                        "environment variable \(l.cookieSecretEnv) is not set: routes that use this login answer 503 until it is (openssl rand -hex 32)"
                    )
                } else if !Self.isCookieSecret(secret) {
                    error(
                        "\(p).cookie_secret_env",
                        "environment variable \(l.cookieSecretEnv) must hold 32 random bytes as 64 hex digits or base64 (openssl rand -hex 32)"
                    )
                }
            }
            for (key, v) in [("callback_path", l.callbackPath), ("logout_path", l.logoutPath), ("post_logout_path", l.postLogoutPath)] {
                if !v.hasPrefix("/") || v.hasPrefix("//") || !isVisible(v) || v.contains(";") {
                    error("\(p).\(key)", "must be a local path starting with /")
                }
            }
            for (key, v) in [("callback_path", l.callbackPath), ("logout_path", l.logoutPath)] where !paths.insert(v).inserted {
                error("\(p).\(key)", "\(v) is used by another login path")
            }
            if l.sessionTTL.nanoseconds <= 0 { error("\(p).session_ttl", "must be more than 0") }
            if auth.jwt[l.jwt] == nil {
                let hint = Array(auth.jwt.keys).nearest(to: l.jwt).map { "; did you mean \"\($0)\"?" } ?? ""
                error("\(p).jwt", "no JWT provider named \"\(l.jwt)\" in auth.jwt (it verifies the ID tokens)\(hint)")
            }
            if !l.scopes.contains("openid") { error("\(p).scopes", "must include \"openid\" (the login needs an ID token)") }
            if !l.cookieSecure { warn("\(p).cookie_secure", "session cookies are sent over plain HTTP too: only for local development") }
        }
    }

    static func isCookieSecret(_ s: String) -> Bool { CookieSecret.bytes(s) != nil }

    private func validateCORS(_ c: RouteCORS, path p: String, into out: inout [Diagnostic]) {
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: path, message: message)) }
        if c.origins.isEmpty { error("\(p).origins", "list the origins allowed (scheme://host[:port]) or \"*\"") }
        for (i, o) in c.origins.enumerated() {
            if o == "*" {
                if c.credentials { error("\(p).origins[\(i)]", "\"*\" cannot be used with credentials; list the origins") }
                continue
            }
            guard let u = TargetURL(o), u.scheme == "http" || u.scheme == "https", !o.hasSuffix("/") else {
                error("\(p).origins[\(i)]", "\"\(o)\" is not an origin like https://app.example.com")
                continue
            }
        }
        for (i, m) in c.methods.enumerated() where !isToken(m) { error("\(p).methods[\(i)]", "\"\(m)\" is not an HTTP method") }
        for (i, h) in c.headers.enumerated() where !isToken(h) { error("\(p).headers[\(i)]", "\"\(h)\" is not a header name") }
        for (i, h) in c.exposeHeaders.enumerated() where !isToken(h) {
            error("\(p).expose_headers[\(i)]", "\"\(h)\" is not a header name")
        }
        if let m = c.maxAge, m.nanoseconds < 0 { error("\(p).max_age", "must be 0 or more") }
    }
}

/// Where a provider reads its token: `header:NAME` (a `Bearer ` prefix is removed) or `cookie:NAME`.
public enum CredentialSource: Sendable, Hashable {
    case header(String)
    case cookie(String)

    public init?(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, !parts[1].isEmpty else { return nil }
        switch parts[0] {
        case "header":
            guard isToken(String(parts[1])) else { return nil }
            self = .header(parts[1].lowercased())
        case "cookie": self = .cookie(String(parts[1]))
        default: return nil
        }
    }
}

/// Hex text to bytes.
public enum HexBytes {
    public static func decode(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// `cookie_secret_env`'s value (SPEC §2.5): 32 bytes written as 64 hex digits or as base64
/// (standard or URL alphabet, padding optional).
public enum CookieSecret {
    public static func bytes(_ secret: String) -> [UInt8]? {
        let t = secret.trimmingCharacters(in: .whitespacesAndNewlines)
        if t.utf8.count == 64 {
            var out: [UInt8] = []
            var high: UInt8?
            for c in t.utf8 {
                guard let v = RequestPath.hexValue(c) else {
                    out = []
                    break
                }
                if let h = high {
                    out.append(h << 4 | v)
                    high = nil
                } else {
                    high = v
                }
            }
            if out.count == 32 { return out }
        }
        var b64 = t.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.hasSuffix("=") { b64.removeLast() }
        while b64.utf8.count % 4 != 0 { b64 += "=" }
        guard let data = Data(base64Encoded: b64), data.count == 32 else { return nil }
        return Array(data)
    }
}
