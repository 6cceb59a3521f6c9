import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// One HTTP/2 connection to a target (`protocol: h2` over TLS with ALPN, or `h2c`): the
/// requests of its pool go out as streams of it, up to the peer's
/// SETTINGS_MAX_CONCURRENT_STREAMS at a time. Loop-confined, as its pool.
final class HTTP2Session {
    let channel: any Channel
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    /// Streams open or being opened.
    var openStreams = 0
    /// The peer's limit (100 until its first SETTINGS says otherwise, as RFC 9113 §6.5.2
    /// recommends assuming no more than that).
    var maxStreams = 100
    /// GOAWAY came (or the connection failed): streams in flight finish, no new ones start.
    var goingAway = false
    /// The last stream the peer's GOAWAY said it processes: streams after it were not.
    var lastProcessedStream: HTTP2StreamID?
    var closed = false
    /// The peer's first SETTINGS came: until then its stream limit is not known, and a
    /// stream over it would be refused.
    var settled = false

    init(channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer) {
        self.channel = channel
        self.multiplexer = multiplexer
    }

    var hasRoom: Bool { settled && !goingAway && !closed && openStreams < maxStreams }
    /// Open, or about to be, for new streams.
    var isUsable: Bool { !goingAway && !closed }
}

/// Last in an upstream HTTP/2 connection's pipeline: the connection-level frames NIOHTTP2
/// has acted on — the peer's stream limit, GOAWAY — reach the pool here; a PING every
/// `pingInterval` checks the connection is alive (no answer within the next interval
/// closes it, and its streams fail as resets).
final class HTTP2SessionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    weak var pool: TargetPool?
    /// Set once the connection is up; SETTINGS seen before that are applied then.
    var session: HTTP2Session? {
        didSet {
            guard let session, let early = earlySettings else { return }
            if let max = early { session.maxStreams = max }
            session.settled = true
        }
    }
    /// The first SETTINGS' stream limit (nil inside: none given), kept while `session` is not set.
    private var earlySettings: Int??
    private let pingInterval: TimeAmount
    private var pingTask: RepeatedTask?
    private var awaitingPong = false

    init(pool: TargetPool, pingInterval: TimeAmount) {
        self.pool = pool
        self.pingInterval = pingInterval
    }

    func channelActive(context: ChannelHandlerContext) {
        startPings(context)
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startPings(context) }
    }

    private func startPings(_ context: ChannelHandlerContext) {
        guard pingTask == nil else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        pingTask = context.eventLoop.scheduleRepeatedTask(initialDelay: pingInterval, delay: pingInterval) { _ in
            let (handler, context) = bound.value
            if handler.awaitingPong {
                context.close(promise: nil)
                return
            }
            handler.awaitingPong = true
            context.writeAndFlush(
                handler.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 1), ack: false))),
                promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .settings(.settings(let settings)):
            let limit = settings.last(where: { $0.parameter == .maxConcurrentStreams })?.value
            guard let session else {
                if earlySettings == nil { earlySettings = .some(limit) }
                return
            }
            if let limit { session.maxStreams = limit }
            session.settled = true
            pool?.http2RoomChanged()
        case .goAway(let last, _, _):
            session?.goingAway = true
            session?.lastProcessedStream = min(session?.lastProcessedStream ?? last, last)
            pool?.http2RoomChanged()  // (which closes it when no stream is left)
        case .ping(_, ack: true):
            awaitingPong = false
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pingTask?.cancel()
        pingTask = nil
        if let session {
            session.closed = true
            pool?.http2SessionClosed(session)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIOHTTP2 reports a stream's errors here too, as it does a connection's (after its
        // GOAWAY): either way the connection takes no new streams, and closes once those in
        // flight have ended (one bad stream does not reset the others).
        guard let session else { return context.close(promise: nil) }
        session.goingAway = true
        pool?.http2RoomChanged()
    }
}

