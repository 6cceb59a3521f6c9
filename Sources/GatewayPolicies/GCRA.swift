/// The generic cell rate algorithm (GCRA): a token bucket kept as one number per key, the
/// theoretical arrival time (TAT) of the next request. A limit admits `limit` requests per
/// `period`, `burst` of them at once. Pure: the caller passes the time (nanoseconds on any
/// monotonic clock) and keeps the state.
public struct GCRALimit: Sendable, Hashable {
    public let limit: Int
    public let periodNanos: Int64
    public let burst: Int
    /// The time one request uses up: period / limit.
    public let emissionNanos: Int64
    /// How far ahead of now the TAT may run: burst × emission interval.
    public let toleranceNanos: Int64

    public init(limit: Int, periodNanos: Int64, burst: Int? = nil) {
        self.limit = max(1, limit)
        self.periodNanos = max(1, periodNanos)
        self.burst = max(1, burst ?? limit)
        emissionNanos = max(1, self.periodNanos / Int64(self.limit))
        toleranceNanos =
            emissionNanos.multipliedReportingOverflow(by: Int64(self.burst)).overflow
            ? Int64.max / 4 : emissionNanos * Int64(self.burst)
    }

    /// The outcome of one request against this limit, from its stored TAT (0 = never seen).
    public struct Decision: Sendable, Equatable {
        public var admitted: Bool
        /// The TAT to store when the request is admitted.
        public var newTAT: Int64
        /// Requests that could still be admitted right after this one.
        public var remaining: Int
        /// Nanoseconds until the bucket is full again (RateLimit-Reset).
        public var resetNanos: Int64
        /// When refused: nanoseconds until one request would be admitted (Retry-After).
        public var retryAfterNanos: Int64
    }

    public func decide(tat stored: Int64, now: Int64) -> Decision {
        let tat = max(stored, now)
        let newTAT = tat &+ emissionNanos
        let allowAt = newTAT &- toleranceNanos
        if now < allowAt {
            // Refused: the state does not change.
            let remaining = 0
            return Decision(
                admitted: false, newTAT: stored, remaining: remaining, resetNanos: max(0, tat - now), retryAfterNanos: allowAt - now)
        }
        let used = newTAT - now
        let remaining = Int((toleranceNanos - used) / emissionNanos)
        return Decision(admitted: true, newTAT: newTAT, remaining: max(0, remaining), resetNanos: used, retryAfterNanos: 0)
    }
}

/// The decision for all the limits of a request: admitted only when every limit admits it,
/// and then every limit is charged; a refusal charges none.
public enum GCRA {
    public struct Outcome: Sendable, Equatable {
        public var admitted: Bool
        /// Index of the limit reported in the headers: the refusing one with the longest
        /// wait, or, when admitted, the one with the fewest remaining.
        public var tightest: Int
        public var remaining: Int
        public var resetNanos: Int64
        public var retryAfterNanos: Int64

        public init(admitted: Bool, tightest: Int, remaining: Int, resetNanos: Int64, retryAfterNanos: Int64) {
            self.admitted = admitted
            self.tightest = tightest
            self.remaining = remaining
            self.resetNanos = resetNanos
            self.retryAfterNanos = retryAfterNanos
        }
    }

    /// `tats` holds each limit's stored TAT and is updated when the request is admitted.
    public static func decide(_ limits: [GCRALimit], tats: inout [Int64], now: Int64) -> Outcome {
        var admitted = true
        var tightest = 0
        var best: GCRALimit.Decision?
        for (i, limit) in limits.enumerated() {
            let d = limit.decide(tat: i < tats.count ? tats[i] : 0, now: now)
            if !d.admitted {
                if admitted || d.retryAfterNanos > (best?.retryAfterNanos ?? 0) {
                    tightest = i
                    best = d
                }
                admitted = false
            } else if admitted, best == nil || d.remaining < (best?.remaining ?? Int.max) {
                tightest = i
                best = d
            }
        }
        if admitted {
            // Every limit admitted: charge each (deciding again is cheaper than keeping the
            // decisions in an array on every request).
            if tats.count < limits.count { tats += Array(repeating: 0, count: limits.count - tats.count) }
            for (i, limit) in limits.enumerated() { tats[i] = limit.decide(tat: tats[i], now: now).newTAT }
        }
        let b = best ?? GCRALimit.Decision(admitted: true, newTAT: 0, remaining: 0, resetNanos: 0, retryAfterNanos: 0)
        return Outcome(
            admitted: admitted, tightest: tightest, remaining: b.remaining, resetNanos: b.resetNanos, retryAfterNanos: b.retryAfterNanos)
    }
}
