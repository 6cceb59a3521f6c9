import Crypto
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// A small HTTP service the demo and the tests put behind the gateway. Every instance answers:
///
/// - `GET /healthz` — `{"status":"ok"}`
/// - `GET /users/{id}` — a user as JSON, with `served_by`
/// - `ANY /echo...` — the request as JSON: method, uri, headers, body size and its first KiB
/// - `GET /slow?ms=N` — answers after N milliseconds
/// - `GET /bytes?n=N[&chunked=1]` — N bytes (streamed with backpressure)
/// - `POST /upload` — reads the body as a stream; answers its size and sha256
/// - `GET /status/{code}` — an empty response with that status
/// - `GET /drop` — closes the connection without answering
/// - `GET /garbage` — answers bytes that are not HTTP
/// - `GET /ws` — a WebSocket echo
public final class DemoService: Sendable {
    public let name: String
    private let counter: RequestCounter
    private let connections: RequestCounter
    public let channel: any Channel

    /// Starts a service on `host:port` (port 0 picks a free one).
    public static func start(name: String, host: String = "127.0.0.1", port: Int, group: any EventLoopGroup) async throws -> DemoService {
        let counter = RequestCounter()
        let connections = RequestCounter()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                connections.increment()
                let upgrader = NIOWebSocketServerUpgrader(
                    shouldUpgrade: { channel, head in
                        channel.eventLoop.makeSucceededFuture(head.uri.hasPrefix("/ws") ? HTTPHeaders() : nil)
                    },
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            // The HTTP handler stays behind after an upgrade unless it is taken out.
                            if let http = try? channel.pipeline.syncOperations.handler(type: DemoHandler.self) {
                                _ = channel.pipeline.syncOperations.removeHandler(http)
                            }
                            try channel.pipeline.syncOperations.addHandler(WebSocketEcho())
                        }
                    })
                return channel.eventLoop.makeCompletedFuture {
                    let handler = DemoHandler(name: name, counter: counter)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: host, port: port).get()
        return DemoService(name: name, channel: channel, counter: counter, connections: connections)
    }

    init(name: String, channel: any Channel, counter: RequestCounter, connections: RequestCounter) {
        self.name = name
        self.counter = counter
        self.connections = connections
        self.channel = channel
    }

    /// Request heads received so far (tests poll it to know a request has arrived).
    public var requestsReceived: Int { counter.value }
    /// Connections accepted so far (tests check that the gateway keeps them alive).
    public var connectionsAccepted: Int { connections.value }

    public var port: Int { channel.localAddress?.port ?? 0 }
    public var url: String { "http://127.0.0.1:\(port)" }

    public func stop() async {
        try? await channel.close()
    }
}

