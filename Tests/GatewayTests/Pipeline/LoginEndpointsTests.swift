import Testing

@testable import GatewayProxy

/// `LoginEndpoints` on an `EmbeddedChannel`: the callback and logout endpoints' answers to
/// requests that do not complete a login (no identity provider needed).
@Suite struct LoginEndpointsTests {
    @Test func aCallbackWithoutAValidStateIs400AndAnErrorIs401() throws {
        let rig = try LoginGateTests.rig()
        let out = try rig.send(
            "GET /oauth2/callback?state=%0D%0Ax HTTP/1.1\r\nHost: localhost\r\n\r\n"
                + "GET /oauth2/callback?error=access_denied HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [400, 401])
        #expect(out.contains("The identity provider answered: access_denied"))
        #expect(!out.lowercased().contains("set-cookie: \r"))
    }

    @Test func logoutClearsTheSessionAndGoesToThePostLogoutPath() throws {
        let rig = try LoginGateTests.rig()
        let out = try rig.send("GET /oauth2/logout HTTP/1.1\r\nHost: localhost\r\nCookie: gw_session=abc\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [302])
        let lower = out.lowercased()
        #expect(lower.contains("location: /"))
        #expect(lower.contains("max-age=0"))
    }
}
