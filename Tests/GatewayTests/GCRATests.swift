import GatewayPolicies
import GatewayProxy
import Testing

/// The rate limiter's arithmetic with a manual clock (nanoseconds).
@Suite struct GCRATests {
    static let second: Int64 = 1_000_000_000

    /// Sends `count` requests at `now` against `limits`, returns how many were admitted.
    func burst(_ limits: [GCRALimit], _ tats: inout [Int64], count: Int, at now: Int64) -> Int {
        (0..<count).reduce(0) { n, _ in n + (GCRA.decide(limits, tats: &tats, now: now).admitted ? 1 : 0) }
    }

    @Test func aBurstAdmitsExactlyTheBurst() {
        let free = GCRALimit(limit: 5, periodNanos: Self.second, burst: 10)
        var tats: [Int64] = []
        #expect(burst([free], &tats, count: 15, at: 100 * Self.second) == 10)
        // Nothing more in the same instant, one more after one emission interval (200 ms).
        #expect(burst([free], &tats, count: 1, at: 100 * Self.second + 199_999_999) == 0)
        #expect(burst([free], &tats, count: 2, at: 100 * Self.second + 200_000_000) == 1)
    }

    @Test func steadyRateAtTheBoundary() {
        let l = GCRALimit(limit: 10, periodNanos: Self.second)  // burst = limit
        var tats: [Int64] = []
        let start = 50 * Self.second
        #expect(burst([l], &tats, count: 10, at: start) == 10)
        // Then exactly one every 100 ms: 20 attempts at 50 ms steps over 1 s admit 10.
        var admitted = 0
        for i in 1...20 {
            admitted += GCRA.decide([l], tats: &tats, now: start + Int64(i) * 50_000_000).admitted ? 1 : 0
        }
        #expect(admitted == 10)
        // After a quiet period the full burst is back, never more.
        #expect(burst([l], &tats, count: 25, at: start + 10 * Self.second) == 10)
    }

    @Test func everyLimitMustAdmitAndARefusalChargesNone() {
        let perSecond = GCRALimit(limit: 5, periodNanos: Self.second, burst: 10)
        let perDay = GCRALimit(limit: 12, periodNanos: 86_400 * Self.second)
        var tats: [Int64] = []
        var t = 1_000 * Self.second
        var total = 0
        // Bursts of 10 every 2 s: the daily limit (12) stops them, the per-second one would not.
        for _ in 0..<5 {
            total += burst([perSecond, perDay], &tats, count: 10, at: t)
            t += 2 * Self.second
        }
        #expect(total == 12)
        // The refusals did not charge the per-second limit: it still has its whole burst.
        var onlySecond = [tats[0]]
        #expect(burst([perSecond], &onlySecond, count: 20, at: t) == 10)
    }

    @Test func headersValues() {
        let l = GCRALimit(limit: 100, periodNanos: Self.second, burst: 200)
        var tats: [Int64] = []
        let now = 7 * Self.second
        let first = GCRA.decide([l], tats: &tats, now: now)
        #expect(first.admitted && first.remaining == 199)
        #expect(first.resetNanos == 10_000_000)  // one emission interval to be full again
        _ = burst([l], &tats, count: 199, at: now)
        let refused = GCRA.decide([l], tats: &tats, now: now)
        #expect(!refused.admitted && refused.remaining == 0)
        #expect(refused.retryAfterNanos == 10_000_000)
        #expect(refused.resetNanos == 2 * Self.second)
    }

    @Test func theTightestLimitIsReported() {
        let wide = GCRALimit(limit: 100, periodNanos: Self.second)
        let narrow = GCRALimit(limit: 3, periodNanos: Self.second)
        var tats: [Int64] = []
        let a = GCRA.decide([wide, narrow], tats: &tats, now: Self.second)
        #expect(a.tightest == 1 && a.remaining == 2)
        _ = burst([wide, narrow], &tats, count: 2, at: Self.second)
        let r = GCRA.decide([wide, narrow], tats: &tats, now: Self.second)
        #expect(!r.admitted && r.tightest == 1)
    }
}

/// The memory store: shared counters, bounded, refilled keys forgotten first.
@Suite struct MemoryLimiterTests {
    @Test func boundedAndRefilledKeysGoFirst() {
        let limiter = MemoryLimiter(maxEntries: 64 * 16)  // 16 per shard
        let l = GCRALimit(limit: 1, periodNanos: 1_000_000_000)
        // 5,000 keys seen once, long ago: every one has refilled by t = 10 s.
        for i in 0..<5_000 { _ = limiter.decide(key: "old-\(i)", limits: [l], now: 1_000) }
        #expect(limiter.count <= 64 * 16)
        // Keys in use now: still bounded, and a key just charged is refused again at once
        // unless the store had to forget it (never stricter than configured).
        let now: Int64 = 10_000_000_000
        for i in 0..<5_000 { _ = limiter.decide(key: "new-\(i)", limits: [l], now: now) }
        #expect(limiter.count <= 64 * 16)
        #expect(limiter.count >= 64 * 16 / 2, "refilled keys went first; the active ones fill the store")
    }

    @Test func sameKeyDifferentLimitsKeepTheirOwnState() {
        let limiter = MemoryLimiter()
        let a = GCRALimit(limit: 2, periodNanos: 60_000_000_000)
        let b = GCRALimit(limit: 5, periodNanos: 60_000_000_000)
        #expect(limiter.decide(key: "k", limits: [a], now: 1).admitted)
        #expect(limiter.decide(key: "k", limits: [a], now: 1).admitted)
        #expect(!limiter.decide(key: "k", limits: [a], now: 1).admitted)
        // A reload that changes the tier's limit starts that limit afresh.
        #expect(limiter.decide(key: "k", limits: [b], now: 1).admitted)
    }

    /// Decided in place for a key seen before: the same outcomes as the algorithm on its own
    /// array, request after request, for two limits at once.
    @Test func inPlaceDecisionsMatchTheAlgorithm() {
        let limiter = MemoryLimiter()
        let limits = [GCRALimit(limit: 5, periodNanos: 1_000_000_000), GCRALimit(limit: 20, periodNanos: 10_000_000_000, burst: 8)]
        var tats: [Int64] = []
        var rng = SplitMix64(seed: 7)
        var now: Int64 = 1_000
        for _ in 0..<2_000 {
            now += Int64(rng.next() % 400_000_000)
            let want = GCRA.decide(limits, tats: &tats, now: now)
            #expect(limiter.decide(key: "k", limits: limits, now: now) == want)
        }
    }

    /// A reload that drops one of two limits keeps the other's state.
    @Test func aKeptLimitKeepsItsState() {
        let limiter = MemoryLimiter()
        let a = GCRALimit(limit: 10, periodNanos: 60_000_000_000)
        let b = GCRALimit(limit: 3, periodNanos: 60_000_000_000)
        for _ in 0..<3 { #expect(limiter.decide(key: "k", limits: [a, b], now: 1).admitted) }
        #expect(!limiter.decide(key: "k", limits: [b], now: 1).admitted, "b was used up under [a, b]")
        #expect(limiter.decide(key: "k", limits: [a], now: 1).admitted, "a has 7 left")
    }
}
