import Foundation
import GatewayPolicies
import NIOCore
import NIOPosix
import Testing

@testable import GatewayProxy

/// The RESP client and the Redis rate-limit script against a real redis-server.
@Suite struct RedisStoreTests {
    @Test func respParsesEveryTypeAndWaitsForWholeReplies() throws {
        let text = "+OK\r\n-ERR bad\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n_\r\n#t\r\n,1.5\r\n%1\r\n+k\r\n:2\r\n"
        var buffer = ByteBuffer(string: text)
        var values: [RESPValue] = []
        while let v = try RESPParser.parse(&buffer) { values.append(v) }
        #expect(
            values == [
                .simple("OK"), .error("ERR bad"), .integer(42), .bulk(Array("hello".utf8)), .bulk(nil),
                .array([.integer(1), .bulk([UInt8(ascii: "x")])]), .null, .boolean(true), .double(1.5),
                .array([.simple("k"), .integer(2)]),
            ])
        // Split anywhere, a reply is only taken once it is whole, and nothing is lost.
        let bytes = Array(text.utf8)
        for cut in 1..<bytes.count {
            var first = ByteBuffer(bytes: bytes[..<cut])
            var got: [RESPValue] = []
            while let v = try RESPParser.parse(&first) { got.append(v) }
            var rest = first
            rest.writeBytes(bytes[cut...])
            while let v = try RESPParser.parse(&rest) { got.append(v) }
            #expect(got == values, "cut at \(cut)")
        }
        var bad = ByteBuffer(string: "?what\r\n")
        #expect(throws: RESPError.self) { try RESPParser.parse(&bad) }
        var deep = ByteBuffer(string: String(repeating: "*1\r\n", count: 20) + ":1\r\n")
        #expect(throws: RESPError.self) { try RESPParser.parse(&deep) }
    }

    /// A limiter on one loop of `group`, and a way to run its decisions there.
    struct OnLoop: Sendable {
        let loop: any EventLoop
        let limiter: NIOLoopBound<RedisLimiter>

        init(group: any EventLoopGroup, port: Int, timeout: TimeAmount = .milliseconds(500)) async throws {
            let loop = group.next()
            self.loop = loop
            limiter = try await loop.submit {
                let c = RedisConnection(loop: loop, host: "127.0.0.1", port: port, database: 0, connectTimeout: .milliseconds(500))
                return NIOLoopBound(RedisLimiter(connection: c, prefix: "test", timeout: timeout), eventLoop: loop)
            }.get()
        }

        func decide(_ key: String, _ limits: [GCRALimit]) async throws -> GCRA.Outcome {
            let bound = limiter
            return try await loop.flatSubmit { bound.value.decide(key: key, limits: limits) }.get()
        }

        /// How long the decision took on the loop, from the call to its outcome (not counting
        /// the wait for a thread of the cooperative pool, which other tests can hold up), and
        /// whether it failed.
        func timedDecision(_ key: String, _ limits: [GCRALimit]) async throws -> (seconds: Double, failed: Bool) {
            let bound = limiter
            return try await loop.flatSubmit {
                let start = NIODeadline.now()
                return bound.value.decide(key: key, limits: limits).map { _ in false }.recover { _ in true }.map { failed in
                    (Double((NIODeadline.now() - start).nanoseconds) / 1e9, failed)
                }
            }.get()
        }
    }

    @Test func burstAndSeveralLimitsAtomicallyInRedis() async throws {
        let redis = RedisServer()
        try await redis.start()
        defer { redis.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let r = try await OnLoop(group: group, port: redis.port)
        // 5 an hour, bursts of 10: slow enough that a loaded machine cannot refill it mid-test.
        let free = GCRALimit(limit: 5, periodNanos: 3_600_000_000_000, burst: 10)
        var admitted = 0
        for _ in 0..<15 where try await r.decide("user-1", [free]).admitted { admitted += 1 }
        #expect(admitted == 10)
        let refused = try await r.decide("user-1", [free])
        #expect(!refused.admitted && refused.remaining == 0 && refused.retryAfterNanos > 0 && refused.retryAfterNanos <= 720_000_000_000)
        // Two limits: the daily one (3) stops the burst; refused requests charge neither.
        let daily = GCRALimit(limit: 3, periodNanos: 86_400_000_000_000)
        var both = 0
        for _ in 0..<8 where try await r.decide("user-2", [free, daily]).admitted { both += 1 }
        #expect(both == 3)
        let first = try await r.decide("user-3", [free, daily])
        #expect(first.admitted && first.tightest == 1 && first.remaining == 2)
        // Keys expire by themselves once the limit has refilled.
        let ttl = redis.command("PTTL test:user-1:5/3600000000000/10") ?? ""
        #expect(ttl.hasPrefix(":") && (Int(ttl.dropFirst()) ?? 0) > 0 && (Int(ttl.dropFirst()) ?? 0) <= 7_200_001, "\(ttl)")
        // A server that forgot the script (restart, SCRIPT FLUSH) gets it again.
        #expect(redis.command("SCRIPT FLUSH") == "+OK")
        #expect(try await r.decide("user-4", [free]).admitted)
        try await group.shutdownGracefully()
    }

    @Test func downFailsFastAndRecovers() async throws {
        let redis = RedisServer()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let r = try await OnLoop(group: group, port: redis.port)
        let l = GCRALimit(limit: 100, periodNanos: 1_000_000_000)
        // Nothing listens yet: the decision fails at once, not after a long wait.
        let first = try await r.timedDecision("k", [l])
        #expect(first.failed)
        #expect(first.seconds < 1, "a refused connection fails within the connect timeout (500 ms): \(first.seconds) s")
        try await redis.start()
        defer { redis.stop() }
        // After the backoff the next decision reconnects.
        var recovered = false
        let deadline = Date().addingTimeInterval(10)
        while !recovered && Date() < deadline {
            recovered = (try? await r.decide("k", [l]))?.admitted == true
            if !recovered { try await Task.sleep(nanoseconds: 100_000_000) }
        }
        #expect(recovered)
        // Killed while connected: in-flight and new decisions fail, none hangs.
        redis.stop()
        await #expect(throws: (any Error).self) { try await r.decide("k", [l]) }
        try await group.shutdownGracefully()
    }
}

