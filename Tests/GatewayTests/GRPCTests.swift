import Foundation
import GatewayConfig
import GatewayPolicies
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

        static func run(_ port: Int, _ arguments: [String]) async throws -> Call {
            let r = await Tool.run(
                "/usr/bin/env", ["python3", "\(GRPCTests.support)/echo_client.py", "127.0.0.1:\(port)"] + arguments, stderr: false)
            let line = r.output.split(separator: "\n").last.map(String.init) ?? ""
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw RawHTTPClient.Failure(description: "echo_client printed \(r.output)")
            }
            return Call(
                ok: object["ok"] as? Bool ?? false, code: object["code"] as? String ?? "", details: object["details"] as? String ?? "",
                replies: object["replies"] as? [String] ?? [], trailers: object["trailers"] as? [String: String] ?? [:])
        }
    }

    /// The gateway with one h2c listener (`http2`) before `upstreams` (name to JSON).
    static func gateway(upstreams: String, routes: String, extra: String = "") async throws -> (GatewayServer, Int) {
        let json = """
            { "listeners": [ { "name": "main", "address": "127.0.0.1:0", "http2": true } ],
              "server": { "workers": 1 }, "access_log": { "enabled": false }, \(extra)
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

    @Test(.timeLimit(.minutes(2))) func everyKindOfCallWithItsMetadataAndTrailers() async throws {
        let echo = try await PythonServer("echo_server.py", ["--name", "a"])
        let (gw, port) = try await Self.gateway(
            upstreams: #""echo": { "protocol": "h2c", "targets": ["\#(echo.url)"] }"#,
            routes: #"{ "name": "grpc", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "echo" }"#)
        defer {
            Task {
                await gw.shutdown()
                await echo.stop()
            }
        }
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

    @Test(.timeLimit(.minutes(2))) func deadlinesEndAsDeadlineExceeded() async throws {
        let echo = try await PythonServer("echo_server.py")
        let (gw, port) = try await Self.gateway(
            upstreams: #""echo": { "protocol": "h2c", "targets": ["\#(echo.url)"] }"#,
            routes: #"{ "name": "grpc", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "echo", "timeout": "300ms" }"#)
        defer {
            Task {
                await gw.shutdown()
                await echo.stop()
            }
        }
        // The route's timeout ends a call the client would have waited 10 s for.
        let started = Date()
        let slow = try await Call.run(port, ["unary", "sleep:3", "--timeout", "10"])
        #expect(!slow.ok && slow.code == "DEADLINE_EXCEEDED", "\(slow)")
        #expect(slow.details.contains("upstream"), "the gateway's message: \(slow.details)")
        #expect(Date().timeIntervalSince(started) < 2.5)
        // Within the timeout, the same call succeeds.
        let quick = try await Call.run(port, ["unary", "sleep:0.05"])
        #expect(quick.ok)
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
        let (gw, port) = try await Self.gateway(
            upstreams: #"""
                "echo": { "protocol": "h2c", "targets": ["\#(down.url)", "\#(up.url)"],
                          "outlier_detection": { "consecutive_5xx": 1, "base_ejection_time": "60s", "max_ejection_percent": 50 } }
                """#,
            routes: #"""
                { "name": "grpc", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "echo",
                  "retry": { "attempts": 2, "on": ["unavailable"] } },
                { "name": "noretry", "match": { "path_prefix": "/" }, "upstream": "echo" }
                """#)
        defer {
            Task {
                await gw.shutdown()
                await down.stop()
                await up.stop()
            }
        }
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

    @Test(.timeLimit(.minutes(2))) func theGatewaysOwnErrorsAreGRPCStatuses() async throws {
        let (gw, port) = try await Self.gateway(
            upstreams: #""gone": { "protocol": "h2c", "targets": ["http://127.0.0.1:\#(freePort())"] }"#,
            routes: #"{ "name": "gone", "match": { "path_prefix": "/demo.Echo/" }, "upstream": "gone" }"#,
            extra: #"""
                "rate_limits": { "default_tier": "one", "key_from": ["client_ip"], "tiers": { "one": [ { "limit": 2, "per": "1m" } ] } },
                """#)
        defer { Task { await gw.shutdown() } }
        let unavailable = try await Call.run(port, ["unary", "x"])
        #expect(!unavailable.ok && unavailable.code == "UNAVAILABLE", "\(unavailable)")
        let unimplemented = try await Call.run(port, ["health"])  // no route for grpc.health.v1
        #expect(!unimplemented.ok && unimplemented.code == "UNIMPLEMENTED", "\(unimplemented)")
        _ = try await Call.run(port, ["client-stream", "a"])
        let limited = try await Call.run(port, ["bidi", "a"])
        #expect(!limited.ok && limited.code == "RESOURCE_EXHAUSTED", "\(limited)")
        #expect(try await Self.metric(gw, "gateway_grpc_responses_total", ["route": "gone", "grpc_status": "UNAVAILABLE"], want: 2) == 2)
        #expect(try await Self.metric(gw, "gateway_grpc_responses_total", ["route": "gone", "grpc_status": "RESOURCE_EXHAUSTED"]) == 1)
    }

    @Test(.timeLimit(.minutes(2))) func aStreamOutlivesTheRouteTimeoutAndAnIdleOneIsClosed() async throws {
        let sse = try await PythonServer("sse_server.py")
        let (gw, port) = try await Self.gateway(
            upstreams: #""sse": { "targets": ["\#(sse.url)"] }"#,
            routes: #"""
                { "name": "events", "match": { "path_prefix": "/" }, "upstream": "sse", "timeout": "300ms", "stream_idle_timeout": "500ms" }
                """#)
        defer {
            Task {
                await gw.shutdown()
                await sse.stop()
            }
        }
        // 8 events 0.2 s apart: 1.6 s, over 5 times the route's 300 ms, each flushed as it comes.
        var started = Date()
        let long = await Tool.run(
            "/usr/bin/curl", ["-sN", "--max-time", "20", "-H", "accept-encoding: gzip", "http://127.0.0.1:\(port)/events?n=8&every=0.2"])
        #expect(long.status == 0, "\(long.output)")
        #expect(long.output.components(separatedBy: "data: event").count - 1 == 8, "\(long.output)")
        #expect(Date().timeIntervalSince(started) >= 1.5)
        // One event, then nothing: closed after the idle timeout, not after the upstream's minute.
        started = Date()
        let idle = await Tool.run("/usr/bin/curl", ["-sN", "--max-time", "20", "http://127.0.0.1:\(port)/idle"])
        #expect(idle.output.contains("data: first"), "\(idle.output)")
        #expect(idle.status != 0)  // the stream was cut, not ended
        #expect(Date().timeIntervalSince(started) < 3)
    }
}