final class DemoHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let name: String
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    private var bodyPrefix: [UInt8] = []
    private var hasher: SHA256?
    private var streamRemaining = 0
    private var streaming = false
    private var pumping = false

    let counter: RequestCounter

    init(name: String, counter: RequestCounter) {
        self.name = name
        self.counter = counter
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            counter.increment()
            head = h
            bodyBytes = 0
            bodyPrefix = []
            hasher = h.uri.hasPrefix("/upload") ? SHA256() : nil
        case .body(let buf):
            bodyBytes += buf.readableBytes
            if hasher != nil {
                buf.withUnsafeReadableBytes { hasher?.update(bufferPointer: $0) }
            } else if bodyPrefix.count < 1024 {
                bodyPrefix += buf.getBytes(at: buf.readerIndex, length: min(buf.readableBytes, 1024 - bodyPrefix.count)) ?? []
            }
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if streaming && context.channel.isWritable { pump(context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func query(_ uri: String, _ key: String) -> String? {
        guard let q = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.first.map(String.init) == key { return kv.count > 1 ? String(kv[1]) : "" }
        }
        return nil
    }

    private func sendEvents(_ context: ChannelHandlerContext, left: Int, sent: Int, every: Int64) {
        guard left > 0 else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        let event = "id: \(sent)\nevent: tick\ndata: {\"n\":\(sent),\"served_by\":\(quote(name))}\n\n"
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: event)))), promise: nil)
        context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(every)) { [self] in
            guard context.channel.isActive else { return }
            sendEvents(context, left: left - 1, sent: sent + 1, every: every)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "/")
        switch path {
        case "/healthz":
            json(context, head, .ok, "{\"status\":\"ok\",\"served_by\":\(quote(name))}")
        case "/slow":
            let ms = Int64(query(head.uri, "ms") ?? "1000") ?? 1000
            let loop = context.eventLoop.assumeIsolated()
            loop.scheduleTask(in: .milliseconds(ms)) { [self] in
                json(context, head, .ok, "{\"slept_ms\":\(ms),\"served_by\":\(quote(name))}")
            }
        case "/bytes":
            streamRemaining = max(0, Int(query(head.uri, "n") ?? "0") ?? 0)
            var h = HTTPHeaders()
            h.add(name: "content-type", value: "application/octet-stream")
            if query(head.uri, "chunked") == "1" {
                h.add(name: "transfer-encoding", value: "chunked")
            } else {
                h.add(name: "content-length", value: String(streamRemaining))
            }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: h))), promise: nil)
            streaming = true
            pump(context: context)
        case "/events":
            // Server-sent events: `n` of them (default 5), one every `every_ms` (default 1000).
            let n = max(0, min(1000, Int(query(head.uri, "n") ?? "5") ?? 5))
            let every = max(10, min(60_000, Int64(query(head.uri, "every_ms") ?? "1000") ?? 1000))
            var h = HTTPHeaders()
            h.add(name: "content-type", value: "text/event-stream")
            h.add(name: "cache-control", value: "no-cache")
            h.add(name: "transfer-encoding", value: "chunked")
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: h))), promise: nil)
            sendEvents(context, left: n, sent: 0, every: every)
        case "/upload":
            let digest = (hasher ?? SHA256()).finalize().map { String(format2: $0) }.joined()
            hasher = nil
            json(context, head, .ok, "{\"bytes\":\(bodyBytes),\"sha256\":\"\(digest)\",\"served_by\":\(quote(name))}")
        case "/drop":
            context.close(promise: nil)
        case "/garbage":
            // Written below the HTTP encoder, so the bytes reach the socket as they are.
            let garbage = context.channel.allocator.buffer(string: "\u{1}\u{2}not http at all\r\n\r\n")
            if let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) {
                encoder.writeAndFlush(NIOAny(garbage), promise: nil)
            } else {
                context.close(promise: nil)
            }
        default:
            if path.hasPrefix("/status/"), let code = Int(path.dropFirst(8)) {
                json(context, head, HTTPResponseStatus(statusCode: code), "")
            } else if path.hasPrefix("/users/") {
                let id = String(path.dropFirst(7))
                json(
                    context, head, .ok,
                    "{\"id\":\(quote(id)),\"name\":\(quote("User " + id)),\"email\":\(quote("user\(id)@example.com")),\"served_by\":\(quote(name))}"
                )
            } else if path == "/users" {
                json(context, head, .ok, "[{\"id\":\"1\",\"name\":\"User 1\"},{\"id\":\"2\",\"name\":\"User 2\"}]")
            } else {
                echo(context, head)
            }
        }
    }

    private func echo(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let headers = head.headers.map { "[\(quote($0.name)),\(quote($0.value))]" }.joined(separator: ",")
        let body = String(decoding: bodyPrefix, as: UTF8.self)
        json(
            context, head, .ok,
            "{\"method\":\(quote(head.method.rawValue)),\"uri\":\(quote(head.uri)),\"headers\":[\(headers)],\"body_bytes\":\(bodyBytes),\"body\":\(quote(body)),\"served_by\":\(quote(name))}"
        )
    }

    private func pump(context: ChannelHandlerContext) {
        // A flush can change writability and call back in here: only the outermost call ends the stream.
        guard streaming, !pumping else { return }
        pumping = true
        defer { pumping = false }
        let chunk = 64 * 1024
        repeat {
            while streamRemaining > 0 && context.channel.isWritable {
                let n = min(chunk, streamRemaining)
                var buf = context.channel.allocator.buffer(capacity: n)
                buf.writeRepeatingByte(UInt8(ascii: "a") &+ UInt8(truncatingIfNeeded: streamRemaining / chunk % 26), count: n)
                streamRemaining -= n
                context.write(wrapOutboundOut(.body(.byteBuffer(buf))), promise: nil)
            }
            context.flush()
        } while streamRemaining > 0 && context.channel.isWritable
        if streamRemaining == 0 && streaming {
            streaming = false
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private func json(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String) {
        var h = HTTPHeaders()
        h.add(name: "content-type", value: "application/json")
        h.add(name: "content-length", value: String(body.utf8.count))
        h.add(name: "x-served-by", value: name)
        // Like many services, echo the caller's request id.
        if let id = head.headers.first(name: "x-request-id") { h.add(name: "x-request-id", value: id) }
        if !head.isKeepAlive { h.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: h))), promise: nil)
        if !body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}

/// Echoes text and binary frames, answers pings, closes on close.
final class WebSocketEcho: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                .assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
        default:
            break
        }
    }
}

func quote(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where u.value < 0x20: out += "\\u" + String(format2: UInt8(u.value)).leftPad4
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}

extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
    }
    var leftPad4: String { String(repeating: "0", count: max(0, 4 - count)) + self }
}

/// Counts requests across a service's connections.
final class RequestCounter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
