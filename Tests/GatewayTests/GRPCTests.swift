import Foundation
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHPACK
import NIOPosix
import Testing

@testable import GatewayProxy

/// gRPC through the gateway (issue 23) with a real gRPC server and client (grpcio, from
/// PyPI: `.ci/run` installs it): h2c from the client, `protocol: h2c` to the upstream, every
/// kind of call, trailers, deadlines, retries on `grpc-status`, the gateway's own errors as
/// `grpc-status`; and long-lived streams (server-sent events) under `stream_idle_timeout`.
@Suite(.serialized) struct GRPCTests {
    static let support = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Support/grpc").path

    /// A Python helper server (`Support/grpc/*.py`), up once it printed "ready".
    final class PythonServer: Sendable {
        let child: ChildProcess
        let port: Int
        var url: String { "http://127.0.0.1:\(port)" }

        init(_ script: String, _ arguments: [String] = []) async throws {
            port = freePort()
            child = try await ChildProcess.start("/usr/bin/env", ["python3", "\(GRPCTests.support)/\(script)", String(port)] + arguments)
            let deadline = Date().addingTimeInterval(20)
            while !child.output.contains("ready"), child.isRunning, Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
            guard child.output.contains("ready") else {
                throw RawHTTPClient.Failure(description: "\(script) did not start: \(child.output)")
            }
        }

        func stop() async {
            child.signal(SIGKILL)
            _ = await child.waitForExit(timeout: 5)
        }
    }

    /// One call of `echo_client.py` through the gateway: its JSON line.
    struct Call {
        var ok: Bool
        var code: String
        var details: String
        var replies: [String]
        var trailers: [String: String]
        var contentType = ""
        var elapsed: Double?

