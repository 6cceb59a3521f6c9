import Foundation
import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

extension ProxyHandler {
    /// A route with `auth: { "login": … }`: a valid session goes on (its access token
    /// refreshed first when it has expired); anything else is sent to log in.
    func loginGate(_ ex: Exchange, _ a: Admission) -> PhaseResult {
        guard let i = ex.route?.login else { return .next }
        guard i < loopContext.loginProviders.count else { return .reply(.error(.unavailable("the login provider is not configured"))) }
        let provider = loopContext.loginProviders[i]
        let now = loopContext.time.wall()
        let cookies = CookieChunks.parse(ex.head.headers["cookie"])
        var refreshed: Result<LoginFlow.Tokens, any Error>?
        if case .tokens(let result)? = ex.resumed {
            ex.resumed = nil
            refreshed = result
        }
        if let sealer = provider.sealer, let value = CookieChunks.join(name: LoginFlow.sessionCookieName, cookies: cookies),
            let session = LoginFlow.openSession(value, binding: provider.binding, with: sealer),
            session.expires > now
        {
            switch refreshed {
            case .success(let tokens)?:
                var renewed = session
                renewed.accessToken = tokens.accessToken
                renewed.refreshToken = tokens.refreshToken ?? session.refreshToken
                renewed.accessExpires = loopContext.time.wall() + (tokens.expiresIn ?? 300)
                renewed.forwarded = sessionForwarded(accessToken: tokens.accessToken, provider: provider, otherwise: session.forwarded)
                ex.setCookies = sessionCookies(renewed, provider: provider, present: cookies)
                admitSession(ex, renewed, provider: provider)
                return .next
            case .failure?:
                // The refresh token is spent or revoked: log in again.
                return .reply(startLogin(ex, provider: provider, clearing: cookies, snapshot: a.snapshot))
            case nil:
                break
            }
            // Refreshed a second before it expires, so the upstream never gets an expired token.
            if session.accessExpires > now + 1 {
                admitSession(ex, session, provider: provider)
                return .next
            }
            if let refreshToken = session.refreshToken, let context {
                return hold(ex, a, at: .loginGate, until: provider.refresh(refreshToken, on: context.eventLoop)) { .tokens($0) }
            }
        }
        return .reply(startLogin(ex, provider: provider, clearing: cookies, snapshot: a.snapshot))
    }

    func admitSession(_ ex: Exchange, _ session: LoginFlow.Session, provider: LoginProviderRuntime) {
        var forwarded = session.forwarded.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        forwarded.append(("authorization", "Bearer " + session.accessToken))
        ex.identity = Identity(
            kind: .session, provider: provider.spec.name, subject: session.subject, claims: ["sub": .string(session.subject)], scopes: [],
            forwarded: forwarded, validUntil: session.accessExpires)
    }

    /// A browser (it accepts HTML) is sent to the provider with a fresh state, nonce and PKCE
    /// verifier kept in a sealed cookie bound to that state; anything else gets 401.
    func startLogin(_ ex: Exchange, provider: LoginProviderRuntime, clearing cookies: [String: String], snapshot: Snapshot) -> LocalReply {
        let accepts = ex.head.headers["accept"].contains { $0.lowercased().contains("text/html") }
        let config = provider.spec.config
        guard accepts, ex.head.method == .GET || ex.head.method == .HEAD else {
            return .error(
                .init(.unauthorized, "unauthorized", "a login session is required", source: .downstream),
                extraHeaders: [("www-authenticate", "Bearer error=\"invalid_token\", error_description=\"a login session is required\"")])
        }
        guard let sealer = provider.sealer, let endpoints = provider.endpoints else {
            return .error(.unavailable("the identity provider is not reachable yet"))
        }
        let state = PKCE.token()
        let nonce = PKCE.token()
        let verifier = PKCE.verifier()
        let returnTo = LocalRedirect.isSafe(ex.head.uri) ? ex.head.uri : "/"
        guard let redirectURI = callbackURL(ex, provider: provider, path: config.callbackPath, trusted: false, snapshot: snapshot) else {
            return untrustedHost(provider)
        }
        let pending = LoginFlow.PendingLogin(
            state: state, nonce: nonce, verifier: verifier, returnTo: returnTo, expires: loopContext.time.wall() + 600)
        var withURI = pending
        withURI.redirectURI = redirectURI
        let name = LoginFlow.loginCookieName(state: state)
        guard let sealed = LoginFlow.seal(withURI, name: name, binding: provider.binding, with: sealer) else {
            return .error(.unavailable("the login could not be started"))
        }
        let url = LoginFlow.authorizeURL(
            endpoint: endpoints.authorization, clientID: config.clientID, redirectURI: redirectURI, scopes: config.scopes, state: state,
            nonce: nonce, verifier: verifier)
        var headers: [(String, String)] = [("location", url), ("cache-control", "no-store")]
        headers.append(("set-cookie", Self.cookie(name, sealed, path: config.callbackPath, maxAge: 600, secure: config.cookieSecure)))
        // A session that could not be used is cleared.
        for c in Self.clearSession(cookies, secure: config.cookieSecure) { headers.append(("set-cookie", c)) }
        return .response(status: 302, headers: headers, body: [])
    }

}
