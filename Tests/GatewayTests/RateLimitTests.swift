import Foundation
import GatewayAuth
import GatewayConfig
import GatewayProxy
import Testing

@testable import GatewayAdmin

/// Tiers, keys, headers and 429s over real loopback sockets (SPEC §2.6), memory store.
@Suite struct RateLimitTests {
    static let secret = String(repeating: "r", count: 40)

    static func template(rateLimits: String, extraRoutes: String = "") -> String {
        """
        { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
          "access_log": { "enabled": false },
          "auth": {
            "jwt": { "hs": { "issuer": "\(Mint.issuer)", "audiences": ["\(Mint.audience)"], "hmac_secret_env": "RL_SECRET",
                             "algorithms": ["HS256"] } },
            "api_keys": { "keys": [ { "id": "partner-a", "sha256": "\(AuthTests.sha256Hex("key-a"))", "tier": "partner" } ] } },
          "rate_limits": \(rateLimits),
          "upstreams": { "svc": { "targets": ["@UP0@"] } },
          "routes": [
            \(extraRoutes)
            { "name": "any", "match": { "path_prefix": "/any" }, "upstream": "svc",
              "auth": { "any_of": [ { "jwt": "hs" }, { "api_key": true } ] } },
            { "name": "open", "match": { "path_prefix": "/" }, "upstream": "svc" } ] }
        """
    }

    static let tiers = """
        { "tier_from": ["claim:tier", "api_key"], "default_tier": "anonymous",
          "key_from": ["claim:sub", "api_key", "client_ip"],
          "tiers": {
            "anonymous": [ { "limit": 2, "per": "1m" } ],
            "free": [ { "limit": 5, "per": "1s", "burst": 10 }, { "limit": 1000, "per": "1d" } ],
            "pro": [ { "limit": 3, "per": "1m" } ],
            "partner": [ { "limit": 4, "per": "1m" } ],
            "internal": "unlimited" } }
        """

    static func token(sub: String, tier: String?) -> String {
        var extra: [String: Any] = [:]
        if let tier { extra["tier"] = tier }
        return Mint.token(alg: "HS256", kid: nil, key: .hmac(Array(secret.utf8)), claims: Mint.claims(sub: sub, extra: extra))
    }

    /// `count` requests one after another on one kept-alive connection (off the cooperative pool).
    static func send(_ port: Int, _ path: String, count: Int, headers: [(String, String)] = []) async throws -> [RawHTTPClient.Response] {
        try await withCheckedThrowingContinuation { c in
            Thread.detachNewThread {
                c.resume(
                    with: Result {
                        let client = try RawHTTPClient(port: port, timeout: 10)
                        return try (0..<count).map { _ in try client.request("GET", path, headers: headers) }
                    })
            }
        }
    }

    func admitted(_ rs: [RawHTTPClient.Response]) -> Int { rs.filter { $0.status == 200 }.count }

    @Test func freeTierBurstOf10Of15() async throws {
        try await withGateway(environment: ["RL_SECRET": Self.secret], Self.template(rateLimits: Self.tiers)) { h in
            #expect(await waitUntilAsync { h.server.keysFetched })
            let rs = try await Self.send(h.port, "/any/x", count: 15, headers: AuthTests.bearer(Self.token(sub: "f1", tier: "free")))
            #expect(admitted(rs) == 10, "\(rs.map(\.status))")
            let first = try #require(rs.first)
            #expect(first.header("ratelimit-limit") == "10")
            #expect(first.header("ratelimit-remaining") == "9")
            #expect(first.header("ratelimit-policy") == "5;w=1;burst=10")
            #expect(first.header("ratelimit-reset") == "1")
            let refused = try #require(rs.last)
            #expect(refused.status == 429)
            #expect(refused.text.contains("\"error\":\"rate_limited\""))
            #expect(refused.header("retry-after") == "1")
            #expect(refused.header("ratelimit-remaining") == "0")
            // Another user of the same tier has a key of its own.
            let other = try await Self.send(h.port, "/any/x", count: 1, headers: AuthTests.bearer(Self.token(sub: "f2", tier: "free")))
            #expect(other.first?.status == 200)
        }
    }

    @Test func tiersFromClaimsAPIKeysAndTheClientIP() async throws {
        try await withGateway(environment: ["RL_SECRET": Self.secret], Self.template(rateLimits: Self.tiers)) { h in
            #expect(await waitUntilAsync { h.server.keysFetched })
            let pro = try await Self.send(h.port, "/any/x", count: 5, headers: AuthTests.bearer(Self.token(sub: "p1", tier: "pro")))
            #expect(admitted(pro) == 3)
            #expect(pro.first?.header("ratelimit-policy") == "3;w=60")
            let partner = try await Self.send(h.port, "/any/x", count: 6, headers: [("x-api-key", "key-a")])
            #expect(admitted(partner) == 4)
            // No credentials: anonymous, keyed by the client IP.
            let anonymous = try await Self.send(h.port, "/open/x", count: 4)
            #expect(admitted(anonymous) == 2)
            // A tier the claim names but the file does not have: the default tier.
            let unknownTier = try await Self.send(
                h.port, "/any/x", count: 3, headers: AuthTests.bearer(Self.token(sub: "u1", tier: "gold")))
            #expect(admitted(unknownTier) == 2)
            let unlimited = try await Self.send(
                h.port, "/any/x", count: 30, headers: AuthTests.bearer(Self.token(sub: "i1", tier: "internal")))
            #expect(admitted(unlimited) == 30)
            #expect(unlimited.first?.header("ratelimit-limit") == nil, "unlimited: no RateLimit fields")
            let metrics = String(decoding: h.server.shared.metrics.exposition(), as: UTF8.self)
            #expect(metrics.contains("gateway_ratelimit_decisions_total{tier=\"pro\",decision=\"rejected\"} 2"))
            #expect(metrics.contains("gateway_ratelimit_decisions_total{tier=\"partner\",decision=\"allowed\"} 4"))
        }
    }

