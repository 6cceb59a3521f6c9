import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL

/// The active health check of a target of an HTTP/2 upstream (`protocol: h2` or `h2c`), on a
/// connection of its own: a GET of the check's `path` whose status must be in
/// `expected_status`, or with `grpc` the standard gRPC health check
/// (`/grpc.health.v1.Health/Check` for `grpc.service`), which passes when the call ends
/// with `grpc-status` 0 and the answer says SERVING.
enum HTTP2Probe {
    static func run(
        _ target: UpstreamSpec.TargetSpec, _ check: HealthCheckSpec, tls: (context: NIOSSLContext, serverName: String?)?,
        group: any EventLoopGroup
    ) async -> Bool {
        let loop = group.next()
        let timeout = TimeAmount.nanoseconds(check.timeoutNanos)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if let tls { try ops.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName)) }
                    try ops.addHandler(
                        NIOHTTP2Handler(mode: .client, eventLoop: channel.eventLoop, inboundStreamInitializer: { $0.close() }))
                }
            }
        guard let channel = try? await bootstrap.connect(host: target.host, port: target.port).get() else { return false }
        let result = loop.makePromise(of: Bool.self)
        let request = ProbeStream.request(target, check)
        loop.execute {
            guard let http2 = try? channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self),
                let multiplexer = try? http2.syncMultiplexer()
            else { return result.succeed(false) }
            multiplexer.createStreamChannel(promise: nil) { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandler(ProbeStream(request: request, check: check, result: result))
                }
            }
            let timer = loop.scheduleTask(in: timeout) { result.succeed(false) }
            result.futureResult.whenComplete { _ in timer.cancel() }
        }
        let passed = (try? await result.futureResult.get()) ?? false
        try? await channel.close()
        return passed
    }
}

/// The one stream of a probe: the request, then the answer checked as it comes.
private final class ProbeStream: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    struct Request {
        var headers: HPACKHeaders
        var body: ByteBuffer?
    }

    private let request: Request
    private let check: HealthCheckSpec
    private let result: EventLoopPromise<Bool>
    private var status = 0
    private var message = ByteBuffer()

    init(request: Request, check: HealthCheckSpec, result: EventLoopPromise<Bool>) {
        self.request = request
        self.check = check
        self.result = result
    }

    static func request(_ target: UpstreamSpec.TargetSpec, _ check: HealthCheckSpec) -> Request {
        // Pseudo-fields first (RFC 9113 §8.3).
        var h: HPACKHeaders = [
            ":method": check.grpcService == nil ? "GET" : "POST", ":scheme": target.tls ? "https" : "http",
            ":authority": target.authority, ":path": check.grpcService == nil ? check.path : "/grpc.health.v1.Health/Check",
        ]
        h.add(name: "user-agent", value: "gateway-health-check")
        guard let service = check.grpcService else { return Request(headers: h, body: nil) }
        h.add(name: "content-type", value: "application/grpc")
        h.add(name: "te", value: "trailers")
        // HealthCheckRequest { string service = 1; }, as one uncompressed message.
        var message: [UInt8] = []
        if !service.isEmpty {
            message = [0x0A] + varint(service.utf8.count) + Array(service.utf8)
        }
        let n = UInt32(message.count)
        var body = ByteBuffer()
        body.writeBytes([0, UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + message)
        return Request(headers: h, body: body)
    }

    static func varint(_ value: Int) -> [UInt8] {
        var v = UInt64(value)
        var out: [UInt8] = []
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
        return out
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.headers(.init(headers: request.headers, endStream: request.body == nil))), promise: nil)
        if let body = request.body { context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(body), endStream: true))), promise: nil) }
        context.flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let frame):
            if status == 0 {
                status = frame.headers.first(name: ":status").flatMap { Int($0) } ?? 0
                if check.grpcService == nil {
                    return result.succeed(check.expected.contains(status))
                }
                guard status == 200 else { return result.succeed(false) }
            }
            // Trailers (or a trailers-only answer): the call's status, then the message.
            if let code = frame.headers.first(name: "grpc-status") {
                result.succeed(code == "0" && Self.isServing(message))
            } else if frame.endStream {
                result.succeed(false)
            }
        case .data(let frame):
            if case .byteBuffer(var bytes) = frame.data, message.readableBytes < 4096 { message.writeBuffer(&bytes) }
            if frame.endStream { result.succeed(false) }  // no trailers: not a gRPC answer
        case .rstStream:
            result.succeed(false)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        result.succeed(false)  // (a no-op once decided)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        result.succeed(false)
        context.close(promise: nil)
    }

    /// HealthCheckResponse { ServingStatus status = 1; } with SERVING (1), in one message.
    static func isServing(_ body: ByteBuffer) -> Bool {
        let bytes = Array(body.readableBytesView)
        guard bytes.count >= 5, bytes[0] == 0 else { return false }
        let n = Int(bytes[1]) << 24 | Int(bytes[2]) << 16 | Int(bytes[3]) << 8 | Int(bytes[4])
        guard bytes.count >= 5 + n else { return false }
        let message = bytes[5..<(5 + n)]
        var i = message.startIndex
        var serving = false
        while i < message.endIndex {
            let key = message[i]
            i += 1
            guard key & 0x07 == 0 else { return false }  // only varint fields here
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while i < message.endIndex {
                let b = message[i]
                i += 1
                value |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { break }
                shift += 7
                if shift > 63 { return false }
            }
            if key >> 3 == 1 { serving = value == 1 }
        }
        return serving
    }
}
