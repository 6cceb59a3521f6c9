import GatewayAuth
import GatewayConfig
import NIOCore
import NIOHTTP1

/// What passes through (SPEC §3): hop-by-hop headers stripped, forwarding headers set,
/// request id and trace context propagated, the route's header operations applied.
enum ForwardHeaders {
    /// The request head for the upstream, serialized. `upgrade` is the client's `Upgrade`
    /// value when a WebSocket upgrade passes through. Returns whether the body is chunked.
    static func requestHead<Sink: HeadSink>(
        _ head: HTTPRequestHead, route: CompiledRoute, path: String, query: Substring?,
        target: UpstreamSpec.TargetSpec, requestID: String, peerIP: String, trusted: Bool,
        upgrade: String?, identity: Identity? = nil, authority: String? = nil, scheme: String = "http", grpcWeb: GRPCWebState? = nil,
        ids: inout IDGenerator, into out: inout Sink
    ) -> Bool {
        let incoming = head.headers
        // Headers that carry verified claims are never taken from the client (SPEC §2.5).
        let claimHeaders = route.auth?.forwardedHeaders ?? route.loginHeaders
        let listed = incoming.contains(name: "connection") ? connectionTokens(incoming["connection"]) : []
        let ops = route.requestHeaders
        out.writeString(head.method.rawValue)
        out.writeStaticString(" ")
        out.writeString(route.rewrittenPath(path))
        if let query {
            out.writeStaticString("?")
            out.writeSubstring(query)
        }
        out.writeStaticString(" HTTP/1.1\r\n")
        var host: String?
        var xff: String?
        var proto: String?
        var fwdHost: String?
        var traceparent: String?
        var chunked = false
        for (name, value) in incoming {
            if isHopByHop(name) {
                if nameEquals(name, "transfer-encoding") { chunked = true }
                continue
            }
            if !listed.isEmpty && listed.contains(where: { nameEquals(name, lowercased: $0) }) { continue }
            if !claimHeaders.isEmpty && claimHeaders.contains(where: { nameEquals(name, lowercased: $0) }) { continue }
            switch name.utf8.count {
            case 4 where nameEquals(name, "host"):
                host = value
                continue
            case 9 where nameEquals(name, "forwarded"):
                if !trusted { continue }
            case 11 where nameEquals(name, "traceparent"):
                traceparent = value
                continue
            case 10 where nameEquals(name, "tracestate"):
                continue  // re-added below only with a valid traceparent
            case 12 where nameEquals(name, "x-request-id"):
                continue
            case 6 where nameEquals(name, "expect"):
                continue  // answered by the gateway itself
            case 12 where grpcWeb != nil && nameEquals(name, "content-type"):
                continue  // gRPC-Web goes up as gRPC (written below)
            case 10 where grpcWeb != nil && nameEquals(name, "x-grpc-web"):
                continue
            case 14 where grpcWeb?.mode == .text && nameEquals(name, "content-length"):
                chunked = true  // decoded from base64 on the way: another length
                continue
            case 15 where nameEquals(name, "x-forwarded-for"):
                if trusted { xff = xff.map { $0 + ", " + value } ?? value }
                continue
            case 16 where nameEquals(name, "x-forwarded-host"):
                if trusted { fwdHost = value }
                continue
            case 17 where nameEquals(name, "x-forwarded-proto"):
                if trusted { proto = value }
                continue
            default:
                break
            }
            if ops.isEmpty || !ops.replaces(name) { out.writeHeaderLine(name, value) }
        }
        @inline(__always) func emit(_ name: StaticString, _ value: String) {
            if ops.isEmpty || !ops.replaces(name.description) { out.writeHeaderLine(name, value) }
        }
        // An absolute-form target's authority replaces the client's Host (RFC 9112 §3.2.2).
        if let authority { host = authority }
        emit("host", route.hostRewrite ?? host ?? target.authority)
        emit("x-forwarded-for", xff.map { $0 + ", " + peerIP } ?? peerIP)
        emit("x-forwarded-proto", proto ?? scheme)
        if let h = fwdHost ?? host { emit("x-forwarded-host", h) }
        emit("x-request-id", requestID)
        if let tp = traceparent, TraceContext.isValid(tp) {
            emit("traceparent", tp)
            for ts in incoming["tracestate"] { emit("tracestate", ts) }
        } else {
            if ops.isEmpty || !ops.replaces("traceparent") {
                out.writeStaticString("traceparent: ")
                ids.writeTraceparent(into: &out)
                out.writeStaticString("\r\n")
            }
        }
        if let grpcWeb { out.writeHeaderLine("content-type", grpcWeb.upstreamContentType) }
        if chunked { out.writeStaticString("transfer-encoding: chunked\r\n") }
        if let upgrade {
            out.writeHeaderLine("upgrade", upgrade)
            out.writeStaticString("connection: upgrade\r\n")
        }
        if let identity {
            for (name, value) in identity.forwarded where ops.isEmpty || !ops.replaces(name) { out.writeHeaderLine(name, value) }
        }
        for (name, value) in ops.set { out.writeHeaderLine(name, value) }
        for (name, value) in ops.add { out.writeHeaderLine(name, value) }
        out.writeStaticString("\r\n")
        return chunked
    }

