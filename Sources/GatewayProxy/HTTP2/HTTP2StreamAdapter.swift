import GatewayConfig
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// One HTTP/2 stream as an exchange of `ProxyHandler`, so every stream runs the same
/// phases as an HTTP/1.1 request (routing, auth, limits, retries, shaping, logs).
///
/// Inbound, the request is handed to the stream's `ProxyHandler` as parts it would have
/// parsed (`ProxyHandler.receive`), never as HTTP/1.1 bytes: the head from `:method`,
/// `:path` and the fields (`Host` from `:authority`, `Cookie` fields joined, RFC 9113
/// §8.2.3), each DATA frame's bytes, the end with the trailers. The checks the HTTP/1.1
/// parser makes on bytes are made here on the fields (a token method, a target without
/// spaces or controls, token names, values without control bytes, `max_header_bytes`).
/// Outbound, the HTTP/1.1 response `ProxyHandler` writes is parsed back (`ResponseParser`)
/// into a HEADERS frame (names lower-cased, connection-specific fields dropped), DATA frames
/// that are slices of the written buffers, and the end of the stream (with trailers when the
/// body had some).
///
/// Flow control reaches `ProxyHandler` unchanged: the stream channel is unwritable while the
/// peer's window is spent, and a read held by `ProxyHandler` holds the window updates. NIOHTTP2
/// has already validated the header block (pseudo-headers, lower-case names, no CR, LF or NUL
/// in values, no connection-specific fields) and the `content-length` against the DATA.
final class HTTP2StreamAdapter: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// The stream's exchange handler (next in the pipeline), fed the request's parts directly.
    private let proxy: ProxyHandler
    private let maxRequestHeadBytes: Int
    private var sawRequestHead = false
    private var sawRequestEnd = false
    private var parser: ResponseParser
    /// The response head, written at the next body bytes, flush or end (with the end, one
    /// HEADERS frame carries both).
    private var heldHead: HPACKHeaders?
    private var sawResponseHead = false
    private var responseEnded = false
    /// Response bytes that do not complete a line yet.
    private var unparsed: ByteBuffer?

    init(maxHeadBytes: Int, proxy: ProxyHandler) {
        self.proxy = proxy
        maxRequestHeadBytes = maxHeadBytes
        parser = ResponseParser(maxHeadBytes: maxHeadBytes + 4096)
    }

    // MARK: request: frames to request parts

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !sawRequestEnd else { return }
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if !sawRequestHead {
                sawRequestHead = true
                switch requestHead(headers.headers, endStream: headers.endStream) {
                case .success(let head):
                    proxy.receive(.head(head))
                    if headers.endStream { end(nil) }
                case .failure(let error):
                    sawRequestEnd = true
                    proxy.receiveInvalid(error)
                }
            } else {
                switch requestTrailers(headers.headers) {
                case .success(let trailers): end(trailers)
                case .failure(let error):
                    sawRequestEnd = true
                    proxy.receiveInvalid(error)
                }
            }
        case .data(let frame):
            if case .byteBuffer(let bytes) = frame.data, bytes.readableBytes > 0 { proxy.receive(.body(bytes)) }
            if frame.endStream { end(nil) }
        default:
            break  // the connection handler and NIOHTTP2 handle the rest
        }
    }

    private func end(_ trailers: HTTPHeaders?) {
        sawRequestEnd = true
        proxy.receive(.end(trailers))
    }

    /// The request head from the stream's fields, checked as the HTTP/1.1 parser checks bytes.
    private func requestHead(_ fields: HPACKHeaders, endStream: Bool) -> Result<HTTPRequestHead, HTTP1ParseError> {
        var method = "GET"
        var path = "/"
        var authority: String?
        var length: Int?
        var cookies: [String] = []
        var size = 0
        var headers = HTTPHeaders()
        headers.reserveCapacity(fields.count + 2)
        for (name, value, _) in fields where name.hasPrefix(":") {
            switch name {
            case ":method": method = value
            case ":path": path = value
            case ":authority": authority = value
            default: break
            }
        }
        if method == "CONNECT", let authority { path = authority }
        guard HeaderBytes.isToken(method) else { return .failure(HTTP1ParseError(reason: "malformed request line")) }
        guard !path.isEmpty, path.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
            return .failure(HTTP1ParseError(reason: "invalid character in the request target"))
        }
        size += method.utf8.count + path.utf8.count + 12
        if method == "HEAD" { parser.requestIsHead = true }
        if let authority {
            guard HeaderBytes.isFieldValue(authority) else {
                return .failure(HTTP1ParseError(reason: "invalid character in a header value"))
            }
            headers.add(name: "host", value: authority)
            size += authority.utf8.count + 8
        }
        for (name, value, _) in fields where !name.hasPrefix(":") {
            guard HeaderBytes.isToken(name) else { return .failure(HTTP1ParseError(reason: "malformed header line")) }
            guard HeaderBytes.isFieldValue(value) else { return .failure(HTTP1ParseError(reason: "invalid character in a header value")) }
            size += name.utf8.count + value.utf8.count + 4
            switch name {
            case "host" where authority != nil: continue  // :authority wins (RFC 9113 §8.3.1)
            case "cookie":
                cookies.append(value)
                continue
            case "content-length":
                // Digits only, one value however often it comes (as the HTTP/1.1 parser
                // wants it): `+5`, `-0` or `5,5` would be read differently upstream.
                guard value.utf8.count <= 18, let n = Self.decimal(value), length == nil || length == n else {
                    return .failure(HTTP1ParseError(reason: "invalid Content-Length"))
                }
                if length != nil { continue }
                length = n
            default: break
            }
            headers.add(name: name, value: value)
        }
        guard size <= maxRequestHeadBytes else { return .failure(HTTP1ParseError(reason: "header section too large", tooLarge: true)) }
        if !cookies.isEmpty { headers.add(name: "cookie", value: cookies.joined(separator: "; ")) }
        // A body without a length goes on chunked, as an HTTP/1.1 one would have come.
        if !endStream && length == nil { headers.add(name: "transfer-encoding", value: "chunked") }
        return .success(HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: headers))
    }

    /// A non-negative decimal of ASCII digits only.
    private static func decimal(_ s: String) -> Int? {
        var n = 0
        for c in s.utf8 {
            guard c >= 0x30 && c <= 0x39 else { return nil }
            n = n * 10 + Int(c - 0x30)
        }
        return s.utf8.isEmpty ? nil : n
    }

    /// The trailers, checked as the HTTP/1.1 trailer section is: token names, values
    /// without control bytes, within `max_header_bytes`; no pseudo-fields.
    private func requestTrailers(_ fields: HPACKHeaders) -> Result<HTTPHeaders, HTTP1ParseError> {
        var trailers = HTTPHeaders()
        var size = 0
        for (name, value, _) in fields {
            guard HeaderBytes.isToken(name) else { return .failure(HTTP1ParseError(reason: "malformed trailer line")) }
            guard HeaderBytes.isFieldValue(value) else { return .failure(HTTP1ParseError(reason: "invalid character in a trailer value")) }
            size += name.utf8.count + value.utf8.count + 4
            guard size <= maxRequestHeadBytes else { return .failure(HTTP1ParseError(reason: "trailer section too large", tooLarge: true)) }
            trailers.add(name: name, value: value)
        }
        return .success(trailers)
    }

    // MARK: response: HTTP/1.1 bytes to frames

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = unwrapOutboundIn(data)
        if var kept = unparsed {
            unparsed = nil
            kept.writeBuffer(&buffer)
            buffer = kept
        }
        var batch = FrameBatch()
        func emit(_ next: HTTP2Frame.FramePayload) { batch.add(next, context) }
        do {
            while !responseEnded, let event = try parser.next(&buffer) {
                switch event {
                case .head(let head):
                    sawResponseHead = true
                    heldHead = Self.responseFields(head)
                case .body(let bytes):
                    guard bytes.readableBytes > 0 else { continue }
                    if let head = heldHead {
                        heldHead = nil
                        emit(.headers(.init(headers: head)))
                    }
                    emit(.data(.init(data: .byteBuffer(bytes))))
                case .end(let trailers):
                    responseEnded = true
                    if var head = heldHead {
                        heldHead = nil
                        // A gRPC trailers-only response: its one HEADERS frame is read as
                        // the trailers, where a `content-length: 0` would be metadata.
                        if trailers == nil, head.first(name: "grpc-status") != nil { head.remove(name: "content-length") }
                        emit(.headers(.init(headers: head, endStream: trailers == nil)))
                    } else if trailers == nil {
                        emit(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
                    }
                    if let trailers { emit(.headers(.init(headers: Self.trailerFields(trailers), endStream: true))) }
                }
            }
        } catch {
            // ProxyHandler wrote something that is not HTTP/1.1: never expected; reset the stream.
            promise?.fail(error)
            context.close(promise: nil)
            return
        }
        if buffer.readableBytes > 0 && !responseEnded { unparsed = buffer }
        batch.finish(context, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        // A head with no body bytes yet (a slow or streamed response) goes out now.
        FrameBatch.flush(&heldHead, context)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // A body that ran until the connection closed ends with the stream instead.
        if sawResponseHead && !responseEnded && parser.endsAtClose {
            responseEnded = true
            if let head = heldHead {
                heldHead = nil
                context.write(wrapOutboundOut(.headers(.init(headers: head, endStream: true))), promise: nil)
            } else {
                context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))), promise: nil)
            }
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }

    /// `:status` and the head's fields, lower-cased, without the connection-specific ones
    /// HTTP/2 forbids (RFC 9113 §8.2.2).
    static func responseFields(_ head: ResponseParser.Head) -> HPACKHeaders {
        var out = HPACKHeaders()
        out.reserveCapacity(head.fields.count + 1)
        out.add(name: ":status", value: String(head.status))
        head.block.withUnsafeReadableBytes { raw in
            for f in head.fields {
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: raw[Int(f.nameStart)..<Int(f.nameEnd)]), as: UTF8.self)
                    .lowercased()
                if isConnectionSpecific(name) { continue }
                let value = String(decoding: UnsafeRawBufferPointer(rebasing: raw[Int(f.valueStart)..<Int(f.valueEnd)]), as: UTF8.self)
                out.add(name: name, value: value, indexing: indexing(name))
            }
        }
        return out
    }

    /// The field lines of a chunked body's trailers (each ending in CRLF).
    static func trailerFields(_ trailers: ByteBuffer) -> HPACKHeaders {
        var out = HPACKHeaders()
        forEachTrailerField(trailers) { name, value in
            let n = name.lowercased()
            if !isConnectionSpecific(n) { out.add(name: n, value: value) }
        }
        return out
    }

    /// Cookies are never indexed by HPACK, so their secrets cannot be probed through the
    /// compression context (RFC 7541 §7.1.3).
    /// How a field goes into HPACK's dynamic table: never for cookies; not for fields whose
    /// value is new on every message (an entry each would evict the ones that repeat, and
    /// make every lookup longer); else indexed.
    static func indexing(_ name: String) -> HPACKIndexing {
        switch name {
        case "set-cookie", "cookie", "authorization": return .neverIndexed
        case "x-request-id", "traceparent", "tracestate", "ratelimit-remaining", "ratelimit-reset", "grpc-timeout":
            return .nonIndexable
        default: return .indexable
        }
    }

    private static func isConnectionSpecific(_ name: String) -> Bool {
        switch name {
        case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te": return true
        default: return false
        }
    }
}
