import Foundation
import NIOPosix
import Testing

/// Issue 11's slow and abusive clients and faults, over real sockets: a body dripped a byte
/// at a time, a client that never reads its response, an upstream that dies in the middle
/// of one, an upstream name that does not resolve, and a full disk under `PUT /config`.
@Suite struct HostileClientTests {
    /// Slowloris on the body: each byte arrives well within any inactivity timeout, so only
    /// the route's total deadline stops it: 408, the connection closed, the upstream never
    /// answering a request it did not get whole.
    @Test func aBodyDrippedAByteAtATimeIsCutAtTheRouteTimeout() async throws {
        let template = config(
            upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo", "timeout": "1s" } ]"#)
        try await withGateway(template) { h in
            let port = h.port
            let (status, elapsed, closed) = try await offPool { () throws -> (Int, Double, Bool) in
                let c = try RawHTTPClient(port: port, timeout: 10)
                try c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
                let started = Date()
                var status = 0
                for _ in 0..<100 {
                    do { try c.send("x") } catch { break }
                    var p = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)
                    if poll(&p, 1, 100) > 0 {
                        status = (try? c.readResponse().status) ?? 0
                        break
                    }
                }
                let elapsed = Date().timeIntervalSince(started)
                return (status, elapsed, c.isClosedByPeer())
            }
            #expect(status == 408)
            #expect(elapsed >= 0.9 && elapsed < 6, "408 after \(elapsed) s")
            #expect(closed)
            // The upstream saw the request start, never its end: it answered nothing.
            #expect(h.services[0].requestsReceived <= 1)
            #expect(try await httpRequestOffPool(port: h.port, "GET", "/healthz").status == 200)
        }
    }

    /// A client that asks for 2 GiB and never reads: the gateway stops reading the upstream
    /// when the client's socket is full (a bounded amount is ever taken from the upstream),
    /// and at the route timeout closes both connections.
    @Test func aClientThatNeverReadsIsHeldToBoundedBufferingThenClosed() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await StreamingUpstream.start(length: 2 << 30, group: group)
        let template = config(
            upstreams: #"{ "big": { "targets": ["\#(upstream.url)"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "big", "timeout": "3s" } ]"#)
        try await withGateway(services: 0, template) { h in
            let port = h.port
            let bound = 64 << 20
            let (stalled, closed, final, received) = try await offPool { () throws -> (Int, Bool, Int, Int) in
                let c = try RawHTTPClient(port: port, timeout: 20)
                try c.send("GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
                // Streaming starts, then stalls on the client's full socket: polled until the
                // count stops moving (five samples 20 ms apart alike).
                _ = waitUntil(timeout: 10) { upstream.snapshot.written > 0 }
                var last = -1
                var alike = 0
                _ = waitUntil(timeout: 10) {
                    let now = upstream.snapshot.written
                    alike = now == last ? alike + 1 : 0
                    last = now
                    return alike >= 5
                }
                let stalled = upstream.snapshot.written
                // The route timeout cuts the exchange: the upstream connection is closed...
                let closed = waitUntil(timeout: 20) { upstream.snapshot.closed >= 1 }
                let final = upstream.snapshot.written
                // ...and the client's: it reads the part in flight, then the end.
                var total = 0
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { break }
                    total += n
                }
                return (stalled, closed, final, total)
            }
            #expect(stalled > 0 && stalled < bound, "\(stalled) bytes taken from the upstream with nobody reading")
            #expect(closed)
            #expect(final < bound, "\(final) bytes taken from the upstream in all")
            #expect(received > 0 && received < bound, "the client got \(received) bytes")
            #expect(upstream.snapshot.connections == 1)
        }
        await upstream.stop()
        try? await group.shutdownGracefully()
    }