    /// The request trailers a route with `forward_request_trailers` sends on: none that name a
    /// header the gateway manages or vouches for — forwarded claims, credentials (`Authorization`,
    /// `Cookie`, the API key header), framing, hop-by-hop, `Host`, forwarding and tracing
    /// headers, or one the route's `request_headers` sets or removes. A trailer cannot do
    /// after the head what the head was not allowed to do.
    static func requestTrailers<Sink: HeadSink>(_ trailers: HTTPHeaders, route: CompiledRoute, apiKeyHeader: String, into out: inout Sink) {
        let claimHeaders = route.auth?.forwardedHeaders ?? route.loginHeaders
        let ops = route.requestHeaders
        for (name, value) in trailers {
            let lower = name.lowercased()
            if isHopByHop(name) || managedTrailers.contains(lower) || lower == apiKeyHeader.lowercased() { continue }
            if claimHeaders.contains(lower) { continue }
            if !ops.isEmpty && (ops.replaces(name) || ops.add.contains { $0.0.lowercased() == lower }) { continue }
            out.writeHeaderLine(name, value)
        }
    }

    static let managedTrailers: Set<String> = [
        "host", "content-length", "content-encoding", "content-type", "content-range", "authorization", "cookie", "forwarded",
        "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-request-id", "traceparent", "tracestate", "expect",
        "x-gateway-mirror", "x-upstream-attempts",
    ]

    static func isWebSocketUpgrade(_ headers: HTTPHeaders) -> Bool {
        guard let up = headers.first(name: "upgrade"), nameEquals(up, "websocket") else { return false }
        return connectionTokens(headers["connection"]).contains("upgrade")
    }

    /// The response head for the client, serialized from the upstream's head: hop-by-hop
    /// fields dropped, the upstream's field lines otherwise copied as they came. `closeAfter`
    /// is set when the framing needs the connection closed (an HTTP/1.0 client and a body of
    /// unknown length). Returns whether the body goes to the client chunked.
    static func responseHead<Sink: HeadSink>(
        _ head: ResponseParser.Head, request: HTTPRequestHead, route: CompiledRoute, requestID: String,
        isHead: Bool, corsOrigin: String? = nil, extra: [(String, String)] = [], replacedBodyLength: Int? = nil, gzip: Bool = false,
        grpcWeb: GRPCWebState? = nil, closeAfter: inout Bool, into out: inout Sink
    ) -> Bool {
        out.writeStaticString("HTTP/1.1 ")
        out.writeStatusCode(head.status)
        out.writeStaticString(" ")
        head.block.withUnsafeReadableBytes { out.writeRaw(UnsafeRawBufferPointer(rebasing: $0[head.reason])) }
        out.writeStaticString("\r\n")
        // Headers named by `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
        let listed = head.connectionNamesHeaders ? upstreamConnectionTokens(head) : []
        let ops = route.responseHeaders
        var hasLength = false
        HeadWriter.copyFields(of: head, into: &out) { name in
            if isHopByHop(name) || asciiCaseInsensitiveEquals(name, "x-request-id") { return false }
            if !listed.isEmpty && listed.contains(where: { asciiCaseInsensitiveEquals(name, $0) }) { return false }
            if !ops.isEmpty && ops.replaces(name) { return false }
            // On a route with `cors` the gateway alone answers for CORS.
            if corsOrigin != nil && name.count > 15
                && asciiCaseInsensitiveEquals(UnsafeRawBufferPointer(rebasing: name[0..<15]), "access-control-")
            {
                return false
            }
            if gzip && asciiCaseInsensitiveEquals(name, "content-length") { return false }  // compressed: length unknown
            if grpcWeb != nil && (asciiCaseInsensitiveEquals(name, "content-length") || asciiCaseInsensitiveEquals(name, "content-type")) {
                return false  // gRPC-Web: its own type, and a body that grows by the trailer frame
            }
            if let _ = replacedBodyLength {
                // A body the gateway rewrote (shaping): its own length, no upstream encoding.
                if asciiCaseInsensitiveEquals(name, "content-length") || asciiCaseInsensitiveEquals(name, "content-encoding") {
                    return false
                }
            } else if !hasLength && asciiCaseInsensitiveEquals(name, "content-length") {
                hasLength = true
            }
            return true
        }
        if let n = replacedBodyLength {
            out.writeHeaderLine("content-length", String(n))
            hasLength = true
        }
        if gzip {
            out.writeStaticString("content-encoding: gzip\r\nvary: Accept-Encoding\r\n")
        }
        if let grpcWeb { out.writeHeaderLine("content-type", grpcWeb.clientContentType) }
        let code = head.status
        let bodyless = isHead || code == 204 || code == 304 || code < 200
        var chunked = false
        if !bodyless && !hasLength {
            if request.version.minor >= 1 {
                out.writeStaticString("transfer-encoding: chunked\r\n")
                chunked = true
            } else {
                closeAfter = true  // an HTTP/1.0 client reads to the end of the connection
            }
        }
        out.writeHeaderLine("x-request-id", requestID)
        if let origin = corsOrigin, let cors = route.cors { writeCORS(cors, origin: origin, into: &out) }
        for (name, value) in extra { out.writeHeaderLine(name, value) }
        for (name, value) in ops.set { out.writeHeaderLine(name, value) }
        for (name, value) in ops.add { out.writeHeaderLine(name, value) }
        if closeAfter {
            out.writeStaticString("connection: close\r\n")
        } else if request.version.minor == 0 {
            out.writeStaticString("connection: keep-alive\r\n")
        }
        out.writeStaticString("\r\n")
        return chunked
    }

