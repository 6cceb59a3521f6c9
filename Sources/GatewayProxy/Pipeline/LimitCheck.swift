import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

// Rate limits (SPEC §2.6): `per_ip` before authentication, then the tier of who the
// request is. With the memory store a decision is made here; with Redis the request (and
// what follows it on the connection) is held on this loop until Redis answers. When Redis
// cannot answer, `on_error: allow` decides with the memory store and `deny` answers 503.
extension ProxyHandler {
    /// `rate_limit.per_ip`, keyed on the client address.
    func perIPLimit(_ ex: Exchange, _ a: Admission) -> PhaseResult {
        guard let route = ex.route, let policy = a.snapshot.rateLimits, let perIP = policy.perIP, !route.rateLimit.isDisabled else {
            return .next
        }
        return checkLimit(
            ex, a, policy, tier: perIP, key: "ip|" + ex.clientIP, shadow: route.rateLimit.shadow ?? policy.shadow, step: .perIPLimit)
    }

    /// The tier of who the request is (a claim, an API key's tier, a header, or the default).
    func tierLimit(_ ex: Exchange, _ a: Admission) -> PhaseResult {
        guard let route = ex.route, let policy = a.snapshot.rateLimits, !route.rateLimit.isDisabled,
            let tier = RateLimitKeys.tier(policy, route: route, identity: ex.identity, headers: ex.head.headers)
        else { return .next }
        ex.tier = tier.name
        if tier.isUnlimited { return .next }
        let key = RateLimitKeys.key(policy, identity: ex.identity, clientIP: ex.clientIP, headers: ex.head.headers)
        // A route with its own tiers counts on its own; the others share the tier's budget.
        let scope: String
        if case .override = route.rateLimit { scope = "r|" + route.name } else { scope = "t" }
        let scoped = scope + "|" + tier.name + "|" + key
        return checkLimit(ex, a, policy, tier: tier, key: scoped, shadow: route.rateLimit.shadow ?? policy.shadow, step: .tierLimit)
    }

    /// One decision: `next` when the request is admitted (or only `shadow` refuses it).
    func checkLimit(
        _ ex: Exchange, _ a: Admission, _ policy: RateLimitPolicy, tier: CompiledTier, key: String, shadow: Bool, step: RequestStep
    ) -> PhaseResult {
        let outcome: GCRA.Outcome
        if case .limit(let result)? = ex.resumed {
            ex.resumed = nil
            switch result {
            case .success(let o):
                loopContext.limitStoreRecovered()
                outcome = o
            case .failure(let error):
                loopContext.limitStoreFailed(error)
                if policy.store.onError == "deny" { return .reply(.error(.unavailable("the rate-limit store is unreachable"))) }
                outcome = localDecision(tier, key: key)
            }
        } else if let redis = loopContext.redisLimiter {
            return hold(ex, a, at: step, until: redis.decide(key: key, limits: tier.limits)) { .limit($0) }
        } else {
            outcome = localDecision(tier, key: key)
        }
        return admit(ex, outcome, tier: tier, shadow: shadow)
    }

    func localDecision(_ tier: CompiledTier, key: String) -> GCRA.Outcome {
        let now = Int64(truncatingIfNeeded: loopContext.time.uptime())
        return loopContext.shared.limiter.decide(key: key, limits: tier.limits, now: now)
    }

    /// Applies a decision: sets the `RateLimit-*` fields of the response and counts it;
    /// 429 when the request is refused (unless `shadow`).
    func admit(_ ex: Exchange, _ o: GCRA.Outcome, tier: CompiledTier, shadow: Bool) -> PhaseResult {
        let i = min(o.tightest, tier.limits.count - 1)
        ex.rateLimitHeaders = [
            ("ratelimit-limit", String(tier.limits[i].burst)), ("ratelimit-remaining", String(o.remaining)),
            ("ratelimit-reset", String(RateLimitKeys.seconds(o.resetNanos))), ("ratelimit-policy", tier.policies[i]),
        ]
        if o.admitted {
            loopContext.metrics.rateLimitDecision(tier: tier.name, decision: .allowed)
            return .next
        }
        if shadow {
            loopContext.metrics.rateLimitDecision(tier: tier.name, decision: .shadowRejected)
            return .next
        }
        loopContext.metrics.rateLimitDecision(tier: tier.name, decision: .rejected)
        let retryAfter = String(max(1, RateLimitKeys.seconds(o.retryAfterNanos)))
        return .reply(.error(.rateLimited(), extraHeaders: [("retry-after", retryAfter)]))
    }
}
