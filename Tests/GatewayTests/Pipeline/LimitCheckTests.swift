import Testing

@testable import GatewayProxy

/// The limit phases on an `EmbeddedChannel` with the memory store: `per_ip` before
/// authentication, then the tier; the `RateLimit-*` fields, 429 with `Retry-After`.
@Suite struct LimitCheckTests {
    @Test func perIPIsCheckedBeforeAuthentication() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "keyed", "match": { "path_prefix": "/keyed" }, "respond": { "status": 200 }, "auth": { "api_key": true } },
                    """,
                extra: """
                    "auth": { "api_keys": { "header": "x-api-key", "keys": [ { "id": "a", "sha256": "\(String(repeating: "0", count: 64))" } ] } },
                    "rate_limits": { "per_ip": [ { "limit": 1, "per": "1m" } ], "default_tier": "all", "tiers": { "all": "unlimited" } },
                    """))
        // No key: the first request is counted (and refused by auth), the second by per_ip.
        let out = try rig.send("GET /keyed HTTP/1.1\r\nHost: h\r\n\r\nGET /keyed HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [401, 429])
        #expect(out.lowercased().contains("retry-after: "))
        #expect(out.lowercased().contains("ratelimit-policy: 1;w=60"))
    }

    @Test func theTierOfWhoTheRequestIs() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                extra: """
                    "rate_limits": { "default_tier": "anonymous", "key_from": ["client_ip"],
                      "tiers": { "anonymous": [ { "limit": 2, "per": "1m" } ] } },
                    """))
        let one = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        let out = try rig.send(one + one + one)
        #expect(PipelineRig.statuses(out) == [200, 200, 429])
        #expect(out.lowercased().contains("ratelimit-remaining: 1"))
    }

    @Test func shadowCountsButLetsThrough() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                extra: """
                    "rate_limits": { "default_tier": "anonymous", "key_from": ["client_ip"], "shadow": true,
                      "tiers": { "anonymous": [ { "limit": 1, "per": "1m" } ] } },
                    """))
        let one = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        #expect(PipelineRig.statuses(try rig.send(one + one)) == [200, 200])
    }

    @Test func theLimitRefillsOnTheLoopsClock() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                extra: """
                    "rate_limits": { "default_tier": "anonymous", "key_from": ["client_ip"],
                      "tiers": { "anonymous": [ { "limit": 1, "per": "1m" } ] } },
                    """), manualClock: true)
        let one = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        #expect(PipelineRig.statuses(try rig.send(one + one)) == [200, 429])
        rig.advance(seconds: 59)
        #expect(PipelineRig.statuses(try rig.send(one)) == [429])
        rig.advance(seconds: 1)
        #expect(PipelineRig.statuses(try rig.send(one)) == [200])
    }
}
