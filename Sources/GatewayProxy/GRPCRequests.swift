import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

/// What the exchange does for a gRPC request (`content-type: application/grpc`, any
/// `+proto`/`;` suffix): `grpc-timeout` shortens the route's deadline, the gateway's own
/// errors are trailers-only responses with `grpc-status` and `grpc-message`, and the
/// response's `grpc-status` is read from its head or trailers (retries, outlier detection,
/// `gateway_grpc_responses_total`, the access log's `grpc_status`).
enum GRPCRequests {
    static func isGRPC(contentType: String) -> Bool {
        let u = contentType.utf8
        guard u.starts(with: "application/grpc".utf8) else { return false }
        let rest = u.dropFirst(16)
        // `application/grpc-web...` is gRPC-Web, not gRPC.
        guard let next = rest.first else { return true }
        return next == UInt8(ascii: "+") || next == UInt8(ascii: ";")
    }

    /// `grpc-timeout`, capped by the route's timeout: whichever ends first is the deadline.
    static func applyTimeout(_ ex: Exchange) {
        guard let value = ex.head.headers.first(name: "grpc-timeout"), let nanos = GRPC.parseTimeout(value.utf8) else { return }
        let (end, overflow) = ex.start.uptimeNanoseconds.addingReportingOverflow(UInt64(max(1, nanos)))
        if !overflow && (ex.deadline == 0 || end < ex.deadline) {
            ex.deadline = end
            ex.keepsDeadline = true
        }
    }

    /// `grpc-status` of a response head (a trailers-only response has it there).
    static func status(in head: ResponseParser.Head) -> Int? {
        ForwardHeaders.value(of: "grpc-status", in: head).flatMap { GRPC.parseStatus($0.utf8) }
    }

    /// `grpc-status` of a trailer section.
    static func status(inTrailers trailers: ByteBuffer) -> Int? {
        var found: Int?
        forEachTrailerField(trailers) { name, value in
            if found == nil, nameEquals(name, "grpc-status") { found = GRPC.parseStatus(value.utf8) }
        }
        return found
    }
}

extension ProxyHandler {
    /// An error of the gateway to a gRPC client: HTTP 200, trailers-only (`grpc-status` and
    /// a percent-encoded `grpc-message` in the one HEADERS frame), the code from the error's
    /// HTTP status (`GRPC.code(forHTTPStatus:)`: 401 UNAUTHENTICATED, 429 RESOURCE_EXHAUSTED,
    /// 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED...). Logged and counted as the 200 it is on
    /// the wire, with `grpc_status` beside it.
    func sendGRPCError(_ error: GatewayError, _ ex: Exchange, extraHeaders: [(String, String)]) {
        let code = GRPC.code(forHTTPStatus: Int(error.status.code))
        var h = HTTPHeaders()
        h.reserveCapacity(6 + extraHeaders.count)
        h.add(name: "content-type", value: ex.grpcWeb?.clientContentType ?? "application/grpc")
        h.add(name: "grpc-status", value: String(code))
        h.add(name: "grpc-message", value: GRPC.encodeMessage(error.message))
        h.add(name: "content-length", value: "0")
        h.add(name: "x-request-id", value: ex.requestID)
        for (n, v) in extraHeaders where HeaderBytes.isToken(n) && HeaderBytes.isFieldValue(v) { h.add(name: n, value: v) }
        for (n, v) in ex.rateLimitHeaders { h.add(name: n, value: v) }
        ex.grpcStatus = code
        writeLocal(ex, status: .ok, headers: h, body: nil)
    }
}
