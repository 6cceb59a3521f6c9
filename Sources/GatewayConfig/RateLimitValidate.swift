extension GatewayFile {
    static let storeKinds = ["memory", "redis"]

    /// `rate_limits` and every route's `rate_limit`.
    func validateRateLimits(into out: inout [Diagnostic]) {
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: path, message: message)) }
        if let r = rateLimits {
            let p = "rate_limits"
            if !Self.storeKinds.contains(r.store.kind) {
                error("\(p).store.kind", "\"\(r.store.kind)\" is not one of memory, redis")
            } else if r.store.kind == "redis" {
                if let url = r.store.url {
                    if RedisURL(url) == nil { error("\(p).store.url", "\"\(url)\" is not redis://host:port/db") }
                } else {
                    error("\(p).store.url", "the redis store needs a url, like redis://127.0.0.1:6379/0")
                }
            }
            if r.store.prefix.isEmpty || r.store.prefix.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) {
                error("\(p).store.prefix", "must be a non-empty word")
            }
            if !["allow", "deny"].contains(r.store.onError) { error("\(p).store.on_error", "must be \"allow\" or \"deny\"") }
            if r.store.timeout.nanoseconds <= 0 { error("\(p).store.timeout", "must be more than 0") }
            for (i, s) in r.tierFrom.enumerated() where LimitSource(s, allowClientIP: false) == nil {
                error("\(p).tier_from[\(i)]", "\"\(s)\" is not claim:NAME, api_key or header:NAME")
            }
            for (i, s) in r.keyFrom.enumerated() where LimitSource(s, allowClientIP: true) == nil {
                error("\(p).key_from[\(i)]", "\"\(s)\" is not claim:NAME, api_key, client_ip or header:NAME")
            }
            if r.keyFrom.isEmpty { error("\(p).key_from", "name at least one source; client_ip always has a value") }
            if r.tiers[r.defaultTier] == nil {
                error(
                    "\(p).default_tier", "\"\(r.defaultTier)\" is not one of the tiers (\(r.tiers.keys.sorted().joined(separator: ", ")))")
            }
            validateTiers(r.tiers, path: "\(p).tiers", into: &out)
            validateLimits(r.perIP, path: "\(p).per_ip", into: &out)
        }
        for route in routes {
            guard let rl = route.rateLimit else { continue }
            let p = "routes[\(route.sourceIndex)].rate_limit"
            if rateLimits == nil { error(p, "there is no top-level `rate_limits` for this to change") }
            if case .override(let tiers, _) = rl {
                validateTiers(tiers, path: "\(p).tiers", into: &out)
            }
        }
    }

    private func validateTiers(_ tiers: [String: RateLimits.Tier], path p: String, into out: inout [Diagnostic]) {
        for (name, tier) in tiers.sorted(by: { $0.key < $1.key }) {
            let tp = p + JSONPath.format([.key("x"), .key(name)]).dropFirst(1)
            if name.isEmpty { out.append(Diagnostic(path: tp, message: "a tier needs a name")) }
            if case .limits(let limits) = tier {
                if limits.isEmpty { out.append(Diagnostic(path: tp, message: "list at least one limit, or write \"unlimited\"")) }
                validateLimits(limits, path: tp, into: &out)
            }
        }
    }

    private func validateLimits(_ limits: [RateLimits.Limit], path p: String, into out: inout [Diagnostic]) {
        for (i, l) in limits.enumerated() {
            if l.limit < 1 || l.limit > 1_000_000_000 {
                out.append(Diagnostic(path: "\(p)[\(i)].limit", message: "must be between 1 and 1000000000"))
            }
            if l.per.nanoseconds < 1_000_000 { out.append(Diagnostic(path: "\(p)[\(i)].per", message: "must be at least 1ms")) }
            if l.per.nanoseconds > 366 * 86_400_000_000_000 {
                out.append(Diagnostic(path: "\(p)[\(i)].per", message: "must be at most 366d"))
            }
            if let b = l.burst, b < 1 || b > 1_000_000_000 {
                out.append(Diagnostic(path: "\(p)[\(i)].burst", message: "must be between 1 and 1000000000"))
            }
        }
    }
}
