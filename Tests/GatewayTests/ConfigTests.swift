import Foundation
import Testing

@testable import GatewayConfig

@Suite struct ConfigTests {
    func load(_ text: String) -> LoadResult {
        ConfigLoader.load(bytes: Array(text.utf8), source: "t.json")
    }

    @Test func durationsAndSizes() throws {
        #expect(ConfigDuration(parsing: "250ms")?.nanoseconds == 250_000_000)
        #expect(ConfigDuration(parsing: "5s")?.nanoseconds == 5_000_000_000)
        #expect(ConfigDuration(parsing: "10m")?.nanoseconds == 600_000_000_000)
        #expect(ConfigDuration(parsing: "8h")?.nanoseconds == 28_800_000_000_000)
        #expect(ConfigDuration(parsing: "1d")?.nanoseconds == 86_400_000_000_000)
        #expect(ConfigDuration(parsing: "1.5s")?.nanoseconds == 1_500_000_000)
        #expect(ConfigDuration(parsing: "5") == nil)
        #expect(ConfigDuration(parsing: "s") == nil)
        #expect(ConfigDuration(parsing: "-1s") == nil)
        #expect(ConfigDuration(parsing: "5 parsecs") == nil)
        #expect(ByteSize(parsing: "64KiB")?.bytes == 65536)
        #expect(ByteSize(parsing: "10MiB")?.bytes == 10 * 1024 * 1024)
        #expect(ByteSize(parsing: "1GiB")?.bytes == 1 << 30)
        #expect(ByteSize(parsing: "500KB")?.bytes == 500_000)
        #expect(ByteSize(parsing: "1234")?.bytes == 1234)
        #expect(ByteSize(parsing: "12 furlongs") == nil)
        #expect(ConfigDuration.seconds(90).description == "90s")
    }

    @Test func minimalFileIsValidWithDefaults() throws {
        let r = load(
            """
            { "listeners": [ { "address": "127.0.0.1:8080" } ],
              "upstreams": { "a": { "targets": ["http://127.0.0.1:9000"] } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "a" } ] }
            """)
        #expect(r.errors.isEmpty, "\(r.errors)")
        let s = try #require(r.snapshot)
        #expect(s.server.requestTimeoutNanos == 30_000_000_000)
        #expect(s.server.maxBodyBytes == 10 * 1024 * 1024)
        #expect(s.server.maxHeaderBytes == 32768)
        #expect(s.upstreams[0].balancer == .roundRobin)
        #expect(s.upstreams[0].maxConnectionsPerTarget == 256)
        #expect(s.upstreams[0].maxPendingRequests == 1024)
        #expect(s.routes[0].name == "route-0")
        #expect(r.version.hasPrefix("sha256:"))
    }

    @Test func unknownKeyIsAnErrorWithPathAndLineColumn() throws {
        let r = load(
            """
            {
              "listeners": [ { "address": "127.0.0.1:8080" } ],
              "upstreams": { "a": { "targets": ["http://127.0.0.1:9000"] } },
              "routes": [
                { "match": { "path_prefx": "/" }, "upstream": "a" }
              ]
            }
            """)
        #expect(!r.isValid)
        let e = try #require(r.errors.first { $0.message.contains("path_prefx") })
        #expect(e.path == "routes[0].match.path_prefx")
        #expect(e.location?.description == "5:18")
        #expect(e.message.contains("did you mean `path_prefix`"))
    }

    @Test func everyErrorIsReportedNotJustTheFirst() throws {
        let r = load(
            """
            {
              "listeners": [ { "address": "nonsense" } ],
              "admin": { "address": "0.0.0.0:9901" },
              "upstreams": {
                "a": { "targets": ["http://127.0.0.1:9000"], "balancer": "fastest" },
                "b": { "targets": [], "connect_timeout": "soon" }
              },
              "routes": [
                { "match": { "path": "/x/{id" }, "upstream": "missing" },
                { "match": { "path": "/y" } },
                { "match": { "path": "/z" }, "upstream": "a", "respond": { "status": 200 } },
                { "match": { "path": "/w", "methods": ["G ET"] }, "upstream": "a", "timeout": "forever" }
              ],
              "colour": "blue"
            }
            """)
        let paths = Set(r.errors.map(\.path))
        for expected in [
            "listeners[0].address", "admin.address", "upstreams.a.balancer", "upstreams.b.connect_timeout",
            "routes[0].match.path", "routes[0].upstream", "routes[1]", "routes[2]", "routes[3].timeout", "colour",
        ] {
            #expect(paths.contains(expected), "missing error at \(expected); got \(paths.sorted())")
        }
        #expect(r.errors.allSatisfy { $0.location != nil })
        let admin = try #require(r.errors.first { $0.path == "admin.address" })
        #expect(admin.message.contains("token"))
    }

