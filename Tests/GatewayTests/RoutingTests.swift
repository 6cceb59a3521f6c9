import Testing

/// Route order and every matcher, over a real socket (SPEC §2.7).
@Suite struct RoutingTests {
    static let routes = """
        [
          { "name": "exact", "match": { "path": "/exact" }, "respond": { "body": "exact" } },
          { "name": "param", "match": { "path": "/users/{id}", "methods": ["GET"] }, "respond": { "body": "param" } },
          { "name": "param-post", "match": { "path": "/users/{id}", "methods": ["POST", "PUT"] }, "respond": { "body": "param-post" } },
          { "name": "rest", "match": { "path": "/files/*" }, "respond": { "body": "rest" } },
          { "name": "host", "match": { "path_prefix": "/h", "host": "api.example.com" }, "respond": { "body": "host" } },
          { "name": "wildcard-host", "match": { "path_prefix": "/h", "host": "*.example.org" }, "respond": { "body": "wildcard-host" } },
          { "name": "mobile", "match": { "path_prefix": "/client", "headers": { "x-client": "mobile" } }, "respond": { "body": "mobile" } },
          { "name": "v2", "match": { "path_prefix": "/client", "query": { "v": "2" } }, "respond": { "body": "v2" } },
          { "name": "client", "match": { "path_prefix": "/client" }, "respond": { "body": "client" } },
          { "name": "first", "match": { "path_prefix": "/order" }, "respond": { "body": "first" } },
          { "name": "second", "match": { "path_prefix": "/order/inner" }, "respond": { "body": "second" } },
          { "name": "api", "match": { "path_prefix": "/api/" }, "respond": { "status": 201, "headers": { "x-route": "api" }, "body": { "route": "api" } } },
          { "name": "root", "match": { "path": "/" }, "respond": { "body": "root" } }
        ]
        """

    /// `body(h, "/path")` or `body(h, "POST", "/path")`: the answer's body, or its status when not 200.
    func body(
        _ h: Harness, _ first: String, _ second: String? = nil, headers: [(String, String)] = [], host: String = "test.local"
    ) throws -> String {
        let (method, path) = second.map { (first, $0) } ?? ("GET", first)
        let r = try httpRequest(port: h.port, method, path, headers: headers, host: host)
        return r.status == 200 ? r.text : "\(r.status)"
    }

    @Test func matchersAndOrder() async throws {
        try await withGateway(services: 0, config(upstreams: "{}", routes: Self.routes)) { h in
            #expect(try body(h, "/exact") == "exact")
            #expect(try body(h, "/exact/") == "404")
            #expect(try body(h, "/users/42") == "param")
            #expect(try body(h, "POST", "/users/42") == "param-post")
            #expect(try body(h, "/users/42/x") == "404")
            #expect(try body(h, "/files") == "rest")
            #expect(try body(h, "/files/a/b/c.txt") == "rest")
            #expect(try body(h, "/filesystem") == "404")
            #expect(try body(h, "/h/x", host: "api.example.com") == "host")
            #expect(try body(h, "/h/x", host: "API.Example.com:8443") == "host")
            #expect(try body(h, "/h/x", host: "a.b.example.org") == "wildcard-host")
            #expect(try body(h, "/h/x", host: "example.org") == "404")
            #expect(try body(h, "/h/x", host: "other.com") == "404")
            #expect(try body(h, "/client", headers: [("X-Client", "mobile")]) == "mobile")
            #expect(try body(h, "/client/x?v=2") == "v2")
            #expect(try body(h, "/client/x?a=1&v=2") == "v2")
            #expect(try body(h, "/client/x?v=3") == "client")
            #expect(try body(h, "/client", headers: [("X-Client", "desktop")]) == "client")
            // first match wins: the broader route listed first shadows the narrower one
            #expect(try body(h, "/order/inner/x") == "first")
            // path_prefix matches whole segments
            #expect(try body(h, "/orderly") == "404")
            #expect(try body(h, "/") == "root")
            // matching happens after normalization
            #expect(try body(h, "/users/../exact") == "exact")
            #expect(try body(h, "/%65xact") == "exact")
            let api = try httpRequest(port: h.port, "GET", "/api/x")
            #expect(api.status == 201)
            #expect(api.header("x-route") == "api")
            #expect(api.header("content-type") == "application/json")
            #expect(api.text == "{\"route\":\"api\"}")
            #expect(api.header("x-request-id")?.count == 32)
        }
    }

    @Test func methodNotAllowedListsAllowedMethods() async throws {
        try await withGateway(services: 0, config(upstreams: "{}", routes: Self.routes)) { h in
            let r = try httpRequest(port: h.port, "DELETE", "/users/42")
            #expect(r.status == 405)
            #expect(r.header("allow") == "GET, POST, PUT")
            #expect(r.json?["error"] as? String == "method_not_allowed")
            #expect((r.json?["request_id"] as? String) == r.header("x-request-id"))
        }
    }

    @Test func notFoundIsJSON() async throws {
        try await withGateway(services: 0, config(upstreams: "{}", routes: "[]")) { h in
            let r = try httpRequest(port: h.port, "GET", "/anything")
            #expect(r.status == 404)
            #expect(r.header("content-type") == "application/json")
            #expect(r.json?["error"] as? String == "no_route")
            #expect((r.json?["message"] as? String)?.isEmpty == false)
        }
    }

    @Test func keepAliveAndPipelining() async throws {
        try await withGateway(services: 0, config(upstreams: "{}", routes: Self.routes)) { h in
            let c = try RawHTTPClient(port: h.port)
            for _ in 0..<3 {
                #expect(try c.request("GET", "/exact").text == "exact")
            }
            // three requests in one write come back in order
            try c.send(
                "GET /exact HTTP/1.1\r\nHost: a\r\n\r\nGET /users/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /files/x HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try c.readResponse().text == "exact")
            #expect(try c.readResponse().text == "param")
            #expect(try c.readResponse().text == "rest")
            // Connection: close is honoured
            let last = try c.request("GET", "/exact", headers: [("Connection", "close")])
            #expect(last.header("connection") == "close")
            #expect(c.isClosedByPeer())
        }
    }
}
