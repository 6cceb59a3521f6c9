import Foundation
import GatewayConfig
import GatewayProxy
import NIOPosix
import Testing

/// A gateway in this process in front of `ControlledUpstream`s, for the live tests of
/// retries, timeouts, ejection, health checks, pool limits and faults (issue 6).
final class ResilienceRig: Sendable {
    let group: MultiThreadedEventLoopGroup
    let upstreams: [ControlledUpstream]
    let server: GatewayServer
    let port: Int
    /// Ports that refuse connections, held for the rig's life.
    let dead: [DeadPort]

    /// `template` gets the upstreams' URLs; `@DEAD@` and `@DEAD2@` in it become ports that
    /// refuse connections.
    static func start(_ count: Int, environment: [String: String] = [:], _ template: ([String]) -> String) async throws -> ResilienceRig {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var ups: [ControlledUpstream] = []
        for i in 0..<count { ups.append(try await ControlledUpstream.start(name: "t\(i)", group: group)) }
        let dead = [DeadPort(), DeadPort()]
        let text = template(ups.map(\.url)).replacingOccurrences(of: "@DEAD@", with: dead[0].url)
            .replacingOccurrences(of: "@DEAD2@", with: dead[1].url)
        let result = ConfigLoader.load(bytes: Array(text.utf8), source: "test.json")
        guard let snapshot = result.snapshot else { throw RawHTTPClient.Failure(description: "invalid test config: \(result.errors)") }
        let server = GatewayServer(snapshot: snapshot, environment: environment)
        try await server.start()
        guard let port = server.boundAddresses.values.first?.port else { throw RawHTTPClient.Failure(description: "no listener") }
        return ResilienceRig(group: group, upstreams: ups, server: server, port: port, dead: dead)
    }

    init(group: MultiThreadedEventLoopGroup, upstreams: [ControlledUpstream], server: GatewayServer, port: Int, dead: [DeadPort]) {
        self.group = group
        self.upstreams = upstreams
        self.server = server
        self.port = port
        self.dead = dead
    }

    func request(
        _ method: String = "GET", _ path: String = "/", headers: [(String, String)] = [], body: [UInt8]? = nil
    ) async throws
        -> RawHTTPClient.Response
    {
        try await httpRequestOffPool(port: port, method, path, headers: headers, body: body)
    }

    /// A request and how long it took, measured on the thread that made it (a wait for the
    /// cooperative pool to resume the test is not the gateway's time).
    func timed(_ method: String = "GET", _ path: String = "/") async throws -> (RawHTTPClient.Response, Double) {
        let port = self.port
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                let start = Date()
                continuation.resume(
                    with: Result {
                        let r = try RawHTTPClient(port: port, timeout: 30).request(method, path)
                        return (r, Date().timeIntervalSince(start))
                    })
            }
        }
    }

    /// Waits (polling, up to 20 s) until `count` requests have reached the two targets, then
    /// makes t0 answer at once from now on and kills t1 with the requests it holds.
    func killSecondTargetOnceAllArrive(_ count: Int) async {
        let deadline = Date().addingTimeInterval(20)
        while upstreams[0].requests + upstreams[1].requests < count && Date() < deadline {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        upstreams[0].set { $0.delayMs = 0 }
        await upstreams[1].kill()
    }

    func target(_ url: String) async -> GatewayServer.TargetStatus? { await server.upstreamStatus().first { $0.url == url } }

    func metric(_ name: String, _ labels: [String: String]) -> Double? {
        let text = String(decoding: server.shared.metrics.exposition(), as: UTF8.self)
        return (try? PrometheusText(text))?.value(name, labels)
    }

    func stop() async {
        await server.shutdown()
        for u in upstreams { await u.kill() }
        try? await group.shutdownGracefully()
    }

    static func config(upstream: String, route: String) -> String {
        """
        { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
          "server": { "workers": 1 },
          "access_log": { "enabled": false },
          "upstreams": { "pool": \(upstream) },
          "routes": [ { "name": "r", "match": { "path_prefix": "/" }, "upstream": "pool"\(route.isEmpty ? "" : ", " + route) } ] }
        """
    }
}

@Suite struct ResilienceTests {
    static let retryAll =
        #""retry": { "attempts": 3, "on": ["connect-failure", "reset", "gateway-error"], "backoff": { "base": "5ms", "max": "20ms" } }"#