    @Test func aRouteThatFailsToDecodeDoesNotShiftTheIndexOfLaterErrors() throws {
        let r = load(
            """
            { "listeners": [ { "address": "127.0.0.1:8080" } ],
              "upstreams": {},
              "routes": [
                { "match": { "path": 5 }, "respond": { "status": 200 } },
                { "match": { "path": "/b" }, "upstream": "nowhere" } ] }
            """)
        let paths = Set(r.errors.map(\.path))
        #expect(paths.contains("routes[0].match.path"), "\(paths)")
        #expect(paths.contains("routes[1].upstream"), "\(paths)")
    }

    @Test func framingHeadersCannotBeRewritten() throws {
        let r = load(
            """
            { "listeners": [ { "address": "127.0.0.1:8080" } ], "upstreams": {},
              "routes": [ { "match": { "path": "/" }, "respond": { "status": 200 },
                            "response_headers": { "set": { "Content-Length": "5" }, "remove": ["transfer-encoding"] } },
                          { "match": { "path": "/x" }, "respond": { "status": 101 } } ] }
            """)
        #expect(r.errors.contains { $0.path == "routes[0].response_headers" && $0.message.contains("Content-Length") })
        #expect(r.errors.contains { $0.path == "routes[0].response_headers" && $0.message.contains("transfer-encoding") })
        #expect(r.errors.contains { $0.path == "routes[1].respond.status" })
    }

