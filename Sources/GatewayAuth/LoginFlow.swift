import Foundation
import GatewayConfig

/// The pieces of the browser login (SPEC §2.5 `login`, OAuth 2.0 authorization code with
/// PKCE S256) that need no network: what the short-lived login cookie and the session
/// cookie hold, the authorization URL, the token requests, the token response, and the
/// checks on an ID token. The data path and the callback put them together.
public enum LoginFlow {
    /// Everything a login in progress needs back at the callback, in a sealed cookie whose
    /// name carries the first characters of `state` (several tabs may log in at once).
    public struct PendingLogin: Codable, Sendable, Equatable {
        public var state: String
        public var nonce: String
        public var verifier: String
        /// The local path the browser asked for.
        public var returnTo: String
        /// The `redirect_uri` the authorization request named (the token request repeats it).
        public var redirectURI: String = ""
        /// Seconds since 1970 after which the login is void.
        public var expires: Double

        public init(state: String, nonce: String, verifier: String, returnTo: String, expires: Double) {
            self.state = state
            self.nonce = nonce
            self.verifier = verifier
            self.returnTo = returnTo
            self.expires = expires
        }
    }

    /// A signed-in browser: the tokens and the claims the upstream gets, sealed in the
    /// session cookie.
    public struct Session: Codable, Sendable, Equatable {
        /// The login it came from (`binding(...)`): a session sealed for one provider is
        /// refused by another, even one that shares the cookie secret.
        public var binding: String = ""
        public var subject: String
        /// The verified ID token's claims the provider forwards, as header → value.
        public var forwarded: [String: String]
        public var accessToken: String
        public var refreshToken: String?
        /// Seconds since 1970: the access token's end (from `expires_in`).
        public var accessExpires: Double
        /// Seconds since 1970: the session's end (`session_ttl` from the login).
        public var expires: Double

        public init(
            subject: String, forwarded: [String: String], accessToken: String, refreshToken: String?, accessExpires: Double, expires: Double
        ) {
            self.subject = subject
            self.forwarded = forwarded
            self.accessToken = accessToken
            self.refreshToken = refreshToken
            self.accessExpires = accessExpires
            self.expires = expires
        }
    }

    /// The name of the login cookie of one `state` (only a `state` that `isState` accepts).
    public static func loginCookieName(state: String) -> String { "__gw_login_" + String(state.prefix(12)) }
    public static let sessionCookieName = "__gw_session"

    /// A `state` as the gateway makes them (`PKCE.token()`: base64url, 43 characters), checked
    /// on its bytes before any of it reaches a cookie name: anything else is not a login of
    /// this gateway.
    public static func isState(_ s: String) -> Bool {
        (16...128).contains(s.utf8.count) && s.utf8.allSatisfy(Base64URL.isAlphabet)
    }

    /// What ties a sealed cookie to one login provider: its name, issuer and client id. It is
    /// the associated data of the seal (with the cookie's name) and is kept in the session.
    public static func binding(provider: String, issuer: String, clientID: String) -> String {
        "login=\(provider)\nissuer=\(issuer)\nclient_id=\(clientID)"
    }

    public static func seal<T: Encodable>(_ value: T, name: String, binding: String = "", with sealer: CookieSealer) -> String? {
        guard let data = try? JSONEncoder().encode(value) else { return nil }
        return sealer.seal(Array(data), name: associatedData(name, binding))
    }

    public static func open<T: Decodable>(
        _ type: T.Type, _ value: String, name: String, binding: String = "", with sealer: CookieSealer
    ) -> T? {
        guard let bytes = sealer.open(value, name: associatedData(name, binding)) else { return nil }
        return try? JSONDecoder().decode(type, from: Data(bytes))
    }

    /// A session cookie opened for the login `binding`: its seal and its content both name it.
    public static func openSession(_ value: String, binding: String, with sealer: CookieSealer) -> Session? {
        guard let s = open(Session.self, value, name: sessionCookieName, binding: binding, with: sealer), s.binding == binding else {
            return nil
        }
        return s
    }

    static func associatedData(_ name: String, _ binding: String) -> String { binding.isEmpty ? name : name + "\n" + binding }

    /// `application/x-www-form-urlencoded` component escaping: RFC 3986's unreserved
    /// characters stay, everything else is %XX (the same as a backend path template's values).
    public static func formEscape(_ s: String) -> String { PathTemplate.escape(s) }

    public static func form(_ fields: [(String, String)]) -> String {
        fields.map { formEscape($0.0) + "=" + formEscape($0.1) }.joined(separator: "&")
    }

