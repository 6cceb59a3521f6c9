import Crypto
import GatewayConfig

/// Who a request was authenticated as. Immutable and shared: a cached verification hands
/// the same instance to every request that presents the same token.
public final class Identity: Sendable {
    public enum Kind: String, Sendable { case jwt, apiKey = "api_key", session }
    public let kind: Kind
    /// The JWT provider's name, or "api_key".
    public let provider: String
    /// `sub` of a token, the id of an API key.
    public let subject: String?
    public let claims: [String: JSONValue]
    public let scopes: Set<String>
    /// Headers set on the upstream request from the claims (`forward_claims`), lowercased names.
    public let forwarded: [(String, String)]
    /// Seconds since 1970 after which the credential is no longer valid (exp + skew).
    public let validUntil: Double

    public init(
        kind: Kind, provider: String, subject: String?, claims: [String: JSONValue], scopes: Set<String>, forwarded: [(String, String)],
        validUntil: Double
    ) {
        self.kind = kind
        self.provider = provider
        self.subject = subject
        self.claims = claims
        self.scopes = scopes
        self.forwarded = forwarded
        self.validUntil = validUntil
    }

    /// A claim as text: strings as they are, numbers and booleans printed, others as JSON.
    public func claimText(_ name: String) -> String? {
        claims[name].flatMap(Self.text)
    }

    static func text(_ v: JSONValue) -> String? {
        switch v {
        case .string(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .number(let n):
            if n.rounded() == n, abs(n) < 1e15 { return String(Int64(n)) }
            return String(n)
        case .null: return nil
        case .array(let a): return a.compactMap(text).joined(separator: ",")
        case .object: return nil
        }
    }

    /// Whether the claim holds one of `values` (for an array claim: any element does).
    public func claim(_ name: String, isOneOf values: [String]) -> Bool {
        guard let v = claims[name] else { return false }
        switch v {
        case .array(let items): return items.contains { item in Self.text(item).map(values.contains) ?? false }
        default: return Self.text(v).map(values.contains) ?? false
        }
    }
}

/// Why a credential was refused; the label of `gateway_auth_failures_total{reason}`.
public enum AuthFailure: String, Sendable, Error {
    case missing
    case malformed
    case tooLarge = "too_large"
    case algorithm
    case unknownKid = "unknown_kid"
    case noKeys = "no_keys"
    case signature
    case expired
    case missingExp = "missing_exp"
    case notYetValid = "not_yet_valid"
    case issuedInFuture = "iat_in_future"
    case issuer
    case audience
    case unknownKey = "unknown_key"
    case scope
    case claim
    /// An ID token whose `nonce` is not the one its login sent.
    case nonce

    /// The `error_description` of the `WWW-Authenticate` challenge.
    public var description: String {
        switch self {
        case .missing: return "no credentials"
        case .malformed: return "the token is malformed"
        case .tooLarge: return "the token is too large"
        case .algorithm: return "the token's algorithm is not accepted for its key"
        case .unknownKid: return "the token's key is unknown"
        case .noKeys: return "no verification keys are available"
        case .signature: return "the signature is invalid"
        case .expired: return "the token has expired"
        case .missingExp: return "the token has no expiry"
        case .notYetValid: return "the token is not valid yet"
        case .issuedInFuture: return "the token is issued in the future"
        case .issuer: return "the token's issuer is not accepted"
        case .audience: return "the token is not meant for this audience"
        case .unknownKey: return "the API key is not valid"
        case .scope: return "the credentials lack a required scope"
        case .claim: return "the credentials lack a required claim"
        case .nonce: return "the ID token's nonce is not this login's"
        }
    }
}

/// Equality of two secrets in time that depends only on their lengths, not on where they differ.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(truncatingIfNeeded: a.count ^ b.count)
    if a.count != b.count { diff |= 1 }
    let n = max(a.count, b.count)
    for i in 0..<n {
        let x = i < a.count ? a[i] : 0
        let y = i < b.count ? b[i] : 0
        diff |= x ^ y
    }
    return diff == 0
}

enum SHA256Hex {
    static func of(_ bytes: some Sequence<UInt8>) -> String {
        SHA256.hash(data: Array(bytes)).map { b in
            let h = String(b, radix: 16)
            return b < 16 ? "0" + h : h
        }.joined()
    }
}

/// The API keys of a snapshot, as sha256 digests.
public final class APIKeyTable: Sendable {
    public struct Entry: Sendable {
        public var id: String
        public var digest: [UInt8]
        public var tier: String?
    }
    public let header: String
    public let entries: [Entry]

    public init(_ config: AuthSection.APIKeys?) {
        header = (config?.header ?? "x-api-key").lowercased()
        entries = (config?.keys ?? []).compactMap { k in
            HexBytes.decode(k.sha256).map { Entry(id: k.id, digest: $0, tier: k.tier) }
        }
    }

    /// The key's entry: its sha256 is compared with every stored digest in constant time (no
    /// early exit, so the time does not tell how many keys were tried).
    public func lookup(_ key: some StringProtocol) -> Entry? {
        let digest = Array(SHA256.hash(data: Array(key.utf8)))
        var found: Entry?
        for e in entries where constantTimeEquals(e.digest, digest) && found == nil { found = e }
        return found
    }

    public func identity(_ e: Entry) -> Identity {
        var claims: [String: JSONValue] = ["sub": .string(e.id)]
        if let t = e.tier { claims["tier"] = .string(t) }
        return Identity(kind: .apiKey, provider: "api_key", subject: e.id, claims: claims, scopes: [], forwarded: [], validUntil: .infinity)
    }
}
