import GatewayConfig
import GatewayPolicies
import NIOPosix
import Testing

@testable import GatewayProxy

/// The pure parts of issue 6 with a manual clock: the outlier detector, the retry budget,
/// backoff bounds, health-check thresholds, retry conditions and the config checks.
@Suite struct ResiliencePolicyTests {
    static let s: Int64 = 1_000_000_000

    static func detector(
        targets: Int = 4, consecutive5xx: Int = 3, gateway: Int = 3, base: Int64 = 10, max: Int64 = 35, percent: Int = 50,
        successRate: OutlierDetector.Config.SuccessRate? = nil
    ) -> OutlierDetector {
        OutlierDetector(
            config: .init(
                consecutive5xx: consecutive5xx, consecutiveGatewayFailures: gateway, intervalNanos: 10 * s, baseEjectionNanos: base * s,
                maxEjectionNanos: max * s, maxEjectionPercent: percent, successRate: successRate),
            targets: targets, now: 0)
    }

    @Test func consecutive5xxEjectsAndASuccessResetsTheCount() {
        var d = Self.detector(gateway: 0)
        let r1 = d.record(0, .status(500), now: 1)
        #expect(r1.isEmpty)
        let r2 = d.record(0, .status(500), now: 2)
        #expect(r2.isEmpty)
        let r3 = d.record(0, .success, now: 3)  // the run is broken
        #expect(r3.isEmpty)
        let r4 = d.record(0, .status(500), now: 4)
        #expect(r4.isEmpty)
        let r5 = d.record(0, .status(500), now: 5)
        #expect(r5.isEmpty)
        let e = d.record(0, .status(500), now: 6)
        #expect(e == [.init(target: 0, reason: .consecutive5xx, until: 6 + 10 * Self.s)])
        #expect(d.targets[0].isEjected(at: 6 + 10 * Self.s - 1))
        #expect(!d.targets[0].isEjected(at: 6 + 10 * Self.s))
    }

    @Test func consecutiveGatewayFailuresCountConnectFailuresAnd502To504Only() {
        var d = Self.detector(consecutive5xx: 0)
        _ = d.record(1, .gatewayFailure, now: 1)
        _ = d.record(1, .status(503), now: 2)
        _ = d.record(1, .status(500), now: 3)  // a 5xx that is not a gateway error breaks the run
        _ = d.record(1, .status(502), now: 4)
        _ = d.record(1, .gatewayFailure, now: 5)
        let r6 = d.record(1, .status(504), now: 6)
        #expect(r6.map(\.reason) == [.consecutiveGatewayFailures])
    }

    @Test func ejectionTimeGrowsWithTimesEjectedAndIsCapped() {
        var d = Self.detector(gateway: 0, base: 10, max: 35)
        var now: Int64 = 0
        var lengths: [Int64] = []
        for _ in 0..<4 {
            var e: [OutlierDetector.Ejection] = []
            for _ in 0..<3 {
                now += 1
                e = d.record(0, .status(500), now: now)
            }
            guard let until = e.first?.until else {
                Issue.record("no ejection")
                return
            }
            lengths.append((until - now) / Self.s)
            now = until  // back in rotation; the next failures come at once (no interval in between)
        }
        #expect(lengths == [10, 20, 30, 35])
        #expect(OutlierDetector.ejectionTime(base: Int64.max / 2, max: 7, times: 3) == 7)
    }

    @Test func aWholeIntervalInRotationLowersTheMultiplier() {
        var d = Self.detector(gateway: 0, base: 1)
        for t in 1...3 { _ = d.record(0, .status(500), now: Int64(t)) }
        #expect(d.targets[0].timesEjected == 1)
        // The ejection ends at 1 s; the interval ending at 10 s did not see it all in rotation.
        _ = d.tick(now: 10 * Self.s)
        #expect(d.targets[0].timesEjected == 1)
        _ = d.tick(now: 20 * Self.s)
        #expect(d.targets[0].timesEjected == 0)
        #expect(d.targets[0].totalEjections == 1)
    }

    @Test func maxEjectionPercentIsNeverExceeded() {
        // 4 targets at 50%: two may be out, never three.
        var d = Self.detector(targets: 4, gateway: 0, percent: 50)
        var ejected = 0
        for target in 0..<4 {
            for t in 1...3 { ejected += d.record(target, .status(500), now: Int64(target * 10 + t)).count }
        }
        #expect(ejected == 2)
        #expect(d.ejectedCount(at: 100) == 2)
        // With 3 targets, 50% allows one.
        var three = Self.detector(targets: 3, gateway: 0, percent: 50)
        var n = 0
        for target in 0..<3 { for t in 1...3 { n += three.record(target, .status(500), now: Int64(target * 10 + t)).count } }
        #expect(n == 1)
        // Once the first is back, another may go.
        #expect(three.mayEject(now: 100 * Self.s))
    }

