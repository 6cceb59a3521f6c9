import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

extension ProxyHandler {
    // MARK: response

    func upstreamHead(_ head: ResponseParser.Head, _ ex: Exchange) {
        guard let context, let route = ex.route else { return }
        // Measured from the request's start: routing takes microseconds, not worth a clock read.
        let now = loopContext.time.uptime()
        ex.upstreamNanos = Int64(truncatingIfNeeded: now &- ex.start.uptimeNanoseconds)
        ex.tryDeadline = 0
        var health: Int? = head.status
        if ex.isGRPC {
            // Trailers-only (an error, mostly): the status is in the head. Else it comes in the trailers.
            if let code = GRPCRequests.status(in: head) {
                ex.grpcStatus = code
                if head.status == 200 { health = GRPC.httpStatus(forCode: code) }
            } else if head.status == 200 {
                health = nil
            }
        }
        ex.grpcHealthAtEnd = health == nil
        ex.tries.recordResponse(status: head.status, health: health, nanos: ex.upstreamNanos, now: now, loopContext)
        if route.retry != nil {
            if retry(ex, .status(head.status)) { return }
            if ex.grpcStatus > 0, retry(ex, .grpc(ex.grpcStatus)) { return }
        }
        if (ex.isGRPC && !ex.keepsDeadline) || Self.isEventStream(head) {
            // A stream: the route's total deadline gives way to `stream_idle_timeout`.
            ex.streamIdleNanos = UInt64(max(1, route.streamIdleTimeoutNanos))
            ex.deadline = now &+ ex.streamIdleNanos
        }
        if head.status == 101 {
            guard ex.isUpgrade else {
                abortUpstream(ex)
                return sendError(.badGateway("the upstream switched protocols without being asked", retry: nil), ex)
            }
            return startTunnel(head, ex)
        }
        if let shape = route.shape, let wanted = ShapeBuffer.wants(head, isHead: ex.isHead) {
            if let length = wanted.length, length > shape.maxBytes && !wanted.gzip {
                loopContext.metrics.shape(route: route.name, outcome: "too_large")
            } else {
                // Held whole until its end (nothing reaches the client before the shaped body).
                ex.response = .shaping(ShapeBuffer(head: head, gzip: wanted.gzip, limit: shape.maxBytes))
                ex.status = head.status
                return
            }
        }
        forwardHead(head, ex, route: route, context: context)
    }

    /// Server-sent events: a response that is a stream of events, however long it lasts.
    /// Read on the head's bytes: this runs for every response.
    static func isEventStream(_ head: ResponseParser.Head) -> Bool {
        head.block.withUnsafeReadableBytes { raw in
            for f in head.fields
            where asciiCaseInsensitiveEquals(UnsafeRawBufferPointer(rebasing: raw[Int(f.nameStart)..<Int(f.nameEnd)]), "content-type") {
                let value = UnsafeRawBufferPointer(rebasing: raw[Int(f.valueStart)..<Int(f.valueEnd)])
                guard value.count >= 17, asciiCaseInsensitiveEquals(UnsafeRawBufferPointer(rebasing: value[0..<17]), "text/event-stream")
                else { return false }
                // The whole media type, then parameters if any.
                return value.count == 17 || value[17] == UInt8(ascii: ";") || value[17] == UInt8(ascii: " ") || value[17] == 0x09
            }
            return false
        }
    }

    /// The response head for the client, from the upstream's (`replacedBodyLength` when the
    /// gateway rewrote the body), kept in `held` to go out with the first body bytes.
    func forwardHead(
        _ head: ResponseParser.Head, _ ex: Exchange, route: CompiledRoute, context: ChannelHandlerContext, replacedBodyLength: Int? = nil
    ) {
        if loopContext.shared.draining { closeAfterResponse = true }
        var closeAfter = closeAfterResponse
        // Room for the head, and for a small body copied behind it (see `upstreamBody`).
        var out = allocator.buffer(capacity: head.block.readableBytes + 192 + 512)
        var extra = ex.rateLimitHeaders
        if route.retry != nil { extra.append(("x-upstream-attempts", String(ex.attempts))) }
        let compress = replacedBodyLength == nil && shouldCompress(head, ex)
        let gzip = compress ? GzipStream() : nil
        for c in ex.setCookies { extra.append(("set-cookie", c)) }
        let chunked = out.writeHead(capacity: head.block.readableBytes + 192) { sink in
            ForwardHeaders.responseHead(
                head, request: ex.head, route: route, requestID: ex.requestID, isHead: ex.isHead, corsOrigin: ex.corsOrigin,
                extra: extra,
                replacedBodyLength: replacedBodyLength, gzip: gzip != nil, grpcWeb: ex.grpcWeb, closeAfter: &closeAfter, into: &sink)
        }
        closeAfterResponse = closeAfter
        ex.status = head.status
        ex.response = .streaming(chunked: chunked, gzip: gzip)
        if let earlier = held { context.write(wrapOutboundOut(earlier), promise: nil) }
        held = out
        needsDownstreamFlush = true
    }

