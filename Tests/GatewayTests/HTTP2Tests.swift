import Foundation
import GatewayConfig
import NIOCore
import NIOHPACK
import Testing

@testable import GatewayProxy

/// HTTP/2 downstream (issue 10): ALPN `h2` on TLS listeners and h2c with prior knowledge on
/// cleartext ones, every stream through the same pipeline as HTTP/1.1, many concurrent
/// streams on one connection, the stream and header limits, GOAWAY on drain. Checked with
/// real HTTP/2 clients: curl, h2load and nghttp (Debian's nghttp2-client).
@Suite struct HTTP2Tests {
    struct Rig {
        let rig: ResilienceRig
        let ca: TestCA
        var upstream: ControlledUpstream { rig.upstreams[0] }
        func port(_ listener: String) -> Int { rig.server.boundAddresses[listener]?.port ?? 0 }
        func stop() async { await rig.stop() }
    }

    /// One test CA for the suite (making one runs openssl three times).
    static let sharedCA = Task { try await TestCA() }

    /// Listeners `tls` (TLS + http2), `clear` (cleartext + http2) and `h1` (TLS, no http2)
    /// in front of one upstream under `/app/`.
    static func rig(server: String = "{ \"workers\": 1 }") async throws -> Rig {
        let ca = try await sharedCA.value
        let tls = "{ \"certificate_file\": \"\(ca.certFile)\", \"private_key_file\": \"\(ca.keyFile)\" }"
        let rig = try await ResilienceRig.start(1) { u in
            """
            { "listeners": [ { "name": "tls", "address": "127.0.0.1:0", "tls": \(tls), "http2": true },
                             { "name": "clear", "address": "127.0.0.1:\(freePort())", "http2": true },
                             { "name": "h1", "address": "127.0.0.1:\(freePort())", "tls": \(tls) } ],
              "server": \(server), "access_log": { "enabled": false },
              "upstreams": { "app": { "targets": ["\(u[0])"] } },
              "routes": [ { "name": "app", "match": { "path_prefix": "/app/" }, "upstream": "app" },
                          { "name": "hello", "match": { "path": "/hello" }, "respond": { "status": 200, "body": "hello" } } ] }
            """
        }
        return Rig(rig: rig, ca: ca)
    }

    static func header(_ name: String, of request: Int, _ up: ControlledUpstream) -> String? {
        let all = up.headers
        return request < all.count ? all[request].first(name: name) : nil
    }