        static func run(_ port: Int, _ arguments: [String]) async throws -> Call {
            let r = await Tool.run(
                "/usr/bin/env", ["python3", "\(GRPCTests.support)/echo_client.py", "127.0.0.1:\(port)"] + arguments, stderr: false)
            let line = r.output.split(separator: "\n").last.map(String.init) ?? ""
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw RawHTTPClient.Failure(description: "echo_client printed \(r.output)")
            }
            return Call(
                ok: object["ok"] as? Bool ?? false, code: object["code"] as? String ?? "", details: object["details"] as? String ?? "",
                replies: object["replies"] as? [String] ?? [], trailers: object["trailers"] as? [String: String] ?? [:],
                contentType: object["content_type"] as? String ?? "", elapsed: object["elapsed"] as? Double)
        }
    }

    /// The gateway with one h2c listener (`http2`) before `upstreams` (name to JSON).
    static func gateway(
        upstreams: String, routes: String, extra: String = "", accessLog: String? = nil
    ) async throws -> (
        GatewayServer, Int
    ) {
        let log = accessLog.map { #"{ "enabled": true, "path": "\#($0)" }"# } ?? #"{ "enabled": false }"#
        let json = """
            { "listeners": [ { "name": "main", "address": "127.0.0.1:0", "http2": true } ],
              "server": { "workers": 1 }, "access_log": \(log), \(extra)
              "upstreams": { \(upstreams) },
              "routes": [ \(routes) ] }
            """
        let loaded = ConfigLoader.load(bytes: Array(json.utf8), source: "grpc.json")
        let snapshot = try #require(loaded.snapshot, "\(loaded.diagnostics)")
        let server = GatewayServer(snapshot: snapshot)
        try await server.start()
        return (server, server.boundAddresses["main"]?.port ?? 0)
    }

    /// A sample of the gateway's metrics, once it reached `want` (counted as exchanges end,
    /// just after their last bytes) or after 5 s.
    static func metric(_ gw: GatewayServer, _ name: String, _ labels: [String: String], want: Double? = nil) async throws -> Double? {
        var value: Double?
        for _ in 0..<100 {
            value = try PrometheusText(String(decoding: gw.shared.metrics.exposition(), as: UTF8.self)).value(name, labels)
            if value != nil && (want == nil || value == want) { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return value
    }

    /// The one h2c upstream `echo` most tests put `echo_server.py` behind, and its route.
    static func echoUpstream(_ echo: PythonServer) -> String { #""echo": { "protocol": "h2c", "targets": ["\#(echo.url)"] }"# }
    static let echoRoute = #"{ "name": "grpc", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "echo" }"#

    /// `gateway(...)` for `body`, then everything stopped (the helper servers too).
    static func withGateway(
        _ servers: [PythonServer], upstreams: String, routes: String, extra: String = "", accessLog: String? = nil,
        _ body: (GatewayServer, Int) async throws -> Void
    ) async throws {
        let (gw, port) = try await gateway(upstreams: upstreams, routes: routes, extra: extra, accessLog: accessLog)
        do {
            try await body(gw, port)
        } catch {
            await gw.shutdown()
            for s in servers { await s.stop() }
            throw error
        }
        await gw.shutdown()
        for s in servers { await s.stop() }
    }

    @Test(.timeLimit(.minutes(2))) func everyKindOfCallWithItsMetadataAndTrailers() async throws {
        let echo = try await PythonServer("echo_server.py", ["--name", "a"])
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        try await Self.withGateway(
            [echo],
            upstreams: Self.echoUpstream(echo),
            routes: Self.echoRoute,
            accessLog: log
        ) { gw, port in
            let unary = try await Call.run(port, ["unary", "hi", "--meta", "x-test=m1"])
            #expect(unary.ok && unary.replies == ["a:hi:m1"], "\(unary)")
            #expect(unary.trailers["x-echo-trailer"] == "t-a")  // the upstream's trailers reach the client
            let server = try await Call.run(port, ["server-stream", "5"])
            #expect(server.ok && server.replies == ["a:0", "a:1", "a:2", "a:3", "a:4"], "\(server)")
            let client = try await Call.run(port, ["client-stream", "x,y,z"])
            #expect(client.ok && client.replies == ["a:x+y+z"], "\(client)")
            let bidi = try await Call.run(port, ["bidi", "p,q,r"])
            #expect(bidi.ok && bidi.replies == ["echo:p", "echo:q", "echo:r"], "\(bidi)")
            // A status the service sets comes through trailers-only, its message intact.
            let failed = try await Call.run(port, ["unary", "fail"])
            #expect(!failed.ok && failed.code == "INVALID_ARGUMENT" && failed.details == "asked to fail: ünïcode", "\(failed)")
            #expect(failed.trailers["content-length"] == nil)
        }
        // Each call's line has its grpc-status (the log is flushed when the gateway stops).
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(lines.filter { $0.contains(#""grpc_status":0"#) }.count == 4, "\(lines)")
        #expect(lines.filter { $0.contains(#""grpc_status":3"#) && $0.contains(#""status":200"#) }.count == 1, "\(lines)")
    }

    @Test(.timeLimit(.minutes(2))) func deadlinesEndAsDeadlineExceeded() async throws {
        let echo = try await PythonServer("echo_server.py")
        try await Self.withGateway(
            [echo],
            upstreams: Self.echoUpstream(echo),
            routes: #"{ "name": "grpc", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "echo", "timeout": "300ms" }"#
        ) { gw, port in
            // The route's timeout ends a call the client would have waited 10 s for (timed by
            // the client around the call itself: the interpreter's start is not the gateway's).
            let slow = try await Call.run(port, ["unary", "sleep:3", "--timeout", "10"])
            #expect(!slow.ok && slow.code == "DEADLINE_EXCEEDED", "\(slow)")
            #expect(slow.details.contains("upstream"), "the gateway's message: \(slow.details)")
            #expect(slow.elapsed.map { $0 < 2.5 } == true, "\(slow)")
            // `grpc-timeout` shortens the route's deadline: a client that does not enforce its
            // own (curl) gets DEADLINE_EXCEEDED from the gateway at 100 ms, before the route timeout (300 ms).
            let message = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-\(UUID().uuidString)").path
            FileManager.default.createFile(atPath: message, contents: Data([0, 0, 0, 0, 7] + Array("sleep:3".utf8)))
            defer { try? FileManager.default.removeItem(atPath: message) }
            // (Timed by curl itself, from its connect to the end: not its process start.)
            let timed = await Tool.run(
                "/usr/bin/curl",
                [
                    "-s", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null", "-w", "time=%{time_total}\n",
                    "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "grpc-timeout: 100m",
                    "--data-binary", "@\(message)", "http://127.0.0.1:\(port)/demo.Echo/Unary",
                ])
            let waited = timed.output.components(separatedBy: "time=").last.flatMap {
                Double($0.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            #expect(timed.output.contains("grpc-status: 4"), "\(timed.output)")
            #expect(waited.map { $0 >= 0.09 && $0 < 0.28 } == true, "\(timed.output)")
            // Within the timeout, the same call succeeds.
            let quick = try await Call.run(port, ["unary", "sleep:0.05"])
            #expect(quick.ok)
        }
    }

    @Test func grpcTimeoutShortensTheRouteDeadline() throws {
        #expect(GRPC.parseTimeout("100m".utf8) == 100_000_000)
        #expect(GRPC.parseTimeout("2S".utf8) == 2_000_000_000)
        #expect(GRPC.parseTimeout("1H".utf8) == 3_600_000_000_000)
        #expect(GRPC.parseTimeout("5n".utf8) == 5)
        for bad in ["", "m", "123456789m", "10x", "10mm", "-1S", "1 S"] { #expect(GRPC.parseTimeout(bad.utf8) == nil, "\(bad)") }
        #expect(GRPCRequests.isGRPC(contentType: "application/grpc"))
        #expect(GRPCRequests.isGRPC(contentType: "application/grpc+proto"))
        #expect(!GRPCRequests.isGRPC(contentType: "application/grpc-web"))
        #expect(!GRPCRequests.isGRPC(contentType: "application/grpcx"))
        #expect(GRPC.encodeMessage("a%b\nü") == "a%25b%0A%C3%BC")
    }

    /// A trailers-only UNAVAILABLE is retried on the other target, and counts as the 503 it
    /// maps to for outlier detection: ejected after one, the target gets no more first tries.
    @Test(.timeLimit(.minutes(2))) func unavailableIsRetriedOnAnotherTargetAndEjectsIt() async throws {
        let down = try await PythonServer("echo_server.py", ["--name", "down", "--unavailable"])
        let up = try await PythonServer("echo_server.py", ["--name", "up"])
        try await Self.withGateway(
            [down, up],
            upstreams: #"""
                "echo": { "protocol": "h2c", "targets": ["\#(down.url)", "\#(up.url)"],
                          "outlier_detection": { "consecutive_5xx": 1, "base_ejection_time": "60s", "max_ejection_percent": 50 } }
                """#,
            routes: #"""
                { "name": "grpc", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "echo",
                  "retry": { "attempts": 2, "on": ["unavailable"] } },
                { "name": "noretry", "match": { "path_prefix": "/" }, "upstream": "echo" }
                """#
        ) { gw, port in
            for i in 0..<4 {
                let call = try await Call.run(port, ["unary", "n\(i)"])
                #expect(call.ok && call.replies == ["up:n\(i):"], "\(call)")
            }
            #expect(try await Self.metric(gw, "gateway_grpc_responses_total", ["route": "grpc", "grpc_status": "OK"], want: 4) == 4)
            let retries = try await Self.metric(gw, "gateway_retries_total", ["route": "grpc", "reason": "grpc:UNAVAILABLE"])
            #expect(retries == 1, "\(String(decoding: gw.shared.metrics.exposition(), as: UTF8.self))")
            #expect(
                try await Self.metric(
                    gw, "gateway_outlier_ejections_total", ["upstream": "echo", "target": down.url, "reason": "consecutive_5xx"])
                    == 1)
        }
    }

    @Test(.timeLimit(.minutes(2))) func theGatewaysOwnErrorsAreGRPCStatuses() async throws {
        try await Self.withGateway(
            [],
            upstreams: #""gone": { "protocol": "h2c", "targets": ["http://127.0.0.1:\#(freePort())"] }"#,
            routes: #"{ "name": "gone", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "gone" }"#,
            extra: #"""
                "rate_limits": { "default_tier": "one", "key_from": ["client_ip"], "tiers": { "one": [ { "limit": 2, "per": "1m" } ] } },
                """#
        ) { gw, port in
            let unavailable = try await Call.run(port, ["unary", "x"])
            #expect(!unavailable.ok && unavailable.code == "UNAVAILABLE", "\(unavailable)")
            let unimplemented = try await Call.run(port, ["health"])  // no route for grpc.health.v1
            #expect(!unimplemented.ok && unimplemented.code == "UNIMPLEMENTED", "\(unimplemented)")
            _ = try await Call.run(port, ["client-stream", "a"])
            let limited = try await Call.run(port, ["bidi", "a"])
            #expect(!limited.ok && limited.code == "RESOURCE_EXHAUSTED", "\(limited)")
            #expect(
                try await Self.metric(gw, "gateway_grpc_responses_total", ["route": "gone", "grpc_status": "UNAVAILABLE"], want: 2) == 2)
            #expect(try await Self.metric(gw, "gateway_grpc_responses_total", ["route": "gone", "grpc_status": "RESOURCE_EXHAUSTED"]) == 1)
        }
    }

    @Test(.timeLimit(.minutes(2))) func aStreamOutlivesTheRouteTimeoutAndAnIdleOneIsClosed() async throws {
        let sse = try await PythonServer("sse_server.py")
        try await Self.withGateway(
            [sse],
            upstreams: #""sse": { "targets": ["\#(sse.url)"] }"#,
            routes: #"""
                { "name": "events", "match": { "path_prefix": "/" }, "upstream": "sse", "timeout": "300ms", "stream_idle_timeout": "500ms" }
                """#
        ) { gw, port in
            // 8 events 0.2 s apart: 1.6 s, over 5 times the route's 300 ms, each flushed as it comes.
            var started = Date()
            let long = await Tool.run(
                "/usr/bin/curl",
                ["-sN", "--max-time", "20", "-H", "accept-encoding: gzip", "http://127.0.0.1:\(port)/events?n=8&every=0.2"])
            #expect(long.status == 0, "\(long.output)")
            #expect(long.output.components(separatedBy: "data: event").count - 1 == 8, "\(long.output)")
            #expect(Date().timeIntervalSince(started) >= 1.5)
            // Each event is flushed as it comes: the first is read long before the second is sent.
            let client = try RawHTTPClient(port: port, timeout: 5)
            let asked = Date()
            try client.send("GET /events?n=2&every=1.5 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
            let first = try client.readUntil("data: event 0")
            #expect(Date().timeIntervalSince(asked) < 1.0, "\(first)")
            #expect(!first.lowercased().contains("content-encoding"))
            client.close()
            // One event, then nothing: closed after the idle timeout, not after the upstream's minute.
            started = Date()
            let idle = await Tool.run("/usr/bin/curl", ["-sN", "--max-time", "20", "http://127.0.0.1:\(port)/idle"])
            #expect(idle.output.contains("data: first"), "\(idle.output)")
            #expect(idle.status != 0)  // the stream was cut, not ended
            #expect(Date().timeIntervalSince(started) < 3)
        }
    }

    @Test(.timeLimit(.minutes(2))) func grpcWebBinaryAndTextRoundTrip() async throws {
        let echo = try await PythonServer("echo_server.py", ["--name", "w"])
        try await Self.withGateway(
            [echo],
            upstreams: Self.echoUpstream(echo),
            routes: #"{ "name": "web", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "echo" }"#
        ) { gw, port in
            // Over HTTP/1.1, as a browser sends it: the reply frame, then the trailers as the body's last frame.
            let binary = try await Call.run(port, ["web", "hi", "--meta", "x-test=b"])
            #expect(binary.ok && binary.replies == ["w:hi:b"], "\(binary)")
            #expect(binary.trailers["x-echo-trailer"] == "t-w" && binary.trailers["grpc-status"] == "0")
            #expect(binary.contentType == "application/grpc-web+proto")
            let text = try await Call.run(port, ["web-text", "there"])
            #expect(text.ok && text.replies == ["w:there:"], "\(text)")
            #expect(text.trailers["x-echo-trailer"] == "t-w")
            #expect(text.contentType == "application/grpc-web-text")
            // The service's own error, trailers-only: the status in the response's headers.
            let failed = try await Call.run(port, ["web", "fail"])
            #expect(!failed.ok && failed.code == "3" && failed.details.hasPrefix("asked to fail"), "\(failed)")
        }
    }

    @Test func grpcWebTextDecodesAcrossPartsAndEncodesOneRun() throws {
        let web = try #require(GRPCWebState(contentType: "application/grpc-web-text+proto"))
        #expect(web.upstreamContentType == "application/grpc+proto" && web.clientContentType == "application/grpc-web-text+proto")
        let allocator = ByteBufferAllocator()
        // "AAAAAAJoaQ==" is the frame of "hi"; cut anywhere, then a second padded run.
        var decoded = ByteBuffer()
        for part in ["AAA", "AAAJo", "aQ=", "=", "AAAAAAF4"] {
            var d = try #require(web.decode(ByteBuffer(string: part), allocator: allocator))
            decoded.writeBuffer(&d)
        }
        #expect(Array(decoded.readableBytesView) == [0, 0, 0, 0, 2, 0x68, 0x69, 0, 0, 0, 0, 1, 0x78])
        #expect(web.decodedCompletely)
        #expect(web.decode(ByteBuffer(string: "A*AA"), allocator: allocator) == nil)
        // The response: one base64 run whatever the parts, the trailer frame at its end.
        var out = ""
        for part in [[0, 0, 0], [0, 2], [0x68, 0x69]] as [[UInt8]] {
            out += String(buffer: web.encode(ByteBuffer(bytes: part), allocator: allocator))
        }
        out += String(buffer: web.end(trailers: ByteBuffer(string: "grpc-status: 0\r\n"), allocator: allocator))
        let bytes = try #require(Data(base64Encoded: out))
        #expect(Array(bytes) == [0, 0, 0, 0, 2, 0x68, 0x69, 0x80, 0, 0, 0, 16] + Array("grpc-status: 0\r\n".utf8))
        #expect(GRPCWebState(contentType: "application/grpc") == nil && GRPCWebState(contentType: "application/grpc-webx") == nil)
    }

    /// Hostile bytes: any cut of valid base64 decodes to the original, any bytes at all
    /// either decode or are refused (never a trap), and `grpc-timeout` / `grpc-status`
    /// parsers take anything (a seeded generator: the same cases every run).
    @Test func grpcWebAndHeaderParsersTakeAnyBytes() throws {
        var rng = SplitMix64(seed: 23)
        let allocator = ByteBufferAllocator()
        for _ in 0..<500 {
            let n = Int(rng.next() % 64)
            let original = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let text = Array(Data(original).base64EncodedString().utf8)
            let web = try #require(GRPCWebState(contentType: "application/grpc-web-text"))
            var decoded: [UInt8] = []
            var i = 0
            while i < text.count {
                let step = 1 + Int(rng.next() % 7)
                let part = ByteBuffer(bytes: text[i..<min(text.count, i + step)])
                let d = try #require(web.decode(part, allocator: allocator))
                decoded += Array(d.readableBytesView)
                i += step
            }
            #expect(decoded == original && web.decodedCompletely)
            // Random bytes: nil or some bytes, never a trap.
            let junk = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = GRPCWebState(contentType: "application/grpc-web-text")?.decode(ByteBuffer(bytes: junk), allocator: allocator)
            _ = GRPC.parseTimeout(junk)
            _ = GRPC.parseStatus(junk)
            #expect(GRPC.encodeMessage(String(decoding: junk, as: UTF8.self)).utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
        }
        #expect(GRPC.parseTimeout("99999999H".utf8) == Int64.max)  // saturates
        #expect(GRPC.parseStatus("1234".utf8) == nil && GRPC.parseStatus("14".utf8) == 14)
        // An upstream's fields reach the HTTP/1.1 side only as a token and a clean value.
        for (name, value) in [("x-a", "1\r\nx-injected: 1"), ("x a", "1"), ("x-a", "nul\u{0}"), ("", "1")] {
            let fields: HPACKHeaders = [name: value]
            #expect(HTTP2UpstreamBridge.responseHead(fields, status: 200, endStream: false, allocator: allocator) == nil, "\(name)")
            #expect(HTTP2UpstreamBridge.trailers(fields, allocator: allocator) == nil, "\(name)")
        }
        #expect(HTTP2UpstreamBridge.responseHead([:], status: 1000, endStream: true, allocator: allocator) == nil)
        let ok = try #require(HTTP2UpstreamBridge.responseHead(["x-a": "1"], status: 200, endStream: true, allocator: allocator))
        #expect(String(buffer: ok) == "HTTP/1.1 200 \r\nx-a: 1\r\ncontent-length: 0\r\n\r\n")
    }

    /// What makes a response a stream of events, read on the head's bytes.
    @Test func anEventStreamIsKnownByItsContentType() throws {
        func head(_ type: String) throws -> ResponseParser.Head? {
            var parser = ResponseParser()
            var bytes = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\(type)\r\n")
            guard case .head(let h) = try parser.next(&bytes) else { return nil }
            return h
        }
        for (type, want) in [
            ("Content-Type: Text/Event-Stream; charset=utf-8\r\n", true), ("content-type: text/event-stream\r\n", true),
            ("Content-Type: text/event-streams\r\n", false), ("Content-Type: text/plain\r\n", false),
            ("X-Type: text/event-stream\r\n", false),
            ("", false),
        ] {
            #expect(try head(type).map(ProxyHandler.isEventStream) == want, "\(type)")
        }
    }

    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS of 1: concurrent calls do not queue behind
    /// one stream (more connections open), and none is refused.
    @Test(.timeLimit(.minutes(2))) func thePeersStreamLimitOpensMoreConnections() async throws {
        let echo = try await PythonServer("echo_server.py", ["--name", "s", "--max-streams", "1"])
        try await Self.withGateway(
            [echo],
            upstreams: Self.echoUpstream(echo),
            routes: Self.echoRoute
        ) { gw, port in
            // Once to learn the limit (the first SETTINGS), then four at once, 0.4 s each.
            #expect(try await Call.run(port, ["unary", "warm"]).ok)
            let calls = try await Call.run(port, ["parallel", "4:sleep:0.4"])
            #expect(calls.ok && calls.replies.count == 4, "\(calls)")
            #expect(calls.elapsed.map { $0 < 1.2 } == true, "one stream at a time would take 1.6 s: \(calls)")
        }
    }

    /// GOAWAY from the upstream (grpcio's max_connection_age): calls in flight finish, later
    /// ones go on a fresh connection.
    @Test(.timeLimit(.minutes(2))) func goAwaySendsNewCallsToAFreshConnection() async throws {
        let echo = try await PythonServer("echo_server.py", ["--name", "g", "--max-age-ms", "300"])
        try await Self.withGateway(
            [echo],
            upstreams: Self.echoUpstream(echo),
            routes: Self.echoRoute
        ) { gw, port in
            for i in 0..<6 {
                // A call that outlives its connection's age, then one after it went away.
                let slow = try await Call.run(port, ["unary", "sleep:0.5"])
                #expect(slow.ok, "call \(i): \(slow)")
                let next = try await Call.run(port, ["unary", "n\(i)"])
                #expect(next.ok && next.replies == ["g:n\(i):"], "call \(i): \(next)")
            }
        }
    }

    /// `protocol: h2`: HTTP/2 over TLS, ALPN h2, the target's certificate verified.
    @Test(.timeLimit(.minutes(2))) func h2OverTLSToTheTarget() async throws {
        let ca = try await HTTP2Tests.sharedCA.value
        let echo = try await PythonServer("echo_server.py", ["--name", "tls", "--tls", ca.certFile, ca.keyFile])
        try await Self.withGateway(
            [echo],
            upstreams: #"""
                "echo": { "protocol": "h2", "targets": ["https://localhost:\#(echo.port)"], "tls": { "ca_file": "\#(ca.caFile)" } }
                """#,
            routes: Self.echoRoute
        ) { gw, port in
            let call = try await Call.run(port, ["server-stream", "3"])
            #expect(call.ok && call.replies == ["tls:0", "tls:1", "tls:2"], "\(call)")
        }
    }

    /// `health_check.grpc`: grpc.health.v1 over the target's own protocol; a target whose
    /// service is NOT_SERVING leaves the rotation.
    @Test(.timeLimit(.minutes(2))) func grpcHealthChecksTakeANotServingTargetOut() async throws {
        let good = try await PythonServer("echo_server.py", ["--name", "good"])
        let sick = try await PythonServer("echo_server.py", ["--name", "sick", "--not-serving"])
        try await Self.withGateway(
            [good, sick],
            upstreams: #"""
                "echo": { "protocol": "h2c", "targets": ["\#(good.url)", "\#(sick.url)"],
                          "health_check": { "grpc": { "service": "demo.Echo" }, "interval": "100ms", "timeout": "1s",
                                            "healthy_threshold": 1, "unhealthy_threshold": 1 } }
                """#,
            routes: Self.echoRoute
        ) { gw, port in
            let health = gw.healthService()
            let checks = Task { try await health.run() }
            defer { checks.cancel() }
            let labels = ["upstream": "echo", "target": sick.url]
            #expect(try await Self.metric(gw, "gateway_upstream_available", labels, want: 0) == 0)
            #expect(try await Self.metric(gw, "gateway_upstream_available", ["upstream": "echo", "target": good.url], want: 1) == 1)
            for i in 0..<4 {
                let call = try await Call.run(port, ["unary", "h\(i)"])
                #expect(call.ok && call.replies == ["good:h\(i):"], "\(call)")
            }
        }
    }

    /// An upstream that ends each connection as NGINX does at `keepalive_requests` (GOAWAY
    /// naming the last stream it answers, then the close): the streams it never processed
    /// go again on a fresh connection, and no request fails.
    @Test(.timeLimit(.minutes(2))) func streamsAnAbruptGoAwayLeftUnprocessedGoAgain() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await GoAwayUpstream.start(limit: 50, group: group)
        try await Self.withGateway(
            [],
            upstreams: #""up": { "protocol": "h2c", "targets": ["\#(upstream.url)"] }"#,
            routes: #"{ "name": "all", "match": { "path_prefix": "/" }, "upstream": "up" }"#
        ) { gw, port in
            let run = await Tool.run("/usr/bin/h2load", ["-n", "600", "-c", "4", "-m", "10", "http://127.0.0.1:\(port)/"])
            #expect(run.output.contains("status codes: 600 2xx, 0 3xx, 0 4xx, 0 5xx"), "\(run.output)")
            #expect(upstream.requests == 600)
        }
        await upstream.stop()
        try await group.shutdownGracefully()
    }

    /// Failures an h2/h2c pool must end quickly: a target that does not speak HTTP/2 (it
    /// answers the preface as HTTP/1.1 and closes) fails the request as a connect failure at
    /// once, not at the route timeout; `max_pending_requests: 0` still opens the first
    /// connection; a gRPC-Web text body cut inside a base64 group is refused.
    @Test(.timeLimit(.minutes(2))) func poolFailuresEndQuickly() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let http1 = try await ControlledUpstream.start(name: "h1", group: group)
        let echo = try await PythonServer("echo_server.py", ["--name", "p"])
        try await Self.withGateway(
            [echo],
            upstreams: #"""
                "h1": { "protocol": "h2c", "targets": ["\#(http1.url)"] },
                "echo": { "protocol": "h2c", "targets": ["\#(echo.url)"], "max_pending_requests": 0 }
                """#,
            routes: #"""
                { "name": "h1", "match": { "path_prefix": "/h1/" }, "upstream": "h1", "timeout": "10s" },
                { "name": "echo", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "echo" }
                """#
        ) { gw, port in
            let started = Date()
            let refused = await Tool.curl(["http://127.0.0.1:\(port)/h1/x"])
            #expect(refused.status == 502, "\(refused)")
            #expect(Date().timeIntervalSince(started) < 3)
            let call = try await Call.run(port, ["unary", "zero"])
            #expect(call.ok && call.replies == ["p:zero:"], "\(call)")
            // "AAAAAAJo" then "aQ" would be the frame of "hi": cut after the first six characters.
            let cut = await Tool.run(
                "/usr/bin/curl",
                [
                    "-s", "-D", "-", "-o", "/dev/null", "-H", "content-type: application/grpc-web-text", "--data", "AAAAAAJoaQ",
                    "http://127.0.0.1:\(port)/demo.Echo/Unary",
                ])
            #expect(cut.output.lowercased().contains("grpc-status: 13"), "\(cut.output)")
        }
        await http1.kill()
        try await group.shutdownGracefully()
    }
}
