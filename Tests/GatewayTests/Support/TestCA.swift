import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// A certificate authority made for one test with `openssl`: its CA certificate and a server
/// certificate for `localhost` (and 127.0.0.1 unless `ipSAN` is false) signed by it, as PEM
/// files in a temporary folder.
struct TestCA {
    let dir: URL
    var caFile: String { dir.appendingPathComponent("ca.pem").path }
    var certFile: String { dir.appendingPathComponent("server.pem").path }
    var keyFile: String { dir.appendingPathComponent("server.key").path }

    init(name: String = "localhost", ipSAN: Bool = true) async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "subjectAltName=DNS:\(name)\(ipSAN ? ",IP:127.0.0.1" : "")\n".write(
            to: dir.appendingPathComponent("ext.cnf"), atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try await Self.openssl(
            ["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Gateway Test CA"], in: dir)
        try await Self.openssl(["req"] + ec + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=\(name)"], in: dir)
        try await Self.openssl(
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days",
                "2", "-extfile", "ext.cnf",
            ], in: dir)
    }

    func remove() { try? FileManager.default.removeItem(at: dir) }

    static func openssl(_ args: [String], in dir: URL) async throws {
        let r = await Tool.run("/usr/bin/openssl", args, workingDirectory: dir.path)
        guard r.status == 0 else { throw RawHTTPClient.Failure(description: "openssl \(args.first ?? "") failed") }
    }
}

/// An HTTPS server on loopback that answers every request with `{"secure":true}`.
final class TLSUpstream: Sendable {
    let channel: any Channel
    var port: Int { channel.localAddress?.port ?? 0 }
    /// The `x-gateway-mirror` header ("" if none) of each request received over TLS.
    final class Received: Sendable {
        let values = Mutex<[String]>([])
    }
    let received: Received

    init(ca: TestCA, group: any EventLoopGroup) async throws {
        let config = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(ca.certFile).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: ca.keyFile, format: .pem)))
        let context = try NIOSSLContext(configuration: config)
        let received = Received()
        self.received = received
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Answer(received: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func stop() async { try? await channel.close() }

    private final class Answer: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let received: Received
        init(received: Received) { self.received = received }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head(let head) = unwrapInboundIn(data) {
                let mirror = head.headers.first(name: "x-gateway-mirror") ?? ""
                received.values.withLock { $0.append(mirror) }
            }
            guard case .end = unwrapInboundIn(data) else { return }
            let body = "{\"secure\":true}"
            var h = HTTPHeaders()
            h.add(name: "content-type", value: "application/json")
            h.add(name: "content-length", value: String(body.utf8.count))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: h))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }
}
