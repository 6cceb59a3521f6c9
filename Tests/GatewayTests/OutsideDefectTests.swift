import Foundation
import GatewayAuth
import GatewayConfig
import GatewayDemo
import GatewayReload
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import GatewayAdmin
@testable import GatewayProxy

/// Issue 21: the defects found by trying the gateway from outside, one test (at least) per
/// numbered point, each failing on the code before the fix.
@Suite struct OutsideDefectTests {
    // MARK: 1. A non-ASCII header name in /explain killed the process.

    @Test(.timeLimit(.minutes(2))) func explainWithAHeaderThatIsNotAHeaderAnswers400AndTheProcessLives() async throws {
        let gateway = try await GatewayProcess.start(
            configTemplate: """
                { "listeners": [ { "name": "main", "address": "127.0.0.1:@PORT@" } ],
                  "admin": { "address": "127.0.0.1:@ADMIN@" }, "access_log": { "enabled": false },
                  "routes": [ { "match": { "path_prefix": "/" }, "respond": { "status": 200, "body": "ok" } } ] }
                """)
        let admin = gateway.adminPort
        _ = try await waitUntilAsync(timeout: 20) { (try? await httpRequestOffPool(port: admin, "GET", "/healthz"))?.status == 200 }
        for query in ["header=%C3%A9:1", "header=x%0D%0Ay:1", "header=x:a%0D%0AX-Injected:%201", "header=:1", "method=G%0AET"] {
            let r = try await httpRequestOffPool(port: admin, "GET", "/explain?path=/x&" + query)
            #expect(r.status == 400, "\(query)")
            #expect(r.json?["error"] as? String == "bad_request", "\(query)")
        }
        // A good one still explains, and the process is alive.
        let ok = try await httpRequestOffPool(port: admin, "GET", "/explain?path=/x&header=x-client:mobile")
        #expect(ok.status == 200 && ok.json?["decision"] as? String == "matched")
        #expect(try await httpRequestOffPool(port: gateway.port, "GET", "/").status == 200)
        #expect(await gateway.waitForExit(timeout: 0.2) == nil)
    }

    /// The values of header `name` the demo service says it received.
    static func seen(_ json: [String: Any]?, _ name: String) -> [String] {
        ((json?["headers"] as? [[String]]) ?? []).filter { $0.count == 2 && $0[0].lowercased() == name }.map { $0[1] }
    }

    // MARK: 2. An absolute-form target was routed on one authority and forwarded under another.

    static let authBypass = """
        { "listeners": [ { "name": "test", "address": "127.0.0.1:0", "http2": true } ],
          "server": { "workers": 1 }, "access_log": { "enabled": false },
          "auth": { "api_keys": { "header": "x-api-key", "keys": [ { "id": "ops", "sha256": "\(AuthTests.sha256Hex("k1"))" } ] } },
          "upstreams": { "app": { "targets": ["@UP0@"] } },
          "routes": [
            { "name": "admin", "match": { "host": "admin.example.com", "path_prefix": "/" }, "upstream": "app", "auth": { "api_key": true } },
            { "name": "www", "match": { "path_prefix": "/" }, "upstream": "app" } ] }
        """

