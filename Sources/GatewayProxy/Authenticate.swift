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
        let now = Date().timeIntervalSince1970
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
            let providerName: String
            switch alt.method {
            case .jwt(let index):
                guard index < jwtProviders.count else { continue }
                let provider = jwtProviders[index]
                providerName = provider.spec.name
                guard let token = Self.token(in: headers, from: provider.spec.sources) else {
                    note(.unauthorized, .missing, providerName)
                    continue
                }
                if token.utf8.count > TokenVerifier.maxTokenBytes {
                    note(.unauthorized, .tooLarge, providerName)
                    continue
                }
                let digest = TokenDigest(token)
                if let cached = tokenCache.lookup(provider: provider, digest: digest, now: now) {
                    identity = cached
                } else {
                    let generation = provider.store.generation
                    switch provider.verifier.verify(token, keys: provider.store.keys, now: now) {
                    case .valid(let id):
                        tokenCache.insert(id, provider: provider, digest: digest, keyGeneration: generation, now: now)
                        identity = id
                    case .invalid(let f):
                        note(.unauthorized, f, providerName)
                        continue
                    case .unknownKid:
                        if allowFetch, let fetch = provider.store.fetchForUnknownKid(on: loop) { return .wait(fetch) }
                        note(.unauthorized, .unknownKid, providerName)
                        continue
                    }
                }
            case .apiKey:
                providerName = "api_key"
                let table = apiKeys
                guard let key = headers.first(name: table.header), !key.isEmpty else {
                    note(.unauthorized, .missing, providerName)
                    continue
                }
                guard let entry = table.lookup(key) else {
                    note(.unauthorized, .unknownKey, providerName)
                    continue
                }
                identity = table.identity(entry)
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

    /// The token a provider reads: from `Authorization: Bearer …` (another scheme is no
    /// token), another header (a `Bearer ` prefix removed), or a cookie.
    static func token(in headers: HTTPHeaders, from sources: [CredentialSource]) -> Substring? {
        for source in sources {
            switch source {
            case .header(let name):
                guard let value = headers.first(name: name) else { continue }
                var v = Substring(value)
                if v.utf8.count > 7, v.utf8.prefix(7).elementsEqual("bearer ".utf8, by: { $0 | 0x20 == $1 }) {
                    v = v.dropFirst(7).drop { $0 == " " }
                } else if name == "authorization" {
                    continue
                }
                if !v.isEmpty { return v }
            case .cookie(let name):
                if let c = ProxyHandler.cookie(named: name, in: headers), !c.isEmpty { return Substring(c) }
            }
        }
        return nil
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
