import Foundation
import GatewayAuth
import GatewayConfig
import NIOHTTP1

/// What `/explain` says about a route's auth and rate limit for one request.
public struct LimitExplanation: Sendable {
    /// The credential that would be accepted (`jwt:idp sub=alice`, `api_key:partner-a`).
    public var credential: String?
    /// Why the credentials given would be refused.
    public var authFailure: String?
    /// `none` (no rate_limits), `off` (`"rate_limit": false`), `unlimited`, or `limited`.
    public var limit: String
    public var tier: String?
    public var key: String?
    public var perIP: Bool
    public var shadow: Bool
}

extension GatewayServer {
    /// The tier and key a request with these headers from `clientIP` would be counted under.
    /// Tokens are checked against the keys held now (no fetch), API keys against the file.
    public func explainLimits(
        _ snapshot: Snapshot, route: CompiledRoute, headers list: [(String, String)], clientIP: String
    ) -> LimitExplanation {
        var headers = HTTPHeaders()
        for (n, v) in list where HeaderBytes.isToken(n) && HeaderBytes.isFieldValue(v) { headers.add(name: n, value: v) }
        var out = LimitExplanation(limit: "none", perIP: false, shadow: false)
        var identity: Identity?
        if let auth = route.auth {
            let providers = shared.auth.providers(for: snapshot)
            let keys = APIKeyTable(snapshot.file.auth.apiKeys)
            var failure: AuthFailure?
            let now = Date().timeIntervalSince1970
            for alt in auth.alternatives where identity == nil {
                switch LoopContext.check(alt.method, headers: headers, providers: providers, apiKeys: keys, now: now, cache: nil) {
                case .valid(let id): identity = id
                case .invalid(let f): if f != .missing || failure == nil { failure = f }
                case .unknownKid: failure = .unknownKid
                }
            }
            if let id = identity {
                out.credential = id.kind == .apiKey ? "api_key:\(id.subject ?? "")" : "jwt:\(id.provider) sub=\(id.subject ?? "")"
            } else {
                out.authFailure = (failure ?? .missing).description
            }
        }
        guard let policy = snapshot.rateLimits else { return out }
        if route.rateLimit.isDisabled {
            out.limit = "off"
            return out
        }
        out.perIP = policy.perIP != nil
        out.shadow = route.rateLimit.shadow ?? policy.shadow
        guard let tier = RateLimitKeys.tier(policy, route: route, identity: identity, headers: headers) else { return out }
        out.tier = tier.name
        out.limit = tier.isUnlimited ? "unlimited" : "limited"
        out.key = RateLimitKeys.key(policy, identity: identity, clientIP: clientIP, headers: headers)
        return out
    }
}
