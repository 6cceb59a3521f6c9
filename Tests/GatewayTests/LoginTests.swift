import Foundation
import GatewayAuth
import GatewayDemo
import NIOPosix
import Testing

/// A browser, as far as the login needs one: it keeps cookies (honouring `Max-Age=0`) and
/// follows redirects one at a time, each on a connection of its own, from a thread of its own.
final class CookieBrowser: @unchecked Sendable {
    // (Used by one test task at a time: the lock-free state is never shared between threads
    // at once; every request runs on a detached thread the test awaits.)
    var jar: [String: String] = [:]
    var setCookies: [String] = []

    struct Hop {
        var status: Int
        var location: String?
        var response: RawHTTPClient.Response
    }

    /// One request to `url` (http://127.0.0.1:PORT/path); no redirect followed.
    func get(_ url: String, accept: String = "text/html", extra: [(String, String)] = [], target: String? = nil) async throws -> Hop {
        guard let u = URLComponents(string: url), let port = u.port else { throw RawHTTPClient.Failure(description: "bad url \(url)") }
        let path = target ?? (u.percentEncodedPath + (u.percentEncodedQuery.map { "?" + $0 } ?? ""))
        var headers: [(String, String)] = [("accept", accept)] + extra
        if !jar.isEmpty {
            headers.append(("cookie", jar.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")))
        }
        let host = "127.0.0.1:\(port)"
        let headersCopy = headers
        let r = try await withCheckedThrowingContinuation { (c: CheckedContinuation<RawHTTPClient.Response, any Error>) in
            Thread.detachNewThread {
                c.resume(with: Result { try RawHTTPClient(port: port, timeout: 30).request("GET", path, headers: headersCopy, host: host) })
            }
        }
        setCookies = r.headers("set-cookie")
        for line in setCookies {
            let first = line.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
            guard let eq = first.firstIndex(of: "=") else { continue }
            let name = String(first[..<eq])
            let value = String(first[first.index(after: eq)...])
            if line.contains("Max-Age=0") { jar[name] = nil } else { jar[name] = value }
        }
        var location = r.header("location")
        if let l = location, l.hasPrefix("/") { location = "http://\(host)\(l)" }
        return Hop(status: r.status, location: location, response: r)
    }

    /// Follows redirects until a non-redirect answer (at most 6 hops).
    func follow(_ url: String) async throws -> Hop {
        var hop = try await get(url)
        var n = 0
        while hop.status == 302 || hop.status == 303, let next = hop.location, n < 6 {
            hop = try await get(next)
            n += 1
        }
        return hop
    }
}

/// Browser login through the gateway against the demo OpenID provider (issue 9).
@Suite struct LoginTests {
    static let secret = String(repeating: "5a", count: 32)

    struct Setup {
        var rig: ResilienceRig
        var idp: DemoIdP
        var group: MultiThreadedEventLoopGroup
        var base: String { "http://127.0.0.1:\(rig.port)" }
        func stop() async {
            await rig.stop()
            await idp.stop()
            try? await group.shutdownGracefully()
        }
    }

    /// `template`, when given, makes the file from the provider's issuer and the upstream's URL.
    static func start(
        ttl: Int = 300, scopes: String = #"["openid", "profile"]"#, template: ((_ issuer: String, _ upstream: String) -> String)? = nil
    ) async throws -> Setup {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let idp = try await DemoIdP.start(port: 0, group: group, accessTokenTTL: ttl)
        let issuer = idp.issuer
        let rig = try await ResilienceRig.start(1, environment: ["COOKIE_SECRET": secret]) { u in
            if let template { return template(issuer, u[0]) }
            return """
                { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
                  "server": { "workers": 1 }, "access_log": { "enabled": false },
                  "auth": {
                    "jwt": { "idp": { "issuer": "\(issuer)", "audiences": ["gateway-demo"], "jwks_uri": "\(issuer)/.well-known/jwks.json",
                                      "algorithms": ["ES256"], "forward_claims": { "sub": "x-user-id", "name": "x-user-name" } } },
                    "login": { "web": { "issuer": "\(issuer)", "client_id": "\(DemoIdP.webClient)", "scopes": \(scopes),
                                        "cookie_secret_env": "COOKIE_SECRET", "jwt": "idp" } } },
                  "upstreams": { "app": { "targets": ["\(u[0])"] } },
                  "routes": [ { "name": "app", "match": { "path_prefix": "/app" }, "upstream": "app", "auth": { "login": "web" } } ] }
                """
        }
        // Discovery and the keys are fetched in the background: wait for both (until then a
        // login answers 503).
        let snapshot = rig.server.shared.snapshots.snapshot
        _ = try await waitUntilAsync(timeout: 30) {
            rig.server.keysFetched && rig.server.shared.login.providers(for: snapshot).allSatisfy { $0.endpoints != nil }
        }
        return Setup(rig: rig, idp: idp, group: group)
    }

    @Test func theWholeFlowWithPKCEAndTheUpstreamGetsTheAccessToken() async throws {
        let s = try await Self.start()
        defer { Task { await s.stop() } }
        let browser = CookieBrowser()
        let first = try await browser.get(s.base + "/app/page?x=1")
        #expect(first.status == 302)
        let authorize = try #require(first.location)
        let items = Dictionary(uniqueKeysWithValues: (URLComponents(string: authorize)?.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(authorize.hasPrefix(s.idp.issuer + "/authorize?"))
        #expect(items["code_challenge_method"] == "S256")
        #expect(items["code_challenge"]?.count == 43)
        #expect(items["redirect_uri"] == s.base + "/oauth2/callback")
        #expect(items["client_id"] == DemoIdP.webClient)
        #expect(items["state"] != nil && items["nonce"] != nil)
        let loginCookie = try #require(browser.setCookies.first { $0.hasPrefix("__gw_login_") })
        #expect(loginCookie.contains("HttpOnly") && loginCookie.contains("SameSite=Lax") && loginCookie.contains("Secure"))
        #expect(loginCookie.contains("Path=/oauth2/callback"))

        // The provider signs the demo user in and sends the browser back with a code.
        let back = try await browser.get(authorize)
        #expect(back.status == 302)
        let callback = try #require(back.location)
        #expect(callback.hasPrefix(s.base + "/oauth2/callback?code="))
        let done = try await browser.get(callback)
        #expect(done.status == 302)
        #expect(done.location == s.base + "/app/page?x=1")
        let session = try #require(browser.setCookies.first { $0.hasPrefix("__gw_session=") })
        for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] { #expect(session.contains(flag), "\(flag) in \(session)") }
        // The provider checked the verifier: the code was exchanged once.
        #expect(s.idp.granted("authorization_code") == 1)

        let page = try await browser.get(s.base + "/app/page?x=1")
        #expect(page.status == 200)
        let auth = try #require(s.rig.upstreams[0].authorizations.last)
        #expect(auth.hasPrefix("Bearer ey"))
        // The access token is the provider's, for the demo user.
        let claims =
            try JSONSerialization.jsonObject(with: Data(Base64URL.decode(auth.dropFirst(7).split(separator: ".")[1]) ?? []))
            as? [String: Any]
        #expect(claims?["sub"] as? String == "demo-user")
        #expect(s.rig.upstreams[0].requests == 1)

        // A request that does not take HTML gets 401, not a redirect.
        let api = try await CookieBrowser().get(s.base + "/app/data", accept: "application/json")
        #expect(api.status == 401)
        #expect(api.response.header("www-authenticate")?.hasPrefix("Bearer") == true)
    }

    /// Logs a fresh browser in; returns it with its session.
    static func login(_ s: Setup, path: String = "/app/home") async throws -> CookieBrowser {
        let browser = CookieBrowser()
        let page = try await browser.follow(s.base + path)
        #expect(page.status == 200)
        return browser
    }

    @Test func tamperedStateReplayedCallbackForeignReturnPathAndTamperedSessionAreRefused() async throws {
        let s = try await Self.start()
        defer { Task { await s.stop() } }
        let browser = CookieBrowser()
        let first = try await browser.get(s.base + "/app/x")
        let firstLocation = try #require(first.location)
        let back = try await browser.get(firstLocation)
        let callback = try #require(back.location)
        // A tampered state: refused with a page, no session.
        let tampered = callback.replacingOccurrences(of: "state=", with: "state=x")
        let bad = try await browser.get(tampered)
        #expect(bad.status == 400)
        #expect(bad.response.header("content-type")?.hasPrefix("text/html") == true)
        #expect(browser.jar["__gw_session"] == nil)
        // The IdP's error: a clear page.
        let denied = try await browser.get(s.base + "/oauth2/callback?error=access_denied&state=abc")
        #expect(denied.status == 401 && denied.response.text.contains("access_denied"))

        // A replayed callback: the same code, state and login cookie a second time.
        let fresh = CookieBrowser()
        let start = try await fresh.get(s.base + "/app/y")
        let loginJar = fresh.jar
        let startLocation = try #require(start.location)
        let cbHop = try await fresh.get(startLocation)
        let cb = try #require(cbHop.location)
        #expect(try await fresh.get(cb).status == 302)
        let replayer = CookieBrowser()
        replayer.jar = loginJar
        let replay = try await replayer.get(cb)
        #expect(replay.status != 302)
        #expect(replayer.jar["__gw_session"] == nil)

        // An absolute-form request names its own authority, which takes the place of Host: a
        // host that is not trusted gets no login (no redirect_uri on it), never a redirect.
        let abs = CookieBrowser()
        let r = try await abs.get(s.base + "/app/z", target: "http://evil.example/app/z")
        #expect(r.status == 400 && r.location == nil)
        // On the gateway's own (loopback) authority: the path it returns to is local, never a URL.
        let own = try await abs.get(s.base + "/app/z", target: s.base + "/app/z")
        #expect(own.status == 302)
        let rLocation = try #require(own.location)
        let cb2Hop = try await abs.get(rLocation)
        let cb2 = try #require(cb2Hop.location)
        let landed = try await abs.get(cb2)
        #expect(landed.status == 302 && landed.location == s.base + "/")

        // A tampered session cookie is no session.
        let user = try await Self.login(s)
        let sessionValue = try #require(user.jar["__gw_session"])
        var value = Array(sessionValue.utf8)
        value[value.count / 2] = value[value.count / 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        user.jar["__gw_session"] = String(decoding: value, as: UTF8.self)
        let after = try await user.get(s.base + "/app/home")
        #expect(after.status == 302 && after.location?.hasPrefix(s.idp.issuer) == true)
        #expect(try await user.get(s.base + "/app/home", accept: "application/json").status == 401)
    }

    @Test func aSessionOver4KBIsSplitAcrossCookies() async throws {
        let s = try await Self.start(scopes: #"["openid", "demo:large"]"#)
        defer { Task { await s.stop() } }
        let browser = try await Self.login(s)
        // The sealed session is over 3800 bytes: a count cookie and its chunks, each small enough.
        #expect(browser.jar["__gw_session"]?.hasPrefix("chunks:") == true)
        #expect(browser.jar["__gw_session.0"] != nil && browser.jar["__gw_session.1"] != nil)
        #expect(browser.jar.values.allSatisfy { $0.utf8.count <= CookieChunks.chunk })
        // Joined again on the next request: the upstream gets the whole large token.
        #expect(try await browser.get(s.base + "/app/home").status == 200)
        let auth = s.rig.upstreams[0].authorizations.last ?? ""
        #expect(auth.utf8.count > 4000)
        // Logout clears every part.
        _ = try await browser.get(s.base + "/oauth2/logout")
        #expect(!browser.jar.keys.contains { $0.hasPrefix("__gw_session") })
    }

    @Test func anExpiredAccessTokenIsRefreshedAndLogoutEndsTheSession() async throws {
        let s = try await Self.start(ttl: 2)
        defer { Task { await s.stop() } }
        let browser = try await Self.login(s)
        let firstToken = s.rig.upstreams[0].authorizations.last
        // (On a loaded machine the login itself may outlast the 2 s token: count from here.)
        let refreshed = s.idp.granted("refresh_token")
        try await Task.sleep(nanoseconds: 2_200_000_000)
        let page = try await browser.get(s.base + "/app/home")
        #expect(page.status == 200)
        #expect(s.idp.granted("refresh_token") == refreshed + 1)
        #expect(browser.setCookies.contains { $0.hasPrefix("__gw_session=") })
        #expect(s.rig.upstreams[0].authorizations.last != firstToken)
        // The renewed session goes on working.
        #expect(try await browser.get(s.base + "/app/home").status == 200)

        // Logout: the session cookie is cleared and the browser goes to the provider's end-session endpoint.
        let out = try await browser.get(s.base + "/oauth2/logout")
        #expect(out.status == 302)
        #expect(out.location?.hasPrefix(s.idp.issuer + "/logout?") == true)
        #expect(browser.setCookies.contains { $0.hasPrefix("__gw_session=;") && $0.contains("Max-Age=0") })
        #expect(browser.jar["__gw_session"] == nil)
        let again = try await browser.get(s.base + "/app/home")
        #expect(again.status == 302 && again.location?.hasPrefix(s.idp.issuer + "/authorize") == true)
    }
}
