import Foundation
import GatewayAuth
import GatewayDemo
import NIOPosix
import Testing

/// The demo's OpenID provider (issue 9): discovery, the authorization code flow with PKCE
/// S256 required, single-use codes, refresh tokens, end session.
@Suite struct DemoOIDCTests {
    static func form(_ fields: [(String, String)]) -> [UInt8] {
        Array(
            fields.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&").utf8)
    }

    static func query(_ location: String) -> [String: String] {
        var out: [String: String] = [:]
        for item in URLComponents(string: location)?.queryItems ?? [] { out[item.name] = item.value ?? "" }
        return out
    }

    @Test func authorizationCodeWithPKCEAndRefresh() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let idp = try await DemoIdP.start(port: 0, group: group, accessTokenTTL: 2)
        defer {
            Task {
                await idp.stop(); try? await group.shutdownGracefully()
            }
        }
        let port = idp.port
        let discovery = try await httpRequestOffPool(port: port, "GET", "/.well-known/openid-configuration")
        #expect(discovery.json?["authorization_endpoint"] as? String == idp.issuer + "/authorize")
        #expect(discovery.json?["code_challenge_methods_supported"] as? [String] == ["S256"])

        let verifier = PKCE.verifier()
        let redirect = "http://127.0.0.1:1/cb"
        let authorize =
            "/authorize?response_type=code&client_id=web&redirect_uri=\(redirect)&scope=openid&state=s1&nonce=n1"
            + "&code_challenge=\(PKCE.challenge(for: verifier))&code_challenge_method=S256"
        let r = try await httpRequestOffPool(port: port, "GET", authorize)
        #expect(r.status == 302)
        let back = Self.query(r.header("location") ?? "")
        #expect(back["state"] == "s1")
        let code = try #require(back["code"])
        // Without S256 the provider refuses.
        let plain = try await httpRequestOffPool(
            port: port, "GET", "/authorize?response_type=code&client_id=web&redirect_uri=\(redirect)&state=s2&code_challenge=abc")
        #expect(Self.query(plain.header("location") ?? "")["error"] == "invalid_request")

        let post = { (fields: [(String, String)]) in
            try await httpRequestOffPool(
                port: port, "POST", "/oauth/token", headers: [("content-type", "application/x-www-form-urlencoded")],
                body: Self.form(fields))
        }
        // A wrong verifier does not get tokens, and spends the code.
        let wrong = try await post([
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect), ("code_verifier", PKCE.verifier()),
        ])
        #expect(wrong.status == 400 && wrong.json?["error"] as? String == "invalid_grant")
        let r2 = try await httpRequestOffPool(port: port, "GET", authorize)
        let code2 = try #require(Self.query(r2.header("location") ?? "")["code"])
        let tokens = try await post([
            ("grant_type", "authorization_code"), ("code", code2), ("redirect_uri", redirect), ("code_verifier", verifier),
            ("client_id", "web"),
        ])
        #expect(tokens.status == 200)
        #expect(tokens.json?["expires_in"] as? Int == 2)
        let id = try #require(tokens.json?["id_token"] as? String)
        let claims = try #require(
            try JSONSerialization.jsonObject(with: Data(Base64URL.decode(id.split(separator: ".")[1]) ?? [])) as? [String: Any])
        #expect(claims["nonce"] as? String == "n1")
        #expect(claims["aud"] as? String == "web")
        // Replayed: refused.
        let replay = try await post([
            ("grant_type", "authorization_code"), ("code", code2), ("redirect_uri", redirect), ("code_verifier", verifier),
        ])
        #expect(replay.status == 400)
        // Refresh.
        let refresh = try #require(tokens.json?["refresh_token"] as? String)
        let renewed = try await post([("grant_type", "refresh_token"), ("refresh_token", refresh)])
        #expect(renewed.status == 200 && renewed.json?["access_token"] is String)
        #expect(idp.granted("refresh_token") == 1)
        let logout = try await httpRequestOffPool(port: port, "GET", "/logout?post_logout_redirect_uri=http://127.0.0.1:1/")
        #expect(logout.status == 302 && logout.header("location") == "http://127.0.0.1:1/")
    }
}
