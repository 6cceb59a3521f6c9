import Foundation
import GatewayAuth
import GatewayConfig
import NIOCore
import NIOPosix
import Synchronization
import Testing
import _CryptoExtras

/// The verification logic without sockets: an injected `now`, keys made here.
@Suite struct TokenVerifierTests {
    static let now = 1_800_000_000.0

    static func verifier(
        skew: String = "60s", issuer: String? = Mint.issuer, audiences: [String] = [Mint.audience], algs: [String] = ["ES256"]
    )
        -> TokenVerifier
    {
        var p = AuthSection.JWTProvider(issuer: issuer, audiences: audiences, jwksURI: "http://x/jwks", algorithms: algs)
        p.clockSkew = ConfigDuration(parsing: skew) ?? .seconds(60)
        p.forwardClaims = ["sub": "x-user-id", "tier": "x-user-tier"]
        let file = GatewayFile(listeners: [], upstreams: [:], routes: [], auth: AuthSection(jwt: ["idp": p]))
        return TokenVerifier(spec: Snapshot(file: file, version: "t").jwtProviders[0])
    }

    static func claims(_ extra: [String: Any] = [:]) -> [String: Any] {
        var c: [String: Any] = ["iss": Mint.issuer, "aud": Mint.audience, "sub": "alice", "exp": Int(now) + 300, "iat": Int(now) - 10]
        c.merge(extra) { $1 }
        return c
    }

    func reason(_ outcome: TokenVerifier.Outcome) -> String {
        switch outcome {
        case .valid: return "valid"
        case .invalid(let f): return f.rawValue
        case .unknownKid(let k): return "unknown_kid:\(k)"
        }
    }

    @Test func claimsAreCheckedWithTheSkew() async throws {
        let key = SigningKey.p256(.init())
        let keys = try await KeySet.fromJWKS(Array(Mint.jwks([key.jwk(kid: "k")]).utf8), allowed: ["ES256"])
        let v = Self.verifier(skew: "30s")
        func check(_ extra: [String: Any], at now: Double = Self.now) -> String {
            reason(v.verify(Mint.token(alg: "ES256", kid: "k", key: key, claims: Self.claims(extra)), keys: keys, now: now))
        }
        let n = Int(Self.now)
        #expect(check([:]) == "valid")
        #expect(check(["exp": n - 29]) == "valid")  // within the skew
        #expect(check(["exp": n - 31]) == "expired")
        #expect(check(["nbf": n + 29]) == "valid")
        #expect(check(["nbf": n + 31]) == "not_yet_valid")
        #expect(check(["iat": n + 31]) == "iat_in_future")
        #expect(check(["iss": "https://other"]) == "issuer")
        #expect(check(["aud": ["x", Mint.audience]]) == "valid")
        #expect(check(["aud": ["x", "y"]]) == "audience")
        #expect(check(["exp": "tomorrow"]) == "malformed")
        var noExp = Self.claims()
        noExp["exp"] = nil
        #expect(reason(v.verify(Mint.token(alg: "ES256", kid: "k", key: key, claims: noExp), keys: keys, now: Self.now)) == "missing_exp")
        // Forwarded claims: only those present, as text.
        if case .valid(let id) = v.verify(
            Mint.token(alg: "ES256", kid: "k", key: key, claims: Self.claims(["tier": "pro"])), keys: keys, now: Self.now)
        {
            #expect(id.forwarded.map { "\($0.0)=\($0.1)" } == ["x-user-id=alice", "x-user-tier=pro"])
            #expect(id.validUntil == Self.now + 300 + 30)
        } else {
            Issue.record("valid token refused")
        }
        // A claim value cannot smuggle a header line.
        if case .valid(let id) = v.verify(
            Mint.token(alg: "ES256", kid: "k", key: key, claims: Self.claims(["sub": "a\r\nx-admin: 1"])), keys: keys, now: Self.now)
        {
            #expect(id.forwarded.isEmpty)
        }
    }