    @Test func successRateEjectsTheOutlierAtTheIntervalEnd() {
        var d = Self.detector(
            targets: 5, consecutive5xx: 0, gateway: 0, percent: 100,
            successRate: .init(minimumHosts: 3, requestVolume: 50, stdevFactor: 1.0))
        for target in 0..<5 {
            for k in 0..<100 {
                // Target 4 fails 40% of its requests, the others 1%.
                let fails = target == 4 ? k % 5 < 2 : k == 0
                _ = d.record(target, fails ? .status(503) : .success, now: Int64(target * 100 + k))
            }
        }
        let e = d.tick(now: 10 * Self.s)
        #expect(e.map(\.target) == [4])
        #expect(e.first?.reason == .successRate)
        #expect(d.targets[4].lastSuccessRate == 0.6)
        // Too few requests: no verdict.
        var quiet = Self.detector(
            targets: 3, consecutive5xx: 0, gateway: 0, percent: 100, successRate: .init(minimumHosts: 3, requestVolume: 50, stdevFactor: 1))
        for target in 0..<3 { for k in 0..<10 { _ = quiet.record(target, target == 0 ? .status(500) : .success, now: Int64(k)) } }
        let r7 = quiet.tick(now: 10 * Self.s)
        #expect(r7.isEmpty)
    }

    /// The balancer over published health (no sockets: pools are only picked, never used).
    @Test func ejectedTargetsAreSkippedAndPanicUsesThemAll() throws {
        let text = """
            { "listeners": [ { "name": "l", "address": "127.0.0.1:0" } ],
              "upstreams": { "u": { "targets": ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"],
                                    "outlier_detection": { "max_ejection_percent": 100 } } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "u" } ] }
            """
        let spec = try #require(ConfigLoader.load(bytes: Array(text.utf8), source: "t.json").snapshot?.upstreams.first)
        let health = try #require(HealthRegistry(metrics: GatewayMetrics()).health(for: spec))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let pools = spec.targets.map { TargetPool(target: $0, loop: group.next(), maxConnections: 1, connectTimeout: .seconds(1)) }
        let runtime = UpstreamRuntime(
            spec: spec, pools: pools, maxPending: 1, limits: LimitRegistry().limits(for: spec), start: 0, health: health)
        var rng = SplitMix64(seed: 3)
        func picks(_ n: Int = 30) -> Set<Int> { Set((0..<n).compactMap { _ in runtime.pick(hashKey: nil, rng: &rng, now: 100) }) }
        #expect(picks() == [0, 1, 2])
        // Target 1 ejected until 1000: never picked while others are available.
        health.targets[1].ejectedUntil.store(1000, ordering: .relaxed)
        #expect(picks() == [0, 2])
        // Nothing available: panic mode spreads over all of them rather than failing.
        health.targets[0].ejectedUntil.store(1000, ordering: .relaxed)
        health.targets[2].healthy.store(false, ordering: .relaxed)
        #expect(picks() == [0, 1, 2])
        // A retry avoids what it tried when something else is available.
        health.targets[0].ejectedUntil.store(0, ordering: .relaxed)
        health.targets[1].ejectedUntil.store(0, ordering: .relaxed)
        for _ in 0..<10 { #expect(runtime.pick(hashKey: nil, rng: &rng, now: 100, avoid: 0b001) == 1) }
    }

    @Test func retryBudgetAllowsThreeAndThenAShareOfActiveRequests() {
        #expect(RetryBudget.allows(activeRequests: 0, activeRetries: 2, percent: 20))
        #expect(!RetryBudget.allows(activeRequests: 0, activeRetries: 3, percent: 20))
        #expect(!RetryBudget.allows(activeRequests: 10, activeRetries: 3, percent: 20))  // 20% of 10 is 2: the floor of 3 rules
        #expect(RetryBudget.allows(activeRequests: 100, activeRetries: 19, percent: 20))
        #expect(!RetryBudget.allows(activeRequests: 100, activeRetries: 20, percent: 20))
        #expect(!RetryBudget.allows(activeRequests: 1000, activeRetries: 3, percent: 0))
    }

    @Test func backoffIsFullJitterUnderADoublingCappedCeiling() {
        let base: Int64 = 25_000_000
        let max: Int64 = 250_000_000
        #expect(
            (1...6).map { Backoff.ceiling(retry: $0, baseNanos: base, maxNanos: max) }
                == [25, 50, 100, 200, 250, 250].map { $0 * 1_000_000 })
        #expect(Backoff.ceiling(retry: 200, baseNanos: base, maxNanos: max) == max)
        var rng = SplitMix64(seed: 7)
        for n in 1...5 {
            let cap = Backoff.ceiling(retry: n, baseNanos: base, maxNanos: max)
            let draws = (0..<2000).map { _ in Backoff.delay(retry: n, baseNanos: base, maxNanos: max, random: rng.next()) }
            #expect(draws.allSatisfy { $0 >= 0 && $0 <= cap })
            // Full jitter: the draws cover the range, not just its top.
            #expect(draws.min()! < cap / 10)
            #expect(draws.max()! > cap * 9 / 10)
        }
        #expect(Backoff.delay(retry: 1, baseNanos: 0, maxNanos: 0, random: 12345) == 0)
    }

