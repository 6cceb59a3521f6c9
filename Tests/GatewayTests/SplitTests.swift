import Foundation
import GatewayConfig
import GatewayPolicies
import GatewayProxy
import Testing

@testable import GatewayAdmin

/// Canary splits (sticky and monotonic) and mirroring (issue 7): the bucket arithmetic
/// alone, then over real sockets.
@Suite struct SplitPolicyTests {
    static func keys(_ n: Int) -> [UInt64] { (0..<n).map { StableHash.hash("user-\($0)") } }

    @Test func stickyDistributionIsWithinHalfAPointOfTheWeights() {
        let keys = Self.keys(100_000)
        for weights in [[95, 5], [90, 10], [50, 50], [70, 20, 10], [1, 1, 1, 1]] {
            let split = CanarySplit(weights: weights)
            var counts = Array(repeating: 0, count: weights.count)
            for k in keys { counts[split.member(forBucket: CanarySplit.bucket(k))] += 1 }
            let total = Double(weights.reduce(0, +))
            for (i, w) in weights.enumerated() {
                let share = Double(counts[i]) / Double(keys.count) * 100
                let want = Double(w) / total * 100
                #expect(abs(share - want) <= 0.5, "weights \(weights): member \(i) got \(share)% for \(want)%")
            }
        }
    }

    @Test func aKeyOnTheCanaryStaysOnItAsTheCanaryGrows() {
        let keys = Self.keys(20_000)
        var previous = Set<Int>()
        for w in [1, 5, 10, 25, 50, 100] {
            let split = CanarySplit(weights: [100 - w, w])
            let onCanary = Set(keys.indices.filter { split.member(forBucket: CanarySplit.bucket(keys[$0])) == 1 })
            #expect(previous.isSubset(of: onCanary), "a key left the canary when it grew to \(w)%")
            #expect(onCanary.count > previous.count || w == 100)
            previous = onCanary
        }
        #expect(previous.count == keys.count)  // at 100% every key is on the canary
        // Relative weights (stable fixed at 100) grow the same way.
        var before = Set<Int>()
        for w in [1, 5, 10, 25, 50, 100] {
            let split = CanarySplit(weights: [100, w])
            let on = Set(keys.indices.filter { split.member(forBucket: CanarySplit.bucket(keys[$0])) == 1 })
            #expect(before.isSubset(of: on))
            before = on
        }
    }

    @Test func bucketsAreTheSameInEveryProcess() {
        // Computed independently (FNV-1a 64 then the splitmix64 finalizer, in Python): a
        // per-process seed anywhere in the hash would break these.
        #expect(CanarySplit.bucket(StableHash.hash("user-42")) == 8355)
        #expect(CanarySplit.bucket(StableHash.hash("alice")) == 572)
        #expect(CanarySplit.bucket(StableHash.hash("203.0.113.7")) == 7337)
        let split = CanarySplit(weights: [95, 5])
        #expect(split.bounds == [9500, 10000])
        #expect(split.member(forBucket: 9499) == 0 && split.member(forBucket: 9500) == 1)
    }

    @Test func weightedRandomFollowsTheWeightsAndZeroGetsNothing() {
        var rng = SplitMix64(seed: 1)
        let split = CanarySplit(weights: [3, 0, 1])
        var counts = [0, 0, 0]
        for _ in 0..<40_000 { counts[split.member(random: rng.next())] += 1 }
        #expect(counts[1] == 0)
        #expect(abs(Double(counts[0]) / 40_000 - 0.75) < 0.01)
        // A zero weight has an empty bucket range.
        #expect((0..<10_000).allSatisfy { split.member(forBucket: $0) != 1 })
    }

    @Test func configChecks() {
        let text = """
            { "listeners": [ { "name": "l", "address": "127.0.0.1:0" } ],
              "upstreams": { "a": { "targets": ["http://127.0.0.1:1"] }, "b": { "targets": ["http://127.0.0.1:2"] } },
              "routes": [
                { "match": { "path_prefix": "/x" }, "split": { "to": [ { "upstream": "a", "weight": 0 }, { "upstream": "c" }, { "upstream": "a" } ],
                  "sticky": "session", "override_header": "bad header" }, "mirror": { "upstream": "zz", "percent": 101 } },
                { "match": { "path_prefix": "/y" }, "upstream": "a", "split": { "to": [ { "upstream": "b" } ] } } ] }
            """
        let r = ConfigLoader.load(bytes: Array(text.utf8), source: "t.json")
        let paths = Set(r.errors.map(\.path))
        for p in [
            "routes[0].split.to[1].upstream", "routes[0].split.to[2].upstream", "routes[0].split.sticky",
            "routes[0].split.override_header", "routes[0].mirror.upstream", "routes[0].mirror.percent", "routes[1]",
        ] {
            #expect(paths.contains(p), "\(p) in \(paths)")
        }
    }
}

