import Foundation
import JWTKit

/// The verification keys of one provider at one moment: for each `kid`, the algorithms its
/// key may verify, each with its verifier. Built from a JWKS document (or an HMAC secret)
/// and never changed: a refresh builds a new one.
public final class KeySet: Sendable {
    /// kid → algorithm name → verifier. Keys without a `kid` are under "".
    let verifiers: [String: [String: any JWTAlgorithm]]
    /// Key ids held, sorted (for `/jwks`).
    public let keyIDs: [String]
    /// Identifies the key material, to tell a changed document from the same one fetched again.
    public let fingerprint: String
    /// Keys of the document that were skipped, with why (shown in `/jwks`).
    public let skipped: [String]

    init(verifiers: [String: [String: any JWTAlgorithm]], fingerprint: String, skipped: [String]) {
        self.verifiers = verifiers
        self.keyIDs = verifiers.keys.sorted()
        self.fingerprint = fingerprint
        self.skipped = skipped
    }

    public static let empty = KeySet(verifiers: [:], fingerprint: "", skipped: [])

    public var isEmpty: Bool { verifiers.isEmpty }

    /// The algorithms a key of this JSON Web Key type can verify, by the key's own parameters.
    static func algorithms(kty: String, crv: String?) -> Set<String> {
        switch kty {
        case "RSA": return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
        case "EC":
            switch crv {
            case "P-256": return ["ES256"]
            case "P-384": return ["ES384"]
            default: return []
            }
        case "OKP": return crv == "Ed25519" ? ["EdDSA"] : []
        default: return []  // `oct` keys never come from a JWKS: HMAC needs a configured secret
        }
    }

    /// RSA keys below this size are refused (NIST SP 800-131A).
    static let minRSABits = 2048

    /// Builds the verifiers for the keys of a JWKS document that fit `allowed` algorithms.
    /// Throws when the document is not a JWKS; keys that cannot be used are listed in `skipped`.
    public static func fromJWKS(_ data: [UInt8], allowed: Set<String>) async throws -> KeySet {
        guard let root = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any],
            let keys = root["keys"] as? [[String: Any]]
        else {
            throw KeySetError("the document is not a JWKS (a JSON object with a `keys` array)")
        }
        var verifiers: [String: [String: any JWTAlgorithm]] = [:]
        var skipped: [String] = []
        var material: [String] = []
        for (i, var key) in keys.enumerated() {
            let kid = key["kid"] as? String ?? ""
            let label = kid.isEmpty ? "keys[\(i)]" : "kid \(kid)"
            guard let kty = key["kty"] as? String else {
                skipped.append("\(label): no kty")
                continue
            }
            if let use = key["use"] as? String, use != "sig" {
                skipped.append("\(label): use is \(use)")
                continue
            }
            var algs = algorithms(kty: kty, crv: key["crv"] as? String).intersection(allowed)
            if let alg = key["alg"] as? String { algs = algs.intersection([alg]) }
            if algs.isEmpty {
                skipped.append(
                    "\(label): no configured algorithm fits a \(kty) key\((key["alg"] as? String).map { " with alg \($0)" } ?? "")")
                continue
            }
            if kty == "RSA", let n = key["n"] as? String, let bytes = Base64URL.decode(n) {
                let bits = (bytes.drop { $0 == 0 }.count) * 8
                if bits < minRSABits {
                    skipped.append("\(label): RSA key of \(bits) bits is below \(minRSABits)")
                    continue
                }
            }
            key["d"] = nil  // a private key in a public document is never used to sign
            key["p"] = nil
            key["q"] = nil
            var table: [String: any JWTAlgorithm] = verifiers[kid] ?? [:]
            for alg in algs.sorted() {
                key["alg"] = alg
                key["kid"] = "k"
                do {
                    let json = try JSONSerialization.data(withJSONObject: key, options: [.sortedKeys])
                    let jwk = try JSONDecoder().decode(JWK.self, from: json)
                    let collection = JWTKeyCollection()
                    try await collection.add(jwk: jwk)
                    table[alg] = try await collection.getKey(for: JWKIdentifier(string: "k"), alg: alg)
                } catch {
                    skipped.append("\(label): not a valid \(alg) key")
                }
            }
            if !table.isEmpty {
                verifiers[kid] = table
                key["kid"] = kid
                key["alg"] = nil
                let json = (try? JSONSerialization.data(withJSONObject: key, options: [.sortedKeys])) ?? Data()
                material.append(kid + "|" + table.keys.sorted().joined(separator: ",") + "|" + String(decoding: json, as: UTF8.self))
            }
        }
        return KeySet(verifiers: verifiers, fingerprint: material.sorted().joined(separator: "\n"), skipped: skipped)
    }

    /// Verifiers for a shared secret: each configured HS algorithm whose hash the secret is at
    /// least as long as (RFC 7518 §3.2); any `kid` (or none) selects them.
    public static func fromSecret(_ secret: [UInt8], allowed: Set<String>) async -> KeySet {
        let collection = JWTKeyCollection()
        var table: [String: any JWTAlgorithm] = [:]
        for (alg, digest, bytes) in [("HS256", DigestAlgorithm.sha256, 32), ("HS384", .sha384, 48), ("HS512", .sha512, 64)]
        where allowed.contains(alg) && secret.count >= bytes {
            let kid = JWKIdentifier(string: alg)
            await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: digest, kid: kid)
            if let v = try? await collection.getKey(for: kid) { table[alg] = v }
        }
        let fp = SHA256Hex.of(secret)
        return KeySet(verifiers: table.isEmpty ? [:] : ["": table], fingerprint: fp, skipped: [])
    }

    /// The verifier for a token's header, or why there is none.
    func verifier(kid: String?, alg: String) -> (any JWTAlgorithm)? {
        if let table = verifiers[kid ?? ""], let v = table[alg] { return v }
        // A token without `kid` may use the only key that fits its algorithm.
        if kid == nil {
            var found: (any JWTAlgorithm)?
            for table in verifiers.values {
                if let v = table[alg] {
                    if found != nil { return nil }
                    found = v
                }
            }
            return found
        }
        // An HMAC provider: its secret verifies whatever `kid` the token names.
        if verifiers.count == 1, let table = verifiers[""], alg.hasPrefix("HS") { return table[alg] }
        return nil
    }

    func knows(kid: String) -> Bool {
        verifiers[kid] != nil || (verifiers.count == 1 && verifiers[""]?.keys.contains { $0.hasPrefix("HS") } == true)
    }
}

public struct KeySetError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// base64url without padding (RFC 7515 §2).
public enum Base64URL {
    /// A byte of the base64url alphabet: letters, digits, `-` and `_`.
    public static func isAlphabet(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"):
            return true
        default: return false
        }
    }

    public static func decode<S: StringProtocol>(_ text: S) -> [UInt8]? {
        var s = String(text).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        if s.contains("=") { return nil }
        while s.utf8.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s).map { [UInt8]($0) }
    }

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
