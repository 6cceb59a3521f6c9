import Foundation
import GatewayConfig
import GatewayPolicies
import Testing

/// Route `aggregate` (issue 8): templates, the `after` DAG, required and optional backends,
/// timeouts, merge, headers, over real sockets.
@Suite struct AggregateTests {
    /// t0 "profile", t1 "orders", t2 "recs".
    static func template(aggregate: String, route: String = "") -> ([String]) -> String {
        { u in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 1 }, "access_log": { "enabled": false },
              "upstreams": { "profile": { "targets": ["\(u[0])"] }, "orders": { "targets": ["\(u[1])"] },
                             "recs": { "targets": ["\(u[2])"] } },
              "routes": [ { "name": "home", "match": { "path": "/home/{id}" }, \(route) "aggregate": \(aggregate) } ] }
            """
        }
    }

    static func object(_ r: RawHTTPClient.Response) -> [String: Any] { r.json ?? [:] }

    @Test func twoBackendsOf300msRunInParallel() async throws {
        let rig = try await ResilienceRig.start(
            3,
            Self.template(
                aggregate: #"""
                    { "timeout": "2s", "backends": [
                      { "name": "profile", "upstream": "profile", "path": "/users/{param.id}", "group": "profile" },
                      { "name": "orders", "upstream": "orders", "path": "/orders?user={param.id}", "group": "orders" } ] }
                    """#))
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.delayMs = 300 }
        rig.upstreams[1].set { $0.delayMs = 300 }
        let (r, seconds) = try await rig.timed("GET", "/home/7")
        #expect(r.status == 200)
        #expect(seconds < 0.45, "took \(seconds) s")
        #expect(seconds >= 0.3)
        let body = Self.object(r)
        #expect((body["profile"] as? [String: Any])?["uri"] as? String == "/users/7")
        #expect((body["orders"] as? [String: Any])?["uri"] as? String == "/orders?user=7")
        #expect(r.header("x-gateway-completed") == "true")
        #expect(r.header("x-gateway-aggregate") == "profile=ok, orders=ok")
    }

    @Test func aSequentialBackendUsesTheFirstOnesAnswerEscaped() async throws {
        let rig = try await ResilienceRig.start(
            3,
            Self.template(
                aggregate: #"""
                    { "backends": [
                      { "name": "profile", "upstream": "profile", "path": "/users/{param.id}", "required": true,
                        "shape": { "allow": ["id", "name"] } },
                      { "name": "recs", "upstream": "recs", "path": "/recs/{profile.favorite.genre}?q={query.q}&h={header.x-tag}",
                        "after": ["profile"], "group": "recs" } ] }
                    """#))
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.body = Array(#"{"id":"7","name":"Ada","favorite":{"genre":"free jazz/bop"}}"#.utf8) }
        let r = try await rig.request("GET", "/home/7?q=a%20b%26c", headers: [("x-tag", "ü")])
        #expect(r.status == 200)
        let body = Self.object(r)
        // profile merged at the top level, shaped; recs grouped, its path built from profile's
        // answer (before profile's shape removed `favorite`), each value escaped.
        #expect(body["id"] as? String == "7")
        #expect(body["name"] as? String == "Ada")
        #expect(body["favorite"] == nil)
        #expect((body["recs"] as? [String: Any])?["uri"] as? String == "/recs/free%20jazz%2Fbop?q=a%20b%26c&h=%C3%BC")
        // The backends ran in order.
        #expect(rig.upstreams[2].uris == ["/recs/free%20jazz%2Fbop?q=a%20b%26c&h=%C3%BC"])
    }

    @Test func anOptionalBackendFailingGives200AndSaysSo() async throws {
        let rig = try await ResilienceRig.start(
            3,
            Self.template(
                aggregate: #"""
                    { "backends": [
                      { "name": "profile", "upstream": "profile", "path": "/users/{param.id}", "group": "profile", "required": true },
                      { "name": "orders", "upstream": "orders", "path": "/orders", "group": "orders" },
                      { "name": "recs", "upstream": "recs", "path": "/recs/{orders.top}", "after": ["orders"], "group": "recs" } ] }
                    """#))
        defer { Task { await rig.stop() } }
        rig.upstreams[1].set { $0.status = 500 }
        let r = try await rig.request("GET", "/home/1", headers: [("authorization", "Bearer caller-token")])
        #expect(r.status == 200)
        #expect(r.header("x-gateway-completed") == "false")
        #expect(r.header("x-gateway-aggregate") == "profile=ok, orders=error, recs=skipped")
        #expect(Self.object(r)["profile"] != nil)
        #expect(Self.object(r)["orders"] == nil)
        // The caller's credentials went to each backend called.
        #expect(rig.upstreams[0].authorizations == ["Bearer caller-token"])
        #expect(rig.upstreams[1].authorizations == ["Bearer caller-token"])
        #expect(rig.upstreams[2].requests == 0)
        #expect(rig.metric("gateway_aggregate_backend_total", ["route": "home", "backend": "orders", "outcome": "error"]) == 1)
        #expect(rig.metric("gateway_aggregate_backend_total", ["route": "home", "backend": "recs", "outcome": "skipped"]) == 1)
    }

    @Test func aRequiredBackendFailingIs502AndTimingOutIs504() async throws {
        let rig = try await ResilienceRig.start(
            3,
            Self.template(
                aggregate: #"""
                    { "timeout": "1s", "backends": [
                      { "name": "profile", "upstream": "profile", "path": "/users/{param.id}", "required": true, "timeout": "200ms" },
                      { "name": "orders", "upstream": "orders", "path": "/orders", "group": "orders" } ] }
                    """#))
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.status = 503 }
        let failed = try await rig.request("GET", "/home/1")
        #expect(failed.status == 502)
        #expect(failed.json?["error"] as? String == "bad_gateway")
        #expect(failed.header("x-gateway-completed") == "false")
        #expect(failed.header("x-gateway-aggregate")?.hasPrefix("profile=error") == true)
        rig.upstreams[0].set {
            $0.status = 200
            $0.delayMs = 2000
        }
        let (slow, seconds) = try await rig.timed("GET", "/home/1")
        #expect(slow.status == 504)
        #expect(slow.json?["error"] as? String == "upstream_timeout")
        #expect(slow.header("x-gateway-aggregate")?.hasPrefix("profile=timeout") == true)
        #expect(seconds < 1, "the backend's 200 ms timeout decided, not the upstream's 2 s")
    }

    @Test func anOptionalBackendTimingOutLeavesWhatArrived() async throws {
        let rig = try await ResilienceRig.start(
            3,
            Self.template(
                aggregate: #"""
                    { "timeout": "300ms", "backends": [
                      { "name": "profile", "upstream": "profile", "path": "/users/{param.id}", "group": "profile" },
                      { "name": "orders", "upstream": "orders", "path": "/orders", "group": "orders" } ] }
                    """#))
        defer { Task { await rig.stop() } }
        rig.upstreams[1].set { $0.delayMs = 3000 }
        let (r, seconds) = try await rig.timed("GET", "/home/1")
        #expect(r.status == 200)
        #expect(r.header("x-gateway-aggregate") == "profile=ok, orders=timeout")
        #expect(Self.object(r)["profile"] != nil && Self.object(r)["orders"] == nil)
        #expect(seconds < 1)
    }

    @Test func backendsUseTheRoutesRetriesAndTheUpstreamsTargets() async throws {
        let rig = try await ResilienceRig.start(2) { u in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 1 }, "access_log": { "enabled": false },
              "upstreams": { "profile": { "targets": ["@DEAD@", "\(u[0])"] } },
              "routes": [ { "name": "home", "match": { "path": "/home" },
                "retry": { "attempts": 2, "on": ["connect-failure"], "backoff": { "base": "5ms", "max": "10ms" } },
                "aggregate": { "backends": [ { "name": "p", "upstream": "profile", "path": "/me", "required": true } ] } } ] }
            """
        }
        defer { Task { await rig.stop() } }
        for _ in 0..<4 {
            let r = try await rig.request("GET", "/home")
            #expect(r.status == 200)
            #expect(r.json?["uri"] as? String == "/me")
        }
        #expect((rig.metric("gateway_retries_total", ["route": "home", "reason": "connect-failure"]) ?? 0) >= 1)
    }

    @Test func configChecks() {
        let text = """
            { "listeners": [ { "name": "l", "address": "127.0.0.1:0" } ],
              "upstreams": { "a": { "targets": ["http://127.0.0.1:1"] } },
              "routes": [ { "match": { "path": "/x/{id}" }, "rewrite": { "strip_prefix": "/x" }, "aggregate": { "backends": [
                { "name": "one", "upstream": "a", "path": "/p/{param.nope}", "after": ["two"] },
                { "name": "two", "upstream": "b", "path": "/q/{three.id}", "after": ["one"] },
                { "name": "one", "upstream": "a", "path": "no-slash", "after": ["zzz"] },
                { "name": "four", "upstream": "a", "path": "/r/{oops" } ] } } ] }
            """
        let r = ConfigLoader.load(bytes: Array(text.utf8), source: "t.json")
        let paths = r.errors.map(\.path)
        for p in [
            "routes[0].rewrite", "routes[0].aggregate.backends[0].path", "routes[0].aggregate.backends[1].upstream",
            "routes[0].aggregate.backends[1].path", "routes[0].aggregate.backends[2].name", "routes[0].aggregate.backends[2].path",
            "routes[0].aggregate.backends[2].after[0]", "routes[0].aggregate.backends[3].path",
        ] {
            #expect(paths.contains(p), "\(p) in \(paths)")
        }
        #expect(r.errors.contains { $0.message.contains("cycle") })
    }

    @Test func templatesEscapeAndReportMissingValues() throws {
        let t = try PathTemplate.parse("/a/{param.id}/b?x={query.q}&y={profile.address.city}").get()
        let rendered = t.render { source in
            switch source {
            case .param: return "a/b c"
            case .query: return "1+1=2"
            case .backend(let name, let path): return name == "profile" && path == ["address", "city"] ? "Zürich" : nil
            default: return nil
            }
        }
        #expect(rendered == "/a/a%2Fb%20c/b?x=1%2B1%3D2&y=Z%C3%BCrich")
        #expect(t.backendNames == ["profile"])
        #expect(t.render { _ in nil } == nil)
    }
}