/// In an upstream HTTP/2 stream, between the stream and the `UpstreamHandler` every
/// upstream connection has: the HTTP/1.1 request the exchange wrote (its serializer is the
/// one every upstream gets) becomes HEADERS, DATA and trailers; the response frames become
/// the HTTP/1.1 bytes `ResponseParser` reads — a status line, the fields (checked as bytes),
/// a chunked body, the trailers. So retries, shaping, outlier detection and logs see an
/// HTTP/2 upstream as they see any other, trailers included.
final class HTTP2UpstreamBridge: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTP2Frame.FramePayload

    private let scheme: String
    /// The connection the stream is on (what its GOAWAY said).
    private weak var session: HTTP2Session?
    private var request: RequestParser
    private var requestEnded = false
    /// The request's HEADERS, held until it is known whether a body follows.
    private var heldHead: HPACKHeaders?
    private var sawResponseHead = false
    private var responseEnded = false

    init(scheme: String, maxHeadBytes: Int, session: HTTP2Session? = nil) {
        self.scheme = scheme
        self.session = session
        request = RequestParser(maxHeadBytes: maxHeadBytes)
    }

    // MARK: request: HTTP/1.1 bytes to frames

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = unwrapOutboundIn(data)
        var batch = FrameBatch()
        func emit(_ next: HTTP2Frame.FramePayload) { batch.add(next, context) }
        do {
            while !requestEnded, let part = try request.next(&buffer) {
                switch part {
                case .head(let head):
                    heldHead = Self.requestFields(head, scheme: scheme)
                case .body(let bytes):
                    if let head = heldHead {
                        heldHead = nil
                        emit(.headers(.init(headers: head)))
                    }
                    if bytes.readableBytes > 0 { emit(.data(.init(data: .byteBuffer(bytes)))) }
                case .end(let trailers):
                    requestEnded = true
                    if let head = heldHead {
                        heldHead = nil
                        emit(.headers(.init(headers: head, endStream: trailers == nil || trailers?.isEmpty == true)))
                        if let trailers, !trailers.isEmpty { emit(.headers(.init(headers: Self.fields(trailers), endStream: true))) }
                    } else if let trailers, !trailers.isEmpty {
                        emit(.headers(.init(headers: Self.fields(trailers), endStream: true)))
                    } else {
                        emit(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
                    }
                }
            }
        } catch {
            promise?.fail(error)
            context.close(promise: nil)
            return
        }
        batch.finish(context, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        // A head whose body has not come yet (a streaming request) goes out now.
        FrameBatch.flush(&heldHead, context)
    }

    /// The HEADERS of a request head: pseudo-fields first, then the fields less those
    /// specific to an HTTP/1.1 connection (RFC 9113 §8.2.2). gRPC's `te: trailers` is sent
    /// for a gRPC request (the HTTP/1.1 side drops `TE` as hop-by-hop).
    static func requestFields(_ head: HTTPRequestHead, scheme: String) -> HPACKHeaders {
        var out = HPACKHeaders()
        out.reserveCapacity(head.headers.count + 4)
        out.add(name: ":method", value: head.method.rawValue)
        out.add(name: ":scheme", value: scheme)
        out.add(name: ":authority", value: head.headers.first(name: "host") ?? "")
        out.add(name: ":path", value: head.uri)
        var grpc = false
        for (name, value) in head.headers {
            let lower = name.lowercased()
            switch lower {
            case "host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te": continue
            case "content-type": grpc = value.utf8.starts(with: "application/grpc".utf8)
            default: break
            }
            out.add(name: lower, value: value, indexing: HTTP2StreamAdapter.indexing(lower))
        }
        if grpc { out.add(name: "te", value: "trailers") }
        return out
    }

    static func fields(_ headers: HTTPHeaders) -> HPACKHeaders {
        var out = HPACKHeaders()
        for (name, value) in headers { out.add(name: name.lowercased(), value: value) }
        return out
    }

    // MARK: response: frames to HTTP/1.1 bytes

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !responseEnded else { return }
        switch unwrapInboundIn(data) {
        case .headers(let frame):
            if !sawResponseHead {
                let status = frame.headers.first(name: ":status").flatMap { Int($0) } ?? 0
                if (100..<200).contains(status) && status != 101 { return }  // informational: not passed on
                sawResponseHead = true
                guard
                    let head = Self.responseHead(
                        frame.headers, status: status, endStream: frame.endStream, allocator: context.channel.allocator)
                else { return fail(context) }
                context.fireChannelRead(wrapInboundOut(head))
                if frame.endStream { responseEnded = true }
            } else {
                guard let end = Self.trailers(frame.headers, allocator: context.channel.allocator) else { return fail(context) }
                responseEnded = true
                context.fireChannelRead(wrapInboundOut(end))
            }
        case .data(let frame):
            guard sawResponseHead, case .byteBuffer(let bytes) = frame.data else { return fail(context) }
            var out = context.channel.allocator.buffer(capacity: bytes.readableBytes + 16)
            if bytes.readableBytes > 0 {
                out.writeChunkSize(bytes.readableBytes)
                out.writeImmutableBuffer(bytes)
                out.writeStaticString("\r\n")
            }
            if frame.endStream {
                responseEnded = true
                out.writeStaticString("0\r\n\r\n")
            }
            if out.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(out)) }
        case .rstStream:
            context.close(promise: nil)
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Refused before any answer (RST_STREAM REFUSED_STREAM, or closed after a GOAWAY that
        // did not cover it, however the stream then ended): the upstream did not process it.
        if !sawResponseHead, let closed = error as? NIOHTTP2Errors.StreamClosed {
            let uncovered = session?.lastProcessedStream.map { closed.streamID > $0 } ?? false
            if closed.errorCode == .refusedStream || uncovered { return context.fireErrorCaught(HTTP2StreamRefused()) }
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Closed with no answer on a connection going away, before the peer took the stream
        // (it never got an id: its first write came after the GOAWAY) or above the last
        // stream the GOAWAY covers: not processed either.
        if !sawResponseHead, let session, session.goingAway {
            let id = try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID)
            let uncovered: Bool
            if let last = session.lastProcessedStream {
                uncovered = id.map { $0 > last } ?? true
            } else {
                uncovered = id == nil
            }
            if uncovered { context.fireErrorCaught(HTTP2StreamRefused()) }
        }
        context.fireChannelInactive()
    }

    private func fail(_ context: ChannelHandlerContext) {
        responseEnded = true
        context.fireErrorCaught(HTTP1ParseError(reason: "the upstream sent an invalid HTTP/2 response"))
    }

    /// The response head as HTTP/1.1 bytes: chunked unless the HEADERS ended the stream
    /// (then its own `content-length`, or 0). nil when a field is not a token and a value.
    static func responseHead(_ fields: HPACKHeaders, status: Int, endStream: Bool, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard (100...999).contains(status) else { return nil }
        var out = allocator.buffer(capacity: 256)
        out.writeStaticString("HTTP/1.1 ")
        out.writeString(String(status))
        out.writeStaticString(" \r\n")
        var hasLength = false
        for (name, value, _) in fields where !name.hasPrefix(":") {
            guard HeaderBytes.isToken(name), HeaderBytes.isFieldValue(value) else { return nil }
            if name == "content-length" {
                if !endStream { continue }
                hasLength = true
            }
            if name == "transfer-encoding" || name == "connection" { continue }
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        if endStream {
            if !hasLength { out.writeStaticString("content-length: 0\r\n") }
        } else {
            out.writeStaticString("transfer-encoding: chunked\r\n")
        }
        out.writeStaticString("\r\n")
        return out
    }

    /// The end of a chunked body with the trailers as its trailer section.
    static func trailers(_ fields: HPACKHeaders, allocator: ByteBufferAllocator) -> ByteBuffer? {
        var out = allocator.buffer(capacity: 64)
        out.writeStaticString("0\r\n")
        for (name, value, _) in fields {
            guard !name.hasPrefix(":"), HeaderBytes.isToken(name), HeaderBytes.isFieldValue(value) else { return nil }
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("\r\n")
        return out
    }
}

/// An upstream stream refused unprocessed (see `HTTP2UpstreamBridge.errorCaught`).
struct HTTP2StreamRefused: Error {}

/// The frames one write of HTTP/1.1 bytes became: each is written when the next is known,
/// so the last carries the write's promise.
struct FrameBatch {
    private var pending: HTTP2Frame.FramePayload?

    mutating func add(_ frame: HTTP2Frame.FramePayload, _ context: ChannelHandlerContext) {
        if let pending { context.write(NIOAny(pending), promise: nil) }
        pending = frame
    }

    func finish(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        if let pending {
            context.write(NIOAny(pending), promise: promise)
        } else {
            promise?.succeed()
        }
    }

    /// A held head goes out (its body has not come yet), then the flush.
    static func flush(_ held: inout HPACKHeaders?, _ context: ChannelHandlerContext) {
        if let head = held {
            held = nil
            context.write(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: head))), promise: nil)
        }
        context.flush()
    }
}
