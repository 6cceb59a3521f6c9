import Foundation
import GatewayConfig
import JWTKit

/// Checks one compact JWS (RFC 7515/7519) against a provider's settings and keys. Synchronous:
/// a signature check runs where the request is, with no thread hop.
public struct TokenVerifier: Sendable {
    /// Tokens longer than this are refused before any decoding.
    public static let maxTokenBytes = 8 * 1024

    public let issuer: String?
    public internal(set) var audiences: Set<String>
    public let algorithms: Set<String>
    public let skew: Double
    public let provider: String
    public let forwardClaims: [(claim: String, header: String)]

    public init(spec: JWTProviderSpec) {
        issuer = spec.config.issuer
        audiences = Set(spec.config.audiences)
        algorithms = Set(spec.config.algorithms)
        skew = Double(spec.config.clockSkew.nanoseconds) / 1e9
        provider = spec.name
        forwardClaims = spec.forwardClaims
    }

    public enum Outcome {
        case valid(Identity)
        case invalid(AuthFailure)
        /// The token names a key the provider does not hold (yet).
        case unknownKid(String)
    }

    /// `now` is seconds since 1970.
    public func verify(_ token: some StringProtocol, keys: KeySet, now: Double) -> Outcome {
        let utf8 = token.utf8
        if utf8.count > Self.maxTokenBytes { return .invalid(.tooLarge) }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else { return .invalid(.malformed) }
        guard let headerBytes = Base64URL.decode(parts[0]),
            let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any]
        else { return .invalid(.malformed) }
        guard let alg = header["alg"] as? String else { return .invalid(.malformed) }
        // Critical extensions this verifier does not implement make the token unusable (RFC 7515 §4.1.11).
        if header["crit"] != nil { return .invalid(.malformed) }
        guard algorithms.contains(alg) else { return .invalid(.algorithm) }
        let kid: String?
        switch header["kid"] {
        case nil: kid = nil
        case let s as String: kid = s
        default: return .invalid(.malformed)
        }
        if keys.isEmpty { return .invalid(.noKeys) }
        if let kid, !keys.knows(kid: kid) { return .unknownKid(kid) }
        guard let verifier = keys.verifier(kid: kid, alg: alg) else { return .invalid(.algorithm) }
        guard !parts[2].isEmpty, let signature = Base64URL.decode(parts[2]) else { return .invalid(.signature) }
        let signingInput = Array(utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard (try? verifier.verify(signature, signs: signingInput)) == true else { return .invalid(.signature) }

        guard let payloadBytes = Base64URL.decode(parts[1]),
            let claims = try? JSONDecoder().decode([String: JSONValue].self, from: Data(payloadBytes))
        else { return .invalid(.malformed) }
        guard case .number(let exp)? = claims["exp"] else {
            return .invalid(claims["exp"] == nil ? .missingExp : .malformed)
        }
        if now > exp + skew { return .invalid(.expired) }
        if let v = claims["nbf"] {
            guard case .number(let nbf) = v else { return .invalid(.malformed) }
            if now + skew < nbf { return .invalid(.notYetValid) }
        }
        if let v = claims["iat"] {
            guard case .number(let iat) = v else { return .invalid(.malformed) }
            if iat > now + skew { return .invalid(.issuedInFuture) }
        }
        if let issuer {
            guard case .string(let iss)? = claims["iss"], iss == issuer else { return .invalid(.issuer) }
        }
        if !audiences.isEmpty {
            let ok: Bool
            switch claims["aud"] {
            case .string(let a)?: ok = audiences.contains(a)
            case .array(let list)?:
                ok = list.contains { if case .string(let a) = $0 { return audiences.contains(a) } else { return false } }
            default: ok = false
            }
            if !ok { return .invalid(.audience) }
        }
        var scopes = Set<String>()
        for name in ["scope", "scp"] {
            switch claims[name] {
            case .string(let s)?: for x in s.split(separator: " ") { scopes.insert(String(x)) }
            case .array(let a)?: for case .string(let s) in a { scopes.insert(s) }
            default: break
            }
        }
        var forwarded: [(String, String)] = []
        for f in forwardClaims {
            guard let v = claims[f.claim], let text = Identity.text(v) else { continue }
            // A claim value cannot smuggle a header line.
            if text.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) { continue }
            forwarded.append((f.header, text))
        }
        var subject: String?
        if case .string(let s)? = claims["sub"] { subject = s }
        return .valid(
            Identity(
                kind: .jwt, provider: provider, subject: subject, claims: claims, scopes: scopes, forwarded: forwarded,
                validUntil: exp + skew))
    }
}
