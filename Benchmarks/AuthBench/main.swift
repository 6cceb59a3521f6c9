// Measures what a JWT costs the gateway per request, with the gateway's own code:
//   cold   — a signature check and the claim checks (`TokenVerifier.verify`), per algorithm
//   cached — what a repeated token costs instead: its keyed hash and a cache lookup
// Run: swift run -c release auth-bench [--iterations N]
//      swift run -c release auth-bench --mint DIR   (writes DIR/jwks.json and DIR/token for
//                                                  Benchmarks/route-cost.sh jwt)
import Crypto
import Foundation
import GatewayAuth
import GatewayConfig
import _CryptoExtras

func base64URL(_ bytes: some Sequence<UInt8>) -> String { Base64URL.encode(bytes) }

struct Key {
    var alg: String
    var jwk: [String: String]
    var sign: ([UInt8]) -> [UInt8]
}

func makeKeys() throws -> [Key] {
    var out: [Key] = []
    let p256 = P256.Signing.PrivateKey()
    let raw = Array(p256.publicKey.x963Representation.dropFirst())
    out.append(
        Key(
            alg: "ES256", jwk: ["kty": "EC", "crv": "P-256", "kid": "ES256", "x": base64URL(raw[0..<32]), "y": base64URL(raw[32...])],
            sign: { (try? Array(p256.signature(for: $0).rawRepresentation)) ?? [] }))
    let p384 = P384.Signing.PrivateKey()
    let raw384 = Array(p384.publicKey.x963Representation.dropFirst())
    out.append(
        Key(
            alg: "ES384",
            jwk: ["kty": "EC", "crv": "P-384", "kid": "ES384", "x": base64URL(raw384[0..<48]), "y": base64URL(raw384[48...])],
            sign: { (try? Array(p384.signature(for: $0).rawRepresentation)) ?? [] }))
    let ed = Curve25519.Signing.PrivateKey()
    out.append(
        Key(
            alg: "EdDSA", jwk: ["kty": "OKP", "crv": "Ed25519", "kid": "EdDSA", "x": base64URL(ed.publicKey.rawRepresentation)],
            sign: { (try? Array(ed.signature(for: $0))) ?? [] }))
    let rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
    let prim = try rsa.publicKey.getKeyPrimitives()
    for (alg, padding) in [("RS256", _RSA.Signing.Padding.insecurePKCS1v1_5), ("PS256", .PSS)] {
        out.append(
            Key(
                alg: alg, jwk: ["kty": "RSA", "kid": alg, "n": base64URL(prim.modulus), "e": base64URL(prim.publicExponent)],
                sign: { (try? Array(rsa.signature(for: SHA256.hash(data: $0), padding: padding).rawRepresentation)) ?? [] }))
    }
    return out
}

func token(_ key: Key, sub: String, lifetime: Int) -> String {
    let now = Int(Date().timeIntervalSince1970)
    let header: [String: Any] = ["alg": key.alg, "kid": key.alg, "typ": "JWT"]
    let claims: [String: Any] = [
        "iss": "https://idp.bench", "aud": "api", "sub": sub, "iat": now, "nbf": now, "exp": now + lifetime, "scope": "bench:read",
        "tier": "pro",
    ]
    let h = base64URL((try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data())
    let p = base64URL((try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])) ?? Data())
    return "\(h).\(p).\(base64URL(key.sign(Array("\(h).\(p)".utf8))))"
}

func jwks(_ keys: [Key]) -> Data {
    (try? JSONSerialization.data(withJSONObject: ["keys": keys.map(\.jwk)], options: [.sortedKeys])) ?? Data()
}

let args = CommandLine.arguments
let keys = try makeKeys()

if let i = args.firstIndex(of: "--mint"), i + 1 < args.count {
    let dir = URL(fileURLWithPath: args[i + 1])
    try jwks(keys).write(to: dir.appendingPathComponent("jwks.json"))
    let es = keys[0]
    try Data(token(es, sub: "bench-user", lifetime: 86400).utf8).write(to: dir.appendingPathComponent("token"))
    print("wrote \(dir.path)/jwks.json and \(dir.path)/token (ES256, valid 24h)")
    exit(0)
}

let iterations = args.firstIndex(of: "--iterations").flatMap { Int(args[$0 + 1]) } ?? 2000
let jwksPath = FileManager.default.temporaryDirectory.appendingPathComponent("auth-bench-\(getpid()).json")
try jwks(keys).write(to: jwksPath)
defer { try? FileManager.default.removeItem(at: jwksPath) }
var provider = AuthSection.JWTProvider(
    issuer: "https://idp.bench", audiences: ["api"], jwksFile: jwksPath.path, algorithms: keys.map(\.alg),
    forwardClaims: ["sub": "x-user-id", "tier": "x-user-tier"])
provider.clockSkew = .seconds(60)
let file = GatewayFile(listeners: [], upstreams: [:], routes: [], auth: AuthSection(jwt: ["bench": provider]))
let snapshot = Snapshot(file: file, version: "bench")
let verifier = TokenVerifier(spec: snapshot.jwtProviders[0])
let keySet = try await KeySet.fromJWKS(Array(jwks(keys)), allowed: Set(keys.map(\.alg)))
let registry = AuthRegistry(environment: [:])
let runtime = registry.providers(for: snapshot)[0]
registry.stopAll()

func measure(_ n: Int, _ body: () -> Void) -> Double {
    for _ in 0..<max(1, n / 10) { body() }  // warm-up
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<n { body() }
    return Double(DispatchTime.now().uptimeNanoseconds - start) / Double(n) / 1000
}

print("JWT verification cost per request (µs), \(iterations) iterations, release build")
print("| algorithm | token bytes | cold: signature + claims | cached: keyed hash + lookup |")
print("|---|---:|---:|---:|")
let now = Date().timeIntervalSince1970
for key in keys {
    let t = token(key, sub: "user-\(key.alg)", lifetime: 3600)
    guard case .valid = verifier.verify(t, keys: keySet, now: now) else {
        print("| \(key.alg) | verification failed |")
        continue
    }
    let cold = measure(key.alg.hasPrefix("RS") || key.alg.hasPrefix("PS") ? iterations / 2 : iterations) {
        _ = verifier.verify(t, keys: keySet, now: now)
    }
    let cache = VerifiedTokenCache()
    if case .valid(let id) = verifier.verify(t, keys: keySet, now: now) {
        cache.insert(id, provider: runtime, digest: TokenDigest(t), keyGeneration: runtime.store.generation, now: now)
    }
    var hits = 0
    let cached = measure(iterations * 50) {
        if cache.lookup(provider: runtime, digest: TokenDigest(t[...]), now: now) != nil { hits += 1 }
    }
    print("| \(key.alg) | \(t.utf8.count) | \(String(format: "%.1f", cold)) | \(String(format: "%.2f", cached)) |")
    precondition(hits > 0)
}