    @Test func routeOverrideFalseAndShadow() async throws {
        let routes = """
            { "name": "strict", "match": { "path_prefix": "/strict" }, "upstream": "svc",
              "rate_limit": { "tiers": { "anonymous": [ { "limit": 1, "per": "1m" } ] } } },
            { "name": "free-for-all", "match": { "path_prefix": "/health" }, "upstream": "svc", "rate_limit": false },
            { "name": "watch", "match": { "path_prefix": "/watch" }, "upstream": "svc",
              "rate_limit": { "tiers": { "anonymous": [ { "limit": 1, "per": "1m" } ] }, "shadow": true } },
            """
        try await withGateway(environment: ["RL_SECRET": Self.secret], Self.template(rateLimits: Self.tiers, extraRoutes: routes)) { h in
            #expect(await waitUntilAsync { h.server.keysFetched })
            let got1 = try await Self.send(h.port, "/strict", count: 3)
            #expect(admitted(got1) == 1)
            let off = try await Self.send(h.port, "/health", count: 20)
            #expect(admitted(off) == 20)
            #expect(off.first?.header("ratelimit-limit") == nil)
            let shadow = try await Self.send(h.port, "/watch", count: 5)
            #expect(admitted(shadow) == 5, "shadow never rejects")
            let metrics = String(decoding: h.server.shared.metrics.exposition(), as: UTF8.self)
            #expect(metrics.contains("gateway_ratelimit_decisions_total{tier=\"anonymous\",decision=\"shadow_rejected\"} 4"))
        }
    }

    @Test func perIPIsCheckedBeforeAuthentication() async throws {
        let limits = """
            { "per_ip": [ { "limit": 3, "per": "1m" } ], "default_tier": "anonymous",
              "tiers": { "anonymous": [ { "limit": 100, "per": "1s" } ] } }
            """
        try await withGateway(environment: ["RL_SECRET": Self.secret], Self.template(rateLimits: limits)) { h in
            #expect(await waitUntilAsync { h.server.keysFetched })
            // Bad credentials: 401 while the IP has budget, then 429 without checking them.
            let rs = try await Self.send(h.port, "/any/x", count: 5, headers: [("x-api-key", "guess")])
            #expect(rs.map(\.status) == [401, 401, 401, 429, 429])
        }
    }

    @Test func explainShowsTheTierAndKey() async throws {
        try await withGateway(environment: ["RL_SECRET": Self.secret], Self.template(rateLimits: Self.tiers)) { h in
            #expect(await waitUntilAsync { h.server.keysFetched })
            let snapshot = h.server.shared.snapshots.snapshot
            func explain(_ q: String) -> String {
                String(decoding: AdminViews.explain(snapshot, query: Substring(q), server: h.server), as: UTF8.self)
            }
            let key = explain("path=/any/x&header=x-api-key:key-a")
            #expect(key.contains("\"credential\":\"api_key:partner-a\""))
            #expect(key.contains("\"tier\":\"partner\",\"key\":\"api_key=partner-a\""))
            let token = Self.token(sub: "zoe", tier: "pro")
            let jwt = explain("path=/any/x&header=authorization:Bearer%20\(token)")
            #expect(jwt.contains("\"tier\":\"pro\",\"key\":\"claim:sub=zoe\""), "\(jwt)")
            let anonymous = explain("path=/open/x&client_ip=10.1.2.3")
            #expect(anonymous.contains("\"tier\":\"anonymous\",\"key\":\"client_ip=10.1.2.3\""))
            let bad = explain("path=/any/x&header=x-api-key:wrong")
            #expect(bad.contains("\"credential\":null,\"auth_failure\":\"the API key is not valid\""))
        }
    }

    @Test func countersSurviveAReload() async throws {
        try await withGateway(environment: ["RL_SECRET": Self.secret], Self.template(rateLimits: Self.tiers)) { h in
            #expect(await waitUntilAsync { h.server.keysFetched })
            let got1 = try await Self.send(h.port, "/open/x", count: 1)
            #expect(admitted(got1) == 1)
            // The same file again, as a new snapshot (a reload): the anonymous budget stays spent.
            let current = h.server.shared.snapshots.snapshot
            _ = await h.server.apply(Snapshot(file: current.file, version: current.version + "-reloaded"))
            let after = try await Self.send(h.port, "/open/x", count: 3)
            #expect(admitted(after) == 1)
        }
    }
}