    /// An upstream that dies after part of its body: the client gets the head and that part,
    /// then the connection closes (no hang, no made-up end of body), for a length-delimited
    /// and for a chunked response.
    @Test(arguments: [
        "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\nonly the first part",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n13\r\nonly the first part\r\n",
    ])
    func anUpstreamDyingMidResponseEndsTheClientsResponseCleanly(_ answer: String) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await CannedUpstream.start(answer, close: true, group: group)
        let template = config(
            upstreams: #"{ "dies": { "targets": ["\#(upstream.url)"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "dies" } ]"#)
        try await withGateway(services: 0, template) { h in
            let port = h.port
            let (head, rest, elapsed) = try await offPool { () throws -> (String, String, Double) in
                let c = try RawHTTPClient(port: port, timeout: 10)
                let started = Date()
                try c.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                var bytes: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { break }
                    bytes += buffer[..<n]
                }
                let text = String(decoding: bytes, as: UTF8.self)
                let parts = text.components(separatedBy: "\r\n\r\n")
                return (parts[0], parts.dropFirst().joined(separator: "\r\n\r\n"), Date().timeIntervalSince(started))
            }
            #expect(head.hasPrefix("HTTP/1.1 200"))
            #expect(rest.contains("only the first part"))
            // Nothing that would tell the client the body was whole: no last chunk.
            #expect(!rest.hasSuffix("0\r\n\r\n"))
            #expect(elapsed < 8, "closed after \(elapsed) s")
        }
        await upstream.stop()
        try? await group.shutdownGracefully()
    }

    /// A target whose name does not resolve is a failed connection like any other: 502 at
    /// once for an upstream with only that target, and the other target of a pool serves.
    @Test func anUpstreamNameThatDoesNotResolveIs502AndThePoolsOtherTargetServes() async throws {
        let template = config(
            upstreams: """
                { "nowhere": { "targets": ["http://no-such-host.invalid:8080"], "connect_timeout": "2s" },
                  "mixed": { "targets": ["http://no-such-host.invalid:8080", "@UP0@"], "connect_timeout": "2s",
                             "balancer": "round_robin" } }
                """,
            routes: #"""
                [ { "match": { "path_prefix": "/nowhere" }, "upstream": "nowhere" },
                  { "match": { "path_prefix": "/" }, "upstream": "mixed",
                    "retry": { "attempts": 2, "on": ["connect-failure"] } } ]
                """#)
        try await withGateway(template) { h in
            let started = Date()
            let r = try await httpRequestOffPool(port: h.port, "GET", "/nowhere/x")
            #expect(r.status == 502)
            #expect(r.json?["error"] as? String == "bad_gateway")
            #expect(Date().timeIntervalSince(started) < 10)
            for _ in 0..<6 {
                #expect(try await httpRequestOffPool(port: h.port, "GET", "/healthz").status == 200)
            }
        }
    }

    /// `PUT /config` on a full disk: the write fails, the answer says why, the old file is
    /// intact byte for byte, no temp file is left, and the old config keeps serving. With
    /// room again, the same PUT succeeds.
    @Test(.timeLimit(.minutes(2))) func aFullDiskUnderPutConfigLeavesTheOldFileIntact() async throws {
        let gateway = try await GatewayProcess.start(configTemplate: Self.file("old", padding: 0), diskBytes: 16 * 1024)
        func file(_ text: String, padding: Int) -> String {
            Self.file(text, padding: padding).replacingOccurrences(of: "@PORT@", with: String(gateway.port))
                .replacingOccurrences(of: "@ADMIN@", with: String(gateway.adminPort))
        }
        let big = file("new", padding: 40_000)
        let original = try Data(contentsOf: URL(fileURLWithPath: gateway.configPath))
        #expect(try await httpRequestOffPool(port: gateway.port, "GET", "/").text == "old")
        // Fill the rest of the 16 KiB: the config is there, the new one cannot be.
        let put = try await httpRequestOffPool(port: gateway.adminPort, "PUT", "/config", body: Array(big.utf8))
        #expect(put.status == 422)
        #expect(put.text.contains("could not be written") && put.text.contains("No space left on device"), "\(put.text)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: gateway.configPath)) == original)
        let directory = URL(fileURLWithPath: gateway.configPath).deletingLastPathComponent().path
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["gateway.json"])
        #expect(try await httpRequestOffPool(port: gateway.port, "GET", "/").text == "old")
        // A reload from disk finds the same file: nothing to apply.
        let reload = try await httpRequestOffPool(port: gateway.adminPort, "POST", "/reload")
        #expect(reload.status == 200 && reload.json?["changed"] as? Bool == false)
        // A config that fits is written and applied.
        let fits = file("fits", padding: 2_000)
        let ok = try await httpRequestOffPool(port: gateway.adminPort, "PUT", "/config", body: Array(fits.utf8))
        #expect(ok.status == 200)
        #expect(try String(contentsOfFile: gateway.configPath, encoding: .utf8) == fits)
        #expect(try await httpRequestOffPool(port: gateway.port, "GET", "/").text == "fits")
        gateway.signal(SIGTERM)
        _ = await gateway.waitForExit(timeout: 20)
    }

    /// Found by the test above, whose gateway runs in a user namespace without
    /// CAP_NET_ADMIN: `.socketOption(.tcp_nodelay)` is SOL_SOCKET option 1, SO_DEBUG (NIO's
    /// `tcpOption` is the TCP level), so every accepted and upstream socket asked for
    /// SO_DEBUG, which only a privileged process may set: run as an ordinary user, the
    /// gateway closed every connection. No socket of the gateway asks for it now, and
    /// accepted and upstream sockets have TCP_NODELAY.
    @Test func noSocketAsksForSODebugAndProxiedSocketsHaveNoDelay() async throws {
        let template = config(
            upstreams: #"{ "echo": { "targets": ["@UP0@"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "echo" } ]"#)
        try await withGateway(template) { h in
            let port = h.port
            let (debug, noDelay) = try await offPool { () throws -> ([Int32], Int) in
                let c = try RawHTTPClient(port: port, timeout: 5)
                _ = try c.request("GET", "/x")
                var debug: [Int32] = []
                var noDelay = 0
                // Every socket of this process: the gateway's listener, accepted and upstream
                // sockets, the test's own clients and servers.
                for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
                    guard let fd = Int32(name) else { continue }
                    var value: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    guard getsockopt(fd, SOL_SOCKET, SO_DEBUG, &value, &length) == 0 else { continue }
                    if value != 0 { debug.append(fd) }
                    var nd: Int32 = 0
                    var ndLength = socklen_t(MemoryLayout<Int32>.size)
                    if getsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &nd, &ndLength) == 0, nd != 0 { noDelay += 1 }
                }
                return (debug, noDelay)
            }
            #expect(debug.isEmpty, "sockets with SO_DEBUG: \(debug)")
            // at least the accepted client socket and the upstream connection
            #expect(noDelay >= 2)
        }
    }

    static func file(_ text: String, padding: Int) -> String {
        """
        { "listeners": [ { "name": "public", "address": "127.0.0.1:@PORT@" } ],
          "admin": { "address": "127.0.0.1:@ADMIN@" },
          "routes": [ { "match": { "path_prefix": "/" }, "respond": { "status": 200, "body": "\(text)" },
                        "response_headers": { "set": { "x-padding": "\(String(repeating: "p", count: padding))" } } } ],
          "access_log": { "enabled": false } }
        """
    }
}

/// Runs blocking socket work on a thread of its own (never on Swift's cooperative pool,
/// which the gateway under test needs).
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}
