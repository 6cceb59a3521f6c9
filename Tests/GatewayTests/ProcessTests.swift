import Crypto
import Foundation
import GatewayDemo
import NIOPosix
import Testing

/// Behaviour only a real gateway process shows: signals, exit codes, memory under streaming.
@Suite struct ProcessTests {
    func template(_ upstream: String, server: String = "{}", timeout: String = "10s") -> String {
        """
        { "listeners": [ { "name": "p", "address": "127.0.0.1:@PORT@" } ],
          "server": \(server),
          "upstreams": { "up": { "targets": ["\(upstream)"] } },
          "routes": [ { "match": { "path_prefix": "/" }, "upstream": "up", "timeout": "\(timeout)" } ],
          "access_log": { "enabled": false } }
        """
    }

    @Test func sigtermLetsASlowRequestFinish() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let svc = try await DemoService.start(name: "slow", port: 0, group: group)
        let gw = try await GatewayProcess.start(configTemplate: template(svc.url, server: #"{ "drain_timeout": "5s" }"#))
        let idle = try RawHTTPClient(port: gw.port)
        #expect(try idle.request("GET", "/healthz").status == 200)
        let busy = try RawHTTPClient(port: gw.port)
        try busy.send("GET /slow?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n")
        // the request is in flight (it reached the upstream) when the signal arrives
        #expect(waitUntil(timeout: 5) { svc.requestsReceived >= 2 })
        gw.signal(SIGTERM)
        // the idle keep-alive connection is closed, new connections are refused
        #expect(idle.isClosedByPeer())
        #expect(waitUntil(timeout: 3) { (try? RawHTTPClient(port: gw.port)) == nil })
        let r = try busy.readResponse()
        #expect(r.status == 200)
        #expect(r.header("connection") == "close")
        #expect((r.json?["slept_ms"] as? Int) == 1500)
        #expect(await gw.waitForExit(timeout: 10) == 0)
        await svc.stop()
        try await group.shutdownGracefully()
    }

    /// The demo's fixed ports (gateway.json and GatewayDemo) must be free for this one.
    static var demoPortsFree: Bool {
        [8080, 9001, 9002, 9003, 9006, 9901].allSatisfy { (try? RawHTTPClient(port: $0, timeout: 1)) == nil }
    }

    @Test(.enabled(if: demoPortsFree, "the demo's ports are in use on this machine"))
    func demoServesItsCurlLinesAndStopsOnSIGINT() async throws {
        let p = try await ChildProcess.start(gatewayBinary().path, ["demo"], workingDirectory: repositoryRoot().path, stderr: false)
        defer { p.signal(SIGKILL) }
        #expect(waitUntil(timeout: 20) { (try? httpRequest(port: 8080, "GET", "/hello"))?.status == 200 })
        var servedBy = Set<String>()
        for _ in 0..<4 {
            let r = try httpRequest(port: 8080, "GET", "/api/users/42")
            #expect(r.status == 200)
            servedBy.insert(r.json?["served_by"] as? String ?? "?")
        }
        #expect(servedBy == ["users-1", "users-2"])
        #expect(try httpRequest(port: 8080, "GET", "/nowhere").status == 404)
        // Ready once the demo identity provider's keys are fetched (asynchronous, SPEC §5).
        #expect(waitUntil(timeout: 10) { (try? httpRequest(port: 9901, "GET", "/readyz"))?.status == 200 })
        // Ready can also mean the initial fetch timeout passed: wait for the keys themselves.
        #expect(
            waitUntil(timeout: 20) {
                (try? httpRequest(port: 9901, "GET", "/jwks", host: "localhost"))?.text.contains("\"ready\":true") == true
            })
        // A token from the demo identity provider opens the JWT route.
        let token = try httpRequest(port: 9004, "GET", "/token?sub=carol").text
        let me = try httpRequest(port: 8080, "GET", "/api/me", headers: [("authorization", "Bearer \(token)")])
        #expect(me.status == 200)
        #expect(me.text.contains("carol"))
        #expect(try httpRequest(port: 8080, "GET", "/api/me").status == 401)
        // The demo's gRPC service (h2c, behind `protocol: h2c`), with a real gRPC client.
        let stream = try await GRPCTests.Call.run(8080, ["server-stream", "3"])
        #expect(stream.ok && stream.replies == ["tick 0", "tick 1", "tick 2"], "\(stream)")
        let health = try await GRPCTests.Call.run(8080, ["health"])
        #expect(health.ok && health.replies == ["SERVING"], "\(health)")
        p.signal(SIGINT)
        #expect(await p.waitForExit(timeout: 15) == 0)
        #expect(p.output.contains("curl -s http://127.0.0.1:8080/api/users/42"))
    }

