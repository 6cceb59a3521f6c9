import Foundation
import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

extension ProxyHandler {
    /// The provider sends the browser back: check `state` against its sealed cookie, exchange
    /// the code with the verifier, verify the ID token, set the session, go back.
    func loginCallback(_ ex: Exchange, provider i: Int, query: Substring?, trusted: Bool) {
        guard i < loopContext.loginProviders.count, let context else { return sendError(.unavailable("no login provider"), ex) }
        let provider = loopContext.loginProviders[i]
        let config = provider.spec.config
        var q: [String: String] = [:]
        for (name, value) in Router.queryPairs(query) where !name.isEmpty { q[name] = value }
        let cookies = CookieChunks.parse(ex.head.headers["cookie"])
        // `state` names the login cookie: only one of this gateway's alphabet gets that far (a
        // CR or LF in it would split the answer's Set-Cookie line).
        let state = q["state"] ?? ""
        let validState = LoginFlow.isState(state)
        let name = LoginFlow.loginCookieName(state: validState ? state : "")
        let clears = validState ? [Self.cookie(name, "", path: config.callbackPath, maxAge: 0, secure: config.cookieSecure)] : []
        let clear = clears.first ?? ""
        if let error = q["error"] {
            return loginPage(ex, status: 401, "Login failed", "The identity provider answered: \(error)", setCookies: clears)
        }
        guard validState, let code = q["code"], let sealer = provider.sealer, let value = cookies[name],
            let pending = LoginFlow.open(LoginFlow.PendingLogin.self, value, name: name, binding: provider.binding, with: sealer),
            constantTimeEquals(Array(pending.state.utf8), Array(state.utf8)), pending.expires > loopContext.time.wall()
        else {
            return loginPage(
                ex, status: 400, "Login failed",
                "This login is not valid: it expired, was already used, or did not start here. Please try again.", setCookies: clears)
        }
        let tokens = provider.exchange(code: code, verifier: pending.verifier, redirectURI: pending.redirectURI, on: context.eventLoop)
        holdUntil(ex, tokens) { [self] result in
            guard case .success(let tokens) = result, let idToken = tokens.idToken,
                let jwt = provider.spec.jwtIndex, jwt < loopContext.jwtProviders.count
            else {
                return loginPage(ex, status: 502, "Login failed", "The identity provider did not give tokens.", setCookies: [clear])
            }
            let runtime = loopContext.jwtProviders[jwt]
            let now = loopContext.time.wall()
            switch LoginFlow.checkIDToken(
                idToken, verifier: runtime.verifier, clientID: config.clientID, nonce: pending.nonce, keys: runtime.store.keys, now: now
            )
            {
            case .failure(let failure):
                loopContext.metrics.authFailure(provider: provider.spec.name, reason: failure.rawValue)
                loginPage(ex, status: 401, "Login failed", "The identity provider's ID token was refused.", setCookies: [clear])
            case .success(let identity):
                var fromIDToken: [String: String] = [:]
                for (h, v) in identity.forwarded { fromIDToken[h] = v }
                var session = LoginFlow.Session(
                    subject: identity.subject ?? "",
                    forwarded: sessionForwarded(accessToken: tokens.accessToken, provider: provider, otherwise: fromIDToken),
                    accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, accessExpires: now + (tokens.expiresIn ?? 300),
                    expires: now + Double(config.sessionTTL.nanoseconds) / 1e9)
                session.binding = provider.binding
                var headers: [(String, String)] = [
                    ("location", LocalRedirect.isSafe(pending.returnTo) ? pending.returnTo : "/"), ("cache-control", "no-store"),
                    ("set-cookie", clear),
                ]
                for c in sessionCookies(session, provider: provider, present: cookies) { headers.append(("set-cookie", c)) }
                respondLocally(ex, status: 302, headers: headers, body: [])
            }
        }
    }

    /// Clears the session and sends the browser to the provider's end-session endpoint, or
    /// to `post_logout_path`.
    func logout(_ ex: Exchange, provider i: Int, trusted: Bool, snapshot: Snapshot) {
        guard i < loopContext.loginProviders.count else { return sendError(.unavailable("no login provider"), ex) }
        let provider = loopContext.loginProviders[i]
        let config = provider.spec.config
        let cookies = CookieChunks.parse(ex.head.headers["cookie"])
        var location = config.postLogoutPath
        // On a Host the login may not build a URL on, the session is still cleared: the
        // browser goes to the local `post_logout_path` instead of the provider's end-session.
        if let end = provider.endpoints?.endSession,
            let back = callbackURL(ex, provider: provider, path: config.postLogoutPath, trusted: trusted, snapshot: snapshot)
        {
            location =
                end + (end.contains("?") ? "&" : "?")
                + LoginFlow.form([("client_id", config.clientID), ("post_logout_redirect_uri", back)])
        }
        var headers: [(String, String)] = [("location", location), ("cache-control", "no-store")]
        for c in Self.clearSession(cookies, secure: config.cookieSecure, always: true) { headers.append(("set-cookie", c)) }
        respondLocally(ex, status: 302, headers: headers, body: [])
    }