/// The Redis store on the request path: gateways sharing one redis-server.
@Suite struct RedisRateLimitTests {
    static func template(redisPort: Int, onError: String = "allow", limit: Int = 5, burst: Int = 10) -> String {
        """
        { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
          "access_log": { "enabled": false },
          "rate_limits": { "store": { "kind": "redis", "url": "redis://127.0.0.1:\(redisPort)/0", "prefix": "gwtest",
                                      "on_error": "\(onError)", "timeout": "500ms" },
                           "key_from": ["client_ip"], "default_tier": "anonymous",
                           "tiers": { "anonymous": [ { "limit": \(limit), "per": "1h", "burst": \(burst) } ] } },
          "upstreams": { "svc": { "targets": ["@UP0@"] } },
          "routes": [ { "match": { "path_prefix": "/" }, "upstream": "svc" } ] }
        """
    }

    @Test func aBurstThroughTheGatewayAndHeaders() async throws {
        let redis = RedisServer()
        try await redis.start()
        defer { redis.stop() }
        try await withGateway(Self.template(redisPort: redis.port)) { h in
            let rs = try await RateLimitTests.send(h.port, "/x", count: 15)
            #expect(rs.filter { $0.status == 200 }.count == 10, "\(rs.map(\.status))")
            #expect(rs.first?.header("ratelimit-remaining") == "9")
            #expect(rs.last?.status == 429)
            #expect(rs.last?.header("retry-after") == "720")  // one request in 1h / 5
        }
    }

