import Foundation
import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

/// The downstream side of one client connection: routes each request, forwards it to a target
/// over a pooled keep-alive connection of the same event loop, and streams both bodies with
/// backpressure (the side that cannot write stops the other side from reading).
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler, ClockedConnection {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let loopContext: LoopContext
    var timeouts: ConnectionTimeouts
    let listenerName: String
    var exchange: Exchange?
    var context: ChannelHandlerContext?
    var parser: RequestParser
    /// Bytes read but not parsed yet: the start of a head, or pipelined requests waiting for
    /// the current exchange to finish (reading stops meanwhile), or after an upgrade request,
    /// what the client sent ahead (handed to the tunnel).
    var pending: ByteBuffer?
    var pendingRead = false
    var closeAfterResponse = false
    var needsUpstreamFlush = false
    var needsDownstreamFlush = false
    /// The response head (and the small body bytes that followed it in the same read), not
    /// written yet: a small response goes out as one buffer, one write.
    var held: ByteBuffer?
    /// Bodies up to this size are copied behind their head rather than written separately.
    static let maxCoalescedBody = 16 * 1024
    var headSeenInRead = false
    var peerIP = ""
    var peerBytes: IPAddressBytes?
    var closed = false
    /// This connection's index in its loop's `ConnectionClock`.
    var clockSlot = -1
    /// The write of a response's end when the connection closes after it.
    var lastWrite: EventLoopFuture<Void>?

    /// Bytes of request body kept while the upstream connection is being set up.
    static let maxBufferedBody = 64 * 1024
    /// The channel's allocator is the default one; keeping it here saves a pipeline walk per write.
    let allocator = ByteBufferAllocator()

    /// The listener terminates TLS: the upstream gets `X-Forwarded-Proto: https`.
    let tls: Bool
    /// This handler serves one HTTP/2 stream (behind `HTTP2StreamAdapter`), not a connection:
    /// the connection's `HTTP2Connection` counts it, drains it (GOAWAY) and closes it.
    let isStream: Bool
    var isConnection: Bool { !isStream }

    init(loopContext: LoopContext, server: ServerSettings, listenerName: String, tls: Bool = false, isStream: Bool = false) {
        self.tls = tls
        self.isStream = isStream
        self.loopContext = loopContext
        self.timeouts = ConnectionTimeouts(headerTimeout: server.headerReadTimeoutNanos, idleTimeout: server.idleTimeoutNanos)
        self.listenerName = listenerName
        self.parser = RequestParser(maxHeadBytes: server.maxHeaderBytes)
    }

    /// Tracked from writability events: asking the channel costs a lock and retains per call.
    private(set) var isWritable = true
    /// The connection was handed to a WebSocket tunnel.
    var tunneled = false
    /// Request parts a stream delivered while its exchange was held (`receive`).
    var receivedParts: [HTTPServerRequestPart] = []

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        loopContext.clock.register(self)
        if !isStream { loopContext.metrics.connectionOpened(listener: listenerName) }
        timeouts.connectionStarted(now: loopContext.time.uptime())
        if let remote = context.channel.remoteAddress, let ip = remote.ipAddress {
            peerIP = ip
            peerBytes = IPAddressBytes(ip)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        loopContext.clock.unregister(self)
        // A connection that became a tunnel stays open: the tunnel counts it down when it closes.
        if !isStream && !tunneled { loopContext.metrics.connectionClosed(listener: listenerName) }
        self.context = nil
        exchange = nil  // (it holds this handler strongly)
        // Bytes the client sent after an upgrade request belong to the tunnel that replaced us.
        if let rest = pending, rest.readableBytes > 0 {
            pending = nil
            context.fireChannelRead(wrapInboundOut(rest))
            context.fireChannelReadComplete()
        }
    }

    /// Deadlines, checked by the loop's clock: the connection's own and the request's.
    func tick(now: UInt64) {
        switch timeouts.check(now: now) {
        case .none: break
        case .closeQuietly: closeNow()
        case .requestTimeout:
            // The client started a request head and did not finish it in time.
            closeAfterResponse = true
            let ex = Exchange(
                handler: self, head: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"),
                requestID: loopContext.ids.requestID(), clientIP: peerIP, start: loopContext.time.deadline())
            ex.requestEnded = true
            exchange = ex
            sendError(.requestTimeout(), ex)
        }
        if let ex = exchange, ex.deadline != 0, now >= ex.deadline { timedOut(ex) }
        if let ex = exchange, ex.tryDeadline != 0, now >= ex.tryDeadline { perTryTimedOut(ex) }
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if var kept = pending {
            // A partial head (rare): joined in a fresh buffer, so no slice of the old one is copied.
            var joined = allocator.buffer(capacity: kept.readableBytes + buffer.readableBytes)
            joined.writeBuffer(&kept)
            joined.writeBuffer(&buffer)
            buffer = joined
        }
        pending = buffer
        parsePending(context)
    }

    /// Parses what was read, part by part, while the current exchange can take it: once a
    /// request has ended, the next one waits (as bytes) until its response is out.
    func parsePending(_ context: ChannelHandlerContext) {
        while !receivedParts.isEmpty, !closed, exchange?.phase != .held {
            handle(receivedParts.removeFirst(), context: context)
        }
        guard var buffer = pending else { return }
        pending = nil
        while !closed {
            // The rest waits while the request is over, or while it is held (keys, Redis).
            if let ex = exchange, ex.requestEnded || ex.phase == .held { break }
            let part: HTTPServerRequestPart?
            do {
                part = try parser.next(&buffer)
            } catch {
                parseFailed(error)
                return
            }
            guard let part else { break }
            if case .head = part { headSeenInRead = true }
            handle(part, context: context)
        }
        if buffer.readableBytes > 0 && !closed { pending = buffer }
    }

    /// A request part from a transport that parsed the request itself (an HTTP/2 stream):
    /// handled now, or kept while the exchange is held, as unparsed bytes are kept.
    func receive(_ part: HTTPServerRequestPart) {
        guard let context, !closed else { return }
        if case .head = part { headSeenInRead = true }
        if !receivedParts.isEmpty || exchange?.phase == .held {
            receivedParts.append(part)
            return
        }
        handle(part, context: context)
    }

    /// The transport found the request malformed: 400 (431), as a parse error would be.
    func receiveInvalid(_ error: HTTP1ParseError) { parseFailed(error) }

    func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            timeouts.headReceived()
            startRequest(head, context: context)
        case .body(let buffer):
            if let ex = exchange { requestBody(buffer, ex) }  // (none after an early error: discarded)
        case .end(let trailers):
            if let ex = exchange { requestEnd(trailers, ex) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // A read that brought no complete head while idle started one: the header timeout runs.
        if !headSeenInRead && exchange == nil { timeouts.bytesWithoutHead(now: loopContext.time.uptime()) }
        headSeenInRead = false
        flushUpstreamIfNeeded()
        // Nothing follows this handler in the pipeline: the event stops here.
    }

    func flushUpstreamIfNeeded() {
        if needsUpstreamFlush {
            needsUpstreamFlush = false
            exchange?.connection?.handler.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { exchange?.connection?.handler.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        loopContext.clock.unregister(self)
        if let ex = exchange {
            abortUpstream(ex)
            ex.deadline = 0
            if ex.status == 0 { ex.status = 499 }  // the client went away first (NGINX's convention)
            log(ex)
            exchange = nil
        }
        pending = nil
        context.fireChannelInactive()
    }

    /// The client sent something that is not HTTP/1.1: answered 400 (431 for a head over
    /// `max_header_bytes`), and the connection closes, as nothing after it can be trusted.
    func parseFailed(_ error: HTTP1ParseError) {
        let err: GatewayError = error.tooLarge ? .headersTooLarge() : .badRequest(error.reason)
        closeAfterResponse = true
        pending = nil
        if let ex = exchange {
            abortUpstream(ex)
            if ex.responseStarted { closeNow() } else { sendError(err, ex) }
        } else {
            let ex = Exchange(
                handler: self, head: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"), requestID: loopContext.ids.requestID(),
                clientIP: peerIP, start: loopContext.time.deadline())
            ex.requestEnded = true
            exchange = ex
            timeouts.headReceived()
            sendError(err, ex)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Socket errors (reset by peer and the like): nothing to answer.
        closeNow()
    }

    /// Drain (SPEC §9): an idle connection closes now, a busy one after its response. (An
    /// HTTP/2 stream finishes its exchange; its connection sends GOAWAY.)
    func quiesce() {
        if isStream { return }
        if exchange == nil {
            closeNow()
        } else {
            closeAfterResponse = true
        }
    }

    // MARK: outbound

    func read(context: ChannelHandlerContext) {
        if shouldHoldRead() {
            pendingRead = true
            return
        }
        context.read()
    }

    func shouldHoldRead() -> Bool {
        guard let ex = exchange else { return false }
        if let p = pending, p.readableBytes > 0 { return true }
        switch ex.phase {
        case .forwarding:
            return !(ex.connection?.handler.isWritable ?? true)
        case .waitingForConnection, .routing:
            return ex.bufferedBytes >= Self.maxBufferedBody
        case .held:
            return true
        case .responded:
            return false
        }
    }

    func resumeReadingIfPossible() {
        guard pendingRead, let context, !shouldHoldRead() else { return }
        pendingRead = false
        context.read()
    }

    // MARK: request

    /// A request head arrived: the head guards and the route, then the phases of
    /// `RequestPipeline` from the per-IP limit on.
    func startRequest(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let snapshot = loopContext.currentSnapshot()
        let server = snapshot.server
        let trusted = server.isTrusted(peerBytes)
        var requestID: String
        if trusted, let given = head.headers.first(name: "x-request-id"), isAcceptableRequestID(given) {
            requestID = given
        } else {
            requestID = loopContext.ids.requestID()
        }
        let clientIP = trusted ? HeadGuards.forwardedClientIP(head.headers, server: server, peer: peerIP) : peerIP
        let ex = Exchange(handler: self, head: head, requestID: requestID, clientIP: clientIP, start: loopContext.time.deadline())
        exchange = ex
        if !parser.lastHeadKeepsAlive || loopContext.shared.draining { closeAfterResponse = true }

        let facts: HeadFacts
        switch HeadGuards.check(head, maxBodyBytes: server.maxBodyBytes) {
        case .pass(let f): facts = f
        case .refuse(let error):
            closeAfterResponse = true
            return sendError(error, ex)
        }
        ex.acceptEncoding = facts.acceptEncoding
        if head.method == .POST, let type = facts.contentType, type.utf8.starts(with: "application/grpc".utf8) {
            ex.isGRPC = GRPCRequests.isGRPC(contentType: type)
            if !ex.isGRPC, let web = GRPCWebState(contentType: type) {
                ex.isGRPC = true
                ex.grpcWeb = web
            }
        }
        ex.asksUpgrade = facts.asksUpgrade
        ex.expectsBody = facts.expectsBody

        var authority: String?
        let matched = MatchRoute.match(head, facts: facts, snapshot: snapshot, trusted: trusted, authority: &authority)
        ex.authority = authority
        switch matched {
        case .refuse(let error, let extraHeaders, let close):
            if close { closeAfterResponse = true }
            sendError(error, ex, extraHeaders: extraHeaders)
        case .loginEndpoint(let i, let isCallback, _, let query):
            ex.deadline = ex.start.uptimeNanoseconds &+ UInt64(max(1, server.requestTimeoutNanos))
            if isCallback {
                loginCallback(ex, provider: i, query: query, trusted: trusted)
            } else {
                logout(ex, provider: i, trusted: trusted, snapshot: snapshot)
            }
        case .matched(let route, let admission, let preflight):
            ex.route = route
            ex.deadline = ex.start.uptimeNanoseconds &+ UInt64(max(1, route.timeoutNanos ?? server.requestTimeoutNanos))
            if ex.isGRPC { GRPCRequests.applyTimeout(ex) }
            if let cors = route.cors {
                ex.corsOrigin = head.headers.first(name: "origin").flatMap(cors.allowedOrigin) ?? ""
                if preflight { return answerPreflight(ex, cors) }
            }
            runPipeline(ex, admission, from: .perIPLimit)
        }
    }

    /// After a request held for its credentials goes on (or is answered): what the client
    /// sent behind the head was left unparsed, including the request's end, which the parser
    /// reports without needing more bytes. Parse it now, then read again.
    func resumeParsing(_ ex: Exchange) {
        guard let context, exchange === ex else { return }
        if pending == nil { pending = allocator.buffer(capacity: 0) }
        parsePending(context)
        flushUpstreamIfNeeded()
        resumeReadingIfPossible()
    }

    /// The exchange stops using its upstream: the wait for a connection, the connection
    /// (closed: it is mid-exchange) or the aggregate's backend calls.
    func abortUpstream(_ ex: Exchange) {
        if let call = ex.aggregate {
            ex.aggregate = nil
            call.cancel()
        }
        ex.tries.drop()
        if ex.phase != .responded { ex.phase = .responded }
    }

    /// The exchange is over: log it, then close or serve the next pipelined request.
    func finish(_ ex: Exchange) {
        guard exchange === ex else { return }
        if ex.waiter != nil || ex.connection != nil { abortUpstream(ex) }
        ex.deadline = 0
        exchange = nil
        log(ex)
        if closeAfterResponse || closed {
            closeNow()
            return
        }
        // The idle deadline is only checked at clock ticks: the last tick's time is precise enough.
        timeouts.exchangeFinished(now: loopContext.clock.lastTick)
        guard let context else { return }
        parsePending(context)
        if closed { return }
        resumeReadingIfPossible()
    }

    func closeNow() {
        guard !closed, let context else { return }
        closed = true
        if let out = held {
            held = nil
            context.write(wrapOutboundOut(out), promise: nil)
        }
        // Close once the last response is out: a plain close would drop writes still queued.
        if let last = lastWrite {
            lastWrite = nil
            last.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.flush()
            context.close(promise: nil)
        }
    }

}
