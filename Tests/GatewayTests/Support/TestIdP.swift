import Crypto
import Foundation
import GatewayAuth
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import _CryptoExtras

/// Signing keys made by the test, and tokens signed with them, independently of the gateway's
/// JWT library: swift-crypto signs, the gateway (jwt-kit) verifies.
enum SigningKey: Sendable {
    case p256(P256.Signing.PrivateKey)
    case p384(P384.Signing.PrivateKey)
    case ed25519(Curve25519.Signing.PrivateKey)
    case rsa(_RSA.Signing.PrivateKey)
    case hmac([UInt8])

    /// RSA keys take a while to generate: the tests share two.
    static let rsaA: _RSA.Signing.PrivateKey? = try? _RSA.Signing.PrivateKey(keySize: .bits2048)
    static let rsaB: _RSA.Signing.PrivateKey? = try? _RSA.Signing.PrivateKey(keySize: .bits2048)

    static func forAlgorithm(_ alg: String) -> SigningKey? {
        switch alg {
        case "ES256": return .p256(P256.Signing.PrivateKey())
        case "ES384": return .p384(P384.Signing.PrivateKey())
        case "EdDSA": return .ed25519(Curve25519.Signing.PrivateKey())
        case "HS256", "HS384", "HS512": return .hmac(Array(repeating: 0x5a, count: 64))
        default: return rsaA.map { .rsa($0) }
        }
    }

    /// The public JWK (no `alg` unless given).
    func jwk(kid: String, alg: String? = nil) -> [String: String] {
        var out: [String: String] = ["kid": kid, "use": "sig"]
        if let alg { out["alg"] = alg }
        switch self {
        case .p256(let k):
            let raw = Array(k.publicKey.x963Representation.dropFirst())
            out.merge(["kty": "EC", "crv": "P-256", "x": Base64URL.encode(raw[0..<32]), "y": Base64URL.encode(raw[32...])]) { $1 }
        case .p384(let k):
            let raw = Array(k.publicKey.x963Representation.dropFirst())
            out.merge(["kty": "EC", "crv": "P-384", "x": Base64URL.encode(raw[0..<48]), "y": Base64URL.encode(raw[48...])]) { $1 }
        case .ed25519(let k):
            out.merge(["kty": "OKP", "crv": "Ed25519", "x": Base64URL.encode(k.publicKey.rawRepresentation)]) { $1 }
        case .rsa(let k):
            if let p = try? k.publicKey.getKeyPrimitives() {
                out.merge(["kty": "RSA", "n": Base64URL.encode(p.modulus), "e": Base64URL.encode(p.publicExponent)]) { $1 }
            }
        case .hmac:
            out["kty"] = "oct"
        }
        return out
    }

    func sign(_ input: [UInt8], alg: String) -> [UInt8] {
        switch self {
        case .p256(let k): return (try? Array(k.signature(for: input).rawRepresentation)) ?? []
        case .p384(let k): return (try? Array(k.signature(for: input).rawRepresentation)) ?? []
        case .ed25519(let k): return (try? Array(k.signature(for: input))) ?? []
        case .rsa(let k):
            let padding: _RSA.Signing.Padding = alg.hasPrefix("PS") ? .PSS : .insecurePKCS1v1_5
            let sig: _RSA.Signing.RSASignature?
            switch alg.suffix(3) {
            case "384": sig = try? k.signature(for: SHA384.hash(data: input), padding: padding)
            case "512": sig = try? k.signature(for: SHA512.hash(data: input), padding: padding)
            default: sig = try? k.signature(for: SHA256.hash(data: input), padding: padding)
            }
            return sig.map { Array($0.rawRepresentation) } ?? []
        case .hmac(let secret): return Self.hmac(secret, input, alg: alg)
        }
    }

    static func hmac(_ secret: [UInt8], _ input: [UInt8], alg: String) -> [UInt8] {
        let key = SymmetricKey(data: secret)
        switch alg {
        case "HS384": return Array(HMAC<SHA384>.authenticationCode(for: input, using: key))
        case "HS512": return Array(HMAC<SHA512>.authenticationCode(for: input, using: key))
        default: return Array(HMAC<SHA256>.authenticationCode(for: input, using: key))
        }
    }
}

enum Mint {
    /// A compact JWS with the given header and claims, signed by `key` (or by `signer` when given).
    static func token(
        alg: String, kid: String?, key: SigningKey, claims: [String: Any], extraHeader: [String: Any] = [:],
        signer: (([UInt8]) -> [UInt8])? = nil
    ) -> String {
        var header: [String: Any] = ["alg": alg, "typ": "JWT"]
        if let kid { header["kid"] = kid }
        header.merge(extraHeader) { $1 }
        let h = Base64URL.encode((try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data())
        let p = Base64URL.encode((try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])) ?? Data())
        let input = Array("\(h).\(p)".utf8)
        let sig = signer?(input) ?? key.sign(input, alg: alg)
        return "\(h).\(p).\(Base64URL.encode(sig))"
    }

    static let issuer = "https://idp.test"
    static let audience = "api"

    /// Claims valid for the next ten minutes.
    static func claims(sub: String = "alice", extra: [String: Any] = [:]) -> [String: Any] {
        let now = Int(Date().timeIntervalSince1970)
        var c: [String: Any] = ["iss": issuer, "aud": audience, "sub": sub, "iat": now - 10, "nbf": now - 10, "exp": now + 600]
        c.merge(extra) { $1 }
        return c
    }

    static func jwks(_ keys: [[String: String]]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: ["keys": keys], options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

/// A JWKS endpoint on loopback: serves the current document at any path, counts the
/// requests, can be slowed down, and can be started on a port chosen in advance.
final class JWKSServer: Sendable {
    let document: Mutex<String>
    let requests = Atomic<Int>(0)
    let delayMillis = Atomic<Int>(0)
    private let boundPort = Atomic<Int>(0)
    private let channel: Mutex<(any Channel)?> = Mutex(nil)
    let group: any EventLoopGroup

    init(document: String, group: any EventLoopGroup, port: Int = 0) {
        self.document = Mutex(document)
        self.group = group
        boundPort.store(port, ordering: .relaxed)
    }

    static func start(document: String, group: any EventLoopGroup) async throws -> JWKSServer {
        let s = JWKSServer(document: document, group: group)
        try await s.listen()
        return s
    }

    var port: Int { boundPort.load(ordering: .relaxed) }

    /// Starts listening on `port` (an ephemeral one when it is 0).
    func listen() async throws {
        let ch = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(server: self))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        boundPort.store(ch.localAddress?.port ?? 0, ordering: .relaxed)
        channel.withLock { $0 = ch }
    }

    var url: String { "http://127.0.0.1:\(port)/.well-known/jwks.json" }

    func set(_ doc: String) { document.withLock { $0 = doc } }

    func stop() async {
        let ch = channel.withLock { c -> (any Channel)? in
            defer { c = nil }
            return c
        }
        try? await ch?.close()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: JWKSServer
        init(server: JWKSServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            server.requests.add(1, ordering: .relaxed)
            let body = server.document.withLock { $0 }
            let delay = server.delayMillis.load(ordering: .relaxed)
            let respond = {
                var h = HTTPHeaders()
                h.add(name: "content-type", value: "application/json")
                h.add(name: "content-length", value: String(body.utf8.count))
                // One request per connection: when the server stops, nothing it accepted lives on.
                h.add(name: "connection", value: "close")
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: h))), promise: nil)
                context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
            if delay > 0 {
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(delay))) { respond() }
            } else {
                respond()
            }
        }
    }
}
