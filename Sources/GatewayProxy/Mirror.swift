import GatewayConfig
import NIOCore
import NIOPosix
import NIOSSL

/// A copy of one request for a route's `mirror` (SPEC §2.7): its head as serialized for the
/// mirror's target, then its body parts as they arrive (framed as for the real upstream),
/// up to `maxBody` bytes. It is sent when the request has ended.
final class MirrorRequest {
    static let maxBody = 64 * 1024
    let route: String
    let target: UpstreamSpec.TargetSpec
    /// The target pool's client TLS (an `https://` target): a mirror goes out as encrypted
    /// as the request it copies.
    let tls: (context: NIOSSLContext, serverName: String?)?
    let connectTimeout: TimeAmount
    let timeout: TimeAmount
    private(set) var parts: [ByteBuffer]
    private var headBytes: Int
    private(set) var bodyBytes = 0
    /// The body outgrew `maxBody`: the copy is not sent.
    private(set) var tooLarge = false

    init(
        route: String, head: ByteBuffer, target: UpstreamSpec.TargetSpec, tls: (context: NIOSSLContext, serverName: String?)?,
        connectTimeout: TimeAmount, timeout: TimeAmount
    ) {
        self.route = route
        self.target = target
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        parts = [head]
        headBytes = head.readableBytes
    }

    /// More of the request's body (a reference to the bytes read, not a copy).
    @inline(__always)
    func append(_ bytes: ByteBuffer) {
        guard !tooLarge else { return }
        bodyBytes += bytes.readableBytes
        if bodyBytes > Self.maxBody {
            tooLarge = true
            parts = []
        } else {
            parts.append(bytes)
        }
    }
}

/// Sends one event loop's mirrored requests. Each goes on a connection of its own that asks
/// the target to close after its answer (`Connection: close`): mirrors never take a pooled
/// connection from real traffic, and their answers are read and dropped. At most
/// `maxInFlight` are open per loop; beyond that a copy is skipped (and counted), so a slow
/// mirror target can neither delay the real responses nor pile up memory.
final class MirrorSender {
    static let maxInFlight = 128
    private let loop: any EventLoop
    private let metrics: LoopMetrics
    private(set) var inFlight = 0

    init(loop: any EventLoop, metrics: LoopMetrics) {
        self.loop = loop
        self.metrics = metrics
    }

    func send(_ m: MirrorRequest) {
        guard !m.tooLarge else {
            metrics.mirror(route: m.route, outcome: "skipped_body_too_large")
            return
        }
        guard inFlight < Self.maxInFlight else {
            metrics.mirror(route: m.route, outcome: "skipped_in_flight_limit")
            return
        }
        if m.target.tls && m.tls == nil {
            // Never plain text to an https:// target, even when its TLS settings are unusable.
            metrics.mirror(route: m.route, outcome: "failed")
            return
        }
        inFlight += 1
        let tls = m.tls
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(m.connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(Discard())
                }
            }
        let connecting: EventLoopFuture<any Channel>
        if let address = try? SocketAddress(ipAddress: m.target.host, port: m.target.port) {
            connecting = bootstrap.connect(to: address)
        } else {
            connecting = bootstrap.connect(host: m.target.host, port: m.target.port)
        }
        let parts = m.parts
        connecting.hop(to: loop).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let channel):
                metrics.mirror(route: m.route, outcome: "sent")
                for p in parts { channel.write(p, promise: nil) }
                channel.flush()
                // A mirror target that never answers is cut off after the route's timeout.
                let deadline = loop.assumeIsolated().scheduleTask(in: m.timeout) { channel.close(promise: nil) }
                channel.closeFuture.hop(to: loop).assumeIsolated().whenComplete { [self] _ in
                    deadline.cancel()
                    inFlight -= 1
                }
            case .failure:
                metrics.mirror(route: m.route, outcome: "failed")
                inFlight -= 1
            }
        }
    }

    /// Reads the mirror target's answer and drops it; the target closes when done.
    private final class Discard: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }
}
