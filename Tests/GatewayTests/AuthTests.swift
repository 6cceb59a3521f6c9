import Crypto
import Foundation
import GatewayAuth
import GatewayConfig
import GatewayProxy
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import GatewayAdmin

/// JWT verification, API keys and CORS over real loopback sockets (SPEC §2.5, §2.7).
@Suite struct AuthTests {
    static let algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]

    /// A gateway with one JWT provider per algorithm (all reading the same JWKS) at
    /// `/alg/<ALG>`, an HS256 provider at `/hs`, and the routes the other tests use.
    static func template(jwksURL: String, extraProviders: String = "", extraRoutes: String = "", server: String = "{}") -> String {
        let providers = algorithms.map { alg in
            """
            "p-\(alg)": { "issuer": "\(Mint.issuer)", "audiences": ["\(Mint.audience)"], "jwks_uri": "\(jwksURL)",
              "algorithms": ["\(alg)"], "clock_skew": "5s", "forward_claims": { "sub": "x-user-id" } }
            """
        }.joined(separator: ",\n")
        let routes = algorithms.map { alg in
            """
            { "name": "alg-\(alg)", "match": { "path_prefix": "/alg/\(alg)" }, "upstream": "svc", "auth": { "jwt": "p-\(alg)" } }
            """
        }.joined(separator: ",\n")
        return """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": \(server),
              "access_log": { "enabled": false },
              "auth": {
                "jwt": { \(providers),
                  "hs": { "issuer": "\(Mint.issuer)", "audiences": ["\(Mint.audience)"], "hmac_secret_env": "TEST_HS_SECRET",
                          "algorithms": ["HS256"], "forward_claims": { "sub": "x-user-id" } },
                  "idp": { "issuer": "\(Mint.issuer)", "audiences": ["\(Mint.audience)"], "jwks_uri": "\(jwksURL)",
                           "algorithms": ["RS256", "ES256", "EdDSA"], "clock_skew": "5s",
                           "from": ["header:authorization", "cookie:access_token"],
                           "forward_claims": { "sub": "x-user-id", "tier": "x-user-tier" } }
                  \(extraProviders) },
                "api_keys": { "header": "x-api-key", "keys": [
                  { "id": "partner-a", "sha256": "\(sha256Hex("key-a-secret"))", "tier": "pro" },
                  { "id": "partner-b", "sha256": "\(sha256Hex("key-b-secret"))", "tier": "free" } ] } },
              "upstreams": { "svc": { "targets": ["@UP0@"] } },
              "routes": [ \(routes),
                { "name": "hs", "match": { "path_prefix": "/hs" }, "upstream": "svc", "auth": { "jwt": "hs" } },
                { "name": "users", "match": { "path_prefix": "/users" }, "upstream": "svc",
                  "auth": { "jwt": "idp", "scopes": ["users:read"] },
                  "cors": { "origins": ["https://app.example.com"], "methods": ["GET", "POST"], "headers": ["authorization", "content-type"],
                            "credentials": true, "max_age": "10m", "expose_headers": ["x-request-id"] } },
                { "name": "either", "match": { "path_prefix": "/either" }, "upstream": "svc",
                  "auth": { "any_of": [ { "jwt": "idp" }, { "api_key": true } ] } },
                { "name": "pro", "match": { "path_prefix": "/pro" }, "upstream": "svc",
                  "auth": { "api_key": true, "claims": { "tier": ["pro"] } } },
                { "name": "private", "match": { "path_prefix": "/private" }, "upstream": "svc", "auth": { "jwt": "idp" } },
                { "name": "open", "match": { "path_prefix": "/open" }, "upstream": "svc" }
                \(extraRoutes) ] }
            """
    }

    static func sha256Hex(_ s: String) -> String {
        Array(SHA256Digest(s)).map { String(format: "%02x", $0) }.joined()
    }

    static let hsSecret = String(repeating: "s", count: 40)

    /// The JWKS server, its keys (one per algorithm, kid = algorithm) and a gateway in front of the demo echo.
    static func withAuthGateway(
        server: String = "{}", extraProviders: String = "", extraRoutes: String = "",
        _ body: (Harness, JWKSServer, [String: SigningKey]) async throws -> Void
    ) async throws {
        var keys: [String: SigningKey] = [:]
        var jwks: [[String: String]] = []
        for alg in algorithms {
            guard let k = SigningKey.forAlgorithm(alg) else { throw RawHTTPClient.Failure(description: "no key for \(alg)") }
            keys[alg] = k
            jwks.append(k.jwk(kid: alg))
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let jwksServer = try await JWKSServer.start(document: Mint.jwks(jwks), group: group)
        do {
            try await withGateway(
                environment: ["TEST_HS_SECRET": hsSecret],
                template(jwksURL: jwksServer.url, extraProviders: extraProviders, extraRoutes: extraRoutes, server: server)
            ) { h in
                #expect(await waitUntilAsync { h.server.keysFetched })
                try await body(h, jwksServer, keys)
            }
        } catch {
            await jwksServer.stop()
            try? await group.shutdownGracefully()
            throw error
        }
        await jwksServer.stop()
        try? await group.shutdownGracefully()
    }

    static func bearer(_ token: String) -> [(String, String)] { [("authorization", "Bearer \(token)")] }

    @Test func everyAlgorithmVerifies() async throws {
        try await Self.withAuthGateway { h, _, keys in
            for alg in Self.algorithms {
                let key = try #require(keys[alg])
                let token = Mint.token(alg: alg, kid: alg, key: key, claims: Mint.claims(sub: "user-\(alg)"))
                let r = try await httpRequestOffPool(port: h.port, "GET", "/alg/\(alg)/x", headers: Self.bearer(token))
                #expect(r.status == 200, "\(alg): \(r.text)")
                #expect(r.text.contains("user-\(alg)"), "\(alg) forwards sub")
                // Without a token: 401 with the challenge.
                let none = try await httpRequestOffPool(port: h.port, "GET", "/alg/\(alg)/x")
                #expect(none.status == 401)
                #expect(none.header("www-authenticate")?.hasPrefix("Bearer") == true)
            }
            let hs = Mint.token(alg: "HS256", kid: nil, key: .hmac(Array(Self.hsSecret.utf8)), claims: Mint.claims(sub: "hs-user"))
            let r = try await httpRequestOffPool(port: h.port, "GET", "/hs/x", headers: Self.bearer(hs))
            #expect(r.status == 200, "HS256: \(r.text)")
            #expect(r.text.contains("hs-user"))
            let wrong = Mint.token(alg: "HS256", kid: nil, key: .hmac(Array(repeating: 1, count: 40)), claims: Mint.claims())
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/hs/x", headers: Self.bearer(wrong)).status == 401)
        }
    }

    @Test func attacksAreRefusedWith401() async throws {
        try await Self.withAuthGateway(server: #"{ "max_header_bytes": "512KiB" }"#) { h, _, keys in
            let es = try #require(keys["ES256"])
            let rsa = try #require(keys["RS256"])
            let now = Int(Date().timeIntervalSince1970)
            func es256(_ claims: [String: Any], kid: String? = "ES256") -> String {
                Mint.token(alg: "ES256", kid: kid, key: es, claims: claims)
            }
            let good = es256(Mint.claims())
            let parts = good.split(separator: ".").map(String.init)
            var tamperedPayloadClaims = Mint.claims(sub: "admin")
            tamperedPayloadClaims["sub"] = "admin"
            let otherPayload = es256(tamperedPayloadClaims).split(separator: ".")[1]
            var sig = Array(parts[2].utf8)
            sig[5] = sig[5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            // HS256 "signed" with the RSA public key (its JWK text) as the HMAC secret.
            let publicKeyText = Array(Mint.jwks([rsa.jwk(kid: "RS256")]).utf8)
            let confused = Mint.token(
                alg: "HS256", kid: "RS256", key: rsa, claims: Mint.claims(),
                signer: { SigningKey.hmac(publicKeyText, $0, alg: "HS256") })
            let attacks: [(String, String, String)] = [
                ("expired", es256(Mint.claims(extra: ["exp": now - 60, "iat": now - 120, "nbf": now - 120])), "expired"),
                ("nbf in the future", es256(Mint.claims(extra: ["nbf": now + 300])), "not_yet_valid"),
                ("iat in the future", es256(Mint.claims(extra: ["iat": now + 300])), "iat_in_future"),
                ("wrong iss", es256(Mint.claims(extra: ["iss": "https://evil.test"])), "issuer"),
                ("wrong aud", es256(Mint.claims(extra: ["aud": "other"])), "audience"),
                ("no exp", es256(Mint.claims().filter { $0.key != "exp" }), "missing_exp"),
                ("tampered payload", "\(parts[0]).\(otherPayload).\(parts[2])", "signature"),
                ("tampered signature", "\(parts[0]).\(parts[1]).\(String(decoding: sig, as: UTF8.self))", "signature"),
                (
                    "alg none",
                    Mint.token(alg: "none", kid: "ES256", key: es, claims: Mint.claims(), signer: { _ in [] }), "algorithm"
                ),
                ("HS256 with the RSA public key", confused, "algorithm"),
                ("100 KiB token", "\(parts[0]).\(String(repeating: "A", count: 100 * 1024)).\(parts[2])", "too_large"),
                ("kid not in the JWKS", es256(Mint.claims(), kid: "nobody"), "unknown_kid"),
                ("not a JWT", "garbage", "malformed"),
            ]
            for (name, token, _) in attacks {
                let r = try await httpRequestOffPool(port: h.port, "GET", "/private/x", headers: Self.bearer(token))
                #expect(r.status == 401, "\(name): \(r.status) \(r.text)")
                #expect(r.text.contains("\"error\":\"unauthorized\""), "\(name)")
                #expect(r.header("www-authenticate")?.contains("error=\"invalid_token\"") == true, "\(name)")
            }
            // The same token, untouched, passes: the refusals above were about the attacks.
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/private/x", headers: Self.bearer(good)).status == 200)
            // Each refusal is counted with its reason.
            let metrics = String(decoding: h.server.shared.metrics.exposition(), as: UTF8.self)
            for (name, _, reason) in attacks {
                #expect(
                    metrics.contains("gateway_auth_failures_total{provider=\"idp\",reason=\"\(reason)\"}"), "\(name) counted as \(reason)")
            }
        }
    }

    @Test func keyRotationIsPickedUpWithOneFetch() async throws {
        try await Self.withAuthGateway { h, jwks, keys in
            let old = try #require(keys["ES256"])
            let before = jwks.requests.load(ordering: .relaxed)
            // The provider rotates: a new key replaces the old one.
            let new = SigningKey.p256(.init())
            jwks.set(Mint.jwks([new.jwk(kid: "rotated-1")]))
            let token = Mint.token(alg: "ES256", kid: "rotated-1", key: new, claims: Mint.claims(sub: "after-rotation"))
            let missing = Mint.token(alg: "ES256", kid: "never-published", key: new, claims: Mint.claims())
            // One kept-alive connection: the request held for the fetch, then the next ones.
            let port = h.port
            let results = try await withCheckedThrowingContinuation { (c: CheckedContinuation<[RawHTTPClient.Response], any Error>) in
                Thread.detachNewThread {
                    c.resume(
                        with: Result {
                            let client = try RawHTTPClient(port: port, timeout: 20)
                            return [
                                try client.request("GET", "/private/x", headers: Self.bearer(token)),
                                try client.request("GET", "/private/y", headers: Self.bearer(token)),
                                try client.request("GET", "/private/z", headers: Self.bearer(missing)),
                                try client.request("GET", "/private/w", headers: Self.bearer(token)),
                            ]
                        })
                }
            }
            let r = results[0]
            #expect(r.status == 200, "\(r.text)")
            #expect(r.text.contains("after-rotation"))
            #expect(results[1].status == 200, "the connection goes on after a request held for keys")
            #expect(results[2].status == 401, "a kid still unknown within 30 s of the last fetch")
            #expect(results[3].status == 200)
            #expect(jwks.requests.load(ordering: .relaxed) == before + 1)
            // The old key is gone from the set: a token it signs now names an unknown key. (The
            // refetch it triggers is within 30 s of the last one: no new fetch.)
            let stale = Mint.token(alg: "ES256", kid: "ES256", key: old, claims: Mint.claims(sub: "stale"))
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/private/x", headers: Self.bearer(stale)).status == 401)
            #expect(jwks.requests.load(ordering: .relaxed) == before + 1)
        }
    }

    @Test func aKidStillUnknownAfterTheFetchIs401AndTheConnectionGoesOn() async throws {
        try await Self.withAuthGateway { h, jwks, keys in
            let es = try #require(keys["ES256"])
            let missing = Mint.token(alg: "ES256", kid: "never-published", key: es, claims: Mint.claims())
            let good = Mint.token(alg: "ES256", kid: "ES256", key: es, claims: Mint.claims())
            let before = jwks.requests.load(ordering: .relaxed)
            let port = h.port
            let statuses = try await withCheckedThrowingContinuation { (c: CheckedContinuation<[Int], any Error>) in
                Thread.detachNewThread {
                    c.resume(
                        with: Result {
                            let client = try RawHTTPClient(port: port, timeout: 20)
                            return [
                                try client.request("GET", "/private/a", headers: Self.bearer(missing)).status,
                                try client.request("GET", "/private/b", headers: Self.bearer(good)).status,
                            ]
                        })
                }
            }
            #expect(statuses == [401, 200])
            #expect(jwks.requests.load(ordering: .relaxed) == before + 1, "the miss fetched once")
        }
    }

    @Test func concurrentUnknownKidsShareOneFetch() async throws {
        try await Self.withAuthGateway { h, jwks, _ in
            let new = SigningKey.p256(.init())
            var doc = try #require(
                try JSONSerialization.jsonObject(with: Data(jwks.document.withLock { $0 }.utf8)) as? [String: [[String: String]]])
            doc["keys", default: []].append(new.jwk(kid: "fresh"))
            jwks.set(Mint.jwks(doc["keys"] ?? []))
            // The JWKS answers slowly, so all 20 requests arrive while the fetch is under way.
            jwks.delayMillis.store(300, ordering: .relaxed)
            let before = jwks.requests.load(ordering: .relaxed)
            let token = Mint.token(alg: "ES256", kid: "fresh", key: new, claims: Mint.claims(sub: "fresh-user"))
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask { try await httpRequestOffPool(port: h.port, "GET", "/private/x", headers: Self.bearer(token)).status }
                }
                var out: [Int] = []
                for try await s in group { out.append(s) }
                return out
            }
            #expect(statuses.count == 20)
            #expect(statuses.allSatisfy { $0 == 200 }, "\(statuses)")
            #expect(jwks.requests.load(ordering: .relaxed) == before + 1, "one fetch for 20 misses")
        }
    }

    @Test func readinessWaitsForTheFirstFetchAndCachedKeysOutliveTheServer() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let key = SigningKey.p256(.init())
        let port = freePort()
        let jwks = JWKSServer(document: Mint.jwks([key.jwk(kid: "k1")]), group: group, port: port)
        let template = config(
            upstreams: #"{ "svc": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/p" }, "upstream": "svc", "auth": { "jwt": "idp" } } ]"#
        ).replacingOccurrences(
            of: "\"routes\":",
            with: """
                "auth": { "jwt": { "idp": { "issuer": "\(Mint.issuer)", "audiences": ["\(Mint.audience)"],
                  "jwks_uri": "\(jwks.url)", "algorithms": ["ES256"], "jwks_initial_fetch_timeout": "10m" } } },
                "routes":
                """)
        // (A long initial fetch timeout: this test is about the wait for the first fetch, which
        // the default 5 s would end on a loaded machine before the test looks.)
        try await withGateway(template) { h in
            let admin = try await AdminServer.start(
                address: HostPort(host: "127.0.0.1", port: 0), group: h.server.group, server: h.server, isReady: { true })
            defer { Task { await admin.stop() } }
            // Down at start: not ready, and a token cannot be checked yet.
            #expect(try await httpRequestOffPool(port: admin.port, "GET", "/readyz").status == 503)
            let token = Mint.token(alg: "ES256", kid: "k1", key: key, claims: Mint.claims())
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/p", headers: Self.bearer(token)).status == 401)
            // Generous: on a loaded 2-core machine the fetch's task can wait seconds for a thread.
            #expect(await waitUntilAsync(timeout: 40) { h.server.jwksStatus().first?.status.lastError != nil })
            let status = try await httpRequestOffPool(port: admin.port, "GET", "/jwks")
            #expect(status.text.contains("\"ready\":false"))
            #expect(status.text.contains("\"last_error\":\"cannot fetch"))
            // It comes up: the background retry fetches it, and the gateway becomes ready.
            try await jwks.listen()
            #expect(await waitUntilAsync(timeout: 40) { h.server.keysFetched })
            #expect(try await httpRequestOffPool(port: admin.port, "GET", "/readyz").status == 200)
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/p", headers: Self.bearer(token)).status == 200)
            // Down later: a refresh fails, the keys held keep verifying (a token not seen before).
            await jwks.stop()
            let refreshed = try await httpRequestOffPool(port: admin.port, "POST", "/jwks/refresh")
            #expect(refreshed.status == 200)
            #expect(refreshed.text.contains("\"key_ids\":[\"k1\"]"))
            #expect(refreshed.text.contains("\"last_error\":\"cannot fetch"))
            let another = Mint.token(alg: "ES256", kid: "k1", key: key, claims: Mint.claims(sub: "bob"))
            let r = try await httpRequestOffPool(port: h.port, "GET", "/p", headers: Self.bearer(another))
            #expect(r.status == 200)
            #expect(try await httpRequestOffPool(port: admin.port, "GET", "/readyz").status == 200)
            // Back again: the next fetch succeeds and clears the error.
            try await jwks.listen()
            let back = try await httpRequestOffPool(port: admin.port, "POST", "/jwks/refresh")
            #expect(back.status == 200)
            #expect(!back.text.contains("\"last_error\":\"cannot fetch"), "\(back.text)")
            #expect(back.text.contains("\"key_ids\":[\"k1\"]"))
        }
        try? await group.shutdownGracefully()
    }

    @Test func routeTimeoutWhileWaitingForKeysIs504AndTheConnectionGoesOn() async throws {
        let slow =
            #", { "name": "quick", "match": { "path_prefix": "/quick" }, "upstream": "svc", "timeout": "300ms", "auth": { "jwt": "idp" } }"#
        try await Self.withAuthGateway(extraRoutes: slow) { h, jwks, keys in
            jwks.delayMillis.store(2000, ordering: .relaxed)
            let unknown = Mint.token(alg: "ES256", kid: "not-yet", key: SigningKey.p256(.init()), claims: Mint.claims())
            let es = try #require(keys["ES256"])
            let good = Mint.token(alg: "ES256", kid: "ES256", key: es, claims: Mint.claims(sub: "next"))
            let port = h.port
            let (first, second) = try await withCheckedThrowingContinuation { (c: CheckedContinuation<(Int, Int), any Error>) in
                Thread.detachNewThread {
                    c.resume(
                        with: Result {
                            let client = try RawHTTPClient(port: port, timeout: 10)
                            let a = try client.request("GET", "/quick/x", headers: Self.bearer(unknown))
                            let b = try client.request("GET", "/quick/x", headers: Self.bearer(good))
                            return (a.status, b.status)
                        })
                }
            }
            #expect(first == 504)
            #expect(second == 200, "the same connection serves the next request")
        }
    }

    @Test func spoofedClaimHeadersNeverReachTheUpstream() async throws {
        try await Self.withAuthGateway { h, _, keys in
            let es = try #require(keys["ES256"])
            let token = Mint.token(alg: "ES256", kid: "ES256", key: es, claims: Mint.claims(sub: "alice", extra: ["tier": "free"]))
            let spoof = [("X-User-Id", "admin"), ("x-user-tier", "internal"), ("X-USER-ID", "root")]
            let r = try await httpRequestOffPool(port: h.port, "GET", "/private/x", headers: Self.bearer(token) + spoof)
            #expect(r.status == 200)
            #expect(r.text.contains("\"x-user-id\",\"alice\"") || r.text.contains("[\"x-user-id\",\"alice\"]"), "\(r.text)")
            #expect(!r.text.contains("admin") && !r.text.contains("root") && !r.text.contains("internal"), "\(r.text)")
            // Admitted by an API key instead: the claim headers are still removed.
            let k = try await httpRequestOffPool(port: h.port, "GET", "/either/x", headers: [("x-api-key", "key-a-secret")] + spoof)
            #expect(k.status == 200)
            #expect(!k.text.lowercased().contains("x-user-id") && !k.text.contains("internal"), "\(k.text)")
            // Refused requests never reach it at all.
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/private/x", headers: spoof).status == 401)
        }
    }

    @Test func consistentHashOnAVerifiedClaim() async throws {
        let template = """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ], "access_log": { "enabled": false },
              "auth": { "jwt": { "hs": { "issuer": "\(Mint.issuer)", "audiences": ["\(Mint.audience)"], "hmac_secret_env": "TEST_HS_SECRET",
                                         "algorithms": ["HS256"] } } },
              "upstreams": { "users": { "targets": ["@UP0@", "@UP1@"], "balancer": "consistent_hash", "hash_on": "claim:sub" } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "users", "auth": { "jwt": "hs" } } ] }
            """
        try await withGateway(services: 2, environment: ["TEST_HS_SECRET": Self.hsSecret], template) { h in
            #expect(await waitUntilAsync { h.server.keysFetched })
            var servedBy: [String: Set<String>] = [:]
            for user in (0..<12).map({ "user-\($0)" }) {
                let token = Mint.token(alg: "HS256", kid: nil, key: .hmac(Array(Self.hsSecret.utf8)), claims: Mint.claims(sub: user))
                for _ in 0..<3 {
                    let r = try await httpRequestOffPool(port: h.port, "GET", "/x", headers: Self.bearer(token))
                    servedBy[user, default: []].insert(r.json?["served_by"] as? String ?? "?")
                }
            }
            // Each user always lands on one target; the users spread over both.
            #expect(servedBy.values.allSatisfy { $0.count == 1 }, "\(servedBy)")
            #expect(Set(servedBy.values.compactMap(\.first)) == ["svc-0", "svc-1"])
        }
    }

    @Test func tokenFromACookie() async throws {
        try await Self.withAuthGateway { h, _, keys in
            let es = try #require(keys["ES256"])
            let token = Mint.token(alg: "ES256", kid: "ES256", key: es, claims: Mint.claims(sub: "cookie-user"))
            let r = try await httpRequestOffPool(
                port: h.port, "GET", "/private/x", headers: [("cookie", "theme=dark; access_token=\(token)")])
            #expect(r.status == 200)
            #expect(r.text.contains("cookie-user"))
            // Another scheme in Authorization is no token.
            let basic = try await httpRequestOffPool(port: h.port, "GET", "/private/x", headers: [("authorization", "Basic \(token)")])
            #expect(basic.status == 401)
        }
    }

    @Test func scopesAndClaimsGive403() async throws {
        try await Self.withAuthGateway { h, _, keys in
            let es = try #require(keys["ES256"])
            let noScope = Mint.token(alg: "ES256", kid: "ES256", key: es, claims: Mint.claims(extra: ["scope": "orders:read"]))
            let r = try await httpRequestOffPool(port: h.port, "GET", "/users/1", headers: Self.bearer(noScope))
            #expect(r.status == 403)
            #expect(r.text.contains("\"error\":\"forbidden\""))
            #expect(r.header("www-authenticate")?.contains("insufficient_scope") == true)
            let scoped = Mint.token(alg: "ES256", kid: "ES256", key: es, claims: Mint.claims(extra: ["scope": "orders:read users:read"]))
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/users/1", headers: Self.bearer(scoped)).status == 200)
            let scp = Mint.token(alg: "ES256", kid: "ES256", key: es, claims: Mint.claims(extra: ["scp": ["users:read"]]))
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/users/1", headers: Self.bearer(scp)).status == 200)
        }
    }

    @Test func apiKeys() async throws {
        try await Self.withAuthGateway { h, _, _ in
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/either/x", headers: [("x-api-key", "key-a-secret")]).status == 200)
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/either/x", headers: [("x-api-key", "key-a-secreT")]).status == 401)
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/either/x").status == 401)
            // The route asks for tier pro: partner-b is free.
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/pro/x", headers: [("x-api-key", "key-a-secret")]).status == 200)
            let free = try await httpRequestOffPool(port: h.port, "GET", "/pro/x", headers: [("x-api-key", "key-b-secret")])
            #expect(free.status == 403)
            let metrics = String(decoding: h.server.shared.metrics.exposition(), as: UTF8.self)
            #expect(metrics.contains("gateway_auth_failures_total{provider=\"api_key\",reason=\"unknown_key\"}"))
        }
    }

    @Test func corsPreflightAndActualRequests() async throws {
        try await Self.withAuthGateway { h, _, keys in
            let preflight: [(String, String)] = [
                ("origin", "https://app.example.com"), ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ]
            // A preflight carries no credentials: answered 204 before authentication.
            let p = try await httpRequestOffPool(port: h.port, "OPTIONS", "/users/1", headers: preflight)
            #expect(p.status == 204)
            #expect(p.header("access-control-allow-origin") == "https://app.example.com")
            #expect(p.header("access-control-allow-methods") == "GET, POST")
            #expect(p.header("access-control-allow-headers") == "authorization, content-type")
            #expect(p.header("access-control-allow-credentials") == "true")
            #expect(p.header("access-control-max-age") == "600")
            #expect(p.headers("vary").joined(separator: ",").contains("Origin"))
            #expect(p.header("www-authenticate") == nil)
            // A disallowed origin gets no Access-Control-Allow-Origin.
            let evil = try await httpRequestOffPool(
                port: h.port, "OPTIONS", "/users/1",
                headers: [("origin", "https://evil.example.com"), ("access-control-request-method", "GET")])
            #expect(evil.header("access-control-allow-origin") == nil)
            #expect(evil.header("access-control-allow-credentials") == nil)
            // An actual request: refused without a token, but readable by the page (CORS fields on the 401).
            let denied = try await httpRequestOffPool(port: h.port, "GET", "/users/1", headers: [("origin", "https://app.example.com")])
            #expect(denied.status == 401)
            #expect(denied.header("access-control-allow-origin") == "https://app.example.com")
            let es = try #require(keys["ES256"])
            let token = Mint.token(alg: "ES256", kid: "ES256", key: es, claims: Mint.claims(extra: ["scope": "users:read"]))
            let ok = try await httpRequestOffPool(
                port: h.port, "GET", "/users/1", headers: Self.bearer(token) + [("origin", "https://app.example.com")])
            #expect(ok.status == 200)
            #expect(ok.header("access-control-allow-origin") == "https://app.example.com")
            #expect(ok.header("access-control-allow-credentials") == "true")
            #expect(ok.header("access-control-expose-headers") == "x-request-id")
            #expect(ok.headers("vary").contains("Origin"))
            let other = try await httpRequestOffPool(
                port: h.port, "GET", "/users/1", headers: Self.bearer(token) + [("origin", "https://evil.example.com")])
            #expect(other.status == 200)
            #expect(other.header("access-control-allow-origin") == nil)
        }
    }

    @Test func explainAndRoutesShowTheAuth() async throws {
        try await Self.withAuthGateway { h, _, _ in
            let snapshot = h.server.shared.snapshots.snapshot
            let text = String(decoding: AdminViews.explain(snapshot, query: "method=GET&path=/users/1"), as: UTF8.self)
            #expect(text.contains("\"auth\":{\"any_of\":[{\"jwt\":\"idp\""))
            #expect(text.contains("\"scopes\":[\"users:read\"]"))
            let routes = String(decoding: AdminViews.routes(snapshot), as: UTF8.self)
            #expect(routes.contains("\"api_key\":true"))
            let jwks = String(decoding: AdminViews.jwks(h.server.jwksStatus()), as: UTF8.self)
            #expect(jwks.contains("\"provider\":\"idp\""))
            #expect(jwks.contains("\"ES256\""))
        }
    }
}

/// `waitUntil` for async tests: polls without blocking a thread of the cooperative pool.
func waitUntilAsync(timeout: Double = 30, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return try await condition()
}

private func SHA256Digest(_ s: String) -> [UInt8] {
    Array(Crypto.SHA256.hash(data: Array(s.utf8)))
}
