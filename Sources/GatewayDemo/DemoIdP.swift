import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A stand-in identity provider for `gateway demo`: it publishes a JWKS with one ES256 key,
/// made at start, and signs tokens for whoever asks. It lets a newcomer try JWT routes with
/// curl; it checks nothing and must never stand in for a real identity provider.
///
/// - `GET /.well-known/jwks.json` — the public key
/// - `GET /token?sub=alice&scope=reports:read&tier=pro&ttl=600` — a signed access token, as text
public final class DemoIdP: Sendable {
    public let channel: any Channel
    public let issuer: String
    public static let audience = "gateway-demo"

    public static func start(host: String = "127.0.0.1", port: Int, group: any EventLoopGroup) async throws -> DemoIdP {
        let key = P256.Signing.PrivateKey()
        let kid = "demo-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let issuer = "http://\(host):\(port)"
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(key: key, kid: kid, issuer: issuer))
                }
            }
            .bind(host: host, port: port).get()
        return DemoIdP(channel: channel, issuer: issuer)
    }

    init(channel: any Channel, issuer: String) {
        self.channel = channel
        self.issuer = issuer
    }

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

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let key: P256.Signing.PrivateKey
        let kid: String
        let issuer: String
        var head: HTTPRequestHead?

        init(key: P256.Signing.PrivateKey, kid: String, issuer: String) {
            self.key = key
            self.kid = kid
            self.issuer = issuer
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let head else { return }
                self.head = nil
                let (status, type, body) = answer(head)
                var h = HTTPHeaders()
                h.add(name: "content-type", value: type)
                h.add(name: "content-length", value: String(body.utf8.count))
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: h))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }

        private func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, String) {
            let parts = head.uri.split(separator: "?", maxSplits: 1)
            var query: [String: String] = [:]
            for pair in (parts.count > 1 ? parts[1] : "").split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                guard let k = kv.first else { continue }
                query[String(k)] = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
            }
            switch parts.first ?? "/" {
            case "/.well-known/jwks.json":
                let raw = Array(key.publicKey.x963Representation.dropFirst())
                let jwk: [String: String] = [
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                    "x": DemoIdP.base64URL(raw[0..<32]), "y": DemoIdP.base64URL(raw[32...]),
                ]
                let data = (try? JSONSerialization.data(withJSONObject: ["keys": [jwk]], options: [.sortedKeys])) ?? Data()
                return (.ok, "application/json", String(decoding: data, as: UTF8.self))
            case "/token":
                let now = Int(Date().timeIntervalSince1970)
                let ttl = Int(query["ttl"] ?? "") ?? 600
                var claims: [String: Any] = [
                    "iss": issuer, "aud": DemoIdP.audience, "sub": query["sub"] ?? "alice", "iat": now, "nbf": now, "exp": now + ttl,
                ]
                if let s = query["scope"] { claims["scope"] = s.replacingOccurrences(of: "+", with: " ") }
                if let t = query["tier"] { claims["tier"] = t }
                return (.ok, "text/plain", DemoIdP.token(key: key, kid: kid, claims: claims))
            default:
                return (.notFound, "application/json", "{\"error\":\"no_route\",\"message\":\"try /token or /.well-known/jwks.json\"}")
            }
        }
    }
}
