import Crypto
import Foundation
import GatewayConfig
import Testing

@testable import GatewayProxy

/// Forwarding, headers, errors and streaming over real loopback sockets, with demo services as upstreams.
@Suite struct ProxyTests {
    static let echo = config(
        upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
        routes: #"""
            [ { "name": "echo", "match": { "path_prefix": "/" }, "upstream": "echo",
                "request_headers": { "set": { "x-set": "yes" }, "add": { "x-added": "1" }, "remove": ["x-secret"] },
                "response_headers": { "set": { "x-resp": "set" }, "remove": ["x-served-by"] } } ]
            """#)

    /// The request headers the echo service saw, lowercased names.
    func seen(_ r: RawHTTPClient.Response) -> [(String, String)] {
        ((r.json?["headers"] as? [[String]]) ?? []).map { ($0[0].lowercased(), $0[1]) }
    }

    @Test func forwardingAndHopByHopHeaders() async throws {
        try await withGateway(Self.echo) { h in
            let r = try httpRequest(
                port: h.port, "GET", "/echo/x?q=1",
                headers: [
                    ("Connection", "keep-alive, X-Hop"), ("X-Hop", "must go"), ("Keep-Alive", "timeout=5"),
                    ("Proxy-Authorization", "Basic abc"), ("TE", "trailers"), ("Trailer", "x-t"), ("Upgrade", "h2c"),
                    ("X-Forwarded-For", "6.6.6.6"), ("X-Request-Id", "spoofed"), ("X-Secret", "s"), ("X-Keep", "kept"),
                    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("tracestate", "a=b"),
                ], host: "front.example")
            #expect(r.status == 200)
            let up = seen(r)
            let names = Set(up.map(\.0))
            for gone in ["connection", "x-hop", "keep-alive", "proxy-authorization", "te", "trailer", "upgrade", "x-secret"] {
                #expect(!names.contains(gone), "\(gone) reached the upstream")
            }
            func value(_ n: String) -> String? { up.first { $0.0 == n }?.1 }
            #expect(value("x-keep") == "kept")
            #expect(value("host") == "front.example")
            // an untrusted peer cannot supply X-Forwarded-For or X-Request-Id
            #expect(value("x-forwarded-for") == "127.0.0.1")
            #expect(value("x-forwarded-proto") == "http")
            #expect(value("x-forwarded-host") == "front.example")
            let id = try #require(value("x-request-id"))
            #expect(id != "spoofed" && id.count == 32)
            #expect(r.header("x-request-id") == id)
            #expect(value("traceparent") == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            #expect(value("tracestate") == "a=b")
            #expect(value("x-set") == "yes")
            #expect(value("x-added") == "1")
            #expect((r.json?["uri"] as? String) == "/echo/x?q=1")
            #expect(r.header("x-resp") == "set")
            #expect(r.header("x-served-by") == nil)
            // a missing or invalid traceparent starts a trace
            let r2 = try httpRequest(port: h.port, "GET", "/e", headers: [("traceparent", "garbage"), ("tracestate", "x=y")])
            let tp = try #require(seen(r2).first { $0.0 == "traceparent" }?.1)
            #expect(tp.count == 55 && tp.hasPrefix("00-"))
            #expect(!seen(r2).contains { $0.0 == "tracestate" })
        }
    }

    @Test func trustedProxyMayForwardClientAddressAndRequestID() async throws {
        let template = config(
            server: #"{ "trusted_proxies": ["127.0.0.0/8"] }"#,
            upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#)
        try await withGateway(template) { h in
            let r = try httpRequest(
                port: h.port, "GET", "/",
                headers: [
                    ("X-Forwarded-For", "203.0.113.9"), ("X-Request-Id", "from-the-lb"), ("X-Forwarded-Proto", "https"),
                ])
            let up = seen(r)
            #expect(up.first { $0.0 == "x-forwarded-for" }?.1 == "203.0.113.9, 127.0.0.1")
            #expect(up.first { $0.0 == "x-request-id" }?.1 == "from-the-lb")
            #expect(up.first { $0.0 == "x-forwarded-proto" }?.1 == "https")
            #expect(r.header("x-request-id") == "from-the-lb")
        }
    }

    @Test func errorsOfTheUpstreamSide() async throws {
        let deadPort = DeadPort()
        defer { withExtendedLifetime(deadPort) {} }
        let dead = deadPort.port
        let template = config(
            server: #"{ "max_body_bytes": "1KiB", "max_header_bytes": 2048 }"#,
            upstreams: """
                { "echo": { "targets": ["@UP0@"] },
                  "dead": { "targets": ["http://127.0.0.1:\(dead)"], "connect_timeout": "500ms" } }
                """,
            routes: #"""
                [ { "name": "dead", "match": { "path_prefix": "/dead" }, "upstream": "dead" },
                  { "name": "slow", "match": { "path_prefix": "/slow" }, "upstream": "echo", "timeout": "200ms" },
                  { "name": "echo", "match": { "path_prefix": "/" }, "upstream": "echo" } ]
                """#)
        try await withGateway(template) { h in
            func check(_ r: RawHTTPClient.Response, _ status: Int, _ code: String) {
                #expect(r.status == status)
                #expect(r.header("content-type") == "application/json")
                #expect(r.json?["error"] as? String == code, "\(r.text)")
                #expect(r.json?["request_id"] as? String == r.header("x-request-id"))
            }
            check(try httpRequest(port: h.port, "GET", "/dead/x"), 502, "bad_gateway")
            check(try httpRequest(port: h.port, "GET", "/drop"), 502, "bad_gateway")
            check(try httpRequest(port: h.port, "GET", "/garbage"), 502, "bad_gateway")
            check(try httpRequest(port: h.port, "GET", "/slow?ms=2000"), 504, "upstream_timeout")
            check(try httpRequest(port: h.port, "POST", "/upload", body: [UInt8](repeating: 1, count: 2000)), 413, "payload_too_large")
            check(
                try httpRequest(port: h.port, "GET", "/x", headers: [("X-Big", String(repeating: "a", count: 4000))]), 431,
                "headers_too_large")
            check(try httpRequest(port: h.port, "GET", "/../../etc/passwd"), 400, "bad_request")
            // a chunked body that grows past the limit is cut off with 413 too
            let c = try RawHTTPClient(port: h.port)
            try c.send("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            let chunk = "400\r\n" + String(repeating: "x", count: 1024) + "\r\n"
            try c.send(chunk + chunk)
            check(try c.readResponse(), 413, "payload_too_large")
            // after all that the gateway still serves
            #expect(try httpRequest(port: h.port, "GET", "/healthz").status == 200)
        }
    }

    @Test func accessLogWritesOneJSONLinePerRequest() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("access-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let template = """
            { "listeners": [ { "name": "pub", "address": "127.0.0.1:0" } ],
              "upstreams": { "echo": { "targets": ["@UP0@"] } },
              "routes": [ { "name": "users", "match": { "path_prefix": "/users" }, "upstream": "echo" },
                          { "name": "hi", "match": { "path": "/hi" }, "respond": { "body": "hi" } } ],
              "access_log": { "enabled": true, "format": "json", "path": "\(path)" } }
            """
        try await withGateway(template) { h in
            let a = try httpRequest(port: h.port, "GET", "/users/1?x=\"q\"")
            let b = try httpRequest(port: h.port, "POST", "/users/upload", body: Array("12345".utf8))
            let d = try httpRequest(port: h.port, "GET", "/hi")
            let c = try httpRequest(port: h.port, "GET", "/nowhere")
            var lines: [[String: Any]] = []
            #expect(
                waitUntil(timeout: 5) {
                    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
                    lines = text.split(separator: "\n").compactMap {
                        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
                    }
                    return lines.count == 4
                })
            guard lines.count == 4 else { return }
            let byID = Dictionary(uniqueKeysWithValues: lines.map { ($0["request_id"] as? String ?? "", $0) })
            let la = try #require(byID[a.header("x-request-id") ?? ""])
            #expect(la["route"] as? String == "users")
            #expect(la["upstream"] as? String == "echo")
            #expect(la["target"] as? String == h.services[0].url)
            #expect(la["status"] as? Int == 200)
            #expect(la["method"] as? String == "GET")
            #expect(la["path"] as? String == "/users/1?x=\"q\"")
            #expect(la["client_ip"] as? String == "127.0.0.1")
            #expect((la["upstream_ms"] as? Double).map { $0 >= 0 } == true)
            #expect((la["duration_ms"] as? Double).map { $0 >= 0 } == true)
            let ts = la["ts"] as? String ?? ""
            #expect(ts.count == 24 && ts.hasSuffix("Z") && ts.contains("T"), "\(ts)")
            let lb = try #require(byID[b.header("x-request-id") ?? ""])
            #expect(lb["method"] as? String == "POST")
            #expect(lb["bytes_in"] as? Int == 5)
            #expect(lb["bytes_out"] as? Int == b.body.count)
            let ld = try #require(byID[d.header("x-request-id") ?? ""])
            #expect(ld["route"] as? String == "hi")
            #expect(ld["bytes_out"] as? Int == 2)
            #expect(ld["upstream"] is NSNull)
            let lc = try #require(byID[c.header("x-request-id") ?? ""])
            #expect(lc["status"] as? Int == 404)
            #expect(lc["route"] is NSNull)
        }
    }

    @Test func upstreamConnectionsAreKeptAliveAndReused() async throws {
        // one event loop, so one pool (pools are per loop)
        let template = config(
            server: #"{ "workers": 1 }"#,
            upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#)
        try await withGateway(template) { h in
            // sequential requests, even from different clients, reuse the pooled connection
            for i in 0..<30 {
                let c = try RawHTTPClient(port: h.port)
                #expect(try c.request("GET", "/users/\(i)").status == 200)
            }
            #expect(h.services[0].requestsReceived == 30)
            #expect(h.services[0].connectionsAccepted == 1)
        }
    }

    @Test func upstreamMetricsCountPerTargetAndCode() async throws {
        try await withGateway(Self.echo) { h in
            for _ in 0..<3 { #expect(try httpRequest(port: h.port, "GET", "/users/1").status == 200) }
            #expect(try httpRequest(port: h.port, "GET", "/status/503").status == 503)
            // an exchange is counted when it ends, just after its last byte was written
            func scrape() throws -> PrometheusText {
                try PrometheusText(String(decoding: h.server.shared.metrics.exposition(), as: UTF8.self))
            }
            #expect(try waitUntil(timeout: 5) { try scrape().value("gateway_request_duration_seconds_count", ["route": "echo"]) == 4 })
            let m = try scrape()
            let target = h.services[0].url
            #expect(m.value("gateway_upstream_requests_total", ["upstream": "echo", "target": target, "code": "200"]) == 3)
            #expect(m.value("gateway_upstream_requests_total", ["upstream": "echo", "target": target, "code": "503"]) == 1)
            #expect(m.value("gateway_upstream_duration_seconds_count", ["upstream": "echo"]) == 4)
            #expect(m.value("gateway_requests_total", ["route": "echo", "method": "GET", "code": "503"]) == 1)
        }
    }

    @Test func upstreamStatusShowsPooledConnections() async throws {
        let template = config(
            server: #"{ "workers": 1 }"#,
            upstreams: #"{ "echo": { "targets": ["@UP0@", { "url": "http://127.0.0.1:1", "weight": 3 }] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo", "timeout": "2s" } ]"#)
        try await withGateway(template) { h in
            for i in 0..<4 { _ = try httpRequest(port: h.port, "GET", "/users/\(i)") }
            let status = await h.server.upstreamStatus()
            #expect(status.map(\.url) == [h.services[0].url, "http://127.0.0.1:1"])
            let live = try #require(status.first)
            #expect(live.openConnections == 1 && live.idleConnections == 1 && live.activeRequests == 0)
            #expect(status.last?.weight == 3 && status.last?.openConnections == 0)
        }
    }

    @Test func poolsSurviveAReloadThatKeepsTheirTarget() async throws {
        let template = config(
            server: #"{ "workers": 1 }"#,
            upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#)
        // the same upstream, new routes in front of it and a second target beside it
        let next = config(
            server: #"{ "workers": 1 }"#,
            upstreams: #"{ "echo": { "targets": ["@UP0@"] }, "other": { "targets": ["@UP1@"] } }"#,
            routes:
                #"[ { "match": { "path": "/hello" }, "respond": { "status": 200, "body": "hi" } }, { "match": { "path_prefix": "/other" }, "upstream": "other" }, { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#
        )
        try await withGateway(services: 2, template) { h in
            for i in 0..<5 { #expect(try httpRequest(port: h.port, "GET", "/users/\(i)").status == 200) }
            #expect(h.services[0].connectionsAccepted == 1)
            var text = next
            for (i, s) in h.services.enumerated() { text = text.replacingOccurrences(of: "@UP\(i)@", with: s.url) }
            let snapshot = try #require(ConfigLoader.load(bytes: Array(text.utf8), source: "next.json").snapshot)
            h.server.shared.snapshots.publish(snapshot)
            #expect(try httpRequest(port: h.port, "GET", "/hello").body == Array("hi".utf8))
            for i in 0..<5 { #expect(try httpRequest(port: h.port, "GET", "/users/\(i)").status == 200) }
            #expect(try httpRequest(port: h.port, "GET", "/other/x").status == 200)
            // the unchanged upstream kept its pooled connection through the reload
            #expect(h.services[0].requestsReceived == 10)
            #expect(h.services[0].connectionsAccepted == 1)
        }
    }

    @Test func framingSurvivesTheProxy() async throws {
        try await withGateway(Self.echo) { h in
            let c = try RawHTTPClient(port: h.port)
            // HEAD: the length of the GET, no body, and the connection stays usable
            let head = try c.request("HEAD", "/users/7")
            #expect(head.status == 200)
            #expect(head.header("content-length").flatMap { Int($0) } ?? 0 > 0)
            #expect(head.body.isEmpty)
            #expect(try c.request("GET", "/users/7").json?["id"] as? String == "7")
            // a chunked request body arrives whole, chunk sizes and trailers included
            try c.send(
                "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
            )
            let up = try c.readResponse()
            #expect(up.json?["bytes"] as? Int == 11)
            #expect(
                up.json?["sha256"] as? String == SHA256.hash(data: Array("hello world".utf8)).map { String(format: "%02x", $0) }.joined())
            // a chunked response is re-framed for HTTP/1.1 and read to the end for HTTP/1.0
            let chunked = try c.request("GET", "/bytes?n=70000&chunked=1")
            #expect(chunked.header("transfer-encoding") == "chunked")
            #expect(chunked.body.count == 70000)
            let old = try RawHTTPClient(port: h.port)
            try old.send("GET /bytes?n=70000&chunked=1 HTTP/1.0\r\nHost: a\r\n\r\n")
            let r10 = try old.readResponse()
            #expect(r10.header("transfer-encoding") == nil)
            #expect(r10.header("connection") == "close")
            #expect(r10.body.count == 70000)
        }
    }

    @Test func upstreamRequestIDIsReplacedNotDuplicated() async throws {
        let template = config(
            upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#)
        try await withGateway(template) { h in
            // the demo service answers /echo with its own headers; make it echo an id back
            let r = try httpRequest(port: h.port, "GET", "/status/200")
            #expect(r.headers("x-request-id").count == 1)
        }
    }

    @Test func slowRequestBodyGets408() async throws {
        let template = config(
            upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo", "timeout": "300ms" } ]"#)
        try await withGateway(template) { h in
            let c = try RawHTTPClient(port: h.port)
            try c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly a part")
            let r = try c.readResponse()
            #expect(r.status == 408)
            #expect(r.json?["error"] as? String == "request_timeout")
            #expect(r.header("connection") == "close")
        }
    }

    @Test func absoluteFormTargetRoutesOnItsAuthority() async throws {
        let template = config(
            upstreams: "{}",
            routes: #"[ { "match": { "path": "/x", "host": "api.example.com" }, "respond": { "status": 204 } } ]"#)
        try await withGateway(services: 0, template) { h in
            let c = try RawHTTPClient(port: h.port)
            try c.send("GET http://api.example.com/x HTTP/1.1\r\nHost: other.example\r\n\r\n")
            let r = try c.readResponse()
            #expect(r.status == 204)
            #expect(r.header("content-length") == nil)
            #expect(r.body.isEmpty)
        }
    }

    @Test func expectContinueIsAnsweredByTheGateway() async throws {
        try await withGateway(Self.echo) { h in
            let c = try RawHTTPClient(port: h.port, timeout: 3)
            try c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            // the go-ahead comes before any body byte is sent
            #expect(try c.readHeadOnly() == 100)
            try c.send("hello")
            let r = try c.readResponse()
            #expect(r.status == 200)
            #expect(r.json?["bytes"] as? Int == 5)
        }
    }

    @Test func pendingLimitAnswers503() async throws {
        let template = config(
            upstreams: #"{ "echo": { "targets": ["@UP0@"], "max_connections_per_target": 1, "max_pending_requests": 0 } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#)
        try await withGateway(template) { h in
            let busy = try RawHTTPClient(port: h.port)
            try busy.send("GET /slow?ms=4000 HTTP/1.1\r\nHost: a\r\n\r\n")
            // Once the one connection is taken (the gateway's own count says so), the next
            // request has nowhere to go: no timing guess, whatever the machine's load.
            let spec = try #require(h.server.shared.snapshots.snapshot.upstreams.first)
            let target = h.server.shared.limits.limits(for: spec).targets[0]
            #expect(try waitUntil(timeout: 20) { target.current == 1 })
            let r = try httpRequest(port: h.port, "GET", "/healthz")
            #expect(r.status == 503)
            #expect(r.json?["error"] as? String == "unavailable")
            #expect(try busy.readResponse().status == 200)
        }
    }

    @Test func balancersSpreadRequestsAcrossTargets() async throws {
        for balancer in ["round_robin", "least_request", "random", "consistent_hash"] {
            let template = config(
                upstreams: """
                    { "users": { "targets": ["@UP0@", { "url": "@UP1@", "weight": 3 }], "balancer": "\(balancer)", "hash_on": "header:x-user" } }
                    """,
                routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "users" } ]"#)
            try await withGateway(services: 2, template) { h in
                var counts: [String: Int] = [:]
                let c = try RawHTTPClient(port: h.port)
                for i in 0..<400 {
                    let r = try c.request("GET", "/users/\(i)", headers: [("x-user", "user-\(i % 40)")])
                    counts[r.header("x-served-by") ?? "?", default: 0] += 1
                }
                let share1 = Double(counts["svc-1", default: 0]) / 400
                if balancer == "consistent_hash" {
                    // 40 keys spread over both targets, and one key always lands on one target
                    #expect(counts.count == 2, "\(counts)")
                    var seenBy: Set<String> = []
                    for _ in 0..<10 {
                        seenBy.insert(try c.request("GET", "/", headers: [("x-user", "sticky")]).header("x-served-by") ?? "?")
                    }
                    #expect(seenBy.count == 1)
                } else {
                    #expect(abs(share1 - 0.75) < 0.1, "\(balancer): \(counts)")
                }
            }
        }
    }

    @Test func cookieHashKeepsAClientOnOneTargetAndRewriteReachesTheUpstream() async throws {
        let template = config(
            upstreams: #"{ "users": { "targets": ["@UP0@", "@UP1@"], "balancer": "consistent_hash", "hash_on": "cookie:session" } }"#,
            routes:
                #"[ { "match": { "path_prefix": "/api" }, "upstream": "users", "rewrite": { "strip_prefix": "/api", "add_prefix": "/v1", "host": "users.internal" } } ]"#
        )
        try await withGateway(services: 2, template) { h in
            var targetsSeen = Set<String>()
            for session in 0..<20 {
                var servedBy = Set<String>()
                for _ in 0..<5 {
                    let r = try httpRequest(port: h.port, "GET", "/api/echo", headers: [("Cookie", "theme=dark; session=s\(session)")])
                    servedBy.insert(r.json?["served_by"] as? String ?? "?")
                    #expect(r.json?["uri"] as? String == "/v1/echo")
                    #expect(seen(r).first { $0.0 == "host" }?.1 == "users.internal")
                }
                #expect(servedBy.count == 1, "session s\(session) moved between targets: \(servedBy)")
                targetsSeen.formUnion(servedBy)
            }
            #expect(targetsSeen == ["svc-0", "svc-1"])
        }
    }

    @Test func webSocketEchoThroughTheGateway() async throws {
        try await withGateway(Self.echo) { h in
            let c = try RawHTTPClient(port: h.port)
            try c.send(
                "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            let r = try c.readResponse()
            #expect(r.status == 101)
            #expect(r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            #expect(r.header("upgrade")?.lowercased() == "websocket")
            for message in ["hello", String(repeating: "z", count: 300)] {
                try c.send(maskedTextFrame(message))
                let frame = try readFrame(c)
                #expect(frame.opcode == 1)
                #expect(String(decoding: frame.payload, as: UTF8.self) == message)
            }
        }
    }

    @Test func webSocketFrameSentWithTheUpgradeRequestIsNotLost() async throws {
        try await withGateway(Self.echo) { h in
            let c = try RawHTTPClient(port: h.port)
            // the first frame rides in the same write as the upgrade request: the gateway holds
            // it unparsed while the upstream answers, and hands it to the tunnel
            let request = Array(
                "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    .utf8)
            try c.send(request + maskedTextFrame("early"))
            #expect(try c.readResponse().status == 101)
            let frame = try readFrame(c)
            #expect(String(decoding: frame.payload, as: UTF8.self) == "early")
            try c.send(maskedTextFrame("later"))
            #expect(String(decoding: try readFrame(c).payload, as: UTF8.self) == "later")
        }
    }

    @Test func pipelinedRequestBehindAChunkedBodyIsServedInOrder() async throws {
        try await withGateway(Self.echo) { h in
            let c = try RawHTTPClient(port: h.port)
            try c.send(
                "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /users/9 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /users/9 HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            #expect(try c.readResponse().json?["bytes"] as? Int == 3)
            #expect(try c.readResponse().json?["id"] as? String == "9")
            let head = try c.readResponse(head: true)
            #expect(head.status == 200 && head.body.isEmpty)
            #expect(try c.request("GET", "/users/10").json?["id"] as? String == "10")
        }
    }

    @Test func streamsLargeBodiesIntact() async throws {
        let template = config(
            server: #"{ "max_body_bytes": "1GiB" }"#,
            upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#)
        try await withGateway(template) { h in
            let size = 20 * 1024 * 1024
            let c = try RawHTTPClient(port: h.port, timeout: 30)
            var sent = SHA256()
            try c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: \(size)\r\n\r\n")
            var chunk = [UInt8](repeating: 0, count: 65536)
            var rng = SystemRandomNumberGenerator()
            for _ in 0..<(size / 65536) {
                for i in stride(from: 0, to: chunk.count, by: 8) {
                    withUnsafeBytes(of: rng.next() as UInt64) { b in for j in 0..<8 { chunk[i + j] = b[j] } }
                }
                sent.update(data: chunk)
                try c.send(chunk)
            }
            let up = try c.readResponse()
            let hex = sent.finalize().map { String(format: "%02x", $0) }.joined()
            #expect(up.json?["sha256"] as? String == hex)
            #expect(up.json?["bytes"] as? Int == size)
            let d = try c.request("GET", "/bytes?n=\(size)&chunked=1")
            #expect(d.body.count == size)
            #expect(d.body == demoBytes(size))
        }
    }
}

func maskedTextFrame(_ text: String) -> [UInt8] {
    let payload = Array(text.utf8)
    var frame: [UInt8] = [0x81]
    if payload.count < 126 {
        frame.append(0x80 | UInt8(payload.count))
    } else {
        frame.append(0x80 | 126)
        frame += [UInt8(payload.count >> 8), UInt8(payload.count & 0xff)]
    }
    let mask: [UInt8] = [1, 2, 3, 4]
    frame += mask
    for (i, b) in payload.enumerated() { frame.append(b ^ mask[i % 4]) }
    return frame
}

func readFrame(_ c: RawHTTPClient) throws -> (opcode: UInt8, payload: [UInt8]) {
    var header: [UInt8] = []
    _ = try c.readBytes(2, into: &header)
    var length = Int(header[1] & 0x7f)
    if length == 126 {
        var ext: [UInt8] = []
        _ = try c.readBytes(2, into: &ext)
        length = Int(ext[0]) << 8 | Int(ext[1])
    }
    var payload: [UInt8] = []
    _ = try c.readBytes(length, into: &payload)
    return (header[0] & 0x0f, payload)
}

/// The body the demo service's `/bytes?n=N` produces.
func demoBytes(_ n: Int) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(n)
    var remaining = n
    let chunk = 64 * 1024
    while remaining > 0 {
        let k = min(chunk, remaining)
        out += [UInt8](repeating: UInt8(ascii: "a") &+ UInt8(truncatingIfNeeded: remaining / chunk % 26), count: k)
        remaining -= k
    }
    return out
}
