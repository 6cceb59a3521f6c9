import GatewayAuth
import GatewayConfig
import NIOCore
import NIOHTTP1

/// One request on a downstream connection, from its head to the end of its response.
/// It is the upstream connection's delegate while it holds one.
final class Exchange: UpstreamClient {
    /// `held`: waiting, before it is dispatched, for a JWKS fetch or a Redis rate-limit
    /// decision; what the client sent behind the head stays unparsed meanwhile.
    enum Phase { case routing, held, waitingForConnection, forwarding, responded }

    /// Strong: an unowned reference costs an extra check on every use. The cycle with
    /// `ProxyHandler.exchange` ends when the handler lets go of the exchange (at its end, or
    /// when the connection closes).
    let handler: ProxyHandler
    let head: HTTPRequestHead
    /// The authority of an absolute-form target when it differs from `Host`: it takes the
    /// place of `Host` for routing and forwarding (RFC 9112 §3.2.2). A stored property read
    /// only off the hot path (a `var head` would cost an exclusivity check on every read).
    var authority: String?
    let requestID: String
    let start: NIODeadline
    let clientIP: String
    var route: CompiledRoute?
    /// Its tries at the route's upstream (the target, the connection, the counts).
    var tries = UpstreamTry()
    var upstream: UpstreamRuntime? { tries.upstream }
    var pool: TargetPool? { tries.pool }
    var poolIndex: Int { tries.poolIndex }
    var connection: UpstreamConnection? { tries.connection }
    var waiter: TargetPool.Waiter? { tries.waiter }
    var attempts: Int { tries.attempts }
    var backingOff: Bool { tries.backingOff }
    var phase = Phase.routing
    /// Who the route's `auth` admitted the request as.
    var identity: Identity?
    /// On a route with `cors`: the `Access-Control-Allow-Origin` for this request's `Origin`
    /// ("" when it has none or it is not allowed: the response then only says `Vary: Origin`).
    var corsOrigin: String?
    /// The rate-limit tier the request was counted in (access log `tier`).
    var tier: String?
    /// `RateLimit-*` fields for the response, from the tightest limit of its decision.
    var rateLimitHeaders: [(String, String)] = []
    /// The serialized request head for the upstream, until a connection takes it.
    var pendingHead: ByteBuffer?
    /// To an HTTP/2 upstream: the head as sent, for sending again on another stream when the
    /// upstream refuses this one unprocessed (at most `maxRefusals` times).
    var sentHead: ByteBuffer?
    var refusals = 0
    static let maxRefusals = 3
    /// Request body bytes (already framed for the upstream) that arrived before the upstream
    /// connection was ready.
    var buffered: [ByteBuffer] = []
    /// The request body goes to the upstream chunked (the client sent it chunked).
    var upstreamChunked = false
    var bufferedBytes = 0
    var requestEnded = false
    /// The request announced a body (Content-Length > 0 or chunked).
    var expectsBody = false
    var requestBytes = 0
    /// Where the response stands, with what each stage needs.
    var response = Response.waiting
    var status = 0
    var responseBytes = 0
    var upstreamNanos: Int64 = -1
    /// Uptime nanoseconds when the route timeout fires; 0 when none is running.
    var deadline: UInt64 = 0
    /// A gRPC request (`content-type: application/grpc...`): errors the gateway answers go
    /// out as `grpc-status`, retries and outlier detection read `grpc-status`.
    var isGRPC = false
    /// A gRPC-Web request, translated to gRPC (GRPCWeb.swift); nil for any other.
    var grpcWeb: GRPCWebState?
    /// The response's `grpc-status` (from its head or its trailers); -1 while none is known.
    var grpcStatus = -1
    /// The target's health is recorded at the end, from the trailers' `grpc-status`.
    var grpcHealthAtEnd = false
    /// The deadline is the client's (`grpc-timeout`): a stream keeps it.
    var keepsDeadline = false
    /// `stream_idle_timeout` of a streaming response: the deadline moves on with each read; 0: none.
    var streamIdleNanos: UInt64 = 0
    var isUpgrade = false
    /// The request carries an `Upgrade` header (seen in the single header pass).
    var asksUpgrade = false
    /// The client asked for HEAD: the response has no body whatever its headers say.
    let isHead: Bool