    @Test func twoGatewaysShareOneLimit() async throws {
        let redis = RedisServer()
        try await redis.start()
        defer { redis.stop() }
        try await withGateway(Self.template(redisPort: redis.port, limit: 50, burst: 50)) { a in
            try await withGateway(Self.template(redisPort: redis.port, limit: 50, burst: 50)) { b in
                // 200 requests, alternating between the two gateways, four clients at a time.
                let admitted = try await withThrowingTaskGroup(of: Int.self) { group in
                    for client in 0..<4 {
                        group.addTask {
                            let rsA = try await RateLimitTests.send(client % 2 == 0 ? a.port : b.port, "/x", count: 50)
                            return rsA.filter { $0.status == 200 }.count
                        }
                    }
                    return try await group.reduce(0, +)
                }
                #expect((48...52).contains(admitted), "\(admitted) admitted of 200 against a burst of 50")
            }
        }
    }

    @Test func twoGatewayProcessesShareOneLimit() async throws {
        let redis = RedisServer()
        try await redis.start()
        defer { redis.stop() }
        let template = """
            { "listeners": [ { "name": "p", "address": "127.0.0.1:@PORT@" } ], "access_log": { "enabled": false },
              "rate_limits": { "store": { "kind": "redis", "url": "redis://127.0.0.1:\(redis.port)/0", "prefix": "gwproc", "timeout": "500ms" },
                               "key_from": ["client_ip"], "default_tier": "anonymous",
                               "tiers": { "anonymous": [ { "limit": 50, "per": "1h", "burst": 50 } ] } },
              "upstreams": {}, "routes": [ { "match": { "path_prefix": "/" }, "respond": { "status": 200, "body": "ok" } } ] }
            """
        let a = try await GatewayProcess.start(configTemplate: template)
        let b = try await GatewayProcess.start(configTemplate: template)
        let clients = [try RawHTTPClient(port: a.port), try RawHTTPClient(port: b.port)]
        var admitted = 0
        var perProcess = [0, 0]
        for i in 0..<200 where try clients[i % 2].request("GET", "/x").status == 200 {
            admitted += 1
            perProcess[i % 2] += 1
        }
        #expect((48...52).contains(admitted), "\(admitted) of 200 admitted against a burst of 50")
        #expect(perProcess[0] > 10 && perProcess[1] > 10, "both processes admitted some: \(perProcess)")
    }

    @Test func redisDownAllowFallsBackDenyAnswers503AndBothRecover() async throws {
        let redis = RedisServer()
        try await redis.start()
        try await withGateway(Self.template(redisPort: redis.port, onError: "allow", limit: 1000, burst: 1000)) { allow in
            try await withGateway(Self.template(redisPort: redis.port, onError: "deny", limit: 1000, burst: 1000)) { deny in
                #expect(try await RateLimitTests.send(allow.port, "/x", count: 1).first?.status == 200)
                #expect(try await RateLimitTests.send(deny.port, "/x", count: 1).first?.status == 200)
                redis.stop()
                // Redis gone: allow keeps serving (the local limiter decides), deny answers 503.
                let a = try await RateLimitTests.send(allow.port, "/x", count: 5)
                #expect(a.allSatisfy { $0.status == 200 }, "\(a.map(\.status))")
                #expect(a.first?.header("ratelimit-limit") == "1000")
                let d = try await RateLimitTests.send(deny.port, "/x", count: 3)
                #expect(d.allSatisfy { $0.status == 503 }, "\(d.map(\.status))")
                #expect(d.first?.text.contains("\"error\":\"unavailable\"") == true)
                // Redis back on the same port: both recover (after the reconnect backoff).
                try await redis.start()
                defer { redis.stop() }
                var recovered = false
                let deadline = Date().addingTimeInterval(15)
                while !recovered && Date() < deadline {
                    recovered = try await RateLimitTests.send(deny.port, "/x", count: 1).first?.status == 200
                    if !recovered { try await Task.sleep(nanoseconds: 200_000_000) }
                }
                #expect(recovered, "deny serves again once Redis answers")
                #expect(try await RateLimitTests.send(allow.port, "/x", count: 1).first?.status == 200)
            }
        }
    }
}
