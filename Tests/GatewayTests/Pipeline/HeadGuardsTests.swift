import NIOHTTP1
import Testing

@testable import GatewayProxy

/// `HeadGuards.check` on heads built in the test, and the handler's answer on an
/// `EmbeddedChannel`: a refused head gets 400 (413 for a body over the limit) and the
/// connection closes after it.
@Suite struct HeadGuardsTests {
    static func head(_ headers: [(String, String)], minor: Int = 1) -> HTTPRequestHead {
        HTTPRequestHead(version: .init(major: 1, minor: minor), method: .POST, uri: "/", headers: HTTPHeaders(headers))
    }

    static func refusal(_ h: HTTPRequestHead, max: Int = 1000) -> String? {
        if case .refuse(let e) = HeadGuards.check(h, maxBodyBytes: max) { return e.message }
        return nil
    }

    @Test func theFactsOfOnePass() throws {
        let h = Self.head([
            ("Host", "api.example"), ("Expect", "100-continue"), ("Content-Length", "5"), ("Accept-Encoding", "gzip"),
            ("Upgrade", "websocket"),
        ])
        guard case .pass(let f) = HeadGuards.check(h, maxBodyBytes: 1000) else { Issue.record("refused"); return }
        #expect(f.host == "api.example")
        #expect(f.expectsContinue && f.asksUpgrade && f.expectsBody)
        #expect(f.acceptEncoding == "gzip")
    }

    @Test func smugglingShapesAreRefused() {
        #expect(Self.refusal(Self.head([])) == "missing Host header")
        #expect(Self.refusal(Self.head([("Host", "a"), ("Host", "b")])) == "more than one Host header")
        #expect(Self.refusal(Self.head([("Host", "a b")])) == "invalid Host header")
        #expect(
            Self.refusal(Self.head([("Host", "a"), ("Content-Length", "3"), ("Transfer-Encoding", "chunked")]))
                == "both Content-Length and Transfer-Encoding")
        #expect(Self.refusal(Self.head([("Host", "a"), ("Transfer-Encoding", "gzip, chunked")])) == "unsupported Transfer-Encoding")
        #expect(
            Self.refusal(Self.head([("Transfer-Encoding", "chunked")], minor: 0)) == "Transfer-Encoding in an HTTP/1.0 request")
        #expect(Self.refusal(Self.head([("Host", "a"), ("Content-Length", "1001")])) != nil)
        #expect(Self.refusal(Self.head([], minor: 0)) == nil)  // HTTP/1.0 needs no Host
    }

    @Test func theForwardedClientIsTheRightMostUntrustedEntry() throws {
        let rig = try PipelineRig(PipelineRig.config(extra: #""server": { "trusted_proxies": ["10.0.0.0/8"] },"#))
        let headers = HTTPHeaders([("X-Forwarded-For", "203.0.113.9, 10.1.1.1")])
        #expect(HeadGuards.forwardedClientIP(headers, server: rig.snapshot.server, peer: "10.0.0.2") == "203.0.113.9")
        #expect(HeadGuards.forwardedClientIP(HTTPHeaders(), server: rig.snapshot.server, peer: "10.0.0.2") == "10.0.0.2")
    }

    @Test func aRefusedHeadIsAnsweredAndClosesTheConnection() throws {
        let rig = try PipelineRig(PipelineRig.config())
        let out = try rig.send("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [400])
        #expect(out.lowercased().contains("connection: close"))
        #expect(!rig.channel.isActive)
    }
}
