import GatewayAuth
import GatewayConfig
import GatewayProxy
import GatewayReload
import NIOCore
import NIOHTTP1
import NIOPosix

/// The admin API of SPEC §5: health and readiness, and the config endpoints (`GET /config`,
/// `PUT /config`, `POST /config/validate`, `POST /reload`). Every path but `/healthz` and
/// `/readyz` needs `Authorization: Bearer <token>` when a token is configured, and every path
/// but those two refuses (403) a request a browser could have been made to send: a `Host`
/// that is not an IP address, a loopback name or the admin address's own name (DNS
/// rebinding), and a cross-origin `Origin` or `Sec-Fetch-Site`.
public final class AdminServer: Sendable {
    public let channel: any Channel

    /// `isReady` is asked on every `/readyz`. `token` is the admin token (from the variable
    /// `admin.token_env` names), nil when none is configured.
    public static func start(
        address: HostPort, group: any EventLoopGroup, token: String? = nil, reloader: ConfigReloader? = nil,
        snapshot: (@Sendable () -> Snapshot)? = nil, metrics: GatewayMetrics? = nil, server: GatewayServer? = nil,
        isReady: @escaping @Sendable () -> Bool
    ) async throws -> AdminServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        AdminHandler(
                            token: token, reloader: reloader, snapshot: snapshot, metrics: metrics, server: server, isReady: isReady,
                            adminHost: address.host))
                }
            }
            .bind(host: address.host, port: address.port).get()
        return AdminServer(channel: channel)
    }

    init(channel: any Channel) { self.channel = channel }

    public var port: Int { channel.localAddress?.port ?? 0 }

    public func stop() async { try? await channel.close() }
}

