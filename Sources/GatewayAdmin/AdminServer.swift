import GatewayConfig
import GatewayProxy
import NIOCore
import NIOHTTP1
import NIOPosix

/// The admin API of SPEC §5. This version serves `/healthz` and `/readyz`; the other paths
/// answer 404 in the error format of SPEC §4.
public final class AdminServer: Sendable {
    public let channel: any Channel

    /// `isReady` is asked on every `/readyz`.
    public static func start(
        address: HostPort, group: any EventLoopGroup, isReady: @escaping @Sendable () -> Bool
    ) async throws -> AdminServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(isReady: isReady))
                }
            }
            .bind(host: address.host, port: address.port).get()
        return AdminServer(channel: channel)
    }

    init(channel: any Channel) { self.channel = channel }

    public var port: Int { channel.localAddress?.port ?? 0 }

    public func stop() async { try? await channel.close() }
}

final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let isReady: @Sendable () -> Bool
    private var head: HTTPRequestHead?

    init(isReady: @escaping @Sendable () -> Bool) { self.isReady = isReady }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
            switch (head.method, path) {
            case (.GET, "/healthz"), (.HEAD, "/healthz"):
                write(context, head, .ok, "{\"status\":\"ok\"}")
            case (.GET, "/readyz"), (.HEAD, "/readyz"):
                if isReady() {
                    write(context, head, .ok, "{\"status\":\"ready\"}")
                } else {
                    write(context, head, .serviceUnavailable, "{\"status\":\"not_ready\"}")
                }
            case (_, "/healthz"), (_, "/readyz"):
                write(
                    context, head, .methodNotAllowed, GatewayError.methodNotAllowed().body(requestID: ""), extra: [("allow", "GET, HEAD")])
            default:
                write(context, head, .notFound, GatewayError(.notFound, "no_route", "no admin endpoint at \(path)").body(requestID: ""))
            }
        }
    }

    private func write(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String,
        extra: [(String, String)] = []
    ) {
        var h = HTTPHeaders()
        h.add(name: "content-type", value: "application/json")
        h.add(name: "content-length", value: String(body.utf8.count))
        for (n, v) in extra { h.add(name: n, value: v) }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: h))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