    @Test(.timeLimit(.minutes(2))) func h2ByALPNAndByPriorKnowledgeThroughTheSamePipeline() async throws {
        let r = try await Self.rig()
        defer { Task { await r.stop() } }
        let tls = r.port("tls")
        let clear = r.port("clear")
        let up = r.upstream
        let resolve = ["--cacert", r.ca.caFile]

        // TLS: ALPN picks h2 when the client offers it, HTTP/1.1 otherwise.
        var res = await Tool.curl(resolve + ["--http2", "https://localhost:\(tls)/app/one"])
        #expect(res.status == 200 && res.version == "2")
        #expect(res.body.contains("\"uri\":\"/app/one\""))
        #expect(Self.header("host", of: 0, up) == "localhost:\(tls)")
        #expect(Self.header("x-forwarded-proto", of: 0, up) == "https")
        #expect(Self.header("x-request-id", of: 0, up)?.count == 32)
        res = await Tool.curl(resolve + ["--http1.1", "https://localhost:\(tls)/app/two"])
        #expect(res.status == 200 && res.version == "1.1")
        // A TLS listener without http2 offers only http/1.1.
        res = await Tool.curl(resolve + ["--http2", "https://localhost:\(r.port("h1"))/hello"])
        #expect(res.status == 200 && res.version == "1.1")

        // Cleartext: h2c with prior knowledge, and HTTP/1.1 on the same listener.
        res = await Tool.curl(["--http2-prior-knowledge", "http://127.0.0.1:\(clear)/app/three"])
        #expect(res.status == 200 && res.version == "2")
        #expect(Self.header("x-forwarded-proto", of: 2, up) == "http")
        res = await Tool.curl(["http://127.0.0.1:\(clear)/app/four"])
        #expect(res.status == 200 && res.version == "1.1")
        res = await Tool.curl(["--http2-prior-knowledge", "http://127.0.0.1:\(clear)/hello"])
        #expect(res.status == 200 && res.version == "2" && res.body == "hello")
        // The gateway's own errors come over HTTP/2 too (SPEC §4).
        res = await Tool.curl(["--http2-prior-knowledge", "http://127.0.0.1:\(clear)/nowhere"])
        #expect(res.status == 404 && res.version == "2" && res.body.contains("no_route"), "\(res.body)")

        // Request bodies: with a content-length, and without one (sent on chunked upstream).
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("h2-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("body").path
        try Data(repeating: 0x61, count: 300_000).write(to: URL(fileURLWithPath: file))
        res = await Tool.curl(resolve + ["--http2", "--data-binary", "@\(file)", "https://localhost:\(tls)/app/upload"])
        #expect(res.status == 200 && res.version == "2" && res.body.contains("\"body_bytes\":300000"))
        #expect(Self.header("content-length", of: 4, up) == "300000")
        res = await Tool.curl([
            "--http2-prior-knowledge", "-H", "Transfer-Encoding: chunked", "--data-binary", "@\(file)",
            "http://127.0.0.1:\(clear)/app/stream",
        ])
        #expect(res.status == 200 && res.version == "2" && res.body.contains("\"body_bytes\":300000"))

        // A large response streams back whole; HEAD has no body.
        let big = String(repeating: "0123456789abcdef", count: 200_000)
        up.set { $0.body = Array(big.utf8) }
        res = await Tool.curl(["--http2-prior-knowledge", "http://127.0.0.1:\(clear)/app/big"])
        #expect(res.status == 200 && res.version == "2" && res.body == big)
        res = await Tool.curl(["--http2-prior-knowledge", "-I", "http://127.0.0.1:\(clear)/app/big"])
        #expect(res.status == 200 && res.body.contains("content-length: 3200000"))

        // Cookie fields are joined into one for HTTP/1.1 (RFC 9113 §8.2.3).
        up.set { $0.body = nil }
        let nghttp = await Tool.run(
            "/usr/bin/nghttp", ["-H", "cookie: a=1", "-H", "cookie: b=2", "http://127.0.0.1:\(clear)/app/cookies"])
        #expect(nghttp.status == 0 && nghttp.output.contains("\"uri\":\"/app/cookies\""))
        #expect(up.headers.last?.first(name: "cookie") == "a=1; b=2")
    }

    @Test func responseHeadsBecomeHTTP2Fields() throws {
        var parser = ResponseParser()
        var bytes = ByteBuffer(
            string: "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\n"
                + "Set-Cookie: session=secret\r\nTransfer-Encoding: chunked\r\nX-Request-Id: abc\r\n\r\n")
        guard case .head(let head) = try parser.next(&bytes) else { Issue.record("no head"); return }
        let fields = HTTP2StreamAdapter.responseFields(head)
        #expect(
            fields.map { "\($0.name)=\($0.value)" } == [
                ":status=201", "content-type=text/plain", "set-cookie=session=secret", "x-request-id=abc",
            ])
        // Cookies never enter the HPACK dynamic table.
        #expect(fields.first { $0.name == "set-cookie" }?.indexable == .neverIndexed)
        #expect(fields.first { $0.name == "content-type" }?.indexable == .indexable)
        let trailers = ByteBuffer(string: "Grpc-Status: 0\r\nConnection: close\r\n")
        #expect(HTTP2StreamAdapter.trailerFields(trailers).map { "\($0.name)=\($0.value)" } == ["grpc-status=0"])
    }

    @Test(.timeLimit(.minutes(2))) func aHundredConcurrentStreamsOnOneConnection() async throws {
        let r = try await Self.rig()
        defer { Task { await r.stop() } }
        // Every answer takes 500 ms: one after the other, 100 would take 50 s (the bound is 30 s, for busy CI machines).
        r.upstream.set { $0.delayMs = 500 }
        let started = ContinuousClock.now
        let run = await Tool.run(
            "/usr/bin/h2load", ["-c", "1", "-m", "100", "-n", "100", "https://localhost:\(r.port("tls"))/app/slow"])
        let took = ContinuousClock.now - started
        #expect(run.output.contains("Application protocol: h2"))
        #expect(run.output.contains("requests: 100 total, 100 started, 100 done, 100 succeeded"))
        #expect(run.output.contains("status codes: 100 2xx"))
        #expect(r.upstream.requests == 100)
        #expect(took < .seconds(30), "took \(took)")
    }