    @Test func http2ListenersAndTheirStreamLimit() throws {
        let base = """
            { "listeners": [ { "address": "127.0.0.1:8080", "http2": HTTP2 } ], SERVER
              "upstreams": { "a": { "targets": ["http://127.0.0.1:9000"] } },
              "routes": [ { "match": { "path": "/" }, "upstream": "a" } ] }
            """
        let ok = load(base.replacingOccurrences(of: "HTTP2", with: "true").replacingOccurrences(of: "SERVER", with: ""))
        #expect(ok.errors.isEmpty)
        #expect(ok.snapshot?.file.listeners.first?.http2 == true)
        #expect(ok.snapshot?.server.http2MaxConcurrentStreams == 128)
        let notBool = load(base.replacingOccurrences(of: "HTTP2", with: "\"yes\"").replacingOccurrences(of: "SERVER", with: ""))
        #expect(notBool.errors.contains { $0.path == "listeners[0].http2" && $0.message.contains("true or false") })
        let zero = load(
            base.replacingOccurrences(of: "HTTP2", with: "true")
                .replacingOccurrences(of: "SERVER", with: #""server": { "http2_max_concurrent_streams": 0 },"#))
        #expect(zero.errors.first?.path == "server.http2_max_concurrent_streams")
        #expect(ok.snapshot?.file.listeners.first?.maxConnections == 20000)
        let capped = load(
            base.replacingOccurrences(of: #""http2": HTTP2"#, with: #""max_connections": 0"#).replacingOccurrences(of: "SERVER", with: ""))
        #expect(capped.errors.first?.path == "listeners[0].max_connections")
    }

    @Test func syntaxErrorHasLocation() throws {
        let r = load("{\n  \"listeners\": [,]\n}")
        let e = try #require(r.errors.first)
        #expect(e.message.contains("not valid JSON"))
        #expect(e.location?.line == 2)
    }

    @Test func adminOnNonLoopbackNeedsToken() throws {
        let base = """
            { "listeners": [ { "address": "127.0.0.1:8080" } ], "admin": %ADMIN%,
              "upstreams": {}, "routes": [ { "match": { "path": "/" }, "respond": { "status": 204 } } ] }
            """
        #expect(!load(base.replacingOccurrences(of: "%ADMIN%", with: "{ \"address\": \"0.0.0.0:9901\" }")).isValid)
        #expect(load(base.replacingOccurrences(of: "%ADMIN%", with: "{ \"address\": \"0.0.0.0:9901\", \"token_env\": \"T\" }")).isValid)
        #expect(load(base.replacingOccurrences(of: "%ADMIN%", with: "{ \"address\": \"[::1]:9901\" }")).isValid)
        // at run time (a real environment), the variable must hold a token on a non-loopback address
        let open = base.replacingOccurrences(of: "%ADMIN%", with: "{ \"address\": \"0.0.0.0:9901\", \"token_env\": \"T\" }")
        let unset = ConfigLoader.load(bytes: Array(open.utf8), source: "t.json", environment: ["PATH": "/bin"])
        #expect(unset.errors.contains { $0.path == "admin.token_env" })
        let set = ConfigLoader.load(bytes: Array(open.utf8), source: "t.json", environment: ["T": "secret"])
        #expect(set.isValid)
        let loopback = base.replacingOccurrences(of: "%ADMIN%", with: "{ \"address\": \"127.0.0.1:9901\", \"token_env\": \"T\" }")
        let warned = ConfigLoader.load(bytes: Array(loopback.utf8), source: "t.json", environment: ["PATH": "/bin"])
        #expect(warned.isValid && warned.warnings.contains { $0.path == "admin.token_env" })
    }

    @Test func authAndCORSAreValidated() throws {
        let text = """
            { "listeners": [ { "address": "127.0.0.1:8080" } ],
              "auth": { "jwt": {
                  "none": { "issuer": "i", "audiences": ["a"], "jwks_uri": "https://idp/jwks", "algorithms": ["none"] },
                  "mixed": { "issuer": "i", "audiences": ["a"], "jwks_uri": "https://idp/jwks", "algorithms": ["RS256", "HS256"] },
                  "hs": { "issuer": "i", "audiences": ["a"], "jwks_uri": "https://idp/jwks", "algorithms": ["HS256"] },
                  "both": { "issuer": "i", "audiences": ["a"], "jwks_uri": "https://idp/jwks", "jwks_file": "/k.json" },
                  "ok": { "issuer": "i", "audiences": ["a"], "jwks_uri": "ftp://idp/jwks", "from": ["query:t"],
                          "forward_claims": { "sub": "content-length" } },
                  "secret": { "issuer": "i", "audiences": ["a"], "hmac_secret_env": "HS", "algorithms": ["HS512"] } },
                "api_keys": { "keys": [ { "id": "a", "sha256": "abc" }, { "id": "a", "sha256": "\(String(repeating: "0", count: 64))" } ] } },
              "upstreams": {},
              "routes": [
                { "match": { "path": "/a" }, "respond": { "status": 200 }, "auth": { "jwt": "oj" } },
                { "match": { "path": "/b" }, "respond": { "status": 200 }, "auth": { "jwt": "ok", "api_key": true } },
                { "match": { "path": "/c" }, "respond": { "status": 200 }, "auth": { "any_of": [ { "any_of": [] } ] } },
                { "match": { "path": "/d" }, "respond": { "status": 200 },
                  "cors": { "origins": ["*"], "credentials": true } },
                { "match": { "path": "/e" }, "respond": { "status": 200 }, "cors": { "origins": ["https://app.example.com/path"] } },
                { "match": { "path": "/f" }, "respond": { "status": 200 }, "auth": { "login": "web" } } ] }
            """
        let r = ConfigLoader.load(bytes: Array(text.utf8), source: "t.json", environment: ["HS": String(repeating: "x", count: 40)])
        func has(_ path: String, _ words: String) -> Bool { r.errors.contains { $0.path == path && $0.message.contains(words) } }
        #expect(has("auth.jwt.none.algorithms[0]", "never accepted"))
        #expect(has("auth.jwt.mixed.algorithms", "not both"))
        #expect(has("auth.jwt.hs.hmac_secret_env", "need a secret"))
        #expect(has("auth.jwt.both", "exactly one"))
        #expect(has("auth.jwt.ok.jwks_uri", "http"))
        #expect(has("auth.jwt.ok.from[0]", "header:NAME"))
        #expect(has("auth.jwt.ok.forward_claims.sub", "managed by the gateway"))
        #expect(has("auth.jwt.secret.hmac_secret_env", "at least 64 bytes"))
        #expect(has("auth.api_keys.keys[0].sha256", "64 hex"))
        #expect(has("auth.api_keys.keys[1].id", "used twice"))
        #expect(has("routes[0].auth.jwt", "did you mean \"ok\""))
        #expect(has("routes[1].auth", "exactly one"))
        #expect(has("routes[2].auth.any_of[0].any_of", "cannot be nested"))
        #expect(has("routes[3].cors.origins[0]", "credentials"))
        #expect(has("routes[4].cors.origins[0]", "not an origin"))
        #expect(has("routes[5].auth.login", "no login provider named"))
    }

    @Test func rateLimitsAreValidated() throws {
        let r = load(
            """
            { "listeners": [ { "address": "127.0.0.1:8080" } ], "upstreams": {},
              "rate_limits": { "store": { "kind": "etcd", "on_error": "maybe" }, "tier_from": ["client_ip", "claim:tier"],
                               "key_from": ["cookie:x"], "default_tier": "nobody",
                               "tiers": { "free": [ { "limit": 0, "per": "1s", "burst": 0 } ], "empty": [], "gold": "unlimited" } },
              "routes": [ { "match": { "path": "/" }, "respond": { "status": 200 },
                            "rate_limit": { "tiers": { "free": [ { "limit": 5, "per": "0s" } ] } } } ] }
            """)
        func has(_ path: String, _ words: String) -> Bool { r.errors.contains { $0.path == path && $0.message.contains(words) } }
        #expect(has("rate_limits.store.kind", "not one of"))
        #expect(has("rate_limits.store.on_error", "allow"))
        #expect(has("rate_limits.tier_from[0]", "claim:NAME"))
        #expect(has("rate_limits.key_from[0]", "client_ip"))
        #expect(has("rate_limits.default_tier", "not one of the tiers"))
        #expect(has("rate_limits.tiers.free[0].limit", "between 1"))
        #expect(has("rate_limits.tiers.free[0].burst", "between 1"))
        #expect(has("rate_limits.tiers.empty", "at least one limit"))
        #expect(has("routes[0].rate_limit.tiers.free[0].per", "at least 1ms"))
        let noTop = load(
            """
            { "listeners": [ { "address": "127.0.0.1:8080" } ], "upstreams": {},
              "routes": [ { "match": { "path": "/" }, "respond": { "status": 200 }, "rate_limit": false } ] }
            """)
        #expect(noTop.errors.contains { $0.path == "routes[0].rate_limit" && $0.message.contains("no top-level") })
        let redis = load(
            """
            { "listeners": [ { "address": "127.0.0.1:8080" } ], "upstreams": {}, "routes": [],
              "rate_limits": { "store": { "kind": "redis", "url": "http://127.0.0.1:6379" }, "tiers": { "anonymous": "unlimited" } } }
            """)
        #expect(redis.errors.contains { $0.path == "rate_limits.store.url" && $0.message.contains("redis://host:port/db") })
        let url = try #require(RedisURL("redis://:secret@cache.internal:6380/2"))
        #expect(url.host == "cache.internal" && url.port == 6380 && url.database == 2 && url.password == "secret")
        #expect(RedisURL("redis://127.0.0.1")?.port == 6379)
    }

    @Test func upstreamProtocolsAndStreamsAreValidated() throws {
        let r = load(
            """
            { "listeners": [ { "address": "127.0.0.1:8080" } ],
              "upstreams": { "tls": { "protocol": "h2", "targets": ["http://10.0.0.1:80"] },
                             "clear": { "protocol": "h2c", "targets": ["https://10.0.0.1:443"] },
                             "odd": { "protocol": "http3", "targets": ["http://10.0.0.1:80"] },
                             "plain": { "targets": ["http://10.0.0.1:80"], "health_check": { "grpc": { "service": "x" } } },
                             "ok": { "protocol": "h2c", "targets": ["http://10.0.0.2:80"], "health_check": { "grpc": {} } } },
              "routes": [ { "match": { "path": "/" }, "upstream": "plain", "stream_idle_timeout": "0s",
                            "mirror": { "upstream": "ok" }, "retry": { "on": ["unavailable", "resource-exhausted", "fine"] } } ] }
            """)
        func has(_ path: String, _ words: String) -> Bool { r.errors.contains { $0.path == path && $0.message.contains(words) } }
        #expect(has("upstreams.tls.protocol", "https://"))
        #expect(has("upstreams.clear.protocol", "http://"))
        #expect(has("upstreams.odd.protocol", "one of http1, h2, h2c"))
        #expect(has("upstreams.plain.health_check.grpc", "HTTP/2 upstream"))
        #expect(!r.errors.contains { $0.path.hasPrefix("upstreams.ok") })
        #expect(has("routes[0].stream_idle_timeout", "more than 0"))
        #expect(has("routes[0].mirror.upstream", "HTTP/1.1"))
        #expect(r.errors.contains { $0.path.hasPrefix("routes[0].retry.on") && $0.message.contains("fine") })
        #expect(!r.errors.contains { $0.message.contains("unavailable") || $0.message.contains("resource-exhausted") })
    }

    @Test func targetsAcceptStringOrObject() throws {
        let r = load(
            """
            { "listeners": [ { "address": "127.0.0.1:8080" } ],
              "upstreams": { "a": { "targets": ["http://127.0.0.1:9000", { "url": "http://127.0.0.1:9001", "weight": 3 }],
                                    "balancer": "consistent_hash", "hash_on": "header:X-User" } },
              "routes": [ { "match": { "path": "/" }, "upstream": "a" } ] }
            """)
        let s = try #require(r.snapshot, "\(r.errors)")
        #expect(s.upstreams[0].targets.map(\.weight) == [1, 3])
        #expect(s.upstreams[0].hashOn == .header("x-user"))
        #expect(s.upstreams[0].targets[1].authority == "127.0.0.1:9001")
    }

    @Test func repositoryConfigsAreValid() throws {
        let root = repositoryRoot()
        var files = [root.appendingPathComponent("gateway.json")]
        let examples = root.appendingPathComponent("examples")
        let names = try FileManager.default.contentsOfDirectory(atPath: examples.path).filter { $0.hasSuffix(".json") }.sorted()
        #expect(names.count >= 3, "examples/ should hold at least three configs")
        files += names.map { examples.appendingPathComponent($0) }
        for f in files {
            let r = ConfigLoader.load(path: f.path, environment: [:])
            #expect(r.errors.isEmpty, "\(f.lastPathComponent): \(r.errors)")
        }
    }

    @Test func validateCommandExitCodesAndOutput() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("validate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.json")
        try """
        {
          "listeners": [ { "address": "127.0.0.1:8080", "tls": {} } ],
          "upstreams": {},
          "routes": [ { "match": { "path": "/" }, "upstream": "nope" } ]
        }
        """.write(to: bad, atomically: true, encoding: .utf8)
        func run(_ args: [String]) async -> (Int32, String) {
            let r = await Tool.run(gatewayBinary().path, args, stderr: true, timeout: 20)
            return (r.status, r.output)
        }
        let (badStatus, badOut) = await run(["validate", bad.path])
        #expect(badStatus == 1)
        #expect(badOut.contains("bad.json:2:"))
        #expect(badOut.contains("listeners[0].tls"))
        #expect(badOut.contains("routes[0].upstream"))
        let (okStatus, okOut) = await run(["validate", repositoryRoot().appendingPathComponent("gateway.json").path])
        #expect(okStatus == 0, "\(okOut)")
        let (missingStatus, _) = await run(["validate", dir.appendingPathComponent("absent.json").path])
        #expect(missingStatus == 1)
        let (flagStatus, flagOut) = await run(["run", "--no-such-flag"])
        #expect(flagStatus == 1)
        #expect(flagOut.contains("no-such-flag"))
    }
}
