import GatewayConfig
import NIOCore
import NIOHTTP1

// The request body on its way up: framed for the upstream, kept for a retry or a mirror,
// buffered until a connection takes it, bounded by `max_body_bytes`.
extension ProxyHandler {
    /// A part of the current request's body.
    func requestBody(_ buffer: ByteBuffer, _ ex: Exchange) {
        ex.requestBytes += buffer.readableBytes
        var buffer = buffer
        if let web = ex.grpcWeb, web.mode == .text {
            guard let decoded = web.decode(buffer, allocator: allocator) else {
                abortUpstream(ex)
                closeAfterResponse = true
                return sendError(.badRequest("the gRPC-Web text body is not base64"), ex)
            }
            buffer = decoded
        }
        // A byte from the client keeps a stream alive too (`stream_idle_timeout`).
        if ex.streamIdleNanos != 0 { ex.deadline = loopContext.clock.lastTick &+ ex.streamIdleNanos }
        let limit = ex.handler.loopContext.snapshot.server.maxBodyBytes
        if ex.requestBytes > limit {
            abortUpstream(ex)
            if !ex.responseStarted {
                closeAfterResponse = true
                sendError(.payloadTooLarge(limit), ex)
            } else {
                closeNow()
            }
            return
        }
        switch ex.phase {
        case .forwarding, .waitingForConnection, .routing, .held:
            if ex.phase != .forwarding { ex.bufferedBytes += buffer.readableBytes }
            if ex.upstreamChunked {
                chunk(buffer) { toUpstream(ex, $0) }
            } else {
                toUpstream(ex, buffer)
            }
        case .responded:
            break  // the answer is out; the rest of the body is read and dropped
        }
    }

    /// The request's end (and its trailers, forwarded only where the route asks for them).
    func requestEnd(_ trailers: HTTPHeaders?, _ ex: Exchange) {
        if let web = ex.grpcWeb, web.mode == .text, !web.decodedCompletely, ex.phase != .responded {
            // Base64 that stops inside a 4-character group: the upstream would get a cut message.
            ex.requestEnded = true
            abortUpstream(ex)
            closeAfterResponse = true
            return sendError(.badRequest("the gRPC-Web text body ends inside a base64 group"), ex)
        }
        ex.requestEnded = true
        if ex.upstreamChunked && (ex.phase != .responded || ex.mirror != nil) {
            var last = allocator.buffer(capacity: 5)
            last.writeStaticString("0\r\n")
            // Request trailers go on only where the route asks for them (filtered even then).
            if let trailers, let route = ex.route, route.forwardRequestTrailers {
                ForwardHeaders.requestTrailers(trailers, route: route, apiKeyHeader: loopContext.apiKeys.header, into: &last)
            }
            last.writeStaticString("\r\n")
            if ex.phase != .responded { toUpstream(ex, last) } else { ex.mirror?.append(last) }
        }
        if let m = ex.mirror {
            ex.mirror = nil
            loopContext.mirrors.send(m)
        }
        // The per-try timeout runs from the end of the request (a slow upload is not the target's fault).
        if ex.tryDeadline == 0, ex.phase == .waitingForConnection || ex.phase == .forwarding, !ex.backingOff {
            armTryTimeout(ex)
        }
        if ex.responseEnded { finish(ex) }
    }

    /// `buffer` as one chunk of a chunked body (size line, the bytes, CRLF), without copying
    /// it; an empty buffer is no chunk (it would read as the last one).
    @inline(__always)
    func chunk(_ buffer: ByteBuffer, _ emit: (ByteBuffer) -> Void) {
        guard buffer.readableBytes > 0 else { return }
        var line = allocator.buffer(capacity: 18)
        line.writeChunkSize(buffer.readableBytes)
        emit(line)
        emit(buffer)
        emit(crlfBuffer)
    }

    /// Request bytes for the upstream: written when its connection is in use, kept until then.
    @inline(__always)
    func toUpstream(_ ex: Exchange, _ bytes: ByteBuffer) {
        if case .keeping = ex.replay { keepForReplay(ex, bytes) }
        if let m = ex.mirror { m.append(bytes) }
        if ex.phase == .forwarding {
            ex.connection?.handler.write(bytes)
            needsUpstreamFlush = true
        } else {
            ex.buffered.append(bytes)
        }
    }

}
