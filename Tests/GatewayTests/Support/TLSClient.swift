import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// One TLS connection to a listener, kept open across requests: HTTP/1.1 requests written as
/// raw bytes, answers read until their body arrives, and the certificate the server presented.
final class TLSClient: Sendable {
    let channel: any Channel
    private let received: NIOLockedValueBox<String>

    static func connect(port: Int, caFile: String, host: String = "localhost", group: any EventLoopGroup) async throws -> TLSClient {
        var config = TLSConfiguration.makeClientConfiguration()
        config.trustRoots = .file(caFile)
        config.applicationProtocols = ["http/1.1"]
        let context = try NIOSSLContext(configuration: config)
        let received = NIOLockedValueBox("")
        let channel = try await ClientBootstrap(group: group).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: host))
                try channel.pipeline.syncOperations.addHandler(Collector(received: received))
            }
        }.connect(host: "127.0.0.1", port: port).get()
        return TLSClient(channel: channel, received: received)
    }

    private init(channel: any Channel, received: NIOLockedValueBox<String>) {
        self.channel = channel
        self.received = received
    }

    /// GET `path` on this connection; what arrived once `expect` is in it (nil after 10 s).
    func get(_ path: String, expect: String) async throws -> String? {
        received.withLockedValue { $0 = "" }
        let request = "GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n"
        try await channel.writeAndFlush(channel.allocator.buffer(string: request))
        for _ in 0..<200 {
            let text = received.withLockedValue { $0 }
            if text.contains(expect) { return text }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return nil
    }

    /// SHA-256 of the DER of the certificate the server presented, in hex.
    func fingerprint() async throws -> String? {
        guard let cert = try await channel.nioSSL_peerCertificate().get() else { return nil }
        return SHA256.hash(data: try cert.toDERBytes()).map { String(format: "%02x", $0) }.joined()
    }

    func close() async { try? await channel.close() }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received: NIOLockedValueBox<String>
        init(received: NIOLockedValueBox<String>) { self.received = received }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let text = String(buffer: unwrapInboundIn(data))
            received.withLockedValue { $0 += text }
        }
    }
}

/// The SHA-256 fingerprint of a PEM certificate file (as `TLSClient.fingerprint` gives it).
func certificateFingerprint(_ pemFile: String) throws -> String? {
    guard let cert = try NIOSSLCertificate.fromPEMFile(pemFile).first else { return nil }
    return SHA256.hash(data: try cert.toDERBytes()).map { String(format: "%02x", $0) }.joined()
}