    @Test func healthThresholds() {
        var h = HealthCheckState()
        #expect(h.isHealthy && h.status == .unknown)
        // The first probe decides at once.
        let r8 = h.record(passed: false, healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(r8)
        #expect(!h.isHealthy)
        let r9 = h.record(passed: true, healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(!r9)
        #expect(!h.isHealthy)  // one pass is not enough
        let r10 = h.record(passed: true, healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(r10)
        #expect(h.isHealthy)
        let r11 = h.record(passed: false, healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(!r11)
        let r12 = h.record(passed: false, healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(!r12)
        let r13 = h.record(passed: true, healthyThreshold: 2, unhealthyThreshold: 3)  // a pass resets the failures
        #expect(!r13)
        let r14 = h.record(passed: false, healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(!r14)
        let r15 = h.record(passed: false, healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(!r15)
        let r16 = h.record(passed: false, healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(r16)
        #expect(h.status == .unhealthy)
    }

    @Test func retryConditions() {
        let on = RetryOn(["connect-failure", "status:409"].compactMap(RetryCondition.init))
        #expect(on.allows(failure: .connectFailure))
        #expect(!on.allows(failure: .reset))
        #expect(on.allows(status: 409))
        #expect(!on.allows(status: 503))
        let gw = RetryOn([.gatewayError])
        #expect(gw.allows(status: 502) && gw.allows(status: 504) && !gw.allows(status: 500))
        #expect(gw.allows(failure: .reset) && gw.allows(failure: .connectFailure))
        let any5xx = RetryOn([.serverError])
        #expect(any5xx.allows(status: 500) && any5xx.allows(status: 599) && !any5xx.allows(status: 499))
        #expect(RetryCondition("status:99") == nil)
        #expect(RetryCondition("timeout") == nil)
    }

    @Test func configChecks() {
        let text = """
            { "listeners": [ { "name": "l", "address": "127.0.0.1:0" } ],
              "upstreams": { "u": { "targets": ["http://127.0.0.1:1", "http://127.0.0.1:2"],
                "health_check": { "path": "healthz", "interval": "5ms", "expected_status": [299, 200] },
                "outlier_detection": { "max_ejection_percent": 120, "base_ejection_time": "30s", "max_ejection_time": "10s" } } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "u",
                "retry": { "attempts": 0, "on": ["5xx", "sometimes"], "backoff": { "base": "100ms", "max": "10ms" }, "budget_percent": 200 },
                "fault": { "abort": { "status": 200, "percent": 150 } } } ] }
            """
        let result = ConfigLoader.load(bytes: Array(text.utf8), source: "t.json")
        let paths = Set(result.errors.map(\.path))
        for p in [
            "upstreams.u.health_check.path", "upstreams.u.health_check.interval", "upstreams.u.health_check.expected_status",
            "upstreams.u.outlier_detection.max_ejection_percent", "upstreams.u.outlier_detection.max_ejection_time",
            "routes[0].retry.attempts", "routes[0].retry.on[1]", "routes[0].retry.backoff.max", "routes[0].retry.budget_percent",
            "routes[0].fault.abort.status", "routes[0].fault.abort.percent",
        ] {
            #expect(paths.contains(p), "\(p) in \(paths)")
        }
        let good = """
            { "listeners": [ { "name": "l", "address": "127.0.0.1:0" } ],
              "upstreams": { "u": { "targets": ["http://127.0.0.1:1"], "health_check": {}, "outlier_detection": {} } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "u", "retry": {}, "fault": { "delay": { "duration": "1s" } } } ] }
            """
        let ok = ConfigLoader.load(bytes: Array(good.utf8), source: "t.json")
        #expect(ok.errors.isEmpty, "\(ok.errors)")
        // One target at 50%: nothing could ever be ejected, and the file says so.
        #expect(ok.diagnostics.contains { $0.path == "upstreams.u.outlier_detection.max_ejection_percent" })
        let route = ok.snapshot?.routes.first
        #expect(route?.retry?.attempts == 2)
        #expect(route?.retry?.methods.contains("GET") == true && route?.retry?.methods.contains("POST") == false)
        #expect(ok.snapshot?.upstreams.first?.healthCheck?.expected == 200...299)
    }
}