    @Test(.timeLimit(.minutes(2))) func streamAndHeaderLimitsAreAdvertisedAndEnforced() async throws {
        let r = try await Self.rig(server: #"{ "workers": 1, "http2_max_concurrent_streams": 8, "max_header_bytes": 2048 }"#)
        defer { Task { await r.stop() } }
        let clear = r.port("clear")
        let settings = await Tool.run("/usr/bin/nghttp", ["-nv", "http://127.0.0.1:\(clear)/hello"])
        #expect(settings.output.contains("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):8"))
        #expect(settings.output.contains("SETTINGS_MAX_HEADER_LIST_SIZE(0x06):2048"))
        // A header block over the limit never reaches the upstream.
        let huge = String(repeating: "x", count: 4000)
        let res = await Tool.curl(["--http2-prior-knowledge", "-H", "x-huge: \(huge)", "http://127.0.0.1:\(clear)/app/huge"])
        #expect(res.status != 200)
        #expect(r.upstream.requests == 0)
        // 40 requests with at most 8 streams at a time all complete.
        r.upstream.set { $0.delayMs = 100 }
        let run = await Tool.run("/usr/bin/h2load", ["-c", "1", "-m", "40", "-n", "40", "http://127.0.0.1:\(clear)/app/x"])
        #expect(run.output.contains("40 succeeded"))
        #expect(r.upstream.requests == 40)
    }

    @Test(.timeLimit(.minutes(2))) func aReloadThatTurnsHTTP2OnBindsTheListenerAgain() async throws {
        let port = freePort()
        func file(_ http2: Bool) throws -> Snapshot {
            let text = """
                { "listeners": [ { "name": "edge", "address": "127.0.0.1:\(port)", "http2": \(http2) } ],
                  "access_log": { "enabled": false }, "upstreams": {},
                  "routes": [ { "match": { "path": "/hello" }, "respond": { "status": 200, "body": "hello" } } ] }
                """
            let loaded = ConfigLoader.load(bytes: Array(text.utf8), source: "reload.json")
            return try #require(loaded.snapshot, "\(loaded.errors)")
        }
        let server = GatewayServer(snapshot: try file(false))
        try await server.start()
        defer { Task { await server.shutdown() } }
        let url = "http://127.0.0.1:\(port)/hello"
        #expect(await Tool.curl(["--http2-prior-knowledge", url]).status == nil)
        #expect(await Tool.curl([url]).status == 200)
        #expect(await server.apply(try file(true)).isEmpty)
        let on = await Tool.curl(["--http2-prior-knowledge", url])
        #expect(on.status == 200 && on.version == "2")
        #expect(await server.apply(try file(false)).isEmpty)
        #expect(await Tool.curl(["--http2-prior-knowledge", url]).status == nil)
    }

    @Test(.timeLimit(.minutes(2))) func drainSendsGoAwayAndTheStreamInFlightFinishes() async throws {
        let r = try await Self.rig()
        defer { Task { await r.stop() } }
        // The answer takes 4 s: long enough to drain while it is in flight, even on a busy machine.
        r.upstream.set { $0.delayMs = 4000 }
        let server = r.rig.server
        let clear = r.port("clear")
        async let client = Tool.run("/usr/bin/nghttp", ["-v", "http://127.0.0.1:\(clear)/app/slow"])
        // Drain once the request is at the upstream.
        for _ in 0..<500 where r.upstream.requests == 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        #expect(r.upstream.requests == 1)
        await server.drain(timeout: .seconds(10))
        let out = await client
        // GOAWAY came first, then the answer of the stream in flight.
        let goAway = try #require(out.output.range(of: "recv GOAWAY frame"))
        let status = try #require(out.output.range(of: ":status: 200"))
        #expect(goAway.lowerBound < status.lowerBound)
        #expect(out.output.contains("\"uri\":\"/app/slow\""))
    }
}
