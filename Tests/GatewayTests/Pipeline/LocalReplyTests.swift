import Testing

@testable import GatewayProxy

/// Answers from the gateway: an error body of SPEC §4 with its request id, a preflight, HEAD
/// without a body, HTTP/1.0 keep-alive.
@Suite struct LocalReplyTests {
    @Test func anErrorIsJSONWithTheRequestID() throws {
        let rig = try PipelineRig(PipelineRig.config(routes: "", fallback: false).replacingOccurrences(of: "[  ]", with: "[]"))
        let out = try rig.send("GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [404])
        #expect(out.lowercased().contains("content-type: application/json"))
        let id = try #require(
            out.lowercased().components(separatedBy: "x-request-id: ").dropFirst().first?.prefix(while: { $0.isHexDigit }))
        #expect(out.contains("\"request_id\":\"\(id)\""))
    }

    @Test func aPreflightIs204WithTheRoutesCORS() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "cors", "match": { "path_prefix": "/cors" }, "respond": { "status": 200 },
                      "cors": { "origins": ["https://app.example"], "methods": ["PUT"], "max_age": "10m" } },
                    """))
        let out = try rig.send(
            "OPTIONS /cors HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [204])
        let lower = out.lowercased()
        #expect(lower.contains("access-control-allow-origin: https://app.example"))
        #expect(lower.contains("access-control-allow-methods: put"))
        #expect(lower.contains("access-control-max-age: 600"))
    }

    @Test func headHasNoBodyAndHTTP10KeepsAliveWhenAsked() throws {
        let rig = try PipelineRig(PipelineRig.config())
        let out = try rig.send("HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [200])
        #expect(out.lowercased().contains("connection: keep-alive"))
        #expect(out.hasSuffix("\r\n\r\n"))
        #expect(rig.channel.isActive)
    }
}