    @Test func algorithmMustFitTheKey() async throws {
        guard let rsa = SigningKey.forAlgorithm("RS256") else { return }
        let ec = SigningKey.p256(.init())
        let p384 = SigningKey.p384(.init())
        // Even when HS256 is allowed, an RSA or EC key from a JWKS never verifies HMAC.
        let doc = Mint.jwks([
            rsa.jwk(kid: "rsa"), ec.jwk(kid: "ec"), p384.jwk(kid: "p384", alg: "ES256"), ["kty": "oct", "kid": "sym", "k": "c2VjcmV0"],
        ])
        let keys = try await KeySet.fromJWKS(Array(doc.utf8), allowed: ["RS256", "ES256", "HS256"])
        #expect(keys.keyIDs == ["ec", "rsa"])
        #expect(keys.skipped.count == 2)  // the P-384 key labelled ES256, the oct key
        let v = Self.verifier(algs: ["RS256", "ES256", "HS256"])
        let jwkText = Array(Mint.jwks([rsa.jwk(kid: "rsa")]).utf8)
        let confused = Mint.token(
            alg: "HS256", kid: "rsa", key: rsa, claims: Self.claims(), signer: { SigningKey.hmac(jwkText, $0, alg: "HS256") })
        #expect(reason(v.verify(confused, keys: keys, now: Self.now)) == "algorithm")
        let swapped = Mint.token(alg: "ES256", kid: "rsa", key: ec, claims: Self.claims())
        #expect(reason(v.verify(swapped, keys: keys, now: Self.now)) == "algorithm")
        let none = Mint.token(alg: "none", kid: "ec", key: ec, claims: Self.claims(), signer: { _ in [] })
        #expect(reason(v.verify(none, keys: keys, now: Self.now)) == "algorithm")
        #expect(
            reason(v.verify(Mint.token(alg: "RS256", kid: "rsa", key: rsa, claims: Self.claims()), keys: keys, now: Self.now)) == "valid")
        #expect(
            reason(v.verify(Mint.token(alg: "ES256", kid: "gone", key: ec, claims: Self.claims()), keys: keys, now: Self.now))
                == "unknown_kid:gone")
        let crit = Mint.token(alg: "ES256", kid: "ec", key: ec, claims: Self.claims(), extraHeader: ["crit": ["exp"]])
        #expect(reason(v.verify(crit, keys: keys, now: Self.now)) == "malformed")
        #expect(reason(v.verify(String(repeating: "a", count: 9000), keys: keys, now: Self.now)) == "too_large")
    }

    @Test func smallRSAKeysAreRefused() async throws {
        let small = try _RSAKey1024()
        let keys = try await KeySet.fromJWKS(Array(Mint.jwks([small]).utf8), allowed: ["RS256"])
        #expect(keys.isEmpty)
        #expect(keys.skipped.first?.contains("below 2048") == true)
    }

    @Test func cacheExpiresBoundsAndFollowsKeyChanges() async throws {
        let registry = AuthRegistry(environment: ["S": String(repeating: "k", count: 40)])
        let p = AuthSection.JWTProvider(issuer: nil, audiences: [], algorithms: ["HS256"], hmacSecretEnv: "S")
        let snapshot = Snapshot(
            file: GatewayFile(listeners: [], upstreams: [:], routes: [], auth: AuthSection(jwt: ["hs": p])), version: "v")
        let provider = try #require(registry.providers(for: snapshot).first)
        defer { registry.stopAll() }
        let cache = VerifiedTokenCache(capacity: 16)
        func identity(until: Double) -> Identity {
            Identity(kind: .jwt, provider: "hs", subject: "a", claims: [:], scopes: [], forwarded: [], validUntil: until)
        }
        let gen = provider.store.generation
        cache.insert(identity(until: 100), provider: provider, digest: TokenDigest("t1"), keyGeneration: gen, now: 0)
        #expect(cache.lookup(provider: provider, digest: TokenDigest("t1"), now: 50) != nil)
        #expect(cache.lookup(provider: provider, digest: TokenDigest("t2"), now: 50) == nil)
        #expect(cache.lookup(provider: provider, digest: TokenDigest("t1"), now: 101) == nil, "expired with exp")
        // Bounded: never more than its capacity.
        for i in 0..<100 {
            cache.insert(identity(until: 1000), provider: provider, digest: TokenDigest("tok-\(i)"), keyGeneration: gen, now: 0)
            #expect(cache.count <= 16)
        }
        // Entries made with other keys are checked again.
        cache.insert(identity(until: 1000), provider: provider, digest: TokenDigest("t3"), keyGeneration: gen &+ 1, now: 0)
        #expect(cache.lookup(provider: provider, digest: TokenDigest("t3"), now: 1) == nil)
    }

    /// The cache's key: equal for equal tokens, different when one byte differs anywhere,
    /// and when only the length does (a trailing NUL), at every length around a word.
    @Test func tokenDigestsTellTokensApart() {
        var seen: [TokenDigest: [UInt8]] = [:]
        for length in 0..<40 {
            let base = (0..<length).map { UInt8(truncatingIfNeeded: 0x41 + $0 % 26) }
            var variants = [base, base + [0]]
            for i in 0..<length {
                var v = base
                v[i] ^= 1
                variants.append(v)
            }
            for v in variants {
                let token = String(decoding: v, as: UTF8.self)
                let d = TokenDigest(token)
                #expect(d == TokenDigest(token[...]), "a token and a slice of it hash alike")
                if let other = seen[d] {
                    #expect(other == v, "\(v) and \(other) share a digest")
                }
                seen[d] = v
            }
        }
        #expect(seen.count > 800)
    }

    @Test func unknownKidFetchesAtMostOnceEvery30Seconds() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clock = Mutex<Int64>(1_000_000_000_000)
        var spec = AuthSection.JWTProvider(jwksFile: "/nonexistent/jwks.json", algorithms: ["ES256"])
        spec.jwksRefresh = .seconds(3600)
        let file = GatewayFile(listeners: [], upstreams: [:], routes: [], auth: AuthSection(jwt: ["f": spec]))
        let s = Snapshot(file: file, version: "v").jwtProviders[0]
        let store = JWKSStore(settings: .init(s, environment: [:]), now: { NIODeadline.uptimeNanoseconds(UInt64(clock.withLock { $0 })) })
        let loop = group.next()
        let first = store.fetchForUnknownKid(on: loop)
        #expect(first != nil)
        try await first?.get()
        #expect(store.status.fetches == 1)
        clock.withLock { $0 += 29_000_000_000 }
        #expect(store.fetchForUnknownKid(on: loop) == nil, "29 s later: no fetch")
        clock.withLock { $0 += 2_000_000_000 }
        let third = store.fetchForUnknownKid(on: loop)
        #expect(third != nil, "31 s later: a fetch")
        try await third?.get()
        #expect(store.status.fetches == 2)
        try await group.shutdownGracefully()
    }

    @Test func apiKeyLookup() {
        let table = APIKeyTable(
            AuthSection.APIKeys(keys: [
                .init(id: "a", sha256: AuthTests.sha256Hex("alpha"), tier: "pro"), .init(id: "b", sha256: AuthTests.sha256Hex("beta")),
            ]))
        #expect(table.lookup("alpha")?.id == "a")
        #expect(table.lookup("beta")?.id == "b")
        #expect(table.lookup("gamma") == nil)
        #expect(table.lookup("") == nil)
        #expect(table.identity(table.entries[0]).claimText("tier") == "pro")
    }
}

/// A 1024-bit RSA public JWK (too small to be accepted), generated here.
private func _RSAKey1024() throws -> [String: String] {
    let k = try _RSA.Signing.PrivateKey(unsafeKeySize: .init(bitCount: 1024))
    let p = try k.publicKey.getKeyPrimitives()
    return ["kty": "RSA", "kid": "small", "n": Base64URL.encode(p.modulus), "e": Base64URL.encode(p.publicExponent)]
}
