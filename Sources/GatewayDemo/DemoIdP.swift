import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A stand-in identity provider for `gateway demo`: it publishes a JWKS with one ES256 key,
/// made at start, and signs tokens for whoever asks. It lets a newcomer try JWT routes with
/// curl; it checks nothing and must never stand in for a real identity provider.
///
/// - `GET /.well-known/jwks.json` — the public key
/// - `GET /token?sub=alice&scope=reports:read&tier=pro&ttl=600` — a signed access token, as text
///
/// It is also a small OpenID provider for the demo's browser login, with one fixed user
/// (`demo-user`, "Demo User") signed in without a password:
///
/// - `GET /.well-known/openid-configuration` — discovery
/// - `GET /authorize` — the authorization code flow; PKCE with S256 is required; answers a
///   302 to `redirect_uri` with `code` and `state` (or `error` for a bad request)
/// - `POST /oauth/token` — `authorization_code` (the verifier is checked against the
///   challenge; a code works once) and `refresh_token` grants; answers ES256 ID and access
///   tokens and a refresh token
/// - `GET /logout` — the end-session endpoint: a 302 to `post_logout_redirect_uri`
///
/// The scope `demo:large` makes access tokens of over 4 KB (for trying split session cookies).
public final class DemoIdP: Sendable {
    public let channel: any Channel
    public let issuer: String
    public static let audience = "gateway-demo"
    /// The demo's browser-login client (a public client: PKCE, no secret).
    public static let webClient = "gateway-demo-web"
    /// `/oauth/token` requests answered so far, by grant type (tests count refreshes).
    let grants: NIOLockedValueBox<[String: Int]>

