import Foundation
import GatewayAuth
import GatewayConfig
import NIOCore
import NIOHTTP1

/// What a route's `auth` decided for one request.
enum AuthDecision {
    case allow(Identity)
    /// 401 or 403, with the provider and reason counted in `gateway_auth_failures_total`.
    case deny(status: HTTPResponseStatus, failure: AuthFailure, provider: String, scopes: [String])
    /// A token named a key the provider does not hold: decide again once this fetch is done.
    case wait(EventLoopFuture<Void>)
}

extension LoopContext {
    /// Checks the credentials of a request against `requirement`: the first alternative whose
    /// credential is present and valid and has the scopes and claims asked for admits it.
    func authenticate(_ requirement: AuthRequirement, headers: HTTPHeaders, allowFetch: Bool) -> AuthDecision {
        let now = time.wall()
        var denied: (status: HTTPResponseStatus, failure: AuthFailure, provider: String, scopes: [String])?
        func note(_ status: HTTPResponseStatus, _ f: AuthFailure, _ provider: String, _ scopes: [String] = []) {
            // A valid credential without a scope (403) says more than a bad one, which says
            // more than none.
            func rank(_ s: HTTPResponseStatus, _ f: AuthFailure) -> Int { s == .forbidden ? 3 : (f == .missing ? 1 : 2) }
            if let d = denied, rank(d.status, d.failure) >= rank(status, f) { return }
            denied = (status, f, provider, scopes)
        }
        for alt in requirement.alternatives {
            let identity: Identity
            let providerName = Self.providerName(alt.method, providers: jwtProviders)
            switch Self.check(alt.method, headers: headers, providers: jwtProviders, apiKeys: apiKeys, now: now, cache: tokenCache) {
            case .valid(let id):
                identity = id
            case .invalid(let f):
                note(.unauthorized, f, providerName)
                continue
            case .unknownKid(let store):
                if allowFetch, let fetch = store.fetchForUnknownKid(on: loop) { return .wait(fetch) }
                note(.unauthorized, .unknownKid, providerName)
                continue
            }
            if alt.scopes.contains(where: { !identity.scopes.contains($0) }) {
                note(.forbidden, .scope, providerName, alt.scopes)
                continue
            }
            if alt.claims.contains(where: { !identity.claim($0.name, isOneOf: $0.values) }) {
                note(.forbidden, .claim, providerName)
                continue
            }
            return .allow(identity)
        }
        let d = denied ?? (.unauthorized, .missing, "none", [])
        return .deny(status: d.status, failure: d.failure, provider: d.provider, scopes: d.scopes)
    }

    /// What one way of authenticating makes of a request's credential.
    enum CredentialCheck {
        case valid(Identity)
        /// Absent (`missing`) or refused.
        case invalid(AuthFailure)
        /// A token whose `kid` the provider's keys do not hold.
        case unknownKid(JWKSStore)
    }

    static func providerName(_ method: AuthRequirement.Method, providers: [JWTProviderRuntime]) -> String {
        switch method {
        case .jwt(let i): return i < providers.count ? providers[i].spec.name : "none"
        case .apiKey: return "api_key"
        }
    }

    /// Checks the credential `method` reads. With a `cache` (the request path), a token
    /// verified before costs a lookup, and a new verification is remembered; `/explain`
    /// passes none.
    static func check(
        _ method: AuthRequirement.Method, headers: HTTPHeaders, providers: [JWTProviderRuntime], apiKeys: APIKeyTable, now: Double,
        cache: VerifiedTokenCache?
    ) -> CredentialCheck {
        switch method {
        case .jwt(let index):
            guard index < providers.count else { return .invalid(.noKeys) }
            let provider = providers[index]
            guard let token = token(in: headers, from: provider.spec.sources) else { return .invalid(.missing) }
            if token.utf8.count > TokenVerifier.maxTokenBytes { return .invalid(.tooLarge) }
            let digest = cache.map { _ in TokenDigest(token) }
            if let cache, let digest, let cached = cache.lookup(provider: provider, digest: digest, now: now) { return .valid(cached) }
            let generation = provider.store.generation
            switch provider.verifier.verify(token, keys: provider.store.keys, now: now) {
            case .valid(let id):
                if let cache, let digest { cache.insert(id, provider: provider, digest: digest, keyGeneration: generation, now: now) }
                return .valid(id)
            case .invalid(let f): return .invalid(f)
            case .unknownKid: return .unknownKid(provider.store)
            }
        case .apiKey:
            guard let key = headers.first(name: apiKeys.header), !key.isEmpty else { return .invalid(.missing) }
            guard let entry = apiKeys.lookup(key) else { return .invalid(.unknownKey) }
            return .valid(apiKeys.identity(entry))
        }
    }

    /// The token a provider reads: from `Authorization: Bearer …` (another scheme is no
    /// token), another header (a `Bearer ` prefix removed), or a cookie.
    static func token(in headers: HTTPHeaders, from sources: [CredentialSource]) -> Substring? {
        for source in sources {
            switch source {
            case .header(let name):
                guard let value = headers.first(name: name) else { continue }
                if let t = afterBearer(value) {
                    if !t.isEmpty { return t }
                } else if name != "authorization", !value.isEmpty {
                    return Substring(value)
                }
            case .cookie(let name):
                if let c = CookieChunks.value(named: name, in: headers["cookie"]), !c.isEmpty { return Substring(c) }
            }
        }
        return nil
    }
}

extension LoopContext {
    /// What follows `Bearer ` (any case) and any further spaces; nil when the value does not
    /// start with it. On the bytes: a token is ASCII, and walking `Character`s cost a
    /// grapheme break check per step on every request.
    static func afterBearer(_ value: String) -> Substring? {
        let u = value.utf8
        var i = u.startIndex
        for expected in "bearer ".utf8 {
            guard i < u.endIndex, u[i] | 0x20 == expected else { return nil }
            i = u.index(after: i)
        }
        while i < u.endIndex, u[i] == UInt8(ascii: " ") { i = u.index(after: i) }
        return Substring(u[i...])
    }
}

extension AuthDecision {
    /// The `WWW-Authenticate` challenge of a refusal (RFC 6750 §3).
    static func challenge(status: HTTPResponseStatus, failure: AuthFailure, scopes: [String]) -> String {
        if status == .forbidden {
            var s = "Bearer realm=\"gateway\", error=\"insufficient_scope\""
            if !scopes.isEmpty { s += ", scope=\"\(scopes.joined(separator: " "))\"" }
            return s
        }
        return "Bearer realm=\"gateway\", error=\"invalid_token\", error_description=\"\(failure.description)\""
    }
}