    // Tries (route `retry`).
    /// On a route with `retry`: the body as sent upstream, kept for another try.
    var replay = Replay.off
    /// Uptime nanoseconds when the current try times out (`per_try_timeout`); 0 when none runs.
    var tryDeadline: UInt64 = 0
    /// What the request path computed before the first try, kept for the next ones.
    var admission: ProxyHandler.Admission?
    /// On a route with `mirror` (for its share of requests): the copy being collected, sent
    /// when the request ends.
    var mirror: MirrorRequest?
    /// The request's `Accept-Encoding` (gzip compression of the response).
    var acceptEncoding: String?
    /// `Set-Cookie` values for the response (a refreshed login session).
    var setCookies: [String] = []
    /// What a held phase waited for, until that phase runs again and takes it.
    var resumed: HeldResult?
    /// On an aggregate route: its backend calls.
    var aggregate: AggregateCall?

    /// Where the response stands.
    enum Response {
        /// Nothing of it has reached the client: no head yet, or a try that is retried.
        case waiting
        /// A 2xx JSON response of a route with `shape`, held whole until its end.
        case shaping(ShapeBuffer)
        /// Its head went to the client; the body follows, chunked or not, gzip-compressed
        /// through `gzip` or not.
        case streaming(chunked: Bool, gzip: GzipStream?)
        /// A 101 went to the client; the tunnel starts when the upstream's response ends.
        case switching
        /// All of it was written.
        case ended
    }

    /// The request body kept for another try (route `retry`).
    enum Replay {
        /// Nothing to keep: no retry policy, or no body.
        case off
        /// The body as sent upstream, while it fits in `ProxyHandler.maxReplayBody`.
        case keeping([ByteBuffer], bytes: Int)
        /// The body outgrew what is kept: no more tries.
        case lost
    }

    var responseStarted: Bool {
        switch response {
        case .waiting, .shaping: return false
        case .streaming, .switching, .ended: return true
        }
    }

    var replayIsLost: Bool {
        if case .lost = replay { return true }
        return false
    }

    var responseEnded: Bool {
        if case .ended = response { return true }
        return false
    }

    /// The response body goes to the client chunked.
    var clientChunked: Bool {
        if case .streaming(let chunked, _) = response { return chunked }
        return false
    }

    init(handler: ProxyHandler, head: HTTPRequestHead, requestID: String, clientIP: String, start: NIODeadline) {
        self.handler = handler
        self.head = head
        self.requestID = requestID
        self.clientIP = clientIP
        self.start = start
        self.isHead = head.method == .HEAD
    }

    var isCurrent: Bool { handler.exchange === self }

    // What the upstream connection reports while this exchange holds it. All calls happen on
    // the connection's event loop, which is also the client connection's loop; a report for
    // an exchange that is no longer current is dropped.

    func upstreamHead(_ head: ResponseParser.Head) { if isCurrent { handler.upstreamHead(head, self) } }
    func upstreamBody(_ buffer: ByteBuffer) { if isCurrent { handler.upstreamBody(buffer, self) } }
    func upstreamEnd(_ trailers: ByteBuffer?) { if isCurrent { handler.upstreamEnd(self, trailers: trailers) } }
    func upstreamReadComplete() { if isCurrent { handler.upstreamReadComplete() } }
    func upstreamFailed(_ error: GatewayError) { if isCurrent { handler.upstreamFailed(error, self) } }
    func upstreamWritabilityChanged() { if isCurrent { handler.resumeReadingIfPossible() } }
    var downstreamWritable: Bool { handler.isWritable }
    func connectionReady(_ c: UpstreamConnection) {
        tries.waiter = nil
        if isCurrent { handler.connected(self, c) } else { c.pool.release(c, reusable: true) }
    }
    func connectFailed(_ error: GatewayError) {
        tries.waiter = nil
        if isCurrent { handler.upstreamFailed(error, self) }
    }
}
