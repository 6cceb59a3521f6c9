import GatewayConfig
import NIOHTTP1

/// What passes through (SPEC §3): hop-by-hop headers stripped, forwarding headers set,
/// request id and trace context propagated, the route's header operations applied.
enum ForwardHeaders {
    static func requestHead(
        _ head: HTTPRequestHead, route: CompiledRoute, path: String, query: Substring?,
        target: UpstreamSpec.TargetSpec, requestID: String, peerIP: String, trusted: Bool,
        ids: inout IDGenerator
    ) -> HTTPRequestHead {
        let incoming = head.headers
        let listed = incoming.contains(name: "connection") ? connectionTokens(incoming["connection"]) : []
        var out = HTTPHeaders()
        out.reserveCapacity(incoming.count + 6)
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
            out.add(name: name, value: value)
        }
        out.add(name: "host", value: route.hostRewrite ?? host ?? target.authority)
        out.add(name: "x-forwarded-for", value: xff.map { $0 + ", " + peerIP } ?? peerIP)
        out.add(name: "x-forwarded-proto", value: proto ?? "http")
        if let h = fwdHost ?? host { out.add(name: "x-forwarded-host", value: h) }
        out.add(name: "x-request-id", value: requestID)
        if let tp = traceparent, TraceContext.isValid(tp) {
            out.add(name: "traceparent", value: tp)
            for ts in incoming["tracestate"] { out.add(name: "tracestate", value: ts) }
        } else {
            out.add(name: "traceparent", value: ids.newTraceparent())
        }
        if chunked { out.add(name: "transfer-encoding", value: "chunked") }
        if !route.requestHeaders.isEmpty { apply(route.requestHeaders, to: &out) }
        var uri = route.rewrittenPath(path)
        if let query { uri += "?" + query }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: uri, headers: out)
    }

    static func isWebSocketUpgrade(_ headers: HTTPHeaders) -> Bool {
        guard let up = headers.first(name: "upgrade"), nameEquals(up, "websocket") else { return false }
        return connectionTokens(headers["connection"]).contains("upgrade")
    }

    static func keepUpgrade(_ incoming: HTTPHeaders, into head: inout HTTPRequestHead) {
        head.headers.replaceOrAdd(name: "upgrade", value: incoming.first(name: "upgrade") ?? "websocket")
        head.headers.replaceOrAdd(name: "connection", value: "upgrade")
    }

    /// The response head for the client. `closeAfter` is set when the framing needs the
    /// connection closed (an HTTP/1.0 client and a body of unknown length).
    static func responseHead(
        _ head: HTTPResponseHead, request: HTTPRequestHead, route: CompiledRoute, requestID: String,
        isHead: Bool, closeAfter: inout Bool
    ) -> HTTPResponseHead {
        // Edit the upstream's headers in place: most responses only lose `Connection`, so
        // removing a few entries is cheaper than rebuilding the whole list.
        var out = head.headers
        var hasLength = false
        var drop: [String] = []
        for (name, _) in out {
            if isHopByHop(name) || (name.utf8.count == 12 && nameEquals(name, "x-request-id")) {
                if !drop.contains(where: { nameEquals($0, lowercased: name) }) { drop.append(name) }
            } else if !hasLength && name.utf8.count == 14 && nameEquals(name, "content-length") {
                hasLength = true
            }
        }
        if !drop.isEmpty {
            // Headers named by `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
            if out.contains(name: "connection") {
                for token in connectionTokens(out["connection"]) where token != "close" && token != "keep-alive" {
                    if nameEquals(token, lowercased: "content-length") { hasLength = false }
                    drop.append(token)
                }
            }
            for name in drop { out.remove(name: name) }
        }
        let code = head.status.code
        let bodyless = isHead || code == 204 || code == 304 || code < 200
        if !bodyless && !hasLength {
            if request.version.minor >= 1 {
                out.add(name: "transfer-encoding", value: "chunked")
            } else {
                closeAfter = true  // an HTTP/1.0 client reads to the end of the connection
            }
        }
        out.add(name: "x-request-id", value: requestID)
        if !route.responseHeaders.isEmpty { apply(route.responseHeaders, to: &out) }
        if closeAfter {
            out.add(name: "connection", value: "close")
        } else if request.version.minor == 0 {
            out.add(name: "connection", value: "keep-alive")
        }
        return HTTPResponseHead(version: .http1_1, status: head.status, headers: out)
    }

    /// `remove`, then `set` (replacing), then `add` (SPEC §2.7 `request_headers` / `response_headers`).
    static func apply(_ ops: CompiledRoute.HeaderOps, to headers: inout HTTPHeaders) {
        for name in ops.remove { headers.remove(name: name) }
        for (name, value) in ops.set { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in ops.add { headers.add(name: name, value: value) }
    }
}
