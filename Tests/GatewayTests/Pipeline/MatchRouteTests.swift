import NIOHTTP1
import Testing

@testable import GatewayProxy

/// `MatchRoute.match` without a channel, and its refusals as the client sees them.
@Suite struct MatchRouteTests {
    static let json = PipelineRig.config(
        routes: """
            { "name": "orders", "match": { "path_prefix": "/orders", "methods": ["GET"] }, "respond": { "status": 204 } },
            { "name": "cors", "match": { "path_prefix": "/cors" }, "respond": { "status": 200 },
              "cors": { "origins": ["https://app.example"], "methods": ["PUT"] } },
            """, fallback: false)

    static func match(
        _ rig: PipelineRig, _ method: HTTPMethod, _ uri: String, _ headers: [(String, String)] = [("Host", "h")]
    )
        -> (MatchRoute.Outcome, String?)
    {
        var authority: String?
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers))
        guard case .pass(let facts) = HeadGuards.check(head, maxBodyBytes: 1 << 20) else { fatalError("guards") }
        let outcome = MatchRoute.match(head, facts: facts, snapshot: rig.snapshot, trusted: false, authority: &authority)
        return (outcome, authority)
    }

    @Test func routesOnTheNormalizedPath() throws {
        let rig = try PipelineRig(Self.json)
        guard case .matched(let route, let a, let preflight) = Self.match(rig, .GET, "/x/../orders/7?q=1").0 else {
            Issue.record("no match")
            return
        }
        #expect(route.name == "orders" && a.path == "/orders/7" && a.query == "q=1" && !preflight)
    }

    @Test func aPreflightIsRoutedAsTheRequestItAnnounces() throws {
        let rig = try PipelineRig(Self.json)
        let headers = [("Host", "h"), ("Origin", "https://app.example"), ("Access-Control-Request-Method", "PUT")]
        guard case .matched(let route, _, let preflight) = Self.match(rig, .OPTIONS, "/cors", headers).0 else {
            Issue.record("no match")
            return
        }
        #expect(route.name == "cors" && preflight)
    }

    @Test func anAbsoluteTargetIsRoutedOnItsAuthority() throws {
        let rig = try PipelineRig(Self.json)
        let (outcome, authority) = Self.match(rig, .GET, "http://other.example/orders")
        guard case .matched = outcome else { Issue.record("no match"); return }
        #expect(authority == "other.example")
        guard case .refuse(_, _, let close) = Self.match(rig, .GET, "http://a b/orders").0 else { Issue.record("accepted"); return }
        #expect(close)
    }

    @Test func refusalsAsTheClientSeesThem() throws {
        let rig = try PipelineRig(Self.json)
        let out = try rig.send("DELETE /orders HTTP/1.1\r\nHost: h\r\n\r\nGET /../x HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [405, 400])
        #expect(out.lowercased().contains("allow: get"))
    }
}
