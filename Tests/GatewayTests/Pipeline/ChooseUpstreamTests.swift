import Testing

@testable import GatewayProxy

/// `chooseUpstream` where no connection is needed: a fixed response, a fault's abort, an
/// upstream the route names that this loop does not have.
@Suite struct ChooseUpstreamTests {
    @Test func aFaultAbortAnswersWithoutAnUpstream() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "abort", "match": { "path_prefix": "/abort" }, "upstream": "app",
                      "fault": { "abort": { "status": 503, "percent": 100 } } },
                    """))
        let out = try rig.send("GET /abort HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [503])
        #expect(out.contains("fault"))
    }

    @Test func aFixedResponseHasItsHeadersAndBody() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "teapot", "match": { "path_prefix": "/tea" },
                      "respond": { "status": 418, "headers": { "x-kind": "pot" }, "body": "short and stout" } },
                    """))
        let out = try rig.send("GET /tea HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [418])
        #expect(out.lowercased().contains("x-kind: pot"))
        #expect(out.hasSuffix("short and stout"))
    }

    @Test func theSplitMemberNamedByTheOverrideHeader() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "canary", "match": { "path_prefix": "/c" },
                      "split": { "to": [ { "upstream": "app", "weight": 100 }, { "upstream": "canary", "weight": 0 } ],
                                 "override_header": "x-canary" } },
                    """,
                extra:
                    #""upstreams": { "app": { "targets": [ "http://127.0.0.1:9" ] }, "canary": { "targets": [ "http://127.0.0.1:10" ] } },"#
            ).replacingOccurrences(of: "\"upstreams\": { \"app\": { \"targets\": [ \"http://127.0.0.1:9\" ] } },\n", with: ""))
        guard case .split(let split) = rig.snapshot.routes[0].action else { Issue.record("no split"); return }
        let ex = Exchange(
            handler: ProxyHandler(loopContext: rig.context, server: rig.snapshot.server, listenerName: "t"),
            head: .init(version: .http1_1, method: .GET, uri: "/c", headers: ["x-canary": "canary"]), requestID: "r",
            clientIP: "192.0.2.1", start: .now())
        #expect(ex.handler.splitMember(ex, split) == 1)
    }
}
