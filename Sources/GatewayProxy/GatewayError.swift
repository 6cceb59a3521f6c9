import GatewayPolicies
import NIOCore
import NIOHTTP1

/// An error the gateway answers itself, with the status and code of SPEC §4.
/// `source` says where it came from; `retry` whether another try may follow, and under which
/// condition of a route's `retry.on` (nil: never). The retry loop reads only that.
public struct GatewayError: Error, Sendable, Hashable {
    public enum Source: Sendable, Hashable { case downstream, upstream, internalError }
    public var status: HTTPResponseStatus
    public var code: String
    public var message: String
    public var source: Source
    public var retry: RetryCondition?
    /// An HTTP/2 upstream refused the stream unprocessed (`streamRefused`).
    public var isStreamRefused = false

    public init(
        _ status: HTTPResponseStatus, _ code: String, _ message: String, source: Source = .internalError, retry: RetryCondition? = nil
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.source = source
        self.retry = retry
    }

    /// The try could not reach the target: nothing was sent, so any method may be retried.
    public static func connectFailure(_ m: String) -> GatewayError {
        .init(.badGateway, "bad_gateway", m, source: .upstream, retry: .connectFailure)
    }
    /// An HTTP/2 upstream refused the stream unprocessed (RST_STREAM REFUSED_STREAM, or the
    /// stream was above a GOAWAY's last stream id): safe to send again, whatever the method.
    public static func streamRefused() -> GatewayError {
        var e = GatewayError(.badGateway, "bad_gateway", "the upstream refused the stream", source: .upstream, retry: .connectFailure)
        e.isStreamRefused = true
        return e
    }

    /// The answer a route's `fault.abort` gives.
    public static func faultAbort(_ status: Int) -> GatewayError {
        .init(
            HTTPResponseStatus(statusCode: status), "fault_injected", "the route's fault injection failed this request",
            source: .internalError)
    }

    public static func badRequest(_ m: String) -> GatewayError { .init(.badRequest, "bad_request", m, source: .downstream) }
    public static func noRoute() -> GatewayError { .init(.notFound, "no_route", "no route matches this request", source: .downstream) }
    public static func methodNotAllowed() -> GatewayError {
        .init(.methodNotAllowed, "method_not_allowed", "this path does not accept that method", source: .downstream)
    }
    public static func requestTimeout() -> GatewayError {
        .init(.requestTimeout, "request_timeout", "the request was not received in time", source: .downstream)
    }
    public static func payloadTooLarge(_ max: Int) -> GatewayError {
        .init(.payloadTooLarge, "payload_too_large", "the request body is larger than \(max) bytes", source: .downstream)
    }
    public static func headersTooLarge() -> GatewayError {
        .init(.requestHeaderFieldsTooLarge, "headers_too_large", "the request headers are too large", source: .downstream)
    }
    /// The target took the request and no valid response came (`reset` unless told otherwise).
    public static func badGateway(_ m: String, retry: RetryCondition? = .reset) -> GatewayError {
        .init(.badGateway, "bad_gateway", m, source: .upstream, retry: retry)
    }
    public static func unavailable(_ m: String) -> GatewayError { .init(.serviceUnavailable, "unavailable", m, source: .internalError) }
    public static func rateLimited() -> GatewayError {
        .init(.tooManyRequests, "rate_limited", "too many requests; retry after the time in Retry-After", source: .downstream)
    }
    public static func upstreamTimeout() -> GatewayError {
        .init(.gatewayTimeout, "upstream_timeout", "the upstream did not answer in time", source: .upstream, retry: .reset)
    }

    /// `{"error": CODE, "message": ..., "request_id": ...}`.
    public func body(requestID: String) -> String {
        "{\"error\":\"\(code)\",\"message\":\(jsonString(message)),\"request_id\":\(jsonString(requestID))}"
    }
}

/// A JSON string literal for `s` (`JSON.quoted`).
public func jsonString(_ s: String) -> String { JSON.quoted(s) }

extension GatewayError {
    /// The whole HTTP/1.1 response as bytes, for the places that sit below the HTTP codec
    /// (a parse error, a header timeout). Always `Connection: close`.
    func rawResponse(requestID: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = self.body(requestID: requestID)
        var buf = allocator.buffer(capacity: 160 + body.utf8.count)
        buf.writeString(
            "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\nx-request-id: \(requestID)\r\nconnection: close\r\n\r\n"
        )
        buf.writeString(body)
        return buf
    }
}