    @Test func a503IsRetriedOnAnotherTarget() async throws {
        let rig = try await ResilienceRig.start(2) { u in
            ResilienceRig.config(upstream: #"{ "targets": ["\#(u[0])", "\#(u[1])"] }"#, route: Self.retryAll)
        }
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.status = 503 }
        var attempts: [String] = []
        for _ in 0..<6 {
            let r = try await rig.request("GET", "/x")
            #expect(r.status == 200)
            #expect(r.header("x-served-by") == "t1")
            attempts.append(r.header("x-upstream-attempts") ?? "none")
        }
        // Round robin starts some requests on the failing target: those took two tries.
        #expect(attempts.contains("2"), "\(attempts)")
        #expect(Set(attempts).isSubset(of: ["1", "2"]))
        #expect(rig.upstreams[0].requests == attempts.filter { $0 == "2" }.count)
        #expect((rig.metric("gateway_retries_total", ["route": "r", "reason": "status:503"]) ?? 0) >= 1)
    }

    /// Half the requests in flight fail at once (their target goes away): a request waiting
    /// out its retry backoff still counts as active, so a 60% budget covers all of them (10
    /// retries against 60% of the 19 other requests active; without it, 3 would be refused).
    @Test(.timeLimit(.minutes(2))) func aTargetDyingUnderLoadIsRetriedWithinTheBudget() async throws {
        let rig = try await ResilienceRig.start(2) { u in
            ResilienceRig.config(
                upstream: #"{ "targets": ["\#(u[0])", "\#(u[1])"] }"#,
                route:
                    #""timeout": "90s", "retry": { "attempts": 3, "on": ["reset"], "budget_percent": 60, "backoff": { "base": "50ms", "max": "100ms" } }"#
            )
        }
        defer { Task { await rig.stop() } }
        // Answers take 25 s, so t1 has answered none of its requests when it goes away, and all 20
        // are in flight by then even on a busy machine. The route's timeout and the client's
        // are far above that: on a busy CI machine the 20 can take many seconds to arrive.
        for u in rig.upstreams { u.set { $0.delayMs = 25000 } }
        let port = rig.port
        let results = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    (try? await offPool { try RawHTTPClient(port: port, timeout: 80).request("GET", "/x") })?.status ?? 0
                }
            }
            // Once all 20 are at the upstreams, t1 goes away with its 10 requests; t0 answers
            // the retries at once.
            await rig.killSecondTargetOnceAllArrive(20)
            var statuses: [Int] = []
            for await s in group { statuses.append(s) }
            return statuses
        }
        #expect(results.filter { $0 == 200 }.count == 20, "\(results.sorted())")
        // Every request t1 held was retried (10 when all 20 were in flight at the kill, as on a quiet machine).
        let held = rig.upstreams[1].requests
        #expect(held > 0)
        #expect(rig.metric("gateway_retries_total", ["route": "r", "reason": "reset"]) == Double(held))
    }

    /// The budget's boundary: 10 of 20 requests in flight fail at once and `budget_percent`
    /// is 50, so exactly 10 retries fit. Each failing request counts among the 20 active
    /// ones although its try has given up its connection; without that the base was 19 and
    /// the 10th retry was refused (the last 502s of the soak, when a target died with all of
    /// a loop's requests in flight).
    @Test(.timeLimit(.minutes(1))) func theRequestBeingRetriedCountsInTheBudgetsBase() async throws {
        let rig = try await ResilienceRig.start(2) { u in
            ResilienceRig.config(
                upstream: #"{ "targets": ["\#(u[0])", "\#(u[1])"] }"#,
                route: #""retry": { "attempts": 3, "on": ["reset"], "budget_percent": 50, "backoff": { "base": "50ms", "max": "100ms" } }"#)
        }
        defer { Task { await rig.stop() } }
        for u in rig.upstreams { u.set { $0.delayMs = 25_000 } }
        let results = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<20 { group.addTask { (try? await rig.request("GET", "/x"))?.status ?? 0 } }
            // t0 answers at once from then on, so the retries do not wait out the 25 s.
            await rig.killSecondTargetOnceAllArrive(20)
            var statuses: [Int] = []
            for _ in 0..<10 {
                if let s = await group.next() { statuses.append(s) }
            }
            group.cancelAll()
            return statuses
        }
        // The 10 requests t1 held come back first: all retried on t0 and answered.
        #expect(rig.upstreams[1].requests == 10)
        #expect(results == Array(repeating: 200, count: 10), "\(results.sorted())")
        #expect(rig.metric("gateway_retries_total", ["route": "r", "reason": "reset"]) == 10)
    }

    @Test func postIsNotRetriedUnlessItCarriesAnIdempotencyKey() async throws {
        let rig = try await ResilienceRig.start(2) { u in
            ResilienceRig.config(upstream: #"{ "targets": ["\#(u[0])", "\#(u[1])"] }"#, route: Self.retryAll)
        }
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.status = 503 }
        let body = Array(repeating: UInt8(ascii: "b"), count: 40_000)
        var refused = 0
        for _ in 0..<4 {
            let r = try await rig.request("POST", "/orders", body: body)
            #expect(r.header("x-upstream-attempts") == "1")
            if r.status == 503 { refused += 1 } else { #expect(r.status == 200) }
        }
        #expect(refused == 2)  // round robin: every other POST met the failing target, and stayed there
        // With an Idempotency-Key, the same POSTs are retried, the body replayed whole.
        for _ in 0..<4 {
            let r = try await rig.request("POST", "/orders", headers: [("idempotency-key", UUID().uuidString)], body: body)
            #expect(r.status == 200)
            #expect(String(decoding: r.body, as: UTF8.self).contains("\"body_bytes\":40000"))
        }
        #expect(rig.upstreams[1].methods.filter { $0 == "POST" }.count == 6)
    }

    @Test func perTryTimeoutMovesToAHealthyTarget() async throws {
        let rig = try await ResilienceRig.start(2) { u in
            ResilienceRig.config(
                upstream: #"{ "targets": ["\#(u[0])", "\#(u[1])"] }"#,
                route:
                    #""timeout": "5s", "retry": { "attempts": 2, "per_try_timeout": "200ms", "backoff": { "base": "5ms", "max": "10ms" } }"#
            )
        }
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.delayMs = 5000 }
        var retried = 0
        for _ in 0..<4 {
            let (r, seconds) = try await rig.timed("GET", "/slowish")
            #expect(r.status == 200)
            #expect(r.header("x-served-by") == "t1")
            #expect(seconds < 1.5)  // the slow target would take 5 s
            if r.header("x-upstream-attempts") == "2" { retried += 1 }
        }
        #expect(retried >= 1)
        #expect((rig.metric("gateway_retries_total", ["route": "r", "reason": "per-try-timeout"]) ?? 0) >= 1)
    }

    @Test func aDeadPortIsAConnectFailureRetriedElsewhere() async throws {
        let rig = try await ResilienceRig.start(1) { u in
            ResilienceRig.config(upstream: #"{ "targets": ["@DEAD@", "\#(u[0])"] }"#, route: Self.retryAll)
        }
        defer { Task { await rig.stop() } }
        for _ in 0..<4 {
            let r = try await rig.request("GET", "/x")
            #expect(r.status == 200)
        }
        #expect((rig.metric("gateway_retries_total", ["route": "r", "reason": "connect-failure"]) ?? 0) >= 1)
    }

    @Test func aTargetAnswering500sIsEjectedUntilTheEjectionTimePasses() async throws {
        let rig = try await ResilienceRig.start(2) { u in
            ResilienceRig.config(
                upstream: #"""
                    { "targets": ["\#(u[0])", "\#(u[1])"],
                      "outlier_detection": { "consecutive_5xx": 3, "base_ejection_time": "4s", "max_ejection_percent": 50 } }
                    """#, route: "")
        }
        defer { Task { await rig.stop() } }
        let bad = rig.upstreams[0]
        bad.set { $0.status = 500 }
        // On one thread, with no wait for the test's task in between: round robin gives the
        // bad target every other request until its third 500; then 8 more requests.
        let port = rig.port
        let (after, badAfter, seconds) = try await withCheckedThrowingContinuation {
            (c: CheckedContinuation<([Int], Int, Double), any Error>) in
            Thread.detachNewThread {
                c.resume(
                    with: Result {
                        var n = 0
                        while bad.requests < 3 && n < 20 {
                            _ = try RawHTTPClient(port: port).request("GET", "/x")
                            n += 1
                        }
                        let start = Date()
                        let statuses = try (0..<8).map { _ in try RawHTTPClient(port: port).request("GET", "/x").status }
                        return (statuses, bad.requests, Date().timeIntervalSince(start))
                    })
            }
        }
        #expect(after == Array(repeating: 200, count: 8))
        #expect(badAfter == 3, "no traffic while ejected")
        #expect(seconds < 4, "the requests ran within the ejection")
        let ejectedAt = Date()
        // (Read after the fact: the test's task may resume late on a loaded machine, so the
        // ejection may be over; its count is not.)
        let status = await rig.target(bad.url)
        #expect(status?.totalEjections == 1)
        #expect(rig.metric("gateway_outlier_ejections_total", ["upstream": "pool", "target": bad.url, "reason": "consecutive_5xx"]) == 1)
        // Back after base_ejection_time.
        bad.set { $0.status = 200 }
        try await Task.sleep(nanoseconds: UInt64(max(0, 4.1 - seconds - Date().timeIntervalSince(ejectedAt)) * 1e9))
        let back = try await waitUntilAsync(timeout: 5) {
            _ = try await rig.request("GET", "/x")
            return bad.requests > 3
        }
        #expect(back)
        #expect(await rig.target(bad.url)?.available == true)
    }

    @Test func ejectionSurvivesAReloadThatKeepsTheTarget() async throws {
        let upstream = { (u: [String], extra: String) in
            #"""
            { "targets": ["\#(u[0])", "\#(u[1])"\#(extra)],
              "outlier_detection": { "consecutive_5xx": 2, "base_ejection_time": "60s", "max_ejection_percent": 50 } }
            """#
        }
        let rig = try await ResilienceRig.start(3) { u in ResilienceRig.config(upstream: upstream(u, ""), route: "") }
        defer { Task { await rig.stop() } }
        let bad = rig.upstreams[0]
        bad.set { $0.status = 500 }
        #expect(
            try await waitUntilAsync(timeout: 10) {
                _ = try await rig.request("GET", "/x")
                return await rig.target(bad.url)?.available == false
            })
        // A reload that adds a target: the upstream's settings change, the bad target stays ejected.
        let text = ResilienceRig.config(upstream: upstream(rig.upstreams.map(\.url), ", \"\(rig.upstreams[2].url)\""), route: "")
        let snapshot = try #require(ConfigLoader.load(bytes: Array(text.utf8), source: "reload.json").snapshot)
        _ = await rig.server.apply(snapshot)
        let before = bad.requests
        var served = Set<String>()
        for _ in 0..<9 {
            let r = try await rig.request("GET", "/x")
            #expect(r.status == 200)
            served.insert(r.header("x-served-by") ?? "")
        }
        #expect(bad.requests == before)
        #expect(served == ["t1", "t2"])
        let status = await rig.target(bad.url)
        #expect(status?.available == false)
        #expect(status?.timesEjected == 1)
        #expect(status?.ejectedUntil.map { $0 > Date().addingTimeInterval(30) } == true)  // 60 s from the ejection
    }

    @Test func aTargetFailingHealthChecksLeavesTheRotationAndComesBack() async throws {
        let rig = try await ResilienceRig.start(2) { u in
            ResilienceRig.config(
                upstream: #"""
                    { "targets": ["\#(u[0])", "\#(u[1])"],
                      "health_check": { "path": "/healthz", "interval": "100ms", "timeout": "500ms",
                                        "healthy_threshold": 2, "unhealthy_threshold": 2 } }
                    """#, route: "")
        }
        defer { Task { await rig.stop() } }
        let sick = rig.upstreams[0]
        // Generous bounds: the probes' schedule runs on Swift's cooperative pool, which other
        // tests' blocking socket calls can hold up for seconds on 2 cores.
        #expect(try await waitUntilAsync(timeout: 30) { await rig.target(sick.url)?.health == "healthy" })
        sick.set { $0.healthStatus = 503 }
        #expect(try await waitUntilAsync(timeout: 30) { await rig.target(sick.url)?.available == false })
        #expect(await rig.target(sick.url)?.health == "unhealthy")
        let before = sick.requests
        for _ in 0..<6 { #expect(try await rig.request("GET", "/x").status == 200) }
        #expect(sick.requests == before)
        #expect(rig.metric("gateway_upstream_available", ["upstream": "pool", "target": sick.url]) != nil)
        // Comes back only after healthy_threshold passes in a row.
        let probes = sick.healthRequests
        sick.set { $0.healthStatus = 200 }
        #expect(try await waitUntilAsync(timeout: 30) { await rig.target(sick.url)?.available == true })
        #expect(sick.healthRequests >= probes + 2)
        #expect(
            try await waitUntilAsync(timeout: 5) {
                _ = try await rig.request("GET", "/x")
                return sick.requests > before
            })
    }

    @Test func everythingDownIsAQuick502NeverAHang() async throws {
        let rig = try await ResilienceRig.start(0) { _ in
            ResilienceRig.config(upstream: #"{ "targets": ["@DEAD@", "@DEAD2@"] }"#, route: Self.retryAll)
        }
        defer { Task { await rig.stop() } }
        for _ in 0..<3 {
            let (r, seconds) = try await rig.timed("GET", "/x")
            #expect(r.status == 502)
            #expect(r.header("x-upstream-attempts") == "3")
            // Refused connections fail at once: three tries and two short backoffs (the bound
            // is loose for a loaded 2-core machine).
            #expect(seconds < 1)
        }
    }

    @Test func routeTimeoutGives504AcrossTries() async throws {
        let rig = try await ResilienceRig.start(1) { u in
            ResilienceRig.config(
                upstream: #"{ "targets": ["\#(u[0])"] }"#,
                route: #""timeout": "300ms", "retry": { "attempts": 3, "per_try_timeout": "1s" }"#)
        }
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.delayMs = 5000 }
        let (r, seconds) = try await rig.timed("GET", "/x")
        #expect(r.status == 504)
        #expect(String(decoding: r.body, as: UTF8.self).contains("upstream_timeout"))
        #expect(seconds < 1)  // the upstream would take 5 s
    }

    @Test func poolLimitsAnswer503AtOnce() async throws {
        let rig = try await ResilienceRig.start(1) { u in
            ResilienceRig.config(
                upstream: #"{ "targets": ["\#(u[0])"], "max_connections_per_target": 1, "max_pending_requests": 0 }"#, route: "")
        }
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.delayMs = 3000 }  // long enough for a slow test machine to send the second
        async let first = rig.request("GET", "/busy")
        #expect(try await waitUntilAsync(timeout: 5) { rig.upstreams[0].requests == 1 })
        let (second, seconds) = try await rig.timed("GET", "/busy")
        #expect(second.status == 503)
        #expect(String(decoding: second.body, as: UTF8.self).contains("\"unavailable\""))
        #expect(seconds < 0.5)
        #expect(try await first.status == 200)
    }

    @Test func faultInjectionDelaysAndAborts() async throws {
        let rig = try await ResilienceRig.start(1) { u in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 1 }, "access_log": { "enabled": false },
              "upstreams": { "pool": { "targets": ["\(u[0])"] } },
              "routes": [
                { "name": "abort", "match": { "path_prefix": "/abort" }, "upstream": "pool", "fault": { "abort": { "status": 503, "percent": 100 } } },
                { "name": "delay", "match": { "path_prefix": "/delay" }, "upstream": "pool", "fault": { "delay": { "duration": "300ms", "percent": 100 } } },
                { "name": "half", "match": { "path_prefix": "/half" }, "upstream": "pool", "fault": { "abort": { "status": 500, "percent": 50 } } } ] }
            """
        }
        defer { Task { await rig.stop() } }
        let a = try await rig.request("GET", "/abort")
        #expect(a.status == 503)
        #expect(String(decoding: a.body, as: UTF8.self).contains("fault_injected"))
        #expect(rig.upstreams[0].requests == 0)
        let (d, seconds) = try await rig.timed("GET", "/delay")
        #expect(d.status == 200)
        #expect(seconds >= 0.3)
        var aborted = 0
        for _ in 0..<200 where try await rig.request("GET", "/half").status == 500 { aborted += 1 }
        #expect((60...140).contains(aborted), "\(aborted) of 200 aborted at 50%")
    }
}