    /// The value of the first field `name` of an upstream head.
    static func value(of name: String, in head: ResponseParser.Head) -> String? {
        head.block.withUnsafeReadableBytes { raw in
            for f in head.fields {
                let n = UnsafeRawBufferPointer(rebasing: raw[Int(f.nameStart)..<Int(f.nameEnd)])
                if asciiCaseInsensitiveEquals(n, name) {
                    return String(decoding: UnsafeRawBufferPointer(rebasing: raw[Int(f.valueStart)..<Int(f.valueEnd)]), as: UTF8.self)
                }
            }
            return nil
        }
    }

    /// The CORS fields of an actual (not preflight) response: the allowed origin, credentials
    /// and exposed headers when the origin is allowed, and `Vary: Origin` always, so a cache
    /// never serves one origin's answer to another.
    static func writeCORS<Sink: HeadSink>(_ cors: CORSPolicy, origin: String, into out: inout Sink) {
        if !origin.isEmpty {
            out.writeHeaderLine("access-control-allow-origin", origin)
            if cors.credentials { out.writeStaticString("access-control-allow-credentials: true\r\n") }
            if !cors.exposeHeaders.isEmpty { out.writeHeaderLine("access-control-expose-headers", cors.exposeHeaders) }
        }
        out.writeStaticString("vary: Origin\r\n")
    }

    /// The same fields for a response the gateway makes itself.
    static func addCORS(_ cors: CORSPolicy, origin: String, to h: inout HTTPHeaders) {
        if !origin.isEmpty {
            h.add(name: "access-control-allow-origin", value: origin)
            if cors.credentials { h.add(name: "access-control-allow-credentials", value: "true") }
            if !cors.exposeHeaders.isEmpty { h.add(name: "access-control-expose-headers", value: cors.exposeHeaders) }
        }
        h.add(name: "vary", value: "Origin")
    }

    /// The client's `101` for a WebSocket upgrade: the upstream's fields but hop-by-hop ones
    /// (`Upgrade` stays), `Connection: upgrade`, and the request id.
    static func switchingProtocolsHead(_ head: ResponseParser.Head, requestID: String, into out: inout ByteBuffer) {
        out.writeStatusLine(101, reason: "Switching Protocols")
        HeadWriter.copyFields(of: head, into: &out) { name in
            (!isHopByHop(name) || asciiCaseInsensitiveEquals(name, "upgrade")) && !asciiCaseInsensitiveEquals(name, "x-request-id")
        }
        out.writeStaticString("connection: upgrade\r\n")
        out.writeHeaderLine("x-request-id", requestID)
        out.writeStaticString("\r\n")
    }

    /// The lowercased tokens of the `Connection` fields of an upstream head.
    private static func upstreamConnectionTokens(_ head: ResponseParser.Head) -> [String] {
        var out: [String] = []
        head.block.withUnsafeReadableBytes { raw in
            for f in head.fields {
                let name = UnsafeRawBufferPointer(rebasing: raw[Int(f.nameStart)..<Int(f.nameEnd)])
                guard asciiCaseInsensitiveEquals(name, "connection") else { continue }
                forEachToken(UnsafeRawBufferPointer(rebasing: raw[Int(f.valueStart)..<Int(f.valueEnd)])) { token in
                    out.append(String(decoding: token, as: UTF8.self).lowercased())
                }
            }
        }
        return out
    }

    /// `remove`, then `set` (replacing), then `add` (SPEC §2.7 `request_headers` / `response_headers`).
    static func apply(_ ops: CompiledRoute.HeaderOps, to headers: inout HTTPHeaders) {
        for name in ops.remove { headers.remove(name: name) }
        for (name, value) in ops.set { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in ops.add { headers.add(name: name, value: value) }
    }
}

extension CompiledRoute.HeaderOps {
    /// `remove` or `set` names this header: the original is not forwarded.
    func replaces(_ name: String) -> Bool {
        remove.contains { nameEquals(name, lowercased: $0) } || set.contains { nameEquals(name, lowercased: $0.0) }
    }

    func replaces(_ name: UnsafeRawBufferPointer) -> Bool {
        remove.contains { asciiCaseInsensitiveEquals(name, $0) } || set.contains { asciiCaseInsensitiveEquals(name, $0.0) }
    }
}
