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
    private var timeouts: ConnectionTimeouts
    let listenerName: String
    private(set) var exchange: Exchange?
    private var context: ChannelHandlerContext?
    private var parser: RequestParser
    /// Bytes read but not parsed yet: the start of a head, or pipelined requests waiting for
    /// the current exchange to finish (reading stops meanwhile), or after an upgrade request,
    /// what the client sent ahead (handed to the tunnel).
    private var pending: ByteBuffer?
    private var pendingRead = false
    private var closeAfterResponse = false
    private var needsUpstreamFlush = false
    private var needsDownstreamFlush = false
    /// The response head (and the small body bytes that followed it in the same read), not
    /// written yet: a small response goes out as one buffer, one write.
    private var held: ByteBuffer?
    /// Bodies up to this size are copied behind their head rather than written separately.
    private static let maxCoalescedBody = 16 * 1024
    private var headSeenInRead = false
    private var peerIP = ""
    private var peerBytes: IPAddressBytes?
    private var closed = false
    /// This connection's index in its loop's `ConnectionClock`.
    var clockSlot = -1
    /// The write of a response's end when the connection closes after it.
    private var lastWrite: EventLoopFuture<Void>?

    /// Bytes of request body kept while the upstream connection is being set up.
    static let maxBufferedBody = 64 * 1024
    /// The channel's allocator is the default one; keeping it here saves a pipeline walk per write.
    private let allocator = ByteBufferAllocator()

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
    private var tunneled = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        loopContext.clock.register(self)
        if !isStream { loopContext.metrics.connectionOpened(listener: listenerName) }
        timeouts.connectionStarted(now: NIODeadline.now().uptimeNanoseconds)
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
                requestID: loopContext.ids.requestID(), clientIP: peerIP, start: .now())
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
    private func parsePending(_ context: ChannelHandlerContext) {
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

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            timeouts.headReceived()
            startRequest(head, context: context)
        case .body(let buffer):
            guard let ex = exchange else { return }  // after an early error we only discard
            ex.requestBytes += buffer.readableBytes
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
        case .end(let trailers):
            guard let ex = exchange else { return }
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
    }

    /// `buffer` as one chunk of a chunked body (size line, the bytes, CRLF), without copying
    /// it; an empty buffer is no chunk (it would read as the last one).
    @inline(__always)
    private func chunk(_ buffer: ByteBuffer, _ emit: (ByteBuffer) -> Void) {
        guard buffer.readableBytes > 0 else { return }
        var line = allocator.buffer(capacity: 18)
        line.writeChunkSize(buffer.readableBytes)
        emit(line)
        emit(buffer)
        emit(crlfBuffer)
    }

    /// Request bytes for the upstream: written when its connection is in use, kept until then.
    @inline(__always)
    private func toUpstream(_ ex: Exchange, _ bytes: ByteBuffer) {
        if ex.keepsReplay { keepForReplay(ex, bytes) }
        if let m = ex.mirror { m.append(bytes) }
        if ex.phase == .forwarding {
            ex.connection?.handler.write(bytes)
            needsUpstreamFlush = true
        } else {
            ex.buffered.append(bytes)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // A read that brought no complete head while idle started one: the header timeout runs.
        if !headSeenInRead && exchange == nil { timeouts.bytesWithoutHead(now: NIODeadline.now().uptimeNanoseconds) }
        headSeenInRead = false
        flushUpstreamIfNeeded()
        // Nothing follows this handler in the pipeline: the event stops here.
    }

    private func flushUpstreamIfNeeded() {
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
    private func parseFailed(_ error: HTTP1ParseError) {
        let err: GatewayError = error.tooLarge ? .headersTooLarge() : .badRequest(error.reason)
        closeAfterResponse = true
        pending = nil
        if let ex = exchange {
            abortUpstream(ex)
            if ex.responseStarted { closeNow() } else { sendError(err, ex) }
        } else {
            let ex = Exchange(
                handler: self, head: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"), requestID: loopContext.ids.requestID(),
                clientIP: peerIP, start: .now())
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

    private func shouldHoldRead() -> Bool {
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

    private func startRequest(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let snapshot = loopContext.currentSnapshot()
        let server = snapshot.server
        let trusted = server.isTrusted(peerBytes)
        var requestID: String
        if trusted, let given = head.headers.first(name: "x-request-id"), isAcceptableRequestID(given) {
            requestID = given
        } else {
            requestID = loopContext.ids.requestID()
        }
        let clientIP = trusted ? forwardedClientIP(head.headers, server: server) : peerIP
        let ex = Exchange(handler: self, head: head, requestID: requestID, clientIP: clientIP, start: .now())
        exchange = ex
        if !parser.lastHeadKeepsAlive || loopContext.shared.draining { closeAfterResponse = true }

        // Request smuggling guards the decoder does not cover.
        if head.version.major != 1 {
            closeAfterResponse = true
            return sendError(.badRequest("unsupported HTTP version"), ex)
        }
        // One pass over the headers for everything the request path needs from them
        // (guards, routing, `Expect`, upgrades): no arrays built, no later lookups.
        var hostCount = 0
        var hostValue: String?
        var lengthCount = 0
        var contentLengthValue: String?
        var hasTransferEncoding = false
        var expectsContinue = false
        var asksUpgrade = false
        for (name, value) in head.headers {
            switch name.utf8.count {
            case 4 where nameEquals(name, "host"):
                hostCount += 1
                hostValue = value
            case 6 where nameEquals(name, "expect"): expectsContinue = nameEquals(value, "100-continue")
            case 7 where nameEquals(name, "upgrade"): asksUpgrade = true
            case 14 where nameEquals(name, "content-length"):
                lengthCount += 1
                contentLengthValue = value
            case 17 where nameEquals(name, "transfer-encoding"): hasTransferEncoding = true
            case 15 where nameEquals(name, "accept-encoding"): ex.acceptEncoding = value
            default: break
            }
        }
        if hostCount > 1 || (head.version.minor >= 1 && hostCount == 0) {
            closeAfterResponse = true
            return sendError(.badRequest(hostCount == 0 ? "missing Host header" : "more than one Host header"), ex)
        }
        if let hostValue, !Self.isValidHost(hostValue) {
            closeAfterResponse = true
            return sendError(.badRequest("invalid Host header"), ex)
        }
        if hasTransferEncoding {
            // HTTP/1.0 has no chunked framing: a Transfer-Encoding there is faulty framing (RFC 9112 §6.1).
            if head.version.minor == 0 {
                closeAfterResponse = true
                return sendError(.badRequest("Transfer-Encoding in an HTTP/1.0 request"), ex)
            }
            if lengthCount > 0 {
                closeAfterResponse = true
                return sendError(.badRequest("both Content-Length and Transfer-Encoding"), ex)
            }
            let te = head.headers["transfer-encoding"].joined(separator: ",").lowercased().split(separator: ",")
                .map { $0.trimmingCharacters(in: " \t") }
            if te != ["chunked"] {
                closeAfterResponse = true
                return sendError(.badRequest("unsupported Transfer-Encoding"), ex)
            }
        }
        ex.asksUpgrade = asksUpgrade
        let contentLength = contentLengthValue.flatMap { Int($0) }
        ex.expectsBody = (contentLength ?? 0) > 0 || hasTransferEncoding
        if let cl = contentLength, cl > server.maxBodyBytes {
            closeAfterResponse = true
            return sendError(.payloadTooLarge(server.maxBodyBytes), ex)
        }

        let normalized: (path: String, query: Substring?)
        switch RequestPath.normalize(head.uri) {
        case .success(let n): normalized = n
        case .failure(let why):
            closeAfterResponse = true
            let message: String
            switch why {
            case .climbsAboveRoot: message = "the path climbs above the root"
            case .badPercentEncoding: message = "bad percent-encoding in the path"
            case .notOriginForm: message = "the request target must be a path"
            }
            return sendError(.badRequest(message), ex)
        }

        // The authority of an absolute-form target takes the place of `Host` (RFC 9112 §3.2.2),
        // for routing and for what is forwarded alike: a request routed on one name (no auth)
        // never reaches the upstream under another. HTTP/2's `:path` in absolute form arrives
        // here the same way.
        let authority = head.uri.utf8.first == UInt8(ascii: "/") ? nil : RequestPath.authority(of: head.uri)
        if let authority {
            guard Self.isValidHost(String(authority)) else {
                closeAfterResponse = true
                return sendError(.badRequest("invalid authority in the request target"), ex)
            }
            if hostValue.map({ !Self.sameAuthority($0, authority) }) ?? true { ex.authority = String(authority) }
        }

        // A login provider's callback and logout paths are the gateway's own, whatever the routes say.
        if !snapshot.loginProviders.isEmpty, let (i, isCallback) = Self.loginPath(snapshot, normalized.path) {
            ex.deadline = ex.start.uptimeNanoseconds &+ UInt64(max(1, server.requestTimeoutNanos))
            return isCallback
                ? loginCallback(ex, provider: i, query: normalized.query, trusted: trusted)
                : logout(ex, provider: i, trusted: trusted, snapshot: snapshot)
        }

        var method = head.method.rawValue
        // A CORS preflight is routed as the request it announces; a route with `cors` answers it
        // before authentication (a preflight carries no credentials).
        var preflight = false
        if head.method == .OPTIONS, head.headers.contains(name: "origin"),
            let announced = head.headers.first(name: "access-control-request-method"), !announced.isEmpty
        {
            preflight = true
            method = announced
        }
        var route: CompiledRoute
        let host = authority ?? hostValue.map { Substring($0) }
        switch Router.route(snapshot, method: method, path: normalized.path, query: normalized.query, headers: head.headers, host: host) {
        case .matched(let r): route = r
        case .notFound: return sendError(.noRoute(), ex)
        case .methodNotAllowed(let allow):
            return sendError(.methodNotAllowed(), ex, extraHeaders: [("allow", allow.joined(separator: ", "))])
        }
        if preflight && route.cors == nil {
            // Not a route with CORS: the OPTIONS request is routed as itself.
            switch Router.route(
                snapshot, method: "OPTIONS", path: normalized.path, query: normalized.query, headers: head.headers, host: host)
            {
            case .matched(let r): route = r
            case .notFound: return sendError(.noRoute(), ex)
            case .methodNotAllowed(let allow):
                return sendError(.methodNotAllowed(), ex, extraHeaders: [("allow", allow.joined(separator: ", "))])
            }
            preflight = false
        }
        ex.route = route
        ex.deadline = ex.start.uptimeNanoseconds &+ UInt64(max(1, route.timeoutNanos ?? server.requestTimeoutNanos))
        if let cors = route.cors {
            ex.corsOrigin = head.headers.first(name: "origin").flatMap(cors.allowedOrigin) ?? ""
            if preflight { return answerPreflight(ex, cors) }
        }
        let admission = Admission(
            snapshot: snapshot, path: normalized.path, query: normalized.query, trusted: trusted, expectsContinue: expectsContinue)
        // `per_ip` is checked before authentication, so credential guessing is throttled too.
        if let policy = snapshot.rateLimits, let perIP = policy.perIP, !route.rateLimit.isDisabled {
            checkLimit(ex, policy, tier: perIP, key: "ip|" + ex.clientIP, shadow: route.rateLimit.shadow ?? policy.shadow) {
                self.afterPerIP(ex, route: route, admission)
            }
        } else {
            afterPerIP(ex, route: route, admission)
        }
    }

    private func afterPerIP(_ ex: Exchange, route: CompiledRoute, _ a: Admission) {
        if let login = route.login { return loginGate(ex, route: route, provider: login, a) }
        if let auth = route.auth {
            authenticate(ex, auth, a, allowFetch: true)
        } else {
            dispatch(ex, route: route, a)
        }
    }

    /// What the request path computed before authentication, for the steps after it.
    struct Admission {
        var snapshot: Snapshot
        var path: String
        var query: Substring?
        var trusted: Bool
        var expectsContinue: Bool
    }

    private func authenticate(_ ex: Exchange, _ auth: AuthRequirement, _ a: Admission, allowFetch: Bool) {
        guard let route = ex.route else { return }
        switch loopContext.authenticate(auth, headers: ex.head.headers, allowFetch: allowFetch) {
        case .allow(let identity):
            ex.identity = identity
            if ex.phase == .held {
                ex.phase = .routing
                dispatch(ex, route: route, a)
                resumeParsing(ex)
            } else {
                dispatch(ex, route: route, a)
            }
        case .deny(let status, let failure, let provider, let scopes):
            loopContext.metrics.authFailure(provider: provider, reason: failure.rawValue)
            let wasHeld = ex.phase == .held
            if wasHeld { ex.phase = .routing }
            let error: GatewayError =
                status == .forbidden
                ? .init(.forbidden, "forbidden", failure.description, source: .downstream)
                : .init(.unauthorized, "unauthorized", failure.description, source: .downstream)
            sendError(
                error, ex, extraHeaders: [("www-authenticate", AuthDecision.challenge(status: status, failure: failure, scopes: scopes))])
            if wasHeld { resumeParsing(ex) }
        case .wait(let fetch):
            // The provider is fetching its keys: the request (and what follows it on the
            // connection) waits, on this loop, for that fetch.
            ex.phase = .held
            // The fetch's promise belongs to this loop, so its callback runs here.
            fetch.assumeIsolated().whenComplete { [self] _ in
                guard exchange === ex, ex.phase == .held else { return }
                authenticate(ex, auth, a, allowFetch: false)
            }
        }
    }

    /// After a request held for its credentials goes on (or is answered): what the client
    /// sent behind the head was left unparsed, including the request's end, which the parser
    /// reports without needing more bytes. Parse it now, then read again.
    private func resumeParsing(_ ex: Exchange) {
        guard let context, exchange === ex else { return }
        if pending == nil { pending = allocator.buffer(capacity: 0) }
        parsePending(context)
        flushUpstreamIfNeeded()
        resumeReadingIfPossible()
    }

    /// 204 with the route's CORS policy, or without `Access-Control-Allow-Origin` when the
    /// origin is not allowed (the browser then refuses the request).
    private func answerPreflight(_ ex: Exchange, _ cors: CORSPolicy) {
        var headers: [(String, String)] = []
        if let origin = ex.corsOrigin, !origin.isEmpty {
            headers.append(("access-control-allow-methods", cors.allowMethods))
            if !cors.allowHeaders.isEmpty { headers.append(("access-control-allow-headers", cors.allowHeaders)) }
            if let m = cors.maxAge { headers.append(("access-control-max-age", m)) }
        }
        headers.append(("vary", "Access-Control-Request-Method, Access-Control-Request-Headers"))
        respondLocally(ex, status: 204, headers: headers, body: [])
    }

    private func dispatch(_ ex: Exchange, route: CompiledRoute, _ a: Admission) {
        if let policy = a.snapshot.rateLimits, !route.rateLimit.isDisabled,
            let tier = RateLimitKeys.tier(policy, route: route, identity: ex.identity, headers: ex.head.headers)
        {
            ex.tier = tier.name
            if !tier.isUnlimited {
                let key = RateLimitKeys.key(policy, identity: ex.identity, clientIP: ex.clientIP, headers: ex.head.headers)
                // A route with its own tiers counts on its own; the others share the tier's budget.
                let scope: String
                if case .override = route.rateLimit { scope = "r|" + route.name } else { scope = "t" }
                let scoped = scope + "|" + tier.name + "|" + key
                return checkLimit(ex, policy, tier: tier, key: scoped, shadow: route.rateLimit.shadow ?? policy.shadow) {
                    self.perform(ex, route: route, a)
                }
            }
        }
        perform(ex, route: route, a)
    }

    /// Where the route sends the admitted request.
    private func perform(_ ex: Exchange, route: CompiledRoute, _ a: Admission) {
        switch route.action {
        case .respond(let status, let headers, let body):
            respondLocally(ex, status: status, headers: headers, body: body)
        case .upstream(let index):
            toUpstream(ex, index, route: route, a)
        case .split(let split):
            let member = splitMember(ex, split)
            toUpstream(ex, member < split.upstreams.count ? split.upstreams[member] : -1, route: route, a)
        case .aggregate(let policy):
            // The client's body, if any, goes nowhere: it is read and dropped.
            ex.phase = .forwarding
            let call = AggregateCall(handler: self, ex: ex, route: route, policy: policy, admission: a)
            ex.aggregate = call
            call.start()
        }
    }

    /// The aggregate's merged answer.
    func aggregateDone(_ ex: Exchange, body: [UInt8], headers: [(String, String)]) {
        guard exchange === ex, !ex.responseStarted else { return }
        ex.aggregate = nil
        respondLocally(ex, status: 200, headers: headers, body: body)
    }

    /// A required backend failed (502) or timed out (504).
    func aggregateFailed(_ ex: Exchange, _ error: GatewayError, headers: [(String, String)]) {
        guard exchange === ex, !ex.responseStarted else { return }
        ex.aggregate = nil
        sendError(error, ex, extraHeaders: headers)
    }

    private func toUpstream(_ ex: Exchange, _ index: Int, route: CompiledRoute, _ a: Admission) {
        guard index >= 0, index < loopContext.upstreams.count else {
            return sendError(.unavailable("the route's upstream is not configured"), ex)
        }
        ex.upstream = loopContext.upstreams[index]
        if let fault = route.fault {
            injectFault(ex, fault, route: route, a)
        } else {
            firstTry(ex, route: route, a)
        }
    }

    /// The split member for this request: the one `override_header` names, else the one the
    /// sticky key's bucket falls in, else one drawn by weight.
    private func splitMember(_ ex: Exchange, _ split: SplitPolicy) -> Int {
        if let header = split.overrideHeader, let value = ex.head.headers.first(name: header), let m = split.member(named: value) {
            return m
        }
        if let sticky = split.sticky, let hash = hashKey(sticky, ex) {
            return split.split.member(forBucket: CanarySplit.bucket(hash))
        }
        return split.split.member(random: loopContext.rng.next())
    }

    /// Starts collecting a copy of the request for the route's mirror upstream.
    private func startMirror(_ ex: Exchange, _ mirror: MirrorPolicy, route: CompiledRoute, _ a: Admission) {
        guard mirror.upstream >= 0, mirror.upstream < loopContext.upstreams.count else { return }
        let upstream = loopContext.upstreams[mirror.upstream]
        guard let i = upstream.pick(hashKey: nil, rng: &loopContext.rng, now: loopContext.clock.lastTick.asInt64) else { return }
        let target = upstream.pools[i].target
        let room = 448 + ex.head.uri.utf8.count + ex.head.headers.count * 64
        var head = allocator.buffer(capacity: room)
        _ = head.writeHead(capacity: room) { out in
            ForwardHeaders.requestHead(
                ex.head, route: route, path: a.path, query: a.query, target: target, requestID: ex.requestID,
                peerIP: peerIP, trusted: a.trusted, upgrade: nil, identity: ex.identity, authority: ex.authority, ids: &loopContext.ids,
                into: &out)
        }
        // Marked as a copy, and asked to close after its answer (mirrors never use the pools).
        head.moveWriterIndex(to: head.writerIndex - 2)
        head.writeStaticString("x-gateway-mirror: 1\r\nconnection: close\r\n\r\n")
        let timeout = route.timeoutNanos ?? a.snapshot.server.requestTimeoutNanos
        ex.mirror = MirrorRequest(
            route: route.name, head: head, target: target, tls: upstream.pools[i].tls,
            connectTimeout: .nanoseconds(upstream.spec.connectTimeoutNanos),
            timeout: .nanoseconds(timeout))
    }

    /// The admitted request goes to the route's upstream: the first try.
    private func firstTry(_ ex: Exchange, route: CompiledRoute, _ a: Admission) {
        guard let context else { return }
        if route.retry != nil {
            ex.admission = a
            ex.keepsReplay = ex.expectsBody
        }
        // The client waits for a go-ahead before sending its body: the gateway gives it
        // (and strips `Expect`), as the upstream's own 100 would not come through.
        if ex.head.version.minor >= 1 && a.expectsContinue {
            context.writeAndFlush(wrapOutboundOut(allocator.buffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
        if let mirror = route.mirror, !ex.asksUpgrade, FaultPolicy.hits(mirror.perMillion, loopContext.rng.next()) {
            startMirror(ex, mirror, route: route, a)
        }
        startTry(ex, route: route, a)
    }

    /// Picks a target (another one than those tried, where one is available) and sends the request there.
    private func startTry(_ ex: Exchange, route: CompiledRoute, _ a: Admission) {
        guard let upstream = ex.upstream else { return }
        let hashKey = upstream.spec.balancer == .consistentHash ? self.hashKey(upstream.spec.hashOn, ex) : nil
        guard let i = upstream.pick(hashKey: hashKey, rng: &loopContext.rng, now: loopContext.clock.lastTick.asInt64, avoid: ex.tried)
        else {
            return sendError(.unavailable("no target available"), ex)
        }
        ex.poolIndex = i
        ex.pool = upstream.pools[i]
        ex.attempts += 1
        if i < 64 { ex.tried |= 1 << UInt64(i) }
        if ex.requestEnded { armTryTimeout(ex) }
        forward(ex, snapshot: a.snapshot, route: route, path: a.path, query: a.query, trusted: a.trusted)
    }

    /// `fault`: the delay first, then the abort, each for its share of requests.
    private func injectFault(_ ex: Exchange, _ f: FaultPolicy, route: CompiledRoute, _ a: Admission) {
        if f.delayNanos > 0, FaultPolicy.hits(f.delayPerMillion, loopContext.rng.next()), let context {
            // Held like a request waiting for keys: what follows it on the connection waits too.
            ex.phase = .held
            context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(f.delayNanos)) { [self] in
                guard exchange === ex, ex.phase == .held else { return }
                ex.phase = .routing
                abortOrForward(ex, f, route: route, a)
                resumeParsing(ex)
            }
            return
        }
        abortOrForward(ex, f, route: route, a)
    }

    private func abortOrForward(_ ex: Exchange, _ f: FaultPolicy, route: CompiledRoute, _ a: Admission) {
        if FaultPolicy.hits(f.abortPerMillion, loopContext.rng.next()) {
            sendError(.faultAbort(f.abortStatus), ex)
        } else {
            firstTry(ex, route: route, a)
        }
    }

    // MARK: retries

    /// Request bodies up to this size are kept for another try (SPEC §2.7).
    static let maxReplayBody = 64 * 1024

    private func keepForReplay(_ ex: Exchange, _ bytes: ByteBuffer) {
        ex.replayBytes += bytes.readableBytes
        if ex.replayBytes > Self.maxReplayBody {
            ex.keepsReplay = false
            ex.replayLost = true
            ex.replay = []
        } else {
            ex.replay.append(bytes)
        }
    }

    private func armTryTimeout(_ ex: Exchange) {
        guard let perTry = ex.route?.retry?.perTryTimeoutNanos, perTry > 0 else { return }
        ex.tryDeadline = NIODeadline.now().uptimeNanoseconds &+ UInt64(perTry)
    }

    /// The current try got no response in `per_try_timeout`: another try, or 504.
    private func perTryTimedOut(_ ex: Exchange) {
        ex.tryDeadline = 0
        guard exchange === ex, !ex.responseStarted, !ex.backingOff, ex.phase == .waitingForConnection || ex.phase == .forwarding
        else { return }
        // Only a target that held the request and did not answer is blamed: time spent
        // waiting for a connection of this loop's own pool is not the target's doing.
        if ex.connection != nil {
            ex.upstream?.health?.record(ex.poolIndex, .gatewayFailure, now: NIODeadline.now().uptimeNanoseconds.asInt64)
        }
        if let policy = ex.route?.retry, policy.on.allows(failure: .reset), retry(ex, reason: "per-try-timeout") { return }
        abortUpstream(ex)
        sendError(.upstreamTimeout(), ex)
    }

    /// Starts another try when the route's policy allows one now: the method (or an
    /// `Idempotency-Key`), tries left, a body still kept, the retry budget, and time left
    /// for the backoff within the route's timeout. The caller has checked the condition
    /// against `retry.on`; nothing of the response has reached the client.
    private func retry(_ ex: Exchange, reason: String) -> Bool {
        guard let context, let route = ex.route, let policy = route.retry, let upstream = ex.upstream, let a = ex.admission,
            !ex.responseStarted, ex.attempts < policy.attempts, !ex.replayLost, !ex.isUpgrade
        else { return false }
        guard policy.methods.contains(ex.head.method.rawValue) || ex.head.headers.contains(name: "idempotency-key") else { return false }
        if !ex.holdsRetrySlot {
            let counted = ex.connection != nil || ex.waiter?.exchange != nil || ex.backingOff
            guard upstream.allowsRetry(percent: policy.budgetPercent, retryingIsCounted: counted) else { return false }
        }
        let wait = Backoff.delay(
            retry: ex.attempts, baseNanos: policy.backoffBaseNanos, maxNanos: policy.backoffMaxNanos, random: loopContext.rng.next())
        if ex.deadline != 0 && NIODeadline.now().uptimeNanoseconds &+ UInt64(wait) >= ex.deadline { return false }
        if !ex.holdsRetrySlot {
            ex.holdsRetrySlot = true
            upstream.activeRetries += 1
        }
        loopContext.metrics.retry(route: route.name, reason: reason)
        // This try is over; its connection is mid-exchange and cannot be reused.
        ex.waiter?.cancel()
        ex.waiter = nil
        dropConnection(ex)
        ex.tryDeadline = 0
        ex.pendingHead = nil
        ex.shaping = nil
        ex.phase = .waitingForConnection
        ex.buffered = ex.replay
        ex.bufferedBytes = ex.replayBytes
        ex.backingOff = true
        upstream.backingOff += 1
        context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(wait)) { [self] in
            guard exchange === ex, ex.backingOff, ex.phase == .waitingForConnection else { return }
            endBackoff(ex)
            startTry(ex, route: route, a)
        }
        return true
    }

    /// One rate-limit decision, then `next` when the request is admitted. With the memory
    /// store it is made here; with Redis the request (and what follows it on the
    /// connection) is held on this loop until Redis answers. When Redis cannot answer,
    /// `on_error: allow` decides with the memory store and `deny` answers 503.
    private func checkLimit(
        _ ex: Exchange, _ policy: RateLimitPolicy, tier: CompiledTier, key: String, shadow: Bool, next: @escaping () -> Void
    ) {
        guard let redis = loopContext.redisLimiter else {
            if admit(ex, localDecision(tier, key: key), tier: tier, shadow: shadow) { next() }
            return
        }
        ex.phase = .held
        redis.decide(key: key, limits: tier.limits).assumeIsolated().whenComplete { [self] result in
            guard exchange === ex, ex.phase == .held else { return }
            ex.phase = .routing
            switch result {
            case .success(let o):
                loopContext.limitStoreRecovered()
                if admit(ex, o, tier: tier, shadow: shadow) { next() }
            case .failure(let error):
                loopContext.limitStoreFailed(error)
                if policy.store.onError == "deny" {
                    sendError(.unavailable("the rate-limit store is unreachable"), ex)
                } else if admit(ex, localDecision(tier, key: key), tier: tier, shadow: shadow) {
                    next()
                }
            }
            resumeParsing(ex)
        }
    }

    private func localDecision(_ tier: CompiledTier, key: String) -> GCRA.Outcome {
        let now = Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds)
        return loopContext.shared.limiter.decide(key: key, limits: tier.limits, now: now)
    }

    /// Applies a decision: sets the `RateLimit-*` fields of the response and counts it;
    /// answers 429 and returns false when the request is refused (unless `shadow`).
    private func admit(_ ex: Exchange, _ o: GCRA.Outcome, tier: CompiledTier, shadow: Bool) -> Bool {
        let i = min(o.tightest, tier.limits.count - 1)
        ex.rateLimitHeaders = [
            ("ratelimit-limit", String(tier.limits[i].burst)), ("ratelimit-remaining", String(o.remaining)),
            ("ratelimit-reset", String(RateLimitKeys.seconds(o.resetNanos))), ("ratelimit-policy", tier.policies[i]),
        ]
        if o.admitted {
            loopContext.metrics.rateLimitDecision(tier: tier.name, decision: .allowed)
            return true
        }
        if shadow {
            loopContext.metrics.rateLimitDecision(tier: tier.name, decision: .shadowRejected)
            return true
        }
        loopContext.metrics.rateLimitDecision(tier: tier.name, decision: .rejected)
        sendError(.rateLimited(), ex, extraHeaders: [("retry-after", String(max(1, RateLimitKeys.seconds(o.retryAfterNanos))))])
        return false
    }

    private func hashKey(_ on: HashOn, _ ex: Exchange) -> UInt64? {
        switch on {
        case .clientIP: return StableHash.hash(ex.clientIP)
        case .header(let name): return ex.head.headers.first(name: name).map(StableHash.hash)
        case .cookie(let name): return Self.cookie(named: name, in: ex.head.headers).map(StableHash.hash)
        case .claim(let name): return ex.identity?.claimText(name).map(StableHash.hash)
        }
    }

    static func cookie(named name: String, in headers: HTTPHeaders) -> String? {
        for line in headers["cookie"] {
            for pair in line.split(separator: ";") {
                let p = pair.drop { $0 == " " }
                if let eq = p.firstIndex(of: "="), p[..<eq] == name { return String(p[p.index(after: eq)...]) }
            }
        }
        return nil
    }

    /// The client address a trusted proxy reported: the right-most `X-Forwarded-For` entry that is not itself trusted.
    private func forwardedClientIP(_ headers: HTTPHeaders, server: ServerSettings) -> String {
        let entries = headers["x-forwarded-for"].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: " \t") }
        for entry in entries.reversed() {
            guard let ip = IPAddressBytes(entry) else { return peerIP }
            if !server.isTrusted(ip) { return entry }
        }
        return entries.first ?? peerIP
    }

    private func forward(_ ex: Exchange, snapshot: Snapshot, route: CompiledRoute, path: String, query: Substring?, trusted: Bool) {
        guard let pool = ex.pool, let upstream = ex.upstream else { return }
        ex.isUpgrade = ex.asksUpgrade && ForwardHeaders.isWebSocketUpgrade(ex.head.headers)
        let upgrade = ex.isUpgrade ? (ex.head.headers.first(name: "upgrade") ?? "websocket") : nil
        let room = 384 + ex.head.uri.utf8.count + ex.head.headers.count * 64
        var bytes = allocator.buffer(capacity: room)
        ex.upstreamChunked = bytes.writeHead(capacity: room) { out in
            ForwardHeaders.requestHead(
                ex.head, route: route, path: path, query: query, target: pool.target, requestID: ex.requestID,
                peerIP: peerIP, trusted: trusted, upgrade: upgrade, identity: ex.identity, authority: ex.authority,
                scheme: tls ? "https" : "http", ids: &loopContext.ids, into: &out)
        }
        ex.pendingHead = bytes
        ex.phase = .waitingForConnection
        let acquired = pool.acquire(for: upstream, exchange: ex)
        switch acquired {
        case .ready(let c): connected(ex, c)
        case .waiting(let w): ex.waiter = w
        case .rejected(let e): sendError(e, ex)
        }
    }

    func connected(_ ex: Exchange, _ c: UpstreamConnection) {
        ex.connection = c
        ex.phase = .forwarding
        c.pool.active += 1
        c.handler.delegate = ex
        if ex.buffered.isEmpty, let head = ex.pendingHead {
            ex.pendingHead = nil
            c.handler.writeAndFlush(head)
        } else {
            if let head = ex.pendingHead {
                ex.pendingHead = nil
                c.handler.write(head)
            }
            for part in ex.buffered { c.handler.write(part) }
            ex.buffered = []
            c.handler.flush()
        }
        ex.bufferedBytes = 0
        resumeReadingIfPossible()
    }

    // MARK: response

    func upstreamHead(_ head: ResponseParser.Head, _ ex: Exchange) {
        guard let context, let route = ex.route else { return }
        // Measured from the request's start: routing takes microseconds, not worth a clock read.
        let now = NIODeadline.now().uptimeNanoseconds
        ex.upstreamNanos = Int64(truncatingIfNeeded: now &- ex.start.uptimeNanoseconds)
        ex.tryDeadline = 0
        if let pool = ex.pool, let upstream = ex.upstream {
            loopContext.metrics.upstream(upstream.spec.name, pool: pool, code: head.status, nanos: ex.upstreamNanos)
            upstream.health?.record(ex.poolIndex, head.status >= 500 ? .status(head.status) : .success, now: now.asInt64)
        }
        if let policy = route.retry, policy.on.allows(status: head.status), retry(ex, reason: "status:\(head.status)") { return }
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
                ex.shaping = ShapeBuffer(head: head, gzip: wanted.gzip, limit: shape.maxBytes)
                ex.status = head.status
                return
            }
        }
        forwardHead(head, ex, route: route, context: context)
    }

    /// The response head for the client, from the upstream's (`replacedBodyLength` when the
    /// gateway rewrote the body), kept in `held` to go out with the first body bytes.
    private func forwardHead(
        _ head: ResponseParser.Head, _ ex: Exchange, route: CompiledRoute, context: ChannelHandlerContext, replacedBodyLength: Int? = nil
    ) {
        if loopContext.shared.draining { closeAfterResponse = true }
        var closeAfter = closeAfterResponse
        // Room for the head, and for a small body copied behind it (see `upstreamBody`).
        var out = allocator.buffer(capacity: head.block.readableBytes + 192 + 512)
        var extra = ex.rateLimitHeaders
        if route.retry != nil { extra.append(("x-upstream-attempts", String(ex.attempts))) }
        let compress = replacedBodyLength == nil && shouldCompress(head, ex)
        if compress { ex.gzip = GzipStream() }
        for c in ex.setCookies { extra.append(("set-cookie", c)) }
        ex.clientChunked = out.writeHead(capacity: head.block.readableBytes + 192) { sink in
            ForwardHeaders.responseHead(
                head, request: ex.head, route: route, requestID: ex.requestID, isHead: ex.isHead, corsOrigin: ex.corsOrigin,
                extra: extra,
                replacedBodyLength: replacedBodyLength, gzip: ex.gzip != nil, closeAfter: &closeAfter, into: &sink)
        }
        closeAfterResponse = closeAfter
        ex.status = head.status
        ex.responseStarted = true
        if let earlier = held { context.write(wrapOutboundOut(earlier), promise: nil) }
        held = out
        needsDownstreamFlush = true
    }

    /// gzip for this response (SPEC §3): the server allows it, the client accepts it, the
    /// upstream did not encode it, the type is compressible, it has a body of at least
    /// `min_bytes` (or of unknown length).
    private func shouldCompress(_ head: ResponseParser.Head, _ ex: Exchange) -> Bool {
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
    private func releaseUnshaped(_ sb: ShapeBuffer, _ ex: Exchange, route: CompiledRoute, reason: String) {
        guard let context else { return }
        ex.shaping = nil
        loopContext.metrics.shape(route: route.name, outcome: reason)
        forwardHead(sb.head, ex, route: route, context: context)
        for part in sb.parts { upstreamBody(part, ex) }
    }

    /// The held response is complete: shaped (or, when it cannot be, as it came).
    private func finishShaping(_ sb: ShapeBuffer, _ ex: Exchange, route: CompiledRoute) {
        guard let context, let shape = route.shape else { return }
        switch sb.shape(shape.spec, allocator: allocator) {
        case .shaped(let body):
            ex.shaping = nil
            loopContext.metrics.shape(route: route.name, outcome: "shaped")
            forwardHead(sb.head, ex, route: route, context: context, replacedBodyLength: body.count)
            ex.clientChunked = false
            ex.responseBytes = body.count
            held?.writeBytes(body)
        case .unshaped(let reason):
            releaseUnshaped(sb, ex, route: route, reason: reason)
        }
    }

    func upstreamBody(_ buffer: ByteBuffer, _ ex: Exchange) {
        guard let context else { return }
        if let sb = ex.shaping {
            if !sb.append(buffer), let route = ex.route { releaseUnshaped(sb, ex, route: route, reason: "too_large") }
            return
        }
        var buffer = buffer
        if let gz = ex.gzip, !ex.isHead {
            guard let compressed = gz.compress(buffer, allocator: allocator) else { return closeNow() }
            buffer = compressed
        }
        ex.responseBytes += buffer.readableBytes
        if ex.isHead { return }
        let n = buffer.readableBytes
        if var out = held, n <= Self.maxCoalescedBody {
            held = nil  // `out` is now the buffer's only owner: appending does not copy it
            if ex.clientChunked {
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
        if ex.clientChunked {
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
        if ex.tunnelPending { return completeTunnel(ex) }
        if let sb = ex.shaping, let route = ex.route { finishShaping(sb, ex, route: route) }
        if let gz = ex.gzip {
            ex.gzip = nil
            if !ex.isHead, let tail = gz.finish(allocator: allocator), tail.readableBytes > 0 { upstreamBody(tail, ex) }
        }
        if let c = ex.connection {
            ex.connection = nil
            c.pool.active -= 1
            c.pool.release(c, reusable: ex.requestEnded && !c.handler.closing)
        }
        ex.phase = .responded
        ex.responseEnded = true
        // The upstream answered before the request body was complete: the rest of the body
        // cannot go anywhere, so the connection closes after this response.
        if !ex.requestEnded && ex.expectsBody { closeAfterResponse = true }
        var out = held
        held = nil
        needsDownstreamFlush = false
        if ex.clientChunked {
            if out == nil { out = allocator.buffer(capacity: 5 + (trailers?.readableBytes ?? 0)) }
            out?.writeStaticString("0\r\n")
            if let trailers { out?.writeImmutableBuffer(trailers) }
            out?.writeStaticString("\r\n")
        }
        writeLast(context, out)
        if ex.requestEnded || closeAfterResponse { finish(ex) }
    }

    func upstreamFailed(_ error: GatewayError, _ ex: Exchange) {
        dropConnection(ex)
        if !ex.responseStarted, let condition = error.retry {
            ex.tryDeadline = 0
            ex.upstream?.health?.record(ex.poolIndex, .gatewayFailure, now: NIODeadline.now().uptimeNanoseconds.asInt64)
            if let policy = ex.route?.retry, policy.on.allows(failure: condition),
                retry(ex, reason: condition == .connectFailure ? "connect-failure" : "reset")
            {
                return
            }
        }
        if ex.responseStarted {
            // Bytes already reached the client: the only honest thing left is to cut the connection.
            closeNow()
        } else {
            sendError(error, ex)
        }
    }

    private func timedOut(_ ex: Exchange) {
        guard exchange === ex, !ex.responseEnded else { return }
        ex.deadline = 0
        // A held request (keys being fetched, Redis deciding) has not been read to its end:
        // the wait is the gateway's, not the client's.
        let wasHeld = ex.phase == .held
        abortUpstream(ex)
        if ex.responseStarted {
            closeNow()
        } else {
            // Still waiting for the client's body: the client is the slow one (SPEC §4: 408).
            if !ex.requestEnded && !wasHeld {
                closeAfterResponse = true
                sendError(.requestTimeout(), ex)
            } else {
                sendError(.upstreamTimeout(), ex)
                if wasHeld { resumeParsing(ex) }
            }
        }
    }

    private func abortUpstream(_ ex: Exchange) {
        ex.waiter?.cancel()
        ex.waiter = nil
        if let call = ex.aggregate {
            ex.aggregate = nil
            call.cancel()
        }
        dropConnection(ex)
        if ex.phase != .responded { ex.phase = .responded }
    }

    /// Closes the exchange's upstream connection: it is mid-exchange and cannot be reused.
    private func dropConnection(_ ex: Exchange) {
        guard let c = ex.connection else { return }
        ex.connection = nil
        c.abandon()
    }

    private func respondLocally(_ ex: Exchange, status: Int, headers: [(String, String)], body: [UInt8]) {
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

    private func writeLocal(_ ex: Exchange, status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer?) {
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
        ex.responseStarted = true
        ex.responseEnded = true
        ex.phase = .responded
        let body = ex.isHead ? nil : body
        ex.responseBytes = body?.readableBytes ?? 0
        writeLast(context, HeadWriter.localResponse(status: status, headers: headers, body: body, allocator: allocator))
        // A request without a body has its end right behind its head: finish then.
        if ex.requestEnded || closeAfterResponse { finish(ex) }
    }

    /// The last bytes of a response, and the flush. When the connection closes after it, the
    /// write's completion is what the close waits for.
    private func writeLast(_ context: ChannelHandlerContext, _ bytes: ByteBuffer?) {
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

    /// The exchange is over: log it, then close or serve the next pipelined request.
    private func finish(_ ex: Exchange) {
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

    private func closeNow() {
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

    /// The exchange is over: metrics, and the access log when there is one.
    private func endBackoff(_ ex: Exchange) {
        guard ex.backingOff else { return }
        ex.backingOff = false
        ex.upstream?.backingOff -= 1
    }

    private func log(_ ex: Exchange) {
        endBackoff(ex)
        if ex.holdsRetrySlot {
            ex.holdsRetrySlot = false
            ex.upstream?.activeRetries -= 1
        }
        let nanos = Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds &- ex.start.uptimeNanoseconds)
        loopContext.metrics.request(route: ex.route, method: ex.head.method, code: ex.status, nanos: nanos)
        guard loopContext.shared.accessLog != nil else { return }
        AccessLogLine.append(ex, listener: listenerName, to: &loopContext.accessLogBuffer, clock: &loopContext.wallClock)
        if loopContext.accessLogBuffer.count >= 64 * 1024 { loopContext.flushAccessLog() }
    }

    // MARK: WebSocket

    /// Answers the client's upgrade with the upstream's 101. The byte tunnel starts at the end
    /// of that response, once the upstream's HTTP decoder has let go of the message.
    private func startTunnel(_ head: ResponseParser.Head, _ ex: Exchange) {
        guard let context else { return }
        ex.status = 101
        ex.responseStarted = true
        ex.tunnelPending = true
        ex.deadline = 0
        var out = allocator.buffer(capacity: head.block.readableBytes + 96)
        ForwardHeaders.switchingProtocolsHead(head, requestID: ex.requestID, into: &out)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    private func completeTunnel(_ ex: Exchange) {
        guard let context, let c = ex.connection else { return }
        log(ex)
        exchange = nil
        ex.connection = nil
        c.pool.active -= 1
        c.pool.detach(c)
        tunneled = true
        let metrics = loopContext.metrics
        let listener = listenerName
        let counted = !isStream
        Tunnel.join(
            downstream: context, upstream: c, proxy: self, idleTimeout: loopContext.snapshot.server.tunnelIdleTimeoutNanos,
            onClientClose: { if counted { metrics.connectionClosed(listener: listener) } })
    }
}

extension ProxyHandler {
    /// Two authorities (host and port) equal up to ASCII case.
    static func sameAuthority(_ a: String, _ b: Substring) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        for (x, y) in zip(a.utf8, b.utf8) where x != y {
            let lx = x >= UInt8(ascii: "A") && x <= UInt8(ascii: "Z") ? x | 0x20 : x
            let ly = y >= UInt8(ascii: "A") && y <= UInt8(ascii: "Z") ? y | 0x20 : y
            if lx != ly { return false }
        }
        return true
    }

    /// `Host` is `uri-host [ ":" port ]` (RFC 9110 §7.2): reg-name, IPv4 or an IPv6 literal
    /// characters only. Anything else (spaces, `/`, `@`, controls) is refused, so it never
    /// reaches routing, logs or an upstream.
    static func isValidHost(_ host: String) -> Bool {
        // The bytes a Host may hold (RFC 3986 reg-name, IP literal brackets, `:` before the
        // port): letters, digits, `-._~!$&'()*+,;=%:[]`, as two 64-bit masks (bytes 0-63,
        // 64-127): a test and a shift per byte where a switch took some 40 instructions.
        // Read through a pointer: a host of up to 15 bytes is a small string, whose
        // `utf8` view unpacks every byte on its own.
        let low: UInt64 = 0x2fff_7ff2_0000_0000
        let high: UInt64 = 0x47ff_fffe_afff_fffe
        var host = host
        return host.withUTF8 { bytes in
            for c in bytes {
                let bit = UInt64(1) &<< UInt64(c & 63)
                switch c >> 6 {
                case 0: if low & bit == 0 { return false }
                case 1: if high & bit == 0 { return false }
                default: return false
                }
            }
            return true
        }
    }
}

/// CRLF after each chunk's data.
let crlfBuffer = ByteBuffer(staticString: "\r\n")

extension UInt64 {
    var asInt64: Int64 { Int64(truncatingIfNeeded: self) }
}

// MARK: browser login (SPEC §2.5 `login`)

extension ProxyHandler {
    /// The login provider whose callback or logout path this is (`true`: the callback).
    static func loginPath(_ snapshot: Snapshot, _ path: String) -> (Int, Bool)? {
        for p in snapshot.loginProviders {
            if p.config.callbackPath == path { return (p.index, true) }
            if p.config.logoutPath == path { return (p.index, false) }
        }
        return nil
    }

    /// A route with `auth: { "login": … }`: a valid session goes on (its access token
    /// refreshed first when it has expired); anything else is sent to log in.
    fileprivate func loginGate(_ ex: Exchange, route: CompiledRoute, provider i: Int, _ a: Admission) {
        guard i < loopContext.loginProviders.count else { return sendError(.unavailable("the login provider is not configured"), ex) }
        let provider = loopContext.loginProviders[i]
        let now = Date().timeIntervalSince1970
        let cookies = CookieChunks.parse(ex.head.headers["cookie"])
        if let sealer = provider.sealer, let value = CookieChunks.join(name: LoginFlow.sessionCookieName, cookies: cookies),
            let session = LoginFlow.openSession(value, binding: provider.binding, with: sealer),
            session.expires > now
        {
            // Refreshed a second before it expires, so the upstream never gets an expired token.
            if session.accessExpires > now + 1 { return admitSession(ex, session, provider: provider, route: route, a) }
            if let refreshToken = session.refreshToken, let context {
                ex.phase = .held
                provider.refresh(refreshToken, on: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                    guard exchange === ex, ex.phase == .held else { return }
                    ex.phase = .routing
                    switch result {
                    case .success(let tokens):
                        var renewed = session
                        renewed.accessToken = tokens.accessToken
                        renewed.refreshToken = tokens.refreshToken ?? session.refreshToken
                        renewed.accessExpires = Date().timeIntervalSince1970 + (tokens.expiresIn ?? 300)
                        renewed.forwarded = sessionForwarded(
                            accessToken: tokens.accessToken, provider: provider, otherwise: session.forwarded)
                        ex.setCookies = sessionCookies(renewed, provider: provider, present: cookies)
                        admitSession(ex, renewed, provider: provider, route: route, a)
                    case .failure:
                        // The refresh token is spent or revoked: log in again.
                        startLogin(ex, provider: provider, clearing: cookies, snapshot: a.snapshot)
                    }
                    resumeParsing(ex)
                }
                return
            }
        }
        startLogin(ex, provider: provider, clearing: cookies, snapshot: a.snapshot)
    }

    private func admitSession(
        _ ex: Exchange, _ session: LoginFlow.Session, provider: LoginProviderRuntime, route: CompiledRoute, _ a: Admission
    ) {
        var forwarded = session.forwarded.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        forwarded.append(("authorization", "Bearer " + session.accessToken))
        ex.identity = Identity(
            kind: .session, provider: provider.spec.name, subject: session.subject, claims: ["sub": .string(session.subject)], scopes: [],
            forwarded: forwarded, validUntil: session.accessExpires)
        dispatch(ex, route: route, a)
    }

    /// A browser (it accepts HTML) is sent to the provider with a fresh state, nonce and PKCE
    /// verifier kept in a sealed cookie bound to that state; anything else gets 401.
    private func startLogin(_ ex: Exchange, provider: LoginProviderRuntime, clearing cookies: [String: String], snapshot: Snapshot) {
        let accepts = ex.head.headers["accept"].contains { $0.lowercased().contains("text/html") }
        let config = provider.spec.config
        guard accepts, ex.head.method == .GET || ex.head.method == .HEAD else {
            return sendError(
                .init(.unauthorized, "unauthorized", "a login session is required", source: .downstream),
                ex,
                extraHeaders: [("www-authenticate", "Bearer error=\"invalid_token\", error_description=\"a login session is required\"")])
        }
        guard let sealer = provider.sealer, let endpoints = provider.endpoints else {
            return sendError(.unavailable("the identity provider is not reachable yet"), ex)
        }
        let state = PKCE.token()
        let nonce = PKCE.token()
        let verifier = PKCE.verifier()
        let returnTo = LocalRedirect.isSafe(ex.head.uri) ? ex.head.uri : "/"
        guard let redirectURI = callbackURL(ex, provider: provider, path: config.callbackPath, trusted: false, snapshot: snapshot) else {
            return untrustedHost(ex, provider: provider)
        }
        let pending = LoginFlow.PendingLogin(
            state: state, nonce: nonce, verifier: verifier, returnTo: returnTo, expires: Date().timeIntervalSince1970 + 600)
        var withURI = pending
        withURI.redirectURI = redirectURI
        let name = LoginFlow.loginCookieName(state: state)
        guard let sealed = LoginFlow.seal(withURI, name: name, binding: provider.binding, with: sealer) else {
            return sendError(.unavailable("the login could not be started"), ex)
        }
        let url = LoginFlow.authorizeURL(
            endpoint: endpoints.authorization, clientID: config.clientID, redirectURI: redirectURI, scopes: config.scopes, state: state,
            nonce: nonce, verifier: verifier)
        var headers: [(String, String)] = [("location", url), ("cache-control", "no-store")]
        headers.append(("set-cookie", Self.cookie(name, sealed, path: config.callbackPath, maxAge: 600, secure: config.cookieSecure)))
        // A session that could not be used is cleared.
        for c in Self.clearSession(cookies, secure: config.cookieSecure) { headers.append(("set-cookie", c)) }
        respondLocally(ex, status: 302, headers: headers, body: [])
    }

    /// The provider sends the browser back: check `state` against its sealed cookie, exchange
    /// the code with the verifier, verify the ID token, set the session, go back.
    fileprivate func loginCallback(_ ex: Exchange, provider i: Int, query: Substring?, trusted: Bool) {
        guard i < loopContext.loginProviders.count, let context else { return sendError(.unavailable("no login provider"), ex) }
        let provider = loopContext.loginProviders[i]
        let config = provider.spec.config
        var q: [String: String] = [:]
        for (name, value) in Router.queryPairs(query) where !name.isEmpty { q[name] = value }
        let cookies = CookieChunks.parse(ex.head.headers["cookie"])
        // `state` names the login cookie: only one of this gateway's alphabet gets that far (a
        // CR or LF in it would split the answer's Set-Cookie line).
        let state = q["state"] ?? ""
        let validState = LoginFlow.isState(state)
        let name = LoginFlow.loginCookieName(state: validState ? state : "")
        let clears = validState ? [Self.cookie(name, "", path: config.callbackPath, maxAge: 0, secure: config.cookieSecure)] : []
        let clear = clears.first ?? ""
        if let error = q["error"] {
            return loginPage(ex, status: 401, "Login failed", "The identity provider answered: \(error)", setCookies: clears)
        }
        guard validState, let code = q["code"], let sealer = provider.sealer, let value = cookies[name],
            let pending = LoginFlow.open(LoginFlow.PendingLogin.self, value, name: name, binding: provider.binding, with: sealer),
            constantTimeEquals(Array(pending.state.utf8), Array(state.utf8)), pending.expires > Date().timeIntervalSince1970
        else {
            return loginPage(
                ex, status: 400, "Login failed",
                "This login is not valid: it expired, was already used, or did not start here. Please try again.", setCookies: clears)
        }
        ex.phase = .held
        provider.exchange(code: code, verifier: pending.verifier, redirectURI: pending.redirectURI, on: context.eventLoop)
            .assumeIsolated().whenComplete { [self] result in
                guard exchange === ex, ex.phase == .held else { return }
                ex.phase = .routing
                defer { resumeParsing(ex) }
                guard case .success(let tokens) = result, let idToken = tokens.idToken,
                    let jwt = provider.spec.jwtIndex, jwt < loopContext.jwtProviders.count
                else {
                    return loginPage(ex, status: 502, "Login failed", "The identity provider did not give tokens.", setCookies: [clear])
                }
                let runtime = loopContext.jwtProviders[jwt]
                let now = Date().timeIntervalSince1970
                switch LoginFlow.checkIDToken(
                    idToken, verifier: runtime.verifier, clientID: config.clientID, nonce: pending.nonce, keys: runtime.store.keys, now: now
                )
                {
                case .failure(let failure):
                    loopContext.metrics.authFailure(provider: provider.spec.name, reason: failure.rawValue)
                    loginPage(ex, status: 401, "Login failed", "The identity provider's ID token was refused.", setCookies: [clear])
                case .success(let identity):
                    var fromIDToken: [String: String] = [:]
                    for (h, v) in identity.forwarded { fromIDToken[h] = v }
                    var session = LoginFlow.Session(
                        subject: identity.subject ?? "",
                        forwarded: sessionForwarded(accessToken: tokens.accessToken, provider: provider, otherwise: fromIDToken),
                        accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, accessExpires: now + (tokens.expiresIn ?? 300),
                        expires: now + Double(config.sessionTTL.nanoseconds) / 1e9)
                    session.binding = provider.binding
                    var headers: [(String, String)] = [
                        ("location", LocalRedirect.isSafe(pending.returnTo) ? pending.returnTo : "/"), ("cache-control", "no-store"),
                        ("set-cookie", clear),
                    ]
                    for c in sessionCookies(session, provider: provider, present: cookies) { headers.append(("set-cookie", c)) }
                    respondLocally(ex, status: 302, headers: headers, body: [])
                }
            }
    }

    /// Clears the session and sends the browser to the provider's end-session endpoint, or
    /// to `post_logout_path`.
    fileprivate func logout(_ ex: Exchange, provider i: Int, trusted: Bool, snapshot: Snapshot) {
        guard i < loopContext.loginProviders.count else { return sendError(.unavailable("no login provider"), ex) }
        let provider = loopContext.loginProviders[i]
        let config = provider.spec.config
        let cookies = CookieChunks.parse(ex.head.headers["cookie"])
        var location = config.postLogoutPath
        // On a Host the login may not build a URL on, the session is still cleared: the
        // browser goes to the local `post_logout_path` instead of the provider's end-session.
        if let end = provider.endpoints?.endSession,
            let back = callbackURL(ex, provider: provider, path: config.postLogoutPath, trusted: trusted, snapshot: snapshot)
        {
            location =
                end + (end.contains("?") ? "&" : "?")
                + LoginFlow.form([("client_id", config.clientID), ("post_logout_redirect_uri", back)])
        }
        var headers: [(String, String)] = [("location", location), ("cache-control", "no-store")]
        for c in Self.clearSession(cookies, secure: config.cookieSecure, always: true) { headers.append(("set-cookie", c)) }
        respondLocally(ex, status: 302, headers: headers, body: [])
    }

    /// The session cookie(s) for a session, and the clearing of chunks the browser holds
    /// that the new value no longer uses.
    private func sessionCookies(_ session: LoginFlow.Session, provider: LoginProviderRuntime, present: [String: String]) -> [String] {
        let config = provider.spec.config
        guard let sealer = provider.sealer,
            let sealed = LoginFlow.seal(session, name: LoginFlow.sessionCookieName, binding: provider.binding, with: sealer)
        else {
            return []
        }
        let maxAge = Int(max(0, session.expires - Date().timeIntervalSince1970))
        let parts = CookieChunks.split(sealed, name: LoginFlow.sessionCookieName)
        var out = parts.map { Self.cookie($0.0, $0.1, path: "/", maxAge: maxAge, secure: config.cookieSecure) }
        let used = Set(parts.map(\.0))
        for name in present.keys.sorted() where name.hasPrefix(LoginFlow.sessionCookieName + ".") && !used.contains(name) {
            out.append(Self.cookie(name, "", path: "/", maxAge: 0, secure: config.cookieSecure))
        }
        return out
    }

    private static func clearSession(_ cookies: [String: String], secure: Bool, always: Bool = false) -> [String] {
        var names = cookies.keys.filter { $0 == LoginFlow.sessionCookieName || $0.hasPrefix(LoginFlow.sessionCookieName + ".") }.sorted()
        if always && !names.contains(LoginFlow.sessionCookieName) { names.insert(LoginFlow.sessionCookieName, at: 0) }
        return names.map { cookie($0, "", path: "/", maxAge: 0, secure: secure) }
    }

    /// `HttpOnly; SameSite=Lax`, `Secure` unless `cookie_secure` is false.
    static func cookie(_ name: String, _ value: String, path: String, maxAge: Int, secure: Bool) -> String {
        "\(name)=\(value); Path=\(path); Max-Age=\(maxAge); HttpOnly; SameSite=Lax" + (secure ? "; Secure" : "")
    }

    /// The absolute URL of a local path for the browser to come back to: on the provider's
    /// `external_url` when set; otherwise on the host the browser used (`X-Forwarded-Proto`
    /// from a trusted proxy gives the scheme), if that host is trusted — a loopback name or
    /// address, or a host a route of this login names in `match.host`. Nil for any other
    /// `Host`: a redirect_uri is never built on a name the client made up.
    func callbackURL(_ ex: Exchange, provider: LoginProviderRuntime, path: String, trusted: Bool, snapshot: Snapshot) -> String? {
        if let external = provider.spec.config.externalURL { return external + path }
        guard let host = ex.authority ?? ex.head.headers.first(name: "host"),
            Self.isTrustedLoginHost(host, login: provider.spec.index, snapshot)
        else { return nil }
        let own = tls ? "https" : "http"
        let proto = trusted ? (ex.head.headers.first(name: "x-forwarded-proto") ?? own) : own
        return "\(proto == "https" ? "https" : "http")://\(host)\(path)"
    }

    /// A loopback name or address (`localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`, any port),
    /// or a host matched by the `match.host` of a route that uses login `login`.
    static func isTrustedLoginHost(_ host: String, login: Int, _ snapshot: Snapshot) -> Bool {
        if let name = HostName.withoutPort(host), HostName.isLoopback(name) { return true }
        return snapshot.routes.contains { $0.login == login && $0.host != nil && $0.matchesHost(Substring(host)) }
    }

    /// The login cannot build a URL on this `Host` (see `callbackURL`).
    private func untrustedHost(_ ex: Exchange, provider: LoginProviderRuntime) {
        sendError(
            .badRequest(
                "the login cannot return to this Host: set auth.login.\(provider.spec.name).external_url, or name the host in a route's match.host"
            ), ex)
    }

    /// The headers a session's requests carry to the upstream: the `forward_claims` of the
    /// login's `jwt` provider taken from the access token when that provider accepts it as a
    /// bearer token (as any bearer request would get them), else `otherwise` (from the ID token).
    private func sessionForwarded(accessToken: String, provider: LoginProviderRuntime, otherwise: [String: String]) -> [String: String] {
        guard let jwt = provider.spec.jwtIndex, jwt < loopContext.jwtProviders.count else { return otherwise }
        let runtime = loopContext.jwtProviders[jwt]
        guard case .valid(let id) = runtime.verifier.verify(accessToken, keys: runtime.store.keys, now: Date().timeIntervalSince1970)
        else { return otherwise }
        var out: [String: String] = [:]
        for (h, v) in id.forwarded { out[h] = v }
        return out
    }

    /// A small HTML page for the browser (login errors).
    private func loginPage(_ ex: Exchange, status: Int, _ title: String, _ message: String, setCookies: [String]) {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
                of: ">", with: "&gt;"
            )
            .replacingOccurrences(of: "\"", with: "&quot;")
        }
        let html =
            "<!doctype html><html><head><title>\(escape(title))</title></head><body><h1>\(escape(title))</h1><p>\(escape(message))</p>"
            + "<p><a href=\"/\">Start again</a></p></body></html>"
        var headers: [(String, String)] = [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")]
        for c in setCookies { headers.append(("set-cookie", c)) }
        respondLocally(ex, status: status, headers: headers, body: Array(html.utf8))
    }
}
