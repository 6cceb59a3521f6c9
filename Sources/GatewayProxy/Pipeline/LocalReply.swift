import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

// Answers the gateway makes itself: errors of SPEC §4, fixed responses, preflights, login
// redirects and pages. Each is one buffer, one write.
extension ProxyHandler {
    /// Writes a phase's reply.
    func answer(_ ex: Exchange, _ reply: LocalReply) {
        switch reply {
        case .error(let error, let extraHeaders): sendError(error, ex, extraHeaders: extraHeaders)
        case .response(let status, let headers, let body): respondLocally(ex, status: status, headers: headers, body: body)
        }
    }

    /// 204 with the route's CORS policy, or without `Access-Control-Allow-Origin` when the
    /// origin is not allowed (the browser then refuses the request).
    func answerPreflight(_ ex: Exchange, _ cors: CORSPolicy) {
        var headers: [(String, String)] = []
        if let origin = ex.corsOrigin, !origin.isEmpty {
            headers.append(("access-control-allow-methods", cors.allowMethods))
            if !cors.allowHeaders.isEmpty { headers.append(("access-control-allow-headers", cors.allowHeaders)) }
            if let m = cors.maxAge { headers.append(("access-control-max-age", m)) }
        }
        headers.append(("vary", "Access-Control-Request-Method, Access-Control-Request-Headers"))
        respondLocally(ex, status: 204, headers: headers, body: [])
    }

    func respondLocally(_ ex: Exchange, status: Int, headers: [(String, String)], body: [UInt8]) {
        var h = HTTPHeaders()
        h.reserveCapacity(headers.count + 4)
        for (n, v) in headers { h.add(name: n, value: v) }
        let bodyless = status == 204 || status == 304
        if !bodyless { h.add(name: "content-length", value: String(body.count)) }
        h.add(name: "x-request-id", value: ex.requestID)
        for (n, v) in ex.rateLimitHeaders { h.add(name: n, value: v) }
        for c in ex.setCookies { h.add(name: "set-cookie", value: c) }
        if let route = ex.route {
            if let cors = route.cors, let origin = ex.corsOrigin { ForwardHeaders.addCORS(cors, origin: origin, to: &h) }
            ForwardHeaders.apply(route.responseHeaders, to: &h)
        }
        let buffer = body.isEmpty || bodyless ? nil : allocator.buffer(bytes: body)
        writeLocal(ex, status: HTTPResponseStatus(statusCode: status), headers: h, body: buffer)
    }

    func sendError(_ error: GatewayError, _ ex: Exchange, extraHeaders: [(String, String)] = []) {
        guard context != nil else { return }
        if ex.isGRPC { return sendGRPCError(error, ex, extraHeaders: extraHeaders) }
        let body = error.body(requestID: ex.requestID)
        var h = HTTPHeaders()
        h.reserveCapacity(4 + extraHeaders.count)
        h.add(name: "content-type", value: "application/json")
        h.add(name: "content-length", value: String(body.utf8.count))
        h.add(name: "x-request-id", value: ex.requestID)
        for (n, v) in extraHeaders { h.add(name: n, value: v) }
        for (n, v) in ex.rateLimitHeaders { h.add(name: n, value: v) }
        if ex.attempts > 0, ex.route?.retry != nil { h.add(name: "x-upstream-attempts", value: String(ex.attempts)) }
        // A browser reads a refusal only when it carries the CORS fields.
        if let cors = ex.route?.cors, let origin = ex.corsOrigin { ForwardHeaders.addCORS(cors, origin: origin, to: &h) }
        writeLocal(ex, status: error.status, headers: h, body: allocator.buffer(string: body))
    }

    func writeLocal(_ ex: Exchange, status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer?) {
        guard let context, !ex.responseStarted else { return }
        var headers = headers
        // A body the client is still sending would have to be read and thrown away; closing
        // is cheaper and bounds what a client can make the gateway read.
        if loopContext.shared.draining || (!ex.requestEnded && ex.expectsBody) { closeAfterResponse = true }
        if closeAfterResponse {
            headers.replaceOrAdd(name: "connection", value: "close")
        } else if ex.head.version.minor == 0 {
            headers.replaceOrAdd(name: "connection", value: "keep-alive")
        }
        ex.status = Int(status.code)
        ex.response = .ended
        ex.phase = .responded
        let body = ex.isHead ? nil : body
        ex.responseBytes = body?.readableBytes ?? 0
        writeLast(context, HeadWriter.localResponse(status: status, headers: headers, body: body, allocator: allocator))
        // A request without a body has its end right behind its head: finish then.
        if ex.requestEnded || closeAfterResponse { finish(ex) }
    }

    /// The last bytes of a response, and the flush. When the connection closes after it, the
    /// write's completion is what the close waits for.
    func writeLast(_ context: ChannelHandlerContext, _ bytes: ByteBuffer?) {
        if closeAfterResponse {
            let p = context.eventLoop.makePromise(of: Void.self)
            lastWrite = p.futureResult
            context.writeAndFlush(wrapOutboundOut(bytes ?? allocator.buffer(capacity: 0)), promise: p)
        } else if let bytes {
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        } else {
            context.flush()
        }
    }

}
