import Foundation
import GatewayAuth
import GatewayConfig
import Testing

/// The network-free pieces of the browser login (issue 9): cookie payloads, the
/// authorization URL, token requests and responses, and the ID token checks.
@Suite struct LoginFlowTests {
    static let sealer = CookieSealer(key: Array(repeating: 42, count: 32))

    @Test func loginAndSessionCookiesRoundTripSealed() throws {
        let pending = LoginFlow.PendingLogin(
            state: "st4te-abcdefghijkl", nonce: "n", verifier: PKCE.verifier(), returnTo: "/app?x=1", expires: 1e9)
        let name = LoginFlow.loginCookieName(state: pending.state)
        #expect(name == "__gw_login_st4te-abcdef")
        let sealed = try #require(LoginFlow.seal(pending, name: name, with: Self.sealer))
        #expect(LoginFlow.open(LoginFlow.PendingLogin.self, sealed, name: name, with: Self.sealer) == pending)
        // Bound to its name: another state's cookie name does not open it.
        #expect(
            LoginFlow.open(LoginFlow.PendingLogin.self, sealed, name: LoginFlow.loginCookieName(state: "other"), with: Self.sealer) == nil)
        let session = LoginFlow.Session(
            subject: "demo-user", forwarded: ["x-user-id": "demo-user"], accessToken: String(repeating: "a", count: 1200),
            refreshToken: "r", accessExpires: 2e9, expires: 2e9)
        let s = try #require(LoginFlow.seal(session, name: LoginFlow.sessionCookieName, with: Self.sealer))
        #expect(LoginFlow.open(LoginFlow.Session.self, s, name: LoginFlow.sessionCookieName, with: Self.sealer) == session)
        #expect(
            LoginFlow.open(
                LoginFlow.Session.self, s, name: LoginFlow.sessionCookieName, with: CookieSealer(key: Array(repeating: 1, count: 32)))
                == nil)
    }

    @Test func theAuthorizationURLCarriesPKCEStateAndNonce() throws {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        let url = LoginFlow.authorizeURL(
            endpoint: "https://idp.example/authorize", clientID: "web app", redirectURI: "https://gw.example/oauth2/callback",
            scopes: ["openid", "profile"], state: "s", nonce: "n", verifier: verifier)
        let items = Dictionary(uniqueKeysWithValues: (URLComponents(string: url)?.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(url.hasPrefix("https://idp.example/authorize?response_type=code&"))
        #expect(items["client_id"] == "web app")
        #expect(items["redirect_uri"] == "https://gw.example/oauth2/callback")
        #expect(items["scope"] == "openid profile")
        #expect(items["state"] == "s" && items["nonce"] == "n")
        #expect(items["code_challenge"] == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        #expect(items["code_challenge_method"] == "S256")
        #expect(!url.contains(" "))
    }

    @Test func tokenRequestsAuthenticateTheClientEachWay() {
        let grant = LoginFlow.codeGrant(code: "c/1", redirectURI: "https://gw/cb", verifier: "v")
        let none = LoginFlow.tokenRequest(grant: grant, clientID: "web", auth: .none)
        #expect(none.body == "grant_type=authorization_code&code=c%2F1&redirect_uri=https%3A%2F%2Fgw%2Fcb&code_verifier=v&client_id=web")
        #expect(!none.headers.contains { $0.0 == "authorization" })
        let post = LoginFlow.tokenRequest(grant: LoginFlow.refreshGrant("r"), clientID: "web", auth: .post(secret: "s&t"))
        #expect(post.body == "grant_type=refresh_token&refresh_token=r&client_id=web&client_secret=s%26t")
        let basic = LoginFlow.tokenRequest(grant: grant, clientID: "web:app", auth: .basic(secret: "p w"))
        let header = basic.headers.first { $0.0 == "authorization" }?.1
        // RFC 6749 §2.3.1: each part form-encoded before base64.
        #expect(header == "Basic " + Data("web%3Aapp:p%20w".utf8).base64EncodedString())
        #expect(!basic.body.contains("client_id"))
    }

    @Test func tokenResponses() throws {
        let ok = LoginFlow.parseTokens(
            status: 200, body: Array(#"{"access_token":"a","token_type":"Bearer","expires_in":2,"refresh_token":"r","id_token":"i"}"#.utf8))
        #expect(try ok.get() == LoginFlow.Tokens(accessToken: "a", refreshToken: "r", idToken: "i", expiresIn: 2))
        #expect(LoginFlow.parseTokens(status: 400, body: Array(#"{"error":"invalid_grant"}"#.utf8)) == .failure(.refused("invalid_grant")))
        #expect(LoginFlow.parseTokens(status: 200, body: Array(#"{"token_type":"Bearer"}"#.utf8)) == .failure(.malformed))
        #expect(LoginFlow.parseTokens(status: 200, body: Array(#"{"access_token":"a","token_type":"mac"}"#.utf8)) == .failure(.malformed))
        #expect(LoginFlow.parseTokens(status: 200, body: Array("not json".utf8)) == .failure(.malformed))
    }

    @Test func idTokensAreCheckedForAudienceNonceAndSignature() async throws {
        let key = SigningKey.p256(.init())
        let keys = try await KeySet.fromJWKS(Array(Mint.jwks([key.jwk(kid: "k")]).utf8), allowed: ["ES256"])
        let verifier = TokenVerifierTests.verifier()  // issuer Mint.issuer, audience "api"
        let now = TokenVerifierTests.now
        func id(_ extra: [String: Any]) -> String {
            Mint.token(
                alg: "ES256", kid: "k", key: key, claims: TokenVerifierTests.claims(["aud": "web", "nonce": "n1"].merging(extra) { $1 }))
        }
        func check(_ token: String, nonce: String = "n1") -> String {
            switch LoginFlow.checkIDToken(token, verifier: verifier, clientID: "web", nonce: nonce, keys: keys, now: now) {
            case .success(let identity): return "valid:\(identity.subject ?? "")"
            case .failure(let f): return f.rawValue
            }
        }
        #expect(check(id([:])) == "valid:alice")
        #expect(check(id([:]), nonce: "other") == "nonce")
        #expect(check(id(["nonce": NSNull()])) == "nonce")
        #expect(check(id(["aud": "api"])) == "audience")  // the API's audience is not the client's
        #expect(check(id(["iss": "https://evil"])) == "issuer")
        var tampered = Array(id([:]).utf8)
        tampered[tampered.count - 5] ^= 1
        #expect(
            check(String(decoding: tampered, as: UTF8.self)) == "signature"
                || check(String(decoding: tampered, as: UTF8.self)) == "malformed")
    }
}

@Suite struct LoginConfigTests {
    static func load(_ login: String, route: String = #"{ "login": "web" }"#, env: [String: String]) -> LoadResult {
        let text = """
            { "listeners": [ { "name": "l", "address": "127.0.0.1:0" } ],
              "auth": { "jwt": { "idp": { "issuer": "https://idp", "jwks_uri": "https://idp/jwks", "algorithms": ["ES256"] } },
                        "login": { "web": \(login) } },
              "upstreams": { "a": { "targets": ["http://127.0.0.1:1"] } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "a", "auth": \(route) } ] }
            """
        return ConfigLoader.load(bytes: Array(text.utf8), source: "t.json", environment: env)
    }

    static let good = #"{ "issuer": "https://idp", "client_id": "web", "cookie_secret_env": "S", "jwt": "idp" }"#

    @Test func cookieSecretsAndProviderSettingsAreChecked() {
        let hex = String(repeating: "ab", count: 32)
        #expect(Self.load(Self.good, env: ["S": hex]).errors.isEmpty)
        // Shorter than 32 bytes: an error; not set: a warning (the login routes answer 503).
        #expect(Self.load(Self.good, env: ["S": "abcd"]).errors.contains { $0.path == "auth.login.web.cookie_secret_env" })
        let unset = Self.load(Self.good, env: ["OTHER": "x"])
        #expect(unset.errors.isEmpty)
        #expect(unset.diagnostics.contains { $0.path == "auth.login.web.cookie_secret_env" })
        let bad = Self.load(
            #"""
            { "issuer": "idp", "client_id": "", "cookie_secret_env": "S", "jwt": "nope", "scopes": ["profile"],
              "callback_path": "oauth", "logout_path": "//x", "client_auth": "client_secret_post", "session_ttl": "0s" }
            """#, env: ["S": hex])
        let paths = Set(bad.errors.map(\.path))
        for p in [
            "auth.login.web.issuer", "auth.login.web.client_id", "auth.login.web.jwt", "auth.login.web.scopes",
            "auth.login.web.callback_path", "auth.login.web.logout_path", "auth.login.web.client_secret_env",
            "auth.login.web.session_ttl",
        ] {
            #expect(paths.contains(p), "\(p) in \(paths)")
        }
    }

    @Test func aRouteLoginStandsAloneAndNamesAProvider() {
        let hex = String(repeating: "ab", count: 32)
        #expect(Self.load(Self.good, route: #"{ "login": "webb" }"#, env: ["S": hex]).errors.contains { $0.path == "routes[0].auth.login" })
        #expect(
            Self.load(Self.good, route: #"{ "login": "web", "jwt": "idp" }"#, env: ["S": hex]).errors.contains {
                $0.path == "routes[0].auth"
            })
        #expect(
            Self.load(Self.good, route: #"{ "any_of": [ { "login": "web" }, { "jwt": "idp" } ] }"#, env: ["S": hex]).errors.contains {
                $0.path == "routes[0].auth.any_of[0].login"
            })
    }
}