    /// gzip for this response (SPEC §3): the server allows it, the client accepts it, the
    /// upstream did not encode it, the type is compressible, it has a body of at least
    /// `min_bytes` (or of unknown length).
    func shouldCompress(_ head: ResponseParser.Head, _ ex: Exchange) -> Bool {
        // Most API clients send no Accept-Encoding: that is decided before anything else is read.
        guard let accept = ex.acceptEncoding, !ex.isHead, (200..<300).contains(head.status), head.status != 204, head.status != 206
        else { return false }
        let server = loopContext.snapshot.server
        guard server.gzip else { return false }
        guard GzipStream.accepts(accept), ForwardHeaders.value(of: "content-encoding", in: head) == nil,
            let type = ForwardHeaders.value(of: "content-type", in: head), GzipStream.isCompressible(type)
        else { return false }
        if let length = ForwardHeaders.value(of: "content-length", in: head).flatMap({ Int($0.trimmingCharacters(in: " \t")) }) {
            return length >= server.gzipMinBytes
        }
        return true
    }

    /// A held response grew past `shape.max_bytes`: its head and what was held go out as
    /// they came, and the rest streams.
    func releaseUnshaped(_ sb: ShapeBuffer, _ ex: Exchange, route: CompiledRoute, reason: String) {
        guard let context else { return }
        ex.response = .waiting
        loopContext.metrics.shape(route: route.name, outcome: reason)
        forwardHead(sb.head, ex, route: route, context: context)
        for part in sb.parts { upstreamBody(part, ex) }
    }

    /// The held response is complete: shaped (or, when it cannot be, as it came).
    func finishShaping(_ sb: ShapeBuffer, _ ex: Exchange, route: CompiledRoute) {
        guard let context, let shape = route.shape else { return }
        switch sb.shape(shape.spec, allocator: allocator) {
        case .shaped(let body):
            loopContext.metrics.shape(route: route.name, outcome: "shaped")
            forwardHead(sb.head, ex, route: route, context: context, replacedBodyLength: body.count)
            ex.response = .streaming(chunked: false, gzip: nil)
            ex.responseBytes = body.count
            held?.writeBytes(body)
        case .unshaped(let reason):
            releaseUnshaped(sb, ex, route: route, reason: reason)
        }
    }