final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The largest body `PUT /config` and `POST /config/validate` accept.
    static let maxBody = 8 * 1024 * 1024

    let token: [UInt8]?
    let reloader: ConfigReloader?
    let snapshot: (@Sendable () -> Snapshot)?
    let metrics: GatewayMetrics?
    let server: GatewayServer?
    let isReady: @Sendable () -> Bool
    /// The host of `admin.address`, lower-cased: a `Host` naming it is the admin API's own.
    let adminHost: String
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(
        token: String?, reloader: ConfigReloader?, snapshot: (@Sendable () -> Snapshot)?, metrics: GatewayMetrics?,
        server: GatewayServer?, isReady: @escaping @Sendable () -> Bool, adminHost: String = "127.0.0.1"
    ) {
        self.adminHost = adminHost.lowercased()
        self.metrics = metrics
        self.server = server
        self.token = token.map { Array($0.utf8) }
        self.reloader = reloader
        self.snapshot = snapshot
        self.isReady = isReady
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            tooLarge = false
            // curl asks before sending a large body (`PUT /config`); without an answer it waits a second.
            if h.version.minor >= 1, let expect = h.headers.first(name: "expect"), expect.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .continue))), promise: nil)
            }
        case .body(var b):
            if body.count + b.readableBytes > Self.maxBody {
                tooLarge = true
            } else if let bytes = b.readBytes(length: b.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let bytes = body
            body = []
            route(context, head, bytes)
        }
    }

    private func route(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ bytes: [UInt8]) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        switch (head.method, path) {
        case (.GET, "/healthz"), (.HEAD, "/healthz"):
            return write(context, head, .ok, "{\"status\":\"ok\"}")
        case (.GET, "/readyz"), (.HEAD, "/readyz"):
            return isReady() && (server?.authReady ?? true)
                ? write(context, head, .ok, "{\"status\":\"ready\"}")
                : write(context, head, .serviceUnavailable, "{\"status\":\"not_ready\"}")
        case (_, "/healthz"), (_, "/readyz"):
            return methodNotAllowed(context, head, allow: "GET, HEAD")
        default:
            break
        }
        if let why = Self.browserRefusal(head, adminHost: adminHost) {
            return write(context, head, .forbidden, GatewayError(.forbidden, "forbidden", why).body(requestID: ""))
        }
        guard isAuthorized(head) else {
            let e = GatewayError(.unauthorized, "unauthorized", "this admin endpoint needs the admin token")
            return write(
                context, head, .unauthorized, e.body(requestID: ""), extra: [("www-authenticate", "Bearer error=\"invalid_token\"")])
        }
        if tooLarge {
            return write(context, head, .payloadTooLarge, GatewayError.payloadTooLarge(Self.maxBody).body(requestID: ""))
        }
        if let server, path == "/upstreams" {
            guard head.method == .GET || head.method == .HEAD else { return methodNotAllowed(context, head, allow: "GET, HEAD") }
            return answer(context, head) { (.ok, AdminViews.upstreams(await server.upstreamStatus())) }
        }
        if let server, path == "/jwks" {
            guard head.method == .GET || head.method == .HEAD else { return methodNotAllowed(context, head, allow: "GET, HEAD") }
            return write(context, head, .ok, AdminViews.jwks(server.jwksStatus()))
        }
        if let server, path == "/jwks/refresh" {
            guard head.method == .POST else { return methodNotAllowed(context, head, allow: "POST") }
            return answer(context, head) {
                await server.refreshJWKS()
                return (.ok, AdminViews.jwks(server.jwksStatus()))
            }
        }
        if let metrics, path == "/metrics" {
            guard head.method == .GET || head.method == .HEAD else { return methodNotAllowed(context, head, allow: "GET, HEAD") }
            return write(context, head, .ok, metrics.exposition(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        if let snapshot {
            switch (head.method, path) {
            case (.GET, "/routes"), (.HEAD, "/routes"):
                return write(context, head, .ok, AdminViews.routes(snapshot()))
            case (.GET, "/explain"), (.HEAD, "/explain"):
                let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first
                switch AdminViews.ExplainQuery.parse(query) {
                case .success(let q): return write(context, head, .ok, AdminViews.explain(snapshot(), q, server: server))
                case .failure(let e): return write(context, head, .badRequest, e.body(requestID: ""))
                }
            case (_, "/routes"), (_, "/explain"):
                return methodNotAllowed(context, head, allow: "GET, HEAD")
            default:
                break
            }
        }
        guard let reloader else {
            return write(context, head, .notFound, GatewayError(.notFound, "no_route", "no admin endpoint at \(path)").body(requestID: ""))
        }
        switch (head.method, path) {
        case (.GET, "/config"), (.HEAD, "/config"):
            answer(context, head) { (.ok, await reloader.describe()) }
        case (.PUT, "/config"):
            answer(context, head) { Self.outcome(await reloader.replace(with: bytes)) }
        case (.POST, "/config/validate"):
            answer(context, head) {
                let errors = await reloader.validate(bytes)
                if errors.isEmpty { return (.ok, Array("{\"valid\":true}".utf8)) }
                return (.unprocessableEntity, Array("{\"valid\":false,\"errors\":\(ConfigReloader.errorsJSON(errors))}".utf8))
            }
        case (.POST, "/reload"):
            answer(context, head) { Self.outcome(await reloader.reloadFromFile(trigger: "POST /reload")) }
        case (_, "/config"):
            methodNotAllowed(context, head, allow: "GET, HEAD, PUT")
        case (_, "/config/validate"), (_, "/reload"):
            methodNotAllowed(context, head, allow: "POST")
        default:
            write(context, head, .notFound, GatewayError(.notFound, "no_route", "no admin endpoint at \(path)").body(requestID: ""))
        }
    }

    private static func outcome(_ o: ConfigReloader.Outcome) -> (HTTPResponseStatus, [UInt8]) {
        switch o {
        case .applied(let v, let ms):
            let took = (ms * 10).rounded() / 10
            return (.ok, Array("{\"version\":\(jsonString(v)),\"changed\":true,\"took_ms\":\(took)}".utf8))
        case .unchanged(let v): return (.ok, Array("{\"version\":\(jsonString(v)),\"changed\":false}".utf8))
        case .invalid(let errors): return (.unprocessableEntity, Array("{\"errors\":\(ConfigReloader.errorsJSON(errors))}".utf8))
        }
    }

    /// Runs `work` off the event loop (the reloader is an actor) and answers on it.
    private func answer(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead,
        _ work: @escaping @Sendable () async -> (HTTPResponseStatus, [UInt8])
    ) {
        context.eventLoop.makeFutureWithTask(work).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let (status, body)): self.write(context, head, status, body)
            case .failure: context.close(promise: nil)
            }
        }
    }

    /// Why a request is refused as one a browser was led to send, or nil. A page on another
    /// site can make a browser send requests to a loopback admin port; it cannot make the
    /// browser send a `Host` of an IP address or a loopback name (rebinding needs the
    /// attacker's own name in `Host`), nor hide the `Origin` of its page.
    static func browserRefusal(_ head: HTTPRequestHead, adminHost: String) -> String? {
        let hosts = head.headers["host"]
        if hosts.count > 1 { return "more than one Host header" }
        if let host = hosts.first {
            guard let name = HostName.withoutPort(host), isAdminName(name, adminHost: adminHost) else {
                return "the admin API answers only to an IP address, a loopback name or its own address in Host"
            }
            if let origin = head.headers.first(name: "origin") {
                guard let authority = originAuthority(origin), authority == host.lowercased() else {
                    return "cross-origin requests are refused"
                }
            }
        } else if head.headers.contains(name: "origin") {
            return "cross-origin requests are refused"
        }
        if let site = head.headers.first(name: "sec-fetch-site")?.lowercased(), site != "same-origin" && site != "none" {
            return "cross-origin requests are refused"
        }
        return nil
    }

    /// Any IP address (the admin address may be a wildcard), a loopback name, or the host of
    /// `admin.address`.
    static func isAdminName(_ name: String, adminHost: String) -> Bool {
        IPAddressBytes(name) != nil || HostName.isLoopback(name) || name == adminHost
    }

    /// `scheme://host[:port]` of an `Origin` as the `Host` of a same-origin request would
    /// read (default ports dropped), lower-cased; nil for `null` or anything else.
    static func originAuthority(_ origin: String) -> String? {
        let lower = origin.lowercased()
        for (scheme, port) in [("http://", ":80"), ("https://", ":443")] where lower.hasPrefix(scheme) {
            var rest = String(lower.dropFirst(scheme.count))
            if rest.hasSuffix(port) { rest = String(rest.dropLast(port.count)) }
            return rest.isEmpty || rest.contains("/") ? nil : rest
        }
        return nil
    }

    /// `Authorization: Bearer <token>`, compared in constant time.
    private func isAuthorized(_ head: HTTPRequestHead) -> Bool {
        guard let token else { return true }
        guard let value = head.headers.first(name: "authorization") else { return false }
        let given = Array(value.utf8)
        let prefix = Array("Bearer ".utf8)
        guard given.count > prefix.count, given[0..<prefix.count].map({ $0 | 0x20 }) == prefix.map({ $0 | 0x20 }) else { return false }
        return constantTimeEquals(Array(given[prefix.count...]), token)
    }

    private func methodNotAllowed(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, allow: String) {
        write(context, head, .methodNotAllowed, GatewayError.methodNotAllowed().body(requestID: ""), extra: [("allow", allow)])
    }

    private func write(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String,
        extra: [(String, String)] = []
    ) {
        write(context, head, status, Array(body.utf8), extra: extra)
    }

    private func write(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: [UInt8],
        extra: [(String, String)] = [], contentType: String = "application/json"
    ) {
        var h = HTTPHeaders()
        h.add(name: "content-type", value: contentType)
        h.add(name: "content-length", value: String(body.count))
        for (n, v) in extra { h.add(name: n, value: v) }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: h))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