    /// The authorization request (RFC 6749 §4.1.1 with RFC 7636 and OIDC's `nonce`).
    public static func authorizeURL(
        endpoint: String, clientID: String, redirectURI: String, scopes: [String], state: String, nonce: String, verifier: String
    ) -> String {
        let query = form([
            ("response_type", "code"), ("client_id", clientID), ("redirect_uri", redirectURI), ("scope", scopes.joined(separator: " ")),
            ("state", state), ("nonce", nonce), ("code_challenge", PKCE.challenge(for: verifier)), ("code_challenge_method", "S256"),
        ])
        return endpoint + (endpoint.contains("?") ? "&" : "?") + query
    }

    /// How the client authenticates at the token endpoint.
    public enum ClientAuth: Sendable, Equatable {
        /// A public client: `client_id` in the form, no secret.
        case none
        case basic(secret: String)
        case post(secret: String)
    }

    /// The token request's form body and extra headers for a grant.
    public static func tokenRequest(
        grant: [(String, String)], clientID: String, auth: ClientAuth
    ) -> (body: String, headers: [(String, String)]) {
        var fields = grant
        var headers: [(String, String)] = [
            ("content-type", "application/x-www-form-urlencoded"), ("accept", "application/json"),
        ]
        switch auth {
        case .none:
            fields.append(("client_id", clientID))
        case .post(let secret):
            fields.append(("client_id", clientID))
            fields.append(("client_secret", secret))
        case .basic(let secret):
            // RFC 6749 §2.3.1: both parts form-encoded, then base64.
            let pair = formEscape(clientID) + ":" + formEscape(secret)
            headers.append(("authorization", "Basic " + Data(pair.utf8).base64EncodedString()))
        }
        return (form(fields), headers)
    }

    public static func codeGrant(code: String, redirectURI: String, verifier: String) -> [(String, String)] {
        [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI), ("code_verifier", verifier)]
    }

    public static func refreshGrant(_ refreshToken: String) -> [(String, String)] {
        [("grant_type", "refresh_token"), ("refresh_token", refreshToken)]
    }

    /// A successful token response (RFC 6749 §5.1).
    public struct Tokens: Sendable, Equatable {
        public var accessToken: String
        public var refreshToken: String?
        public var idToken: String?
        public var expiresIn: Double?
        public init(accessToken: String, refreshToken: String?, idToken: String?, expiresIn: Double?) {
            self.accessToken = accessToken
            self.refreshToken = refreshToken
            self.idToken = idToken
            self.expiresIn = expiresIn
        }
    }

    public enum TokenError: Error, Equatable, CustomStringConvertible {
        /// The provider answered an error (`invalid_grant` and the like).
        case refused(String)
        case malformed
        public var description: String {
            switch self {
            case .refused(let e): return "the identity provider refused the request: \(e)"
            case .malformed: return "the identity provider's token response is not usable"
            }
        }
    }

    public static func parseTokens(status: Int, body: [UInt8]) -> Result<Tokens, TokenError> {
        let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        guard (200..<300).contains(status) else {
            return .failure(.refused((object?["error"] as? String) ?? "status \(status)"))
        }
        guard let object, let access = object["access_token"] as? String, !access.isEmpty else { return .failure(.malformed) }
        if let type = object["token_type"] as? String, type.lowercased() != "bearer" { return .failure(.malformed) }
        let expires = (object["expires_in"] as? NSNumber)?.doubleValue
        return .success(
            Tokens(
                accessToken: access, refreshToken: object["refresh_token"] as? String, idToken: object["id_token"] as? String,
                expiresIn: expires))
    }

    /// The ID token checked as OIDC Core §3.1.3.7 asks: signature, `iss` and expiry by the
    /// provider's verifier with `aud` the client id, then `nonce` equal to the login's.
    public static func checkIDToken(
        _ token: String, verifier: TokenVerifier, clientID: String, nonce: String, keys: KeySet, now: Double
    ) -> Result<Identity, AuthFailure> {
        switch verifier.with(audiences: [clientID]).verify(token, keys: keys, now: now) {
        case .valid(let identity):
            guard case .string(let n)? = identity.claims["nonce"], constantTimeEquals(Array(n.utf8), Array(nonce.utf8)) else {
                return .failure(.nonce)
            }
            return .success(identity)
        case .invalid(let failure): return .failure(failure)
        case .unknownKid: return .failure(.unknownKid)
        }
    }
}

extension TokenVerifier {
    /// The same checks with other audiences (an ID token's audience is the client id).
    public func with(audiences: Set<String>) -> TokenVerifier {
        var copy = self
        copy.audiences = audiences
        return copy
    }
}
