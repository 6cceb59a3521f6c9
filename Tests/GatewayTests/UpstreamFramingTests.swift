import GatewayConfig
import GatewayProxy
import NIOPosix
import Testing

/// Responses from upstreams that frame them in each way HTTP/1.1 allows, and in ways it does
/// not, through the gateway over real sockets.
@Suite struct UpstreamFramingTests {
    /// Runs a gateway whose only route goes to a canned upstream.
    func through(_ response: String, close: Bool = false, _ body: (Int) throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await CannedUpstream.start(response, close: close, group: group)
        let template = config(
            upstreams: #"{ "canned": { "targets": ["\#(upstream.url)"] } }"#,
            routes: #"[ { "match": { "path_prefix": "/" }, "upstream": "canned" } ]"#)
        do {
            try await withGateway(services: 0, template) { h in try body(h.port) }
        } catch {
            await upstream.stop()
            try? await group.shutdownGracefully()
            throw error
        }
        await upstream.stop()
        try? await group.shutdownGracefully()
    }

    @Test func bodyDelimitedByCloseIsReframedAsChunked() async throws {
        try await through("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until the upstream closes", close: true) { port in
            let c = try RawHTTPClient(port: port)
            let r = try c.request("GET", "/")
            #expect(r.status == 200)
            #expect(r.header("transfer-encoding") == "chunked")
            #expect(String(decoding: r.body, as: UTF8.self) == "read until the upstream closes")
            // the client connection stays usable: the framing to it never depended on the close
            let again = try c.request("GET", "/")
            #expect(String(decoding: again.body, as: UTF8.self) == "read until the upstream closes")
        }
    }

    @Test func chunkedResponseWithTrailersKeepsItsTrailers() async throws {
        let response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Digest: 42\r\n\r\n"
        try await through(response) { port in
            let c = try RawHTTPClient(port: port)
            try c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            let raw = try c.readUntil("\r\n0\r\nX-Digest: 42\r\n\r\n")
            #expect(raw.contains("transfer-encoding: chunked"))
            #expect(raw.contains("abcd") && raw.contains("efg"))
        }
    }

    @Test func headersNamedByConnectionAreDropped() async throws {
        let response =
            "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
        try await through(response) { port in
            let r = try RawHTTPClient(port: port).request("GET", "/")
            #expect(r.status == 200)
            #expect(r.header("x-hop") == nil)
            #expect(r.header("keep-alive") == nil)
            #expect(r.header("connection") == nil)
            #expect(r.header("x-kept") == "yes")
            #expect(String(decoding: r.body, as: UTF8.self) == "ok")
        }
    }

    @Test func bytesAnUpstreamSendsRightAfterItsSwitchingProtocolsReachTheClient() async throws {
        let response =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nfirst-bytes-of-the-new-protocol"
        try await through(response) { port in
            let c = try RawHTTPClient(port: port)
            try c.send("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
            let raw = try c.readUntil("first-bytes-of-the-new-protocol")
            #expect(raw.hasPrefix("HTTP/1.1 101 "))
            #expect(raw.lowercased().contains("connection: upgrade"))
        }
    }

    @Test(arguments: [
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n  folded\r\nContent-Length: 0\r\n\r\n",
        "SMTP ready\r\n\r\n",
    ])
    func invalidUpstreamResponsesAre502(_ response: String) async throws {
        try await through(response) { port in
            let r = try RawHTTPClient(port: port).request("GET", "/")
            #expect(r.status == 502)
            #expect(r.json?["error"] as? String == "bad_gateway")
        }
    }
}
