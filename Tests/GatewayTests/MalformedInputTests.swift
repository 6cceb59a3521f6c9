import Foundation
import Testing

/// Hostile and broken input never crashes or hangs the gateway; each case gets 400 (or the
/// documented answer) and the process keeps serving.
@Suite struct MalformedInputTests {
    static let template = config(
        server: #"{ "header_read_timeout": "1s" }"#,
        upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
        routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#)

    /// Sends raw bytes and returns the status of the answer (0 when the connection just closed).
    func statusFor(_ port: Int, _ raw: String) throws -> Int {
        let c = try RawHTTPClient(port: port)
        try c.send(raw)
        guard let r = try? c.readResponse() else { return 0 }
        return r.status
    }

    @Test func smugglingAndFramingErrorsAre400() async throws {
        try await withGateway(Self.template) { h in
            let cases: [(String, String)] = [
                ("CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                ("two different CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
                ("TE chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
                ("TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
                ("bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
                ("negative CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
                ("CR in header value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n"),
                ("NUL in header value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{0}c\r\n\r\n"),
                ("LF in header value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nc\r\n\r\n"),
                ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
                ("space in header name", "GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n"),
                ("two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
                ("no Host on 1.1", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n"),
                ("climbing path", "GET /a/../../b HTTP/1.1\r\nHost: a\r\n\r\n"),
                ("encoded climbing path", "GET /%2e%2e/%2e%2e/b HTTP/1.1\r\nHost: a\r\n\r\n"),
                ("garbage request line", "HELLO\r\n\r\n"),
                // answered at once, not after the header timeout (which would be a 408)
                ("bare LF line endings", "GET / HTTP/1.1\nHost: a\n\n"),
                ("bare LF after a field", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n"),
                ("bare LF first", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
                ("TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                ("TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                ("space before the colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
                ("CL as a list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"),
                ("CL with a sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"),
                (
                    "oversized chunk extension",
                    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;" + String(repeating: "x", count: 10000)
                        + "\r\nhello\r\n0\r\n\r\n"
                ),
                (
                    "chunk size overflow",
                    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n"
                ),
                ("Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
                ("Host with a slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
                ("Host with user info", "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"),
                ("HTTP/2 version on HTTP/1", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            ]
            for (name, raw) in cases {
                let status = try statusFor(h.port, raw)
                #expect(status == 400, "\(name): got \(status)")
            }
            #expect(try httpRequest(port: h.port, "GET", "/healthz").status == 200)
        }
    }

    /// An absolute-form target is routed by its path (and its authority in place of `Host`);
    /// dot segments are removed before routing, so nothing reaches a route outside its prefix.
    @Test func absoluteFormAndDotSegmentsStayInsideTheirPrefix() async throws {
        let template = config(
            upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/api/" }, "upstream": "echo" } ]"#)
        try await withGateway(template) { h in
            let c = try RawHTTPClient(port: h.port)
            try c.send("GET http://evil.example/api/x HTTP/1.1\r\nHost: a\r\n\r\n")
            let r = try c.readResponse()
            #expect(r.status == 200)
            #expect(r.json?["uri"] as? String == "/api/x")
            let outside: [(String, Int)] = [
                ("GET http://a/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 404),
                ("GET /api/../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 404),
                ("GET /api/%2e%2e/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 404),
                ("GET /api/%2E%2E/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 404),
                ("GET /api%2f..%2fetc HTTP/1.1\r\nHost: a\r\n\r\n", 404),
                ("GET /api/x/../../../etc HTTP/1.1\r\nHost: a\r\n\r\n", 400),
                ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ]
            for (raw, want) in outside {
                #expect(try statusFor(h.port, raw) == want, "\(raw.prefix(40))")
            }
        }
    }

    @Test func randomBytesNeverCrash() async throws {
        try await withGateway(Self.template) { h in
            var rng = SystemRandomNumberGenerator()
            // 1 MiB in one connection, then smaller bursts, one of them starting like a request
            for (round, size) in [1 << 20, 256 << 10, 64 << 10].enumerated() {
                var bytes = [UInt8](repeating: 0, count: size)
                for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
                if round == 1 { bytes.replaceSubrange(0..<4, with: Array("GET ".utf8)) }
                let c = try RawHTTPClient(port: h.port)
                try? c.send(bytes)
                // the gateway answers 400 or closes; either way it does not hang
                _ = try? c.readResponse()
                #expect(c.isClosedByPeer())
            }
            #expect(try httpRequest(port: h.port, "GET", "/healthz").status == 200)
        }
    }

    @Test func slowHeadersGet408() async throws {
        try await withGateway(Self.template) { h in
            let c = try RawHTTPClient(port: h.port)
            let started = Date()
            var status = 0
            for byte in "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: yes\r\n\r\n".utf8 {
                do { try c.send([byte]) } catch { break }
                if let s = try? pollStatus(c) {
                    status = s
                    break
                }
            }
            let elapsed = Date().timeIntervalSince(started)
            #expect(status == 408)
            #expect(elapsed >= 0.9 && elapsed < 5, "408 after \(elapsed)s")
        }
    }

    @Test func idleKeepAliveConnectionClosesQuietly() async throws {
        let template = config(
            server: #"{ "header_read_timeout": "200ms", "idle_timeout": "600ms" }"#,
            upstreams: "{}",
            routes: #"[ { "match": { "path_prefix": "/" }, "respond": { "status": 200, "body": "ok" } } ]"#)
        try await withGateway(services: 0, template) { h in
            let c = try RawHTTPClient(port: h.port, timeout: 5)
            #expect(try c.request("GET", "/").text == "ok")
            let started = Date()
            // no 408 after the header timeout: an idle connection is closed without a word
            #expect(c.isClosedByPeer())
            let elapsed = Date().timeIntervalSince(started)
            #expect(elapsed > 0.4 && elapsed < 3, "closed after \(elapsed)s")
        }
    }

    /// `max_connections`: the connection over the limit is closed at once (and counted); the
    /// ones held keep working, and a slot freed is taken by the next connection.
    @Test func connectionsOverTheListenerLimitAreClosed() async throws {
        let template = """
            { "listeners": [ { "name": "capped", "address": "127.0.0.1:0", "max_connections": 3 } ],
              "access_log": { "enabled": false }, "upstreams": {},
              "routes": [ { "match": { "path_prefix": "/" }, "respond": { "status": 200, "body": "ok" } } ] }
            """
        try await withGateway(services: 0, template) { h in
            let held = try (0..<3).map { _ in try RawHTTPClient(port: h.port, timeout: 5) }
            for c in held { #expect(try c.request("GET", "/").text == "ok") }
            let extra = try RawHTTPClient(port: h.port, timeout: 5)
            #expect(extra.isClosedByPeer())
            let metrics = String(decoding: h.server.shared.metrics.exposition(), as: UTF8.self)
            #expect(metrics.contains(#"gateway_connections_rejected_total{listener="capped"} 1"#))
            #expect(try held[0].request("GET", "/").text == "ok")
            held[1].close()
            var served = false
            for _ in 0..<50 where !served {
                served = (try? RawHTTPClient(port: h.port, timeout: 2).request("GET", "/").text) == "ok"
                if !served { try await Task.sleep(nanoseconds: 50_000_000) }
            }
            #expect(served)
        }
    }

    /// Waits up to 0.3 s for an answer on a connection that is still being written.
    private func pollStatus(_ c: RawHTTPClient) throws -> Int? {
        var p = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 300) > 0 else { return nil }
        return try c.readResponse().status
    }
}
