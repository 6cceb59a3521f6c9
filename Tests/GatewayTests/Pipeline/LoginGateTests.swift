import Testing

@testable import GatewayProxy

/// `LoginGate` on an `EmbeddedChannel`, for what needs no identity provider: who is sent
/// to log in and who is refused.
@Suite struct LoginGateTests {
    static func rig() throws -> PipelineRig {
        try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "wiki", "match": { "path_prefix": "/wiki" }, "upstream": "app", "auth": { "login": "corp" } },
                    """,
                extra: """
                    "auth": { "jwt": { "corp": { "issuer": "https://idp.invalid", "audiences": ["gw"], "jwks_uri": "http://127.0.0.1:9/jwks" } },
                      "login": { "corp": { "jwt": "corp", "issuer": "https://idp.invalid", "client_id": "gw",
                      "callback_path": "/oauth2/callback", "logout_path": "/oauth2/logout", "cookie_secure": false,
                      "cookie_secret_env": "RIG_COOKIE_SECRET" } } },
                    """))
    }

    @Test func aClientThatIsNotABrowserGets401() throws {
        let rig = try Self.rig()
        let out = try rig.send("GET /wiki HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [401])
        #expect(out.lowercased().contains("www-authenticate: bearer"))
    }

    @Test func aBrowserWaitsForTheProvidersEndpoints() throws {
        let rig = try Self.rig()
        let out = try rig.send("GET /wiki HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [503])  // no discovery yet: no login to start
    }
}
