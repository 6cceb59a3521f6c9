import Testing

@testable import GatewayConfig

@Suite struct PathTests {
    func norm(_ s: String) -> String? {
        if case .success(let r) = RequestPath.normalize(s) { return r.path }
        return nil
    }

    @Test(arguments: [
        ("/a/b", "/a/b"), ("/a/./b", "/a/b"), ("/a/../b", "/b"), ("/a/b/..", "/a/"), ("/a/%62", "/a/b"),
        ("/a/%2e%2e/b", "/b"), ("/a/%2E%2E/%2e/c", "/c"), ("/a%2Fb", "/a%2Fb"), ("/a%2fb", "/a%2Fb"), ("/", "/"),
        ("/api/../api/x", "/api/x"), ("http://example.com/x/y?q=1", "/x/y"), ("/a/.hidden", "/a/.hidden"), ("/x?y=/../..", "/x"),
    ])
    func normalizes(_ input: String, _ expected: String) {
        #expect(norm(input) == expected)
    }

    @Test(arguments: ["/..", "/a/../..", "/%2e%2e/etc/passwd", "/a/%2e%2e/%2e%2e/b", "*", "/a%zz", "/a%2"])
    func rejects(_ input: String) {
        #expect(norm(input) == nil)
    }

    @Test func queryIsKept() {
        guard case .success(let r) = RequestPath.normalize("/a/b?x=1&y=2") else { Issue.record("failed"); return }
        #expect(r.path == "/a/b")
        #expect(r.query == "x=1&y=2")
    }

    func matches(_ pattern: String, _ path: String) -> Bool {
        guard case .success(let p) = PathPattern.parse(pattern) else { return false }
        return Array(path.utf8).withUnsafeBytes { p.matches($0) }
    }

    @Test func patterns() {
        #expect(matches("/users/{id}", "/users/42"))
        #expect(!matches("/users/{id}", "/users/"))
        #expect(!matches("/users/{id}", "/users/42/x"))
        #expect(!matches("/users/{id}", "/users"))
        #expect(matches("/users/{id}/orders/{order}", "/users/1/orders/2"))
        #expect(matches("/files/*", "/files"))
        #expect(matches("/files/*", "/files/a/b/c"))
        #expect(!matches("/files/*", "/filesystem"))
        #expect(matches("/", "/"))
        #expect(!matches("/", "/x"))
        #expect(matches("/exact", "/exact"))
        #expect(!matches("/exact", "/exact/"))
        if case .success(let p) = PathPattern.parse("/u/{id}/f/*") {
            let caps = p.captures("/u/7/f/a/b")
            #expect(caps?.map(\.0) == ["id", "*"])
            #expect(caps?.map(\.1) == ["7", "a/b"])
        } else {
            Issue.record("pattern did not parse")
        }
    }

    @Test(arguments: ["users", "/a/*/b", "/a/{x", "/a/x{y}", "/a/{x}/{x}", "/a/{x y}"])
    func badPatterns(_ p: String) {
        if case .success = PathPattern.parse(p) { Issue.record("\(p) should not parse") }
    }

    @Test func rewrite() throws {
        func route(_ rewrite: String) throws -> CompiledRoute {
            let r = ConfigLoader.load(
                bytes: Array(
                    """
                    { "listeners": [ { "address": "127.0.0.1:1" } ], "upstreams": { "u": { "targets": ["http://127.0.0.1:2"] } },
                      "routes": [ { "match": { "path_prefix": "/api" }, "upstream": "u", "rewrite": \(rewrite) } ] }
                    """.utf8), source: "t")
            return try #require(r.snapshot?.routes.first, "\(r.errors)")
        }
        let strip = try route("{ \"strip_prefix\": \"/api\" }")
        #expect(strip.rewrittenPath("/api/users/1") == "/users/1")
        #expect(strip.rewrittenPath("/api") == "/")
        #expect(strip.rewrittenPath("/apiary") == "/apiary")
        let both = try route("{ \"strip_prefix\": \"/api\", \"add_prefix\": \"/v1\" }")
        #expect(both.rewrittenPath("/api/users") == "/v1/users")
        #expect(both.rewrittenPath("/api") == "/v1/")
    }
}