@Suite struct SplitTests {
    /// stable (t0), canary (t1), and a mirror target (t2).
    static func template(weights: (Int, Int), mirror: String = "") -> ([String]) -> String {
        { u in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 2 }, "access_log": { "enabled": false },
              "upstreams": { "stable": { "targets": ["\(u[0])"] }, "canary": { "targets": ["\(u[1])"] },
                             "shadow": { "targets": ["\(u[2])"] } },
              "routes": [
                { "name": "sticky", "match": { "path_prefix": "/sticky" },
                  "split": { "to": [ { "upstream": "stable", "weight": \(weights.0) }, { "upstream": "canary", "weight": \(weights.1) } ],
                             "sticky": "header:x-user", "override_header": "x-canary" } },
                { "name": "random", "match": { "path_prefix": "/random" }, \(mirror)
                  "split": { "to": [ { "upstream": "stable", "weight": \(weights.0) }, { "upstream": "canary", "weight": \(weights.1) } ] } } ] }
            """
        }
    }

    /// Requests on one keep-alive connection per call, on a thread of their own.
    static func servedBy(_ port: Int, _ requests: [(String, [(String, String)])]) async throws -> [String] {
        try await withCheckedThrowingContinuation { c in
            Thread.detachNewThread {
                c.resume(
                    with: Result {
                        let client = try RawHTTPClient(port: port, timeout: 30)
                        return try requests.map { path, headers in
                            let r = try client.request("GET", path, headers: headers)
                            return r.status == 200 ? (r.header("x-served-by") ?? "?") : "status \(r.status)"
                        }
                    })
            }
        }
    }

    @Test func ninetyTenOver2000RequestsIsWithinThreePoints() async throws {
        let rig = try await ResilienceRig.start(3, Self.template(weights: (90, 10)))
        defer { Task { await rig.stop() } }
        let served = try await Self.servedBy(rig.port, Array(repeating: ("/random/x", []), count: 2000))
        let canary = Double(served.filter { $0 == "t1" }.count) / 20
        #expect(served.allSatisfy { $0 == "t0" || $0 == "t1" })
        #expect(abs(canary - 10) <= 3, "canary got \(canary)%")
        let text = String(decoding: rig.server.shared.metrics.exposition(), as: UTF8.self)
        let metrics = try PrometheusText(text)
        let perMember = metrics.samples.filter { $0.name == "gateway_upstream_requests_total" }
            .reduce(into: [String: Double]()) { $0[$1.labels["upstream"] ?? "", default: 0] += $1.value }
        #expect(perMember["stable"] == Double(served.filter { $0 == "t0" }.count))
        #expect(perMember["canary"] == Double(served.filter { $0 == "t1" }.count))
    }

    @Test func aStickyKeyAlwaysLandsOnTheSameUpstreamAndMatchesExplain() async throws {
        let rig = try await ResilienceRig.start(3, Self.template(weights: (70, 30)))
        defer { Task { await rig.stop() } }
        let users = (0..<40).map { "user-\($0)" }
        let requests = users.flatMap { u in Array(repeating: ("/sticky/x", [("x-user", u)]), count: 5) }
        let served = try await Self.servedBy(rig.port, requests)
        var byUser: [String: Set<String>] = [:]
        for (i, s) in served.enumerated() { byUser[users[i / 5], default: []].insert(s) }
        #expect(byUser.values.allSatisfy { $0.count == 1 })
        #expect(Set(byUser.values.flatMap { $0 }) == ["t0", "t1"])
        // The admin API's explanation (`/explain?sticky=KEY`) agrees with where each key went.
        let snapshot = rig.server.shared.snapshots.snapshot
        for u in users {
            let body = AdminViews.explain(snapshot, query: Substring("path=/sticky/x&sticky=\(u)"))
            let json = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
            let sticky = try #require(json["sticky"] as? [String: Any])
            let upstream = sticky["upstream"] as? String
            #expect(byUser[u] == [upstream == "stable" ? "t0" : "t1"], "\(u): \(sticky)")
        }
    }

    @Test func raisingTheCanaryWeightMovesNoKeyBackToStable() async throws {
        let rig = try await ResilienceRig.start(3, Self.template(weights: (95, 5)))
        defer { Task { await rig.stop() } }
        let users = (0..<300).map { "u\($0)" }
        let before = try await Self.servedBy(rig.port, users.map { ("/sticky/x", [("x-user", $0)]) })
        let text = Self.template(weights: (75, 25))(rig.upstreams.map(\.url))
        let snapshot = try #require(ConfigLoader.load(bytes: Array(text.utf8), source: "reload.json").snapshot)
        _ = await rig.server.apply(snapshot)
        let after = try await Self.servedBy(rig.port, users.map { ("/sticky/x", [("x-user", $0)]) })
        let canaryBefore = Set(users.indices.filter { before[$0] == "t1" })
        let canaryAfter = Set(users.indices.filter { after[$0] == "t1" })
        #expect(!canaryBefore.isEmpty)
        #expect(canaryBefore.isSubset(of: canaryAfter), "keys moved back: \(canaryBefore.subtracting(canaryAfter))")
        #expect(canaryAfter.count > canaryBefore.count)
    }

    @Test func theOverrideHeaderPicksTheMember() async throws {
        let rig = try await ResilienceRig.start(3, Self.template(weights: (100, 0)))
        defer { Task { await rig.stop() } }
        let served = try await Self.servedBy(
            rig.port,
            [
                ("/sticky/x", [("x-user", "a"), ("x-canary", "canary")]), ("/sticky/x", [("x-user", "a"), ("x-canary", "stable")]),
                ("/sticky/x", [("x-user", "a"), ("x-canary", "nonsense")]), ("/sticky/x", [("x-user", "a")]),
            ])
        #expect(served == ["t1", "t0", "t0", "t0"])
    }

    @Test func mirrorsInFlightAreBounded() async throws {
        let rig = try await ResilienceRig.start(
            3, Self.template(weights: (1, 0), mirror: #""mirror": { "upstream": "shadow", "percent": 100 }, "timeout": "30s","#))
        defer { Task { await rig.stop() } }
        rig.upstreams[2].set { $0.delayMs = 20_000 }
        // One keep-alive connection (one event loop): 140 requests while every copy hangs.
        let served = try await Self.servedBy(rig.port, Array(repeating: ("/random/x", []), count: 140))
        #expect(served.allSatisfy { $0 == "t0" })
        #expect(rig.metric("gateway_mirror_requests_total", ["route": "random", "outcome": "sent"]) == 128)
        #expect(rig.metric("gateway_mirror_requests_total", ["route": "random", "outcome": "skipped_in_flight_limit"]) == 12)
    }

    @Test func aSlowMirrorDoesNotSlowTheRealResponse() async throws {
        let rig = try await ResilienceRig.start(
            3, Self.template(weights: (1, 0), mirror: #""mirror": { "upstream": "shadow", "percent": 100 }, "timeout": "5s","#))
        defer { Task { await rig.stop() } }
        let shadow = rig.upstreams[2]
        shadow.set { $0.delayMs = 2000 }
        let body = Array(repeating: UInt8(ascii: "m"), count: 3000)
        let port = rig.port
        let (statuses, seconds) = try await withCheckedThrowingContinuation { (c: CheckedContinuation<([Int], Double), any Error>) in
            Thread.detachNewThread {
                c.resume(
                    with: Result {
                        let start = Date()
                        let client = try RawHTTPClient(port: port)
                        let s = try (0..<5).map { _ in try client.request("POST", "/random/orders", body: body).status }
                        return (s, Date().timeIntervalSince(start))
                    })
            }
        }
        #expect(statuses == [200, 200, 200, 200, 200])
        #expect(seconds < 1, "5 requests took \(seconds) s beside a mirror that answers in 2 s")
        // Every copy arrived, body included, marked as a copy.
        #expect(try await waitUntilAsync(timeout: 10) { shadow.requests == 5 })
        #expect(shadow.methods == Array(repeating: "POST", count: 5))
        #expect(shadow.bodies == Array(repeating: 3000, count: 5))
        #expect(shadow.mirrored == 5)
        #expect(rig.metric("gateway_mirror_requests_total", ["route": "random", "outcome": "sent"]) == 5)
        #expect(rig.upstreams[0].requests == 5)
    }
}