    /// The session cookie(s) for a session, and the clearing of chunks the browser holds
    /// that the new value no longer uses.
    func sessionCookies(_ session: LoginFlow.Session, provider: LoginProviderRuntime, present: [String: String]) -> [String] {
        let config = provider.spec.config
        guard let sealer = provider.sealer,
            let sealed = LoginFlow.seal(session, name: LoginFlow.sessionCookieName, binding: provider.binding, with: sealer)
        else {
            return []
        }
        let maxAge = Int(max(0, session.expires - loopContext.time.wall()))
        let parts = CookieChunks.split(sealed, name: LoginFlow.sessionCookieName)
        var out = parts.map { Self.cookie($0.0, $0.1, path: "/", maxAge: maxAge, secure: config.cookieSecure) }
        let used = Set(parts.map(\.0))
        for name in present.keys.sorted() where name.hasPrefix(LoginFlow.sessionCookieName + ".") && !used.contains(name) {
            out.append(Self.cookie(name, "", path: "/", maxAge: 0, secure: config.cookieSecure))
        }
        return out
    }

    static func clearSession(_ cookies: [String: String], secure: Bool, always: Bool = false) -> [String] {
        var names = cookies.keys.filter { $0 == LoginFlow.sessionCookieName || $0.hasPrefix(LoginFlow.sessionCookieName + ".") }.sorted()
        if always && !names.contains(LoginFlow.sessionCookieName) { names.insert(LoginFlow.sessionCookieName, at: 0) }
        return names.map { cookie($0, "", path: "/", maxAge: 0, secure: secure) }
    }

    /// `HttpOnly; SameSite=Lax`, `Secure` unless `cookie_secure` is false.
    static func cookie(_ name: String, _ value: String, path: String, maxAge: Int, secure: Bool) -> String {
        "\(name)=\(value); Path=\(path); Max-Age=\(maxAge); HttpOnly; SameSite=Lax" + (secure ? "; Secure" : "")
    }

    /// The absolute URL of a local path for the browser to come back to: on the provider's
    /// `external_url` when set; otherwise on the host the browser used (`X-Forwarded-Proto`
    /// from a trusted proxy gives the scheme), if that host is trusted — a loopback name or
    /// address, or a host a route of this login names in `match.host`. Nil for any other
    /// `Host`: a redirect_uri is never built on a name the client made up.
    func callbackURL(_ ex: Exchange, provider: LoginProviderRuntime, path: String, trusted: Bool, snapshot: Snapshot) -> String? {
        if let external = provider.spec.config.externalURL { return external + path }
        guard let host = ex.authority ?? ex.head.headers.first(name: "host"),
            Self.isTrustedLoginHost(host, login: provider.spec.index, snapshot)
        else { return nil }
        let own = tls ? "https" : "http"
        let proto = trusted ? (ex.head.headers.first(name: "x-forwarded-proto") ?? own) : own
        return "\(proto == "https" ? "https" : "http")://\(host)\(path)"
    }

    /// A loopback name or address (`localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`, any port),
    /// or a host matched by the `match.host` of a route that uses login `login`.
    static func isTrustedLoginHost(_ host: String, login: Int, _ snapshot: Snapshot) -> Bool {
        if let name = HostName.withoutPort(host), HostName.isLoopback(name) { return true }
        return snapshot.routes.contains { $0.login == login && $0.host != nil && $0.matchesHost(Substring(host)) }
    }

    /// The login cannot build a URL on this `Host` (see `callbackURL`).
    func untrustedHost(_ provider: LoginProviderRuntime) -> LocalReply {
        .error(
            .badRequest(
                "the login cannot return to this Host: set auth.login.\(provider.spec.name).external_url, or name the host in a route's match.host"
            ))
    }

    /// The headers a session's requests carry to the upstream: the `forward_claims` of the
    /// login's `jwt` provider taken from the access token when that provider accepts it as a
    /// bearer token (as any bearer request would get them), else `otherwise` (from the ID token).
    func sessionForwarded(accessToken: String, provider: LoginProviderRuntime, otherwise: [String: String]) -> [String: String] {
        guard let jwt = provider.spec.jwtIndex, jwt < loopContext.jwtProviders.count else { return otherwise }
        let runtime = loopContext.jwtProviders[jwt]
        guard case .valid(let id) = runtime.verifier.verify(accessToken, keys: runtime.store.keys, now: loopContext.time.wall())
        else { return otherwise }
        var out: [String: String] = [:]
        for (h, v) in id.forwarded { out[h] = v }
        return out
    }

    /// A small HTML page for the browser (login errors).
    func loginPage(_ ex: Exchange, status: Int, _ title: String, _ message: String, setCookies: [String]) {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
                of: ">", with: "&gt;"
            )
            .replacingOccurrences(of: "\"", with: "&quot;")
        }
        let html =
            "<!doctype html><html><head><title>\(escape(title))</title></head><body><h1>\(escape(title))</h1><p>\(escape(message))</p>"
            + "<p><a href=\"/\">Start again</a></p></body></html>"
        var headers: [(String, String)] = [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")]
        for c in setCookies { headers.append(("set-cookie", c)) }
        respondLocally(ex, status: status, headers: headers, body: Array(html.utf8))
    }
}