    /// `accessTokenTTL` (seconds) is the lifetime of the access tokens `/oauth/token` gives.
    public static func start(
        host: String = "127.0.0.1", port: Int, group: any EventLoopGroup, accessTokenTTL: Int = 300
    ) async throws
        -> DemoIdP
    {
        let key = P256.Signing.PrivateKey()
        let kid = "demo-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let state = OIDCState(accessTokenTTL: accessTokenTTL)
        let box = NIOLockedValueBox(ServerAddress())
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        Handler(key: key, kid: kid, issuer: box.withLockedValue { $0.issuer }, oidc: state))
                }
            }
            .bind(host: host, port: port).get()
        let issuer = "http://\(host):\(channel.localAddress?.port ?? port)"
        box.withLockedValue { $0.issuer = issuer }
        return DemoIdP(channel: channel, issuer: issuer, grants: state.grants)
    }

    /// The issuer URL, known once the port is bound (port 0 picks one).
    struct ServerAddress { var issuer = "" }

    init(channel: any Channel, issuer: String, grants: NIOLockedValueBox<[String: Int]>) {
        self.channel = channel
        self.issuer = issuer
        self.grants = grants
    }

    public var port: Int { channel.localAddress?.port ?? 0 }

    /// How many `/oauth/token` requests of this grant type were answered with tokens.
    public func granted(_ grantType: String) -> Int { grants.withLockedValue { $0[grantType] ?? 0 } }

    public func stop() async { try? await channel.close() }

    static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// A compact JWS signed with ES256.
    static func token(key: P256.Signing.PrivateKey, kid: String, claims: [String: Any]) -> String {
        let header = ["alg": "ES256", "typ": "JWT", "kid": kid]
        let h = base64URL((try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data())
        let p = base64URL((try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])) ?? Data())
        let input = Array("\(h).\(p)".utf8)
        let signature = (try? key.signature(for: input).rawRepresentation) ?? Data()
        return "\(h).\(p).\(base64URL(signature))"
    }

    /// Codes and refresh tokens the provider has handed out.
    final class OIDCState: Sendable {
        struct Grant {
            var clientID: String
            var redirectURI: String
            var challenge: String
            var nonce: String?
            var scope: String
            var expires: Date
        }
        let accessTokenTTL: Int
        let codes = NIOLockedValueBox<[String: Grant]>([:])
        /// Refresh token → client id and scope.
        let refreshTokens = NIOLockedValueBox<[String: (String, String)]>([:])
        let grants = NIOLockedValueBox<[String: Int]>([:])
        init(accessTokenTTL: Int) { self.accessTokenTTL = accessTokenTTL }
    }

    static func randomToken() -> String {
        var rng = SystemRandomNumberGenerator()
        return base64URL((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let key: P256.Signing.PrivateKey
        let kid: String
        let issuer: String
        let oidc: OIDCState
        var head: HTTPRequestHead?
        var body: [UInt8] = []

        init(key: P256.Signing.PrivateKey, kid: String, issuer: String, oidc: OIDCState) {
            self.key = key
            self.kid = kid
            self.issuer = issuer
            self.oidc = oidc
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                body = []
            case .body(let b):
                if body.count < 64 * 1024 { body += b.getBytes(at: b.readerIndex, length: b.readableBytes) ?? [] }
            case .end:
                guard let head else { return }
                self.head = nil
                let (status, type, text, extra) = answer(head)
                var h = HTTPHeaders()
                h.add(name: "content-type", value: type)
                h.add(name: "content-length", value: String(text.utf8.count))
                h.add(name: "cache-control", value: "no-store")
                for (n, v) in extra { h.add(name: n, value: v) }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: h))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }

        static func form(_ text: Substring) -> [String: String] {
            var out: [String: String] = [:]
            for pair in text.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                guard let k = kv.first else { continue }
                let v = kv.count > 1 ? String(kv[1]).replacingOccurrences(of: "+", with: " ") : ""
                out[String(k).removingPercentEncoding ?? String(k)] = v.removingPercentEncoding ?? v
            }
            return out
        }

        static func json(_ object: [String: Any]) -> String {
            String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
        }

        private func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, String, [(String, String)]) {
            let parts = head.uri.split(separator: "?", maxSplits: 1)
            let query = Self.form(parts.count > 1 ? parts[1] : "")
            switch parts.first ?? "/" {
            case "/.well-known/jwks.json":
                let raw = Array(key.publicKey.x963Representation.dropFirst())
                let jwk: [String: String] = [
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                    "x": DemoIdP.base64URL(raw[0..<32]), "y": DemoIdP.base64URL(raw[32...]),
                ]
                return (.ok, "application/json", Self.json(["keys": [jwk]]), [])
            case "/.well-known/openid-configuration":
                return (
                    .ok, "application/json",
                    Self.json([
                        "issuer": issuer, "authorization_endpoint": issuer + "/authorize", "token_endpoint": issuer + "/oauth/token",
                        "jwks_uri": issuer + "/.well-known/jwks.json", "end_session_endpoint": issuer + "/logout",
                        "response_types_supported": ["code"], "grant_types_supported": ["authorization_code", "refresh_token"],
                        "code_challenge_methods_supported": ["S256"], "id_token_signing_alg_values_supported": ["ES256"],
                        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
                        "subject_types_supported": ["public"],
                    ]), []
                )
            case "/authorize":
                return authorize(query)
            case "/oauth/token":
                guard head.method == .POST else { return (.methodNotAllowed, "application/json", #"{"error":"invalid_request"}"#, []) }
                return token(Self.form(Substring(String(decoding: body, as: UTF8.self))))
            case "/logout":
                if let back = query["post_logout_redirect_uri"], back.hasPrefix("http") {
                    return (.found, "text/plain", "signed out", [("location", back)])
                }
                return (.ok, "text/html; charset=utf-8", "<html><body><p>Signed out of the demo provider.</p></body></html>", [])
            case "/token":
                let now = Int(Date().timeIntervalSince1970)
                let ttl = Int(query["ttl"] ?? "") ?? 600
                var claims: [String: Any] = [
                    "iss": issuer, "aud": DemoIdP.audience, "sub": query["sub"] ?? "alice", "iat": now, "nbf": now, "exp": now + ttl,
                ]
                if let s = query["scope"] { claims["scope"] = s }
                if let t = query["tier"] { claims["tier"] = t }
                return (.ok, "text/plain", DemoIdP.token(key: key, kid: kid, claims: claims), [])
            default:
                return (.notFound, "application/json", "{\"error\":\"no_route\",\"message\":\"try /token or /.well-known/jwks.json\"}", [])
            }
        }

        /// Signs the fixed demo user in at once and sends the browser back with a code.
        private func authorize(_ q: [String: String]) -> (HTTPResponseStatus, String, String, [(String, String)]) {
            guard let redirect = q["redirect_uri"], redirect.hasPrefix("http"), let client = q["client_id"], !client.isEmpty else {
                return (.badRequest, "text/plain", "bad request: client_id and an absolute redirect_uri are required", [])
            }
            let state = q["state"] ?? ""
            func fail(_ error: String) -> (HTTPResponseStatus, String, String, [(String, String)]) {
                let sep = redirect.contains("?") ? "&" : "?"
                return (.found, "text/plain", error, [("location", "\(redirect)\(sep)error=\(error)&state=\(state)")])
            }
            guard q["response_type"] == "code" else { return fail("unsupported_response_type") }
            // PKCE with S256 is required (RFC 7636; OAuth 2.1).
            guard q["code_challenge_method"] == "S256", let challenge = q["code_challenge"], challenge.count >= 43 else {
                return fail("invalid_request")
            }
            let code = DemoIdP.randomToken()
            oidc.codes.withLockedValue {
                $0[code] = OIDCState.Grant(
                    clientID: client, redirectURI: redirect, challenge: challenge, nonce: q["nonce"], scope: q["scope"] ?? "openid",
                    expires: Date().addingTimeInterval(60))
            }
            let sep = redirect.contains("?") ? "&" : "?"
            let encodedState = state.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            return (.found, "text/plain", "signed in", [("location", "\(redirect)\(sep)code=\(code)&state=\(encodedState)")])
        }

        private func token(_ f: [String: String]) -> (HTTPResponseStatus, String, String, [(String, String)]) {
            func error(_ e: String) -> (HTTPResponseStatus, String, String, [(String, String)]) {
                (.badRequest, "application/json", Self.json(["error": e]), [])
            }
            let clientID: String
            let scope: String
            var nonce: String?
            switch f["grant_type"] {
            case "authorization_code":
                guard let code = f["code"], let verifier = f["code_verifier"] else { return error("invalid_request") }
                // A code works once, whatever happens next.
                guard let grant = oidc.codes.withLockedValue({ $0.removeValue(forKey: code) }), grant.expires > Date() else {
                    return error("invalid_grant")
                }
                let challenge = DemoIdP.base64URL(SHA256.hash(data: Array(verifier.utf8)))
                guard challenge == grant.challenge, f["redirect_uri"] == grant.redirectURI else { return error("invalid_grant") }
                if let c = f["client_id"], c != grant.clientID { return error("invalid_client") }
                clientID = grant.clientID
                scope = grant.scope
                nonce = grant.nonce
            case "refresh_token":
                guard let rt = f["refresh_token"], let (client, s) = oidc.refreshTokens.withLockedValue({ $0[rt] }) else {
                    return error("invalid_grant")
                }
                clientID = client
                scope = s
            default:
                return error("unsupported_grant_type")
            }
            let now = Int(Date().timeIntervalSince1970)
            let ttl = oidc.accessTokenTTL
            var accessClaims: [String: Any] = [
                "iss": issuer, "aud": DemoIdP.audience, "sub": "demo-user", "scope": scope, "tier": "pro", "iat": now, "nbf": now,
                "exp": now + ttl,
            ]
            // The `demo:large` scope asks for a large token (5,000 bytes of groups), as some
            // providers issue: the gateway's session then needs several cookies.
            if scope.split(separator: " ").contains("demo:large") {
                accessClaims["groups"] = (0..<250).map { "group-\(String(format: "%04d", $0))" }
            }
            let access = DemoIdP.token(key: key, kid: kid, claims: accessClaims)
            var idClaims: [String: Any] = [
                "iss": issuer, "aud": clientID, "sub": "demo-user", "name": "Demo User", "email": "demo@example.com", "iat": now,
                "exp": now + 3600,
            ]
            if let nonce { idClaims["nonce"] = nonce }
            let refresh = DemoIdP.randomToken()
            oidc.refreshTokens.withLockedValue { $0[refresh] = (clientID, scope) }
            oidc.grants.withLockedValue { $0[f["grant_type"] ?? "", default: 0] += 1 }
            return (
                .ok, "application/json",
                Self.json([
                    "access_token": access, "token_type": "Bearer", "expires_in": ttl, "refresh_token": refresh, "scope": scope,
                    "id_token": DemoIdP.token(key: key, kid: kid, claims: idClaims),
                ]), []
            )
        }
    }
}
