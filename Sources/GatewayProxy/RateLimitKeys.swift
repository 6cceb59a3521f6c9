import GatewayAuth
import GatewayConfig
import NIOHTTP1

/// Which tier a request is counted in and under which key (SPEC §2.6).
enum RateLimitKeys {
    /// The first source of `tier_from` that yields the name of a tier (the route's own tiers
    /// first), else `default_tier`. Nil when not even the default exists.
    static func tier(_ p: RateLimitPolicy, route: CompiledRoute, identity: Identity?, headers: HTTPHeaders) -> CompiledTier? {
        func lookup(_ name: String) -> CompiledTier? {
            if case .override(let tiers, _) = route.rateLimit, let t = tiers[name] { return t }
            return p.tiers[name]
        }
        for source in p.tierFrom {
            if let name = value(source, identity: identity, clientIP: nil, headers: headers, forTier: true), let t = lookup(name) {
                return t
            }
        }
        return lookup(p.defaultTier)
    }

    /// The first source of `key_from` that has a value; the client IP when none has.
    static func key(_ p: RateLimitPolicy, identity: Identity?, clientIP: String, headers: HTTPHeaders) -> String {
        for (source, prefix) in p.keyFrom {
            if let v = value(source, identity: identity, clientIP: clientIP, headers: headers, forTier: false), !v.isEmpty {
                return prefix + v
            }
        }
        return "client_ip=" + clientIP
    }

    static func value(_ s: LimitSource, identity: Identity?, clientIP: String?, headers: HTTPHeaders, forTier: Bool) -> String? {
        switch s {
        // Claims are a token's: an API key answers to `api_key` only, so a key id and a
        // token's `sub` never share a budget.
        case .claim(let name): return identity?.kind == .jwt ? identity?.claimText(name) : nil
        case .apiKey:
            guard let id = identity, id.kind == .apiKey else { return nil }
            return forTier ? id.claimText("tier") : id.subject
        case .clientIP: return clientIP
        case .header(let name): return headers.first(name: name)
        }
    }

    /// Whole seconds, rounded up.
    static func seconds(_ nanos: Int64) -> Int64 { nanos <= 0 ? 0 : (nanos + 999_999_999) / 1_000_000_000 }
}

extension RouteLimitMode {
    var isDisabled: Bool {
        if case .disabled = self { return true }
        return false
    }

    var shadow: Bool? {
        if case .override(_, let s) = self { return s }
        return nil
    }
}