    func upstreamBody(_ buffer: ByteBuffer, _ ex: Exchange) {
        guard let context else { return }
        var buffer = buffer
        let chunked: Bool
        switch ex.response {
        case .streaming(let c, let gzip):
            chunked = c
            if let gzip, !ex.isHead {
                guard let compressed = gzip.compress(buffer, allocator: allocator) else { return closeNow() }
                buffer = compressed
            }
        case .shaping(let sb):
            if !sb.append(buffer), let route = ex.route { releaseUnshaped(sb, ex, route: route, reason: "too_large") }
            return
        case .waiting, .switching, .ended:
            return  // no head of this try reached the client, or the response is over
        }
        if let web = ex.grpcWeb, !web.ended { buffer = web.encode(buffer, allocator: allocator) }
        ex.responseBytes += buffer.readableBytes
        if ex.streamIdleNanos != 0 { ex.deadline = loopContext.clock.lastTick &+ ex.streamIdleNanos }
        if ex.isHead { return }
        let n = buffer.readableBytes
        if var out = held, n <= Self.maxCoalescedBody {
            held = nil  // `out` is now the buffer's only owner: appending does not copy it
            if chunked {
                guard n > 0 else {
                    held = out
                    return
                }
                out.writeChunkSize(n)
                out.writeImmutableBuffer(buffer)
                out.writeStaticString("\r\n")
            } else {
                out.writeImmutableBuffer(buffer)
            }
            held = out
            needsDownstreamFlush = true
            return
        }
        if let out = held {
            held = nil
            context.write(wrapOutboundOut(out), promise: nil)
        }
        if chunked {
            chunk(buffer) { context.write(wrapOutboundOut($0), promise: nil) }
        } else {
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
        needsDownstreamFlush = true
    }

    /// The upstream finished a read: send what it produced in one write (head, body and end
    /// of a small response become one syscall).
    func upstreamReadComplete() {
        guard needsDownstreamFlush, let context else { return }
        needsDownstreamFlush = false
        if let out = held {
            held = nil
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        } else {
            context.flush()
        }
    }

    func upstreamEnd(_ ex: Exchange, trailers: ByteBuffer?) {
        guard let context else { return }
        var trailers = trailers
        if ex.isGRPC && ex.grpcStatus < 0 {
            // None in the head: from the trailers, else what the HTTP status says.
            ex.grpcStatus =
                trailers.flatMap(GRPCRequests.status(inTrailers:))
                ?? (ex.status == 200 ? GRPC.unknown : GRPC.code(forHTTPStatus: ex.status))
        }
        if ex.grpcHealthAtEnd {
            ex.grpcHealthAtEnd = false
            ex.tries.recordHealth(GRPC.httpStatus(forCode: ex.grpcStatus), now: loopContext.clock.lastTick)
        }
        if case .switching = ex.response { return completeTunnel(ex) }
        if case .shaping(let sb) = ex.response, let route = ex.route { finishShaping(sb, ex, route: route) }
        if case .streaming(let chunked, let gzip?) = ex.response {
            ex.response = .streaming(chunked: chunked, gzip: nil)
            if !ex.isHead, let tail = gzip.finish(allocator: allocator), tail.readableBytes > 0 {
                // The tail goes out through the same framing, uncompressed this time.
                upstreamBody(tail, ex)
            }
        }
        if let web = ex.grpcWeb, case .streaming = ex.response {
            // gRPC-Web: the trailers are the body's last frame.
            let tail = web.end(trailers: trailers, allocator: allocator)
            trailers = nil
            if tail.readableBytes > 0 { upstreamBody(tail, ex) }
        }
        let chunked = ex.clientChunked
        ex.tries.release(reusable: ex.requestEnded)
        ex.phase = .responded
        ex.response = .ended
        // The upstream answered before the request body was complete: the rest of the body
        // cannot go anywhere, so the connection closes after this response.
        if !ex.requestEnded && ex.expectsBody { closeAfterResponse = true }
        var out = held
        held = nil
        needsDownstreamFlush = false
        if chunked {
            if out == nil { out = allocator.buffer(capacity: 5 + (trailers?.readableBytes ?? 0)) }
            out?.writeStaticString("0\r\n")
            if let trailers { out?.writeImmutableBuffer(trailers) }
            out?.writeStaticString("\r\n")
        }
        writeLast(context, out)
        if ex.requestEnded || closeAfterResponse { finish(ex) }
    }

    // MARK: WebSocket

    /// Answers the client's upgrade with the upstream's 101. The byte tunnel starts at the end
    /// of that response, once the upstream's HTTP decoder has let go of the message.
    func startTunnel(_ head: ResponseParser.Head, _ ex: Exchange) {
        guard let context else { return }
        ex.status = 101
        ex.response = .switching
        ex.deadline = 0
        var out = allocator.buffer(capacity: head.block.readableBytes + 96)
        ForwardHeaders.switchingProtocolsHead(head, requestID: ex.requestID, into: &out)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    func completeTunnel(_ ex: Exchange) {
        guard let context, ex.connection != nil else { return }
        log(ex)
        exchange = nil
        guard let c = ex.tries.detach() else { return }
        tunneled = true
        let metrics = loopContext.metrics
        let listener = listenerName
        let counted = !isStream
        Tunnel.join(
            downstream: context, upstream: c, proxy: self, idleTimeout: loopContext.snapshot.server.tunnelIdleTimeoutNanos,
            onClientClose: { if counted { metrics.connectionClosed(listener: listener) } })
    }
}