    @Test func anAbsoluteFormTargetIsForwardedUnderTheAuthorityItWasRoutedOn() async throws {
        try await withGateway(Self.authBypass) { h in
            let c = try RawHTTPClient(port: h.port)
            try c.send("GET http://www.example.com/secret HTTP/1.1\r\nHost: admin.example.com\r\n\r\n")
            let r = try c.readResponse()
            // Routed as www.example.com (no key needed) and forwarded as www.example.com:
            // the upstream never sees the admin host without the key.
            #expect(r.status == 200)
            #expect(Self.seen(r.json, "host") == ["www.example.com"])
            #expect(Self.seen(r.json, "x-forwarded-host") == ["www.example.com"])
            // The admin host itself still needs its key, in either form.
            #expect(try httpRequest(port: h.port, "GET", "/secret", host: "admin.example.com").status == 401)
            let abs = try RawHTTPClient(port: h.port)
            try abs.send("GET http://admin.example.com/secret HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
            #expect(try abs.readResponse().status == 401)
            // An authority that is not a host is refused.
            let bad = try RawHTTPClient(port: h.port)
            try bad.send("GET http://a b/secret HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try bad.readResponse().status == 400)
        }
    }

    @Test(.timeLimit(.minutes(2))) func anHTTP2AbsolutePathIsForwardedUnderItsOwnAuthority() async throws {
        try await withGateway(Self.authBypass) { h in
            // curl sends the request target as `:path` and the URL's host as `:authority`.
            let r = await Tool.curl([
                "--http2-prior-knowledge", "-H", "Host: admin.example.com", "--request-target", "http://www.example.com/secret",
                "http://127.0.0.1:\(h.port)/",
            ])
            #expect(r.status == 200)
            let json = try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any]
            #expect(Self.seen(json, "host") == ["www.example.com"], "\(r.body)")
        }
    }

    // MARK: 3. CR/LF in config values passed validation; the writer is the last guard.

    @Test func configHeaderValuesWithCROrLFAreRefusedByTheRunningGateway() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("crlf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func file(_ extra: String) -> String {
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ], "access_log": { "enabled": false },
              "routes": [ { "match": { "path_prefix": "/" }, "respond": { "status": 200, "body": "one" }\(extra) } ] }
            """
        }
        let path = dir.appendingPathComponent("gateway.json").path
        let bytes = Array(file("").utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let loaded = ConfigLoader.load(bytes: bytes, source: path)
        let server = GatewayServer(snapshot: try #require(loaded.snapshot))
        try await server.start()
        let reloader = ConfigReloader(
            path: path, initialBytes: bytes, version: loaded.version, server: server, logger: Logger(label: "test"), environment: [:])
        let admin = try await AdminServer.start(
            address: HostPort(host: "127.0.0.1", port: 0), group: server.group, reloader: reloader,
            snapshot: { [shared = server.shared] in shared.snapshots.snapshot }, metrics: server.shared.metrics, server: server,
            isReady: { true })
        defer {
            Task {
                await admin.stop()
                await server.shutdown()
            }
        }
        let port = try #require(server.boundAddresses.values.first?.port)
        let bad = [
            #", "request_headers": { "set": { "x-a": "1\r\nX-Injected: 2" } }"#,
            #", "response_headers": { "add": { "x-a": "1\nX-Injected: 2" } }"#,
            #", "response_headers": { "set": { "x-a\r\nX-Injected": "2" } }"#,
            #", "rewrite": { "host": "a.example\r\nX-Injected: 2" }"#,
        ]
        for extra in bad {
            let r = try await httpRequestOffPool(port: admin.port, "PUT", "/config", body: Array(file(extra).utf8))
            #expect(r.status == 422, "\(extra)")
        }
        let respond =
            #"{ "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ], "access_log": { "enabled": false }, "#
            + #""routes": [ { "match": { "path_prefix": "/" }, "respond": { "status": 200, "headers": { "x-a": "1\r\nX-Injected: 2" } } } ] }"#
        #expect(try await httpRequestOffPool(port: admin.port, "PUT", "/config", body: Array(respond.utf8)).status == 422)
        let r = try await httpRequestOffPool(port: port, "GET", "/")
        #expect(r.text == "one" && r.header("x-injected") == nil)
        // An upstream target whose host holds a line break is not a URL.
        #expect(TargetURL("http://a\r\nX-Injected: 1:80") == nil)
    }

    @Test func theHeadWriterNeverWritesALineWithCRLFOrNUL() {
        var out = ByteBuffer()
        out.writeHeaderLine("x-a", "1\r\nX-Injected: 2")
        out.writeHeaderLine("x-b\r\nX-Injected", "2")
        out.writeHeaderLine("x-c", "a\u{0}b")
        out.writeHeaderLine("x-d", "a\nb")
        out.writeHeaderLine("location", "/\r\nX-Injected: 2")
        out.writeHeaderLine("x-ok", "fine value")
        #expect(String(buffer: out) == "x-ok: fine value\r\n")
    }

    // MARK: 4. A mirror to an https:// upstream went out in cleartext.

    @Test(.timeLimit(.minutes(2))) func aMirrorToAnHTTPSUpstreamGoesOverTLS() async throws {
        let ca = try await TestCA()
        defer { ca.remove() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let secure = try await TLSUpstream(ca: ca, group: group)
        defer {
            Task {
                await secure.stop()
                try? await group.shutdownGracefully()
            }
        }
        let rig = try await ResilienceRig.start(1) { u in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 1 }, "access_log": { "enabled": false },
              "upstreams": { "app": { "targets": ["\(u[0])"] },
                             "shadow": { "targets": ["https://127.0.0.1:\(secure.port)"], "tls": { "ca_file": "\(ca.caFile)", "server_name": "localhost" } } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "app", "mirror": { "upstream": "shadow", "percent": 100 } } ] }
            """
        }
        defer { Task { await rig.stop() } }
        #expect(try await rig.request("GET", "/copy", headers: [("authorization", "Bearer secret")]).status == 200)
        #expect(try await waitUntilAsync(timeout: 10) { secure.received.values.withLock { $0 } == ["1"] })
    }

    // MARK: 5, 6, 11, 14: the browser login.

    /// A login `web` on `/app` and a second login `other` (same cookie secret, another client
    /// id) on `/other`; the JWT provider forwards `sub` and `tier`.
    static func login(webExtra: String = "") async throws -> LoginTests.Setup {
        try await LoginTests.start { issuer, upstream in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 1 }, "access_log": { "enabled": false },
              "auth": {
                "jwt": { "idp": { "issuer": "\(issuer)", "audiences": ["gateway-demo"], "jwks_uri": "\(issuer)/.well-known/jwks.json",
                                  "algorithms": ["ES256"], "forward_claims": { "sub": "x-user-id", "tier": "x-user-tier" } } },
                "login": { "web": { "issuer": "\(issuer)", "client_id": "\(DemoIdP.webClient)", "cookie_secret_env": "COOKIE_SECRET",
                                    "jwt": "idp"\(webExtra) },
                           "other": { "issuer": "\(issuer)", "client_id": "another-client", "cookie_secret_env": "COOKIE_SECRET",
                                      "jwt": "idp", "callback_path": "/oauth2/other/callback", "logout_path": "/oauth2/other/logout" } } },
              "upstreams": { "app": { "targets": ["\(upstream)"] } },
              "routes": [ { "match": { "path_prefix": "/app" }, "upstream": "app", "auth": { "login": "web" } },
                          { "match": { "path_prefix": "/other" }, "upstream": "app", "auth": { "login": "other" } } ] }
            """
        }
    }

    @Test func aStateThatIsNotOursNeverReachesASetCookieLine() async throws {
        let s = try await Self.login()
        defer { Task { await s.stop() } }
        for query in ["error=x&state=%0D%0AX-Inj:%20yes", "code=c&state=%0D%0AX-Inj:%20yes", "error=x&state=a%0Ab", "code=c&state=%00"] {
            let r = try await httpRequestOffPool(port: s.rig.port, "GET", "/oauth2/callback?" + query, host: "127.0.0.1")
            #expect(r.status == 400 || r.status == 401, "\(query)")
            #expect(r.header("x-inj") == nil, "\(query)")
            #expect(r.headers("set-cookie").allSatisfy { $0.hasPrefix("__gw_login_") && !$0.contains("X-Inj") }, "\(query)")
        }
    }

    @Test func aSessionOfOneLoginIsRefusedByAnotherThatSharesItsSecret() async throws {
        let s = try await Self.login()
        defer { Task { await s.stop() } }
        let browser = try await LoginTests.login(s)
        let before = s.rig.upstreams[0].requests
        #expect(try await browser.get(s.base + "/app/page").status == 200)
        // The same cookie on the other login's route: not a session of that provider.
        let other = try await browser.get(s.base + "/other/page")
        #expect(other.status == 302)
        #expect(other.location?.hasPrefix(s.idp.issuer + "/authorize?") == true)
        #expect(other.location?.contains("client_id=another-client") == true)
        #expect(s.rig.upstreams[0].requests == before + 1)
    }

    @Test func forwardClaimsOfTheLoginsJWTProviderComeFromTheAccessToken() async throws {
        let s = try await Self.login()
        defer { Task { await s.stop() } }
        let browser = try await LoginTests.login(s)
        #expect(try await browser.get(s.base + "/app/page").status == 200)
        let headers = try #require(s.rig.upstreams[0].headers.last)
        // The demo provider's access token carries `tier: pro` (its ID token does not).
        #expect(headers.first(name: "x-user-tier") == "pro")
        #expect(headers.first(name: "x-user-id") == "demo-user")
    }

    @Test func theRedirectURIIsBuiltOnTheExternalURLOrATrustedHostOnly() async throws {
        let s = try await Self.login(webExtra: #", "external_url": "https://app.example.com""#)
        defer { Task { await s.stop() } }
        let r = try await httpRequestOffPool(port: s.rig.port, "GET", "/app/x", headers: [("accept", "text/html")], host: "evil.example")
        #expect(r.status == 302)
        let location = try #require(r.header("location"))
        let items = Dictionary(uniqueKeysWithValues: (URLComponents(string: location)?.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(items["redirect_uri"] == "https://app.example.com/oauth2/callback")
        // Without `external_url`, a Host that is not loopback or a route's match.host is refused.
        let other = try await httpRequestOffPool(
            port: s.rig.port, "GET", "/other/x", headers: [("accept", "text/html")], host: "evil.example")
        #expect(other.status == 400)
        #expect(other.header("location") == nil)
        // Logout on such a Host still clears the session, and ends on the local path.
        let logout = try await httpRequestOffPool(port: s.rig.port, "GET", "/oauth2/other/logout", host: "evil.example")
        #expect(logout.status == 302 && logout.header("location") == "/")
        #expect(logout.headers("set-cookie").contains { $0.hasPrefix("__gw_session=;") && $0.contains("Max-Age=0") })
        let local = try await httpRequestOffPool(
            port: s.rig.port, "GET", "/other/x", headers: [("accept", "text/html")], host: "localhost:\(s.rig.port)")
        #expect(local.status == 302)
        #expect(local.header("location")?.contains(PathTemplate.escape("http://localhost:\(s.rig.port)/oauth2/other/callback")) == true)
    }

    // MARK: 7. Aggregate path templates let `.` and `..` through as a segment.

    @Test func aTemplateValueNeverMakesADotSegment() throws {
        guard case .success(let t) = PathTemplate.parse("/users/{param.id}/orders?q={query.q}") else {
            Issue.record("template did not parse")
            return
        }
        func render(_ id: String, _ q: String = "x") -> String? {
            t.render { source in
                switch source {
                case .param: return id
                default: return q
                }
            }
        }
        #expect(render("..") == nil)
        #expect(render(".") == nil)
        #expect(render("..x") == "/users/..x/orders?q=x")
        #expect(render("a/../b") == "/users/a%2F..%2Fb/orders?q=x")
        #expect(render("7", "..") == "/users/7/orders?q=..")
        guard case .success(let whole) = PathTemplate.parse("/files/{param.name}") else { return }
        #expect(whole.render { _ in ".." } == nil)
        #expect(whole.render { _ in "..." } == "/files/...")
    }

    // MARK: 8. WebSocket tunnels: an idle timeout, and counted.

    @Test(.timeLimit(.minutes(2))) func aTunnelIsCountedAndClosedWhenIdle() async throws {
        let template = config(
            server: #"{ "workers": 1, "tunnel_idle_timeout": "700ms" }"#,
            upstreams: #"{ "echo": { "targets": ["@UP0@"], "max_connections_per_target": 1, "max_pending_requests": 0 } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#)
        try await withGateway(template) { h in
            let c = try RawHTTPClient(port: h.port, timeout: 10)
            try c.send(
                "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            #expect(try c.readResponse().status == 101)
            try c.send(maskedTextFrame("hello"))
            #expect(String(decoding: try readFrame(c).payload, as: UTF8.self) == "hello")
            // The tunnel is an open client connection, and holds the target's one connection.
            let metrics = { (try? PrometheusText(String(decoding: h.server.shared.metrics.exposition(), as: UTF8.self))) }
            #expect(metrics()?.value("gateway_active_connections", ["listener": "test"]) == 1)
            let other = try httpRequest(port: h.port, "GET", "/users/1")
            #expect(other.status == 503)
            // Idle for longer than the timeout: closed by the gateway.
            let start = Date()
            #expect(c.isClosedByPeer())
            #expect(Date().timeIntervalSince(start) < 5)
            #expect(
                waitUntil(timeout: 5) {
                    metrics()?.value("gateway_active_connections", ["listener": "test"]) == 0
                        && (try? httpRequest(port: h.port, "GET", "/users/1"))?.status == 200
                })
        }
    }

    // MARK: 9. Request trailers are dropped unless the route asks for them.

    @Test func requestTrailersAreDroppedUnlessTheRouteForwardsThemFiltered() async throws {
        let rig = try await ResilienceRig.start(1) { u in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 1 }, "access_log": { "enabled": false },
              "upstreams": { "app": { "targets": ["\(u[0])"] } },
              "routes": [ { "match": { "path_prefix": "/plain" }, "upstream": "app" },
                          { "match": { "path_prefix": "/grpcish" }, "upstream": "app", "forward_request_trailers": true,
                            "request_headers": { "set": { "x-team": "a" } } } ] }
            """
        }
        defer { Task { await rig.stop() } }
        func send(_ path: String) async throws -> Int {
            let port = rig.port
            return try await withCheckedThrowingContinuation { c in
                Thread.detachNewThread {
                    c.resume(
                        with: Result {
                            let client = try RawHTTPClient(port: port, timeout: 30)
                            try client.send(
                                "POST \(path) HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n3\r\nabc\r\n0\r\n"
                                    + "x-user-id: admin\r\nx-team: evil\r\nauthorization: Bearer forged\r\nhost: evil\r\ngrpc-status: 0\r\n\r\n"
                            )
                            return try client.readResponse().status
                        })
                }
            }
        }
        #expect(try await send("/plain") == 200)
        #expect(try await send("/grpcish") == 200)
        let trailers = rig.upstreams[0].trailers
        #expect(trailers.count == 2)
        #expect(trailers.first.map { Array($0) }?.isEmpty == true)
        let forwarded = try #require(trailers.last)
        #expect(forwarded.first(name: "grpc-status") == "0")
        #expect(forwarded.first(name: "x-user-id") == "admin")  // no auth on this route: not a claim header
        for name in ["x-team", "authorization", "host"] { #expect(forwarded.first(name: name) == nil, "\(name)") }
    }

    @Test func forwardedTrailersNeverCarryAClaimHeader() throws {
        let snapshot = try #require(
            ConfigLoader.load(
                bytes: Array(
                    """
                    { "listeners": [ { "name": "t", "address": "127.0.0.1:0" } ],
                      "auth": { "jwt": { "idp": { "jwks_file": "/dev/null", "forward_claims": { "sub": "x-user-id" } } } },
                      "upstreams": { "a": { "targets": ["http://127.0.0.1:1"] } },
                      "routes": [ { "match": { "path_prefix": "/" }, "upstream": "a", "auth": { "jwt": "idp" }, "forward_request_trailers": true } ] }
                    """.utf8), source: "t.json"
            ).snapshot)
        var trailers = HTTPHeaders()
        trailers.add(name: "X-User-Id", value: "admin")
        trailers.add(name: "x-api-key", value: "k")
        trailers.add(name: "content-length", value: "9")
        trailers.add(name: "grpc-status", value: "0")
        var out = ByteBuffer()
        ForwardHeaders.requestTrailers(trailers, route: snapshot.routes[0], apiKeyHeader: "x-api-key", into: &out)
        #expect(String(buffer: out) == "grpc-status: 0\r\n")
    }

    // MARK: 10. The admin API refuses what a browser could be led to send.

    @Test func theAdminAPIRefusesForeignHostsAndCrossOriginRequests() async throws {
        let snapshot = try #require(
            ConfigLoader.load(
                bytes: Array(
                    #"{ "listeners": [ { "name": "t", "address": "127.0.0.1:0" } ], "access_log": { "enabled": false }, "routes": [] }"#
                        .utf8),
                source: "t.json"
            ).snapshot)
        let server = GatewayServer(snapshot: snapshot)
        try await server.start()
        let admin = try await AdminServer.start(
            address: HostPort(host: "127.0.0.1", port: 0), group: server.group,
            snapshot: { [shared = server.shared] in shared.snapshots.snapshot }, metrics: server.shared.metrics, server: server,
            isReady: { true })
        defer {
            Task {
                await admin.stop()
                await server.shutdown()
            }
        }
        let p = admin.port
        func status(_ path: String, host: String, _ headers: [(String, String)] = []) async throws -> Int {
            try await httpRequestOffPool(port: p, "GET", path, headers: headers, host: host).status
        }
        // DNS rebinding: the attacker's name in Host.
        #expect(try await status("/routes", host: "attacker.example:\(p)") == 403)
        #expect(try await status("/metrics", host: "rebind.attacker.example") == 403)
        let refused = try await httpRequestOffPool(port: p, "GET", "/routes", host: "attacker.example")
        #expect(refused.json?["error"] as? String == "forbidden")
        // A page of another origin, even with a loopback Host.
        #expect(try await status("/routes", host: "127.0.0.1:\(p)", [("Origin", "http://attacker.example")]) == 403)
        #expect(try await status("/routes", host: "127.0.0.1:\(p)", [("Origin", "null")]) == 403)
        #expect(try await status("/routes", host: "127.0.0.1:\(p)", [("Sec-Fetch-Site", "cross-site")]) == 403)
        // curl, Prometheus, kubectl port-forward: IP literals and loopback names.
        for host in ["127.0.0.1:\(p)", "localhost:\(p)", "[::1]:\(p)", "10.0.0.7:\(p)", "gw.localhost"] {
            #expect(try await status("/routes", host: host) == 200, "\(host)")
        }
        #expect(try await status("/routes", host: "127.0.0.1:\(p)", [("Origin", "http://127.0.0.1:\(p)")]) == 200)
        // Liveness and readiness answer whatever the Host (load balancers and kubelets).
        #expect(try await status("/healthz", host: "attacker.example") == 200)
        #expect(try await status("/readyz", host: "attacker.example") == 200)
    }

    // MARK: 12. Every SPEC §7 family from the start.

    @Test func everySpecMetricFamilyIsExportedFromTheStartWithHelpAndType() throws {
        let metrics = GatewayMetrics()
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        for (name, type, _) in GatewayMetrics.families {
            #expect(text.contains("# HELP \(name) "), "\(name)")
            #expect(text.contains("# TYPE \(name) \(type)\n"), "\(name)")
        }
        // One that has samples keeps them, with one HELP and one TYPE line.
        metrics.reloaded(result: "success")
        let after = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(after.contains("gateway_config_reloads_total{result=\"success\"} 1"))
        #expect(after.components(separatedBy: "# TYPE gateway_config_reloads_total ").count == 2)
        #expect(after.components(separatedBy: "# HELP gateway_config_reloads_total ").count == 2)
        #expect(try PrometheusText(after).value("gateway_config_reloads_total", ["result": "success"]) == 1)
    }

    // MARK: 13. /readyz does not wait for ever on a JWKS that does not answer.

    @Test(.timeLimit(.minutes(2))) func anUnreachableJWKSStopsHoldingReadinessAfterItsInitialFetchTimeout() async throws {
        let rig = try await ResilienceRig.start(1) { u in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 1 }, "access_log": { "enabled": false },
              "auth": { "jwt": { "idp": { "jwks_uri": "@DEAD@/jwks.json", "jwks_initial_fetch_timeout": "300ms" } } },
              "upstreams": { "app": { "targets": ["\(u[0])"] } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "app", "auth": { "jwt": "idp" } } ] }
            """
        }
        defer { Task { await rig.stop() } }
        #expect(try await waitUntilAsync(timeout: 10) { rig.server.authReady })
        let r = try await rig.request("GET", "/x", headers: [("authorization", "Bearer a.b.c")])
        #expect(r.status == 401)
        #expect(rig.upstreams[0].requests == 0)
    }

    @Test func theInitialFetchTimeoutIsMeasuredOnTheStoresClock() throws {
        let spec = try #require(
            ConfigLoader.load(
                bytes: Array(
                    """
                    { "listeners": [ { "name": "t", "address": "127.0.0.1:0" } ],
                      "auth": { "jwt": { "idp": { "jwks_uri": "http://127.0.0.1:1/jwks" } } }, "routes": [] }
                    """.utf8), source: "t.json"
            ).snapshot?.jwtProviders.first)
        let clock = ManualDeadline()
        let store = JWKSStore(settings: JWKSStore.Settings(spec, environment: [:]), now: { clock.now })
        #expect(!store.isReady)
        clock.advance(.milliseconds(4900))
        #expect(!store.isReady)
        clock.advance(.milliseconds(100))  // the default: 5 s
        #expect(store.isReady)
    }

    // MARK: 15. gateway_upstream_available follows ejections at once.

    @Test func theAvailabilityGaugeSaysWhatUpstreamsSaysWhenScraped() async throws {
        let rig = try await ResilienceRig.start(2) { u in
            ResilienceRig.config(
                upstream: #"""
                    { "targets": ["\#(u[0])", "\#(u[1])"],
                      "outlier_detection": { "consecutive_5xx": 2, "base_ejection_time": "60s", "max_ejection_percent": 50 } }
                    """#, route: "")
        }
        defer { Task { await rig.stop() } }
        let bad = rig.upstreams[0]
        bad.set { $0.status = 500 }
        for _ in 0..<20 {
            _ = try await rig.request("GET", "/x")
            if await rig.target(bad.url)?.available == false { break }
        }
        #expect(await rig.target(bad.url)?.available == false)
        // Scraped right away: no wait for a background refresh.
        #expect(rig.metric("gateway_upstream_available", ["upstream": "pool", "target": bad.url]) == 0)
        #expect(rig.metric("gateway_upstream_available", ["upstream": "pool", "target": rig.upstreams[1].url]) == 1)
    }

    // MARK: 16. Connection and pending limits are the gateway's, whatever `workers` is.

    /// One upstream with these limits behind every path, on `workers` event loops.
    static func limitedRig(workers: Int, maxConnections: Int, maxPending: Int) async throws -> ResilienceRig {
        try await ResilienceRig.start(1) { u in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": \(workers) }, "access_log": { "enabled": false },
              "upstreams": { "app": { "targets": ["\(u[0])"], "max_connections_per_target": \(maxConnections),
                                      "max_pending_requests": \(maxPending) } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "app" } ] }
            """
        }
    }

    @Test(.timeLimit(.minutes(2))) func oneConnectionPerTargetWithTwoWorkersMeansOneInUse() async throws {
        let rig = try await Self.limitedRig(workers: 2, maxConnections: 1, maxPending: 100)
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.delayMs = 100 }
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<8 { group.addTask { try await rig.request("GET", "/r\(i)").status } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 200, count: 8))
        #expect(rig.upstreams[0].requests == 8)
        #expect(rig.upstreams[0].maxInFlight == 1)
    }

    @Test(.timeLimit(.minutes(2))) func aColdBurstWithFreeSlotsIsNotRefusedByAnEmptyQueueLimit() async throws {
        let rig = try await Self.limitedRig(workers: 1, maxConnections: 8, maxPending: 0)
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.delayMs = 200 }
        // Four at once on a cold pool: each waits for a connection of its own being opened,
        // with slots to spare; none is refused as if the queue were full.
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<4 { group.addTask { try await rig.request("GET", "/c\(i)").status } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses == [200, 200, 200, 200])
    }

    @Test(.timeLimit(.minutes(2))) func thePendingLimitCountsEveryWorkersWaitingRequests() async throws {
        let rig = try await Self.limitedRig(workers: 2, maxConnections: 1, maxPending: 1)
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.delayMs = 5000 }
        let spec = try #require(rig.server.shared.snapshots.snapshot.upstreams.first)
        let limits = rig.server.shared.limits.limits(for: spec)
        let first = Task { try await rig.request("GET", "/first").status }
        #expect(try await waitUntilAsync(timeout: 20) { rig.upstreams[0].requests == 1 })
        // One more waits (the gateway's own count shows it), whichever worker took it...
        let waiting = Task { try await rig.request("GET", "/more").status }
        #expect(try await waitUntilAsync(timeout: 20) { limits.waiting == 1 })
        // ...and the next is refused, whichever worker takes it: the queue is the gateway's.
        var refused = 0
        for _ in 0..<2 {
            if try await rig.request("GET", "/refused").status == 503 { refused += 1 }
        }
        #expect(refused == 2)
        #expect(try await waiting.value == 200)
        #expect(try await first.value == 200)
        #expect(rig.upstreams[0].maxInFlight == 1)
    }
}

/// A clock a test moves by hand.
final class ManualDeadline: Sendable {
    private let nanos = Mutex<UInt64>(1_000_000_000)
    var now: NIODeadline { NIODeadline.uptimeNanoseconds(nanos.withLock { $0 }) }
    func advance(_ t: TimeAmount) { nanos.withLock { $0 += UInt64(t.nanoseconds) } }
}
