import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An upstream on a loopback socket whose behaviour a test changes while it runs: the
/// status it answers, how long it waits first, what `/healthz` says. It can be killed
/// (listener and every open connection closed at once, like a process that died) and
/// started again on the same port.
final class ControlledUpstream: Sendable {
    struct Behaviour: Sendable {
        var status = 200
        var delayMs = 0
        var healthStatus = 200
        /// Answer this body instead of the default JSON, with these extra header fields.
        var body: [UInt8]?
        var headers: [(String, String)] = []
    }

    let name: String
    /// Chosen by the system at the first bind, then kept for restarts.
    private let boundPort = NIOLockedValueBox(0)
    var port: Int { boundPort.withLockedValue { $0 } }
    private let group: any EventLoopGroup
    private let behaviour = NIOLockedValueBox(Behaviour())
    private let state = NIOLockedValueBox<(server: (any Channel)?, children: [ObjectIdentifier: any Channel])>((nil, [:]))
    private let counts = NIOLockedValueBox(
        (
            requests: 0, health: 0, methods: [String](), bodies: [Int](), mirrored: 0, uris: [String](), authorizations: [String](),
            headers: [HTTPHeaders](), trailers: [HTTPHeaders](), inFlight: 0, maxInFlight: 0
        ))

    private init(name: String, group: any EventLoopGroup) {
        self.name = name
        self.group = group
    }

    static func start(name: String, group: any EventLoopGroup) async throws -> ControlledUpstream {
        let u = ControlledUpstream(name: name, group: group)
        try await u.restart()
        return u
    }

    private static func bind(port: Int, group: any EventLoopGroup, owner: ControlledUpstream) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                owner.adopt(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(owner: owner))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
    }

    var url: String { "http://127.0.0.1:\(port)" }

    func set(_ change: (inout Behaviour) -> Void) { behaviour.withLockedValue(change) }
    var current: Behaviour { behaviour.withLockedValue { $0 } }
    var requests: Int { counts.withLockedValue { $0.requests } }
    var healthRequests: Int { counts.withLockedValue { $0.health } }
    var methods: [String] { counts.withLockedValue { $0.methods } }
    /// Body sizes of the requests (not health checks), in order.
    var bodies: [Int] { counts.withLockedValue { $0.bodies } }
    /// Request targets, in order.
    var uris: [String] { counts.withLockedValue { $0.uris } }
    /// The request headers of each request, in order.
    var headers: [HTTPHeaders] { counts.withLockedValue { $0.headers } }
    /// The most requests (not health checks) it was answering at one time.
    var maxInFlight: Int { counts.withLockedValue { $0.maxInFlight } }
    /// The request trailers of each request (empty when it had none), in order.
    var trailers: [HTTPHeaders] { counts.withLockedValue { $0.trailers } }
    /// `Authorization` values received (requests without one are not listed).
    var authorizations: [String] { counts.withLockedValue { $0.authorizations } }
    /// Requests marked `x-gateway-mirror: 1`.
    var mirrored: Int { counts.withLockedValue { $0.mirrored } }

    /// Listens (again, on the same port after the first time).
    func restart() async throws {
        let channel = try await Self.bind(port: port, group: group, owner: self)
        if port == 0 { boundPort.withLockedValue { $0 = channel.localAddress?.port ?? 0 } }
        state.withLockedValue { $0.server = channel }
    }

    /// Closes the listener and every open connection at once.
    func kill() async {
        let (server, children) = state.withLockedValue { s in
            defer { s = (nil, [:]) }
            return (s.server, Array(s.children.values))
        }
        try? await server?.close()
        for c in children { try? await c.close() }
    }

    private func adopt(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLockedValue { $0.children[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in _ = state.withLockedValue { $0.children.removeValue(forKey: id) } }
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let owner: ControlledUpstream
        var head: HTTPRequestHead?
        var bodyBytes = 0
        init(owner: ControlledUpstream) { self.owner = owner }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                bodyBytes = 0
            case .body(let b):
                bodyBytes += b.readableBytes
            case .end(let trailers):
                guard let head else { return }
                self.head = nil
                let isHealth = head.uri.hasPrefix("/healthz")
                let bodyBytes = self.bodyBytes
                let b = owner.current
                owner.counts.withLockedValue { c in
                    if isHealth {
                        c.health += 1
                    } else {
                        c.requests += 1
                        c.inFlight += 1
                        c.maxInFlight = max(c.maxInFlight, c.inFlight)
                        c.methods.append(head.method.rawValue)
                        c.bodies.append(bodyBytes)
                        if head.headers.first(name: "x-gateway-mirror") == "1" { c.mirrored += 1 }
                        c.uris.append(head.uri)
                        c.headers.append(head.headers)
                        c.trailers.append(trailers ?? HTTPHeaders())
                        if let auth = head.headers.first(name: "authorization") { c.authorizations.append(auth) }
                    }
                }
                let status = isHealth ? b.healthStatus : b.status
                let uri = head.uri.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                let body = b.body ?? Array("{\"served_by\":\"\(owner.name)\",\"body_bytes\":\(bodyBytes),\"uri\":\"\(uri)\"}".utf8)
                let extra = isHealth ? [] : b.headers
                let delay = isHealth ? 0 : b.delayMs
                let keepAlive = head.isKeepAlive
                let respond = { [self] in
                    if !isHealth { owner.counts.withLockedValue { $0.inFlight -= 1 } }
                    var h = HTTPHeaders()
                    if !extra.contains(where: { $0.0.lowercased() == "content-type" }) {
                        h.add(name: "content-type", value: "application/json")
                    }
                    h.add(name: "content-length", value: String(body.count))
                    h.add(name: "x-served-by", value: owner.name)
                    for (n, v) in extra { h.add(name: n, value: v) }
                    context.write(
                        wrapOutboundOut(
                            .head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: h))),
                        promise: nil)
                    context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                        if !keepAlive { context.close(promise: nil) }
                    }
                }
                if delay > 0 {
                    context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(delay))) { respond() }
                } else {
                    respond()
                }
            }
        }
    }
}