    @Test func sighupReloadsTheFileAndAnInvalidFileChangesNothing() async throws {
        let gw = try await GatewayProcess.start(
            configTemplate: """
                { "listeners": [ { "address": "127.0.0.1:@PORT@" } ], "upstreams": {},
                  "routes": [ { "match": { "path": "/v" }, "respond": { "body": "one" } } ], "access_log": { "enabled": false } }
                """)
        #expect(try httpRequest(port: gw.port, "GET", "/v").text == "one")
        let path = gw.directory.appendingPathComponent("gateway.json")
        func write(_ body: String) throws {
            try """
            { "listeners": [ { "address": "127.0.0.1:\(gw.port)" } ], "upstreams": {},
              "routes": [ { "match": { "path": "/v" }, "respond": { "body": "\(body)" } } ], "access_log": { "enabled": false } }
            """.write(to: path, atomically: true, encoding: .utf8)
        }
        try write("two")
        gw.signal(SIGHUP)
        #expect(waitUntil(timeout: 5) { (try? httpRequest(port: gw.port, "GET", "/v"))?.text == "two" })
        // a broken file is refused whole; the last good config keeps serving
        try "{ \"listeners\": [ ".write(to: path, atomically: true, encoding: .utf8)
        gw.signal(SIGHUP)
        #expect(waitUntil(timeout: 5) { gw.printed("config not reloaded") })
        #expect(try httpRequest(port: gw.port, "GET", "/v").text == "two")
        gw.signal(SIGTERM)
        #expect(await gw.waitForExit(timeout: 10) == 0)
    }

    @Test func badConfigExits1AndBusyPortExits2() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("exit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func run(_ config: String) async throws -> Int32 {
            let path = dir.appendingPathComponent("g.json")
            try config.write(to: path, atomically: true, encoding: .utf8)
            return await Tool.run(gatewayBinary().path, ["run", "--config", path.path], timeout: 20).status
        }
        #expect(try await run("{ \"listeners\": 5 }") == 1)
        // a port someone else holds
        let holder = try await GatewayProcess.start(configTemplate: template("http://127.0.0.1:9"))
        #expect(try await run(template("http://127.0.0.1:9").replacingOccurrences(of: "@PORT@", with: String(holder.port))) == 2)
    }

    @Test func hundredMebibytesStreamWithoutGrowingMemory() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let svc = try await DemoService.start(name: "files", port: 0, group: group)
        // 100 MiB each way through a debug build on a busy 2-core machine can take more than 10 s.
        let gw = try await GatewayProcess.start(
            configTemplate: template(svc.url, server: #"{ "max_body_bytes": "1GiB", "workers": 2 }"#, timeout: "120s"))
        #expect(try httpRequest(port: gw.port, "GET", "/healthz").status == 200)
        let baseline = gw.rssKiB
        var peak = baseline
        let size = 100 * 1024 * 1024

        // upload: 100 MiB of random bytes, sha256 checked by the upstream
        let c = try RawHTTPClient(port: gw.port, timeout: 60)
        try c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: \(size)\r\n\r\n")
        var hasher = SHA256()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<(size / chunk.count) {
            chunk.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for j in words.indices { words[j] = rng.next() }
            }
            hasher.update(data: chunk)
            try c.send(chunk)
            if i % 8 == 0 { peak = max(peak, gw.rssKiB) }
        }
        let up = try c.readResponse()
        #expect(up.json?["bytes"] as? Int == size)
        #expect(up.json?["sha256"] as? String == hasher.finalize().map { String(format: "%02x", $0) }.joined())

        // download: 100 MiB read slowly at first, so backpressure has to hold the upstream back
        try c.send("GET /bytes?n=\(size) HTTP/1.1\r\nHost: a\r\n\r\n")
        var down = SHA256()
        var expected = SHA256()
        var received = 0
        var reads = 0
        _ = try c.readResponse(bodySink: { bytes in
            down.update(data: bytes)
            received += bytes.count
            reads += 1
            if reads % 64 == 0 { peak = max(peak, gw.rssKiB) }
            if reads == 10 { usleep(500_000) }
        })
        var remaining = size
        let unit = 64 * 1024
        while remaining > 0 {
            let k = min(unit, remaining)
            expected.update(data: [UInt8](repeating: UInt8(ascii: "a") &+ UInt8(truncatingIfNeeded: remaining / unit % 26), count: k))
            remaining -= k
        }
        #expect(received == size)
        #expect(down.finalize() == expected.finalize())
        peak = max(peak, gw.rssKiB)
        let growthMiB = Double(peak - baseline) / 1024
        print("gateway RSS baseline \(baseline / 1024) MiB, peak \(peak / 1024) MiB, growth \(String(format: "%.1f", growthMiB)) MiB")
        #expect(growthMiB < 64, "RSS grew by \(growthMiB) MiB while streaming 2 x 100 MiB")
        await svc.stop()
        try await group.shutdownGracefully()
    }
}
