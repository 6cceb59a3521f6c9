import NIOCore
import NIOHPACK
import NIOHTTP2

/// One HTTP/2 stream presented to `ProxyHandler` as an HTTP/1.1 exchange, so every stream runs
/// the same pipeline as an HTTP/1.1 request (routing, auth, limits, retries, shaping, logs).
///
/// Inbound, the request's HEADERS, DATA and trailers become HTTP/1.1 bytes: the request line
/// from `:method` and `:path`, `Host` from `:authority`, `Cookie` fields joined (RFC 9113
/// §8.2.3), and a body framed by its `content-length` or, without one, chunked. Outbound, the
/// HTTP/1.1 response `ProxyHandler` writes is parsed back (`ResponseParser`) into a HEADERS
/// frame (names lower-cased, connection-specific fields dropped), DATA frames that are slices
/// of the written buffers, and the end of the stream (with trailers when the body had some).
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

    private var sawRequestHead = false
    /// The request has no `content-length` but a body: it goes on chunked.
    private var chunked = false
    private var parser: ResponseParser
    /// The response head, written at the next body bytes, flush or end (with the end, one
    /// HEADERS frame carries both).
    private var heldHead: HPACKHeaders?
    private var sawResponseHead = false
    private var responseEnded = false
    /// Response bytes that do not complete a line yet.
    private var unparsed: ByteBuffer?

    init(maxHeadBytes: Int) {
        parser = ResponseParser(maxHeadBytes: maxHeadBytes + 4096)
    }

    // MARK: request: frames to HTTP/1.1 bytes

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if !sawRequestHead {
                sawRequestHead = true
                let head = requestHead(headers.headers, endStream: headers.endStream, allocator: context.channel.allocator)
                context.fireChannelRead(wrapInboundOut(head))
            } else if chunked {
                // Trailers end a chunked body (with content-length they have nowhere to go).
                var last = context.channel.allocator.buffer(capacity: 64)
                last.writeStaticString("0\r\n")
                for (name, value, _) in headers.headers where !name.hasPrefix(":") {
                    last.writeString(name)
                    last.writeStaticString(": ")
                    last.writeString(value)
                    last.writeStaticString("\r\n")
                }
                last.writeStaticString("\r\n")
                chunked = false
                context.fireChannelRead(wrapInboundOut(last))
            }
        case .data(let frame):
            if case .byteBuffer(let bytes) = frame.data, bytes.readableBytes > 0 {
                if chunked {
                    var line = context.channel.allocator.buffer(capacity: 20)
                    line.writeChunkSize(bytes.readableBytes)
                    context.fireChannelRead(wrapInboundOut(line))
                    context.fireChannelRead(wrapInboundOut(bytes))
                    context.fireChannelRead(wrapInboundOut(crlfBuffer))
                } else {
                    context.fireChannelRead(wrapInboundOut(bytes))
                }
            }
            if frame.endStream && chunked {
                chunked = false
                var last = context.channel.allocator.buffer(capacity: 5)
                last.writeStaticString("0\r\n\r\n")
                context.fireChannelRead(wrapInboundOut(last))
            }
        default:
            break  // the connection handler and NIOHTTP2 handle the rest
        }
    }

    /// The request line and fields as HTTP/1.1.
    private func requestHead(_ fields: HPACKHeaders, endStream: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        var method = "GET"
        var path = "/"
        var authority: String?
        var hasLength = false
        var cookies: [String] = []
        for (name, value, _) in fields where name.hasPrefix(":") {
            switch name {
            case ":method": method = value
            case ":path": path = value
            case ":authority": authority = value
            default: break
            }
        }
        if method == "HEAD" { parser.requestIsHead = true }
        if method == "CONNECT", let authority { path = authority }
        var out = allocator.buffer(capacity: 256)
        out.writeString(method)
        out.writeStaticString(" ")
        out.writeString(path)
        out.writeStaticString(" HTTP/1.1\r\n")
        if let authority {
            out.writeStaticString("host: ")
            out.writeString(authority)
            out.writeStaticString("\r\n")
        }
        for (name, value, _) in fields where !name.hasPrefix(":") {
            switch name {
            case "host" where authority != nil: continue  // :authority wins (RFC 9113 §8.3.1)
            case "cookie":
                cookies.append(value)
                continue
            case "content-length": hasLength = true
            default: break
            }
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        if !cookies.isEmpty {
            out.writeStaticString("cookie: ")
            out.writeString(cookies.joined(separator: "; "))
            out.writeStaticString("\r\n")
        }
        if !endStream && !hasLength {
            chunked = true
            out.writeStaticString("transfer-encoding: chunked\r\n")
        }
        out.writeStaticString("\r\n")
        return out
    }

    // MARK: response: HTTP/1.1 bytes to frames

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = unwrapOutboundIn(data)
        if var kept = unparsed {
            unparsed = nil
            kept.writeBuffer(&buffer)
            buffer = kept
        }
        // Each frame is written when the next one is known, so the last carries the promise.
        var frame: HTTP2Frame.FramePayload?
        func emit(_ next: HTTP2Frame.FramePayload) {
            if let frame { context.write(wrapOutboundOut(frame), promise: nil) }
            frame = next
        }
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
                    if let head = heldHead {
                        heldHead = nil
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
        if let frame {
            context.write(wrapOutboundOut(frame), promise: promise)
        } else {
            promise?.succeed()
        }
    }

    func flush(context: ChannelHandlerContext) {
        // A head with no body bytes yet (a slow or streamed response) goes out now.
        if let head = heldHead {
            heldHead = nil
            context.write(wrapOutboundOut(.headers(.init(headers: head))), promise: nil)
        }
        context.flush()
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
    private static func indexing(_ name: String) -> HPACKIndexing {
        name == "set-cookie" ? .neverIndexed : .indexable
    }

    private static func isConnectionSpecific(_ name: String) -> Bool {
        switch name {
        case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te": return true
        default: return false
        }
    }
}
