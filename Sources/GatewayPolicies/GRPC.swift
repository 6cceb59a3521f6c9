/// The parts of gRPC over HTTP/2 (PROTOCOL-HTTP2 of grpc/grpc) the gateway itself speaks:
/// status codes and their names, the codes for the errors it produces, and `grpc-timeout`.
public enum GRPC {
    public static let ok = 0
    public static let cancelled = 1
    public static let unknown = 2
    public static let deadlineExceeded = 4
    public static let permissionDenied = 7
    public static let resourceExhausted = 8
    public static let unimplemented = 12
    public static let `internal` = 13
    public static let unavailable = 14
    public static let unauthenticated = 16

    /// Names of the codes `retry.on` may list (Envoy's `retry_on` names for gRPC).
    public static let retryNames: [String: Int] = [
        "cancelled": cancelled, "deadline-exceeded": deadlineExceeded, "internal": `internal`,
        "resource-exhausted": resourceExhausted, "unavailable": unavailable,
    ]

    /// The metric label and access log name of a code (`grpc-status` 0...16).
    public static func name(_ code: Int) -> String {
        switch code {
        case 0: return "OK"
        case 1: return "CANCELLED"
        case 2: return "UNKNOWN"
        case 3: return "INVALID_ARGUMENT"
        case 4: return "DEADLINE_EXCEEDED"
        case 5: return "NOT_FOUND"
        case 6: return "ALREADY_EXISTS"
        case 7: return "PERMISSION_DENIED"
        case 8: return "RESOURCE_EXHAUSTED"
        case 9: return "FAILED_PRECONDITION"
        case 10: return "ABORTED"
        case 11: return "OUT_OF_RANGE"
        case 12: return "UNIMPLEMENTED"
        case 13: return "INTERNAL"
        case 14: return "UNAVAILABLE"
        case 15: return "DATA_LOSS"
        case 16: return "UNAUTHENTICATED"
        default: return "UNKNOWN"
        }
    }

    /// The code a gRPC client gets for an error the gateway answers with `status` (SPEC §4):
    /// 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429 RESOURCE_EXHAUSTED,
    /// 502/503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, other 4xx INTERNAL, other 5xx UNAVAILABLE
    /// (gRPC's own HTTP-to-gRPC mapping, with 429 as the limit it is).
    public static func code(forHTTPStatus status: Int) -> Int {
        switch status {
        case 200..<300: return ok
        case 401: return unauthenticated
        case 403: return permissionDenied
        case 404: return unimplemented
        case 413, 431, 429: return resourceExhausted
        case 408, 504: return deadlineExceeded
        case 400..<500: return `internal`
        default: return unavailable
        }
    }

    /// The HTTP status that outlier detection and the upstream metrics count a gRPC
    /// response as (Envoy's mapping): UNAVAILABLE 503, DEADLINE_EXCEEDED 504, INTERNAL,
    /// UNKNOWN and DATA_LOSS 500; every other code is the service's own answer: 200.
    public static func httpStatus(forCode code: Int) -> Int {
        switch code {
        case unavailable: return 503
        case deadlineExceeded: return 504
        case `internal`, unknown, 15: return 500
        default: return 200
        }
    }

    /// `grpc-status` as sent: 1 to 3 ASCII digits, else nil.
    public static func parseStatus<S: Sequence<UInt8>>(_ bytes: S) -> Int? {
        var n = 0
        var count = 0
        for b in bytes {
            guard b >= 0x30 && b <= 0x39, count < 3 else { return nil }
            n = n * 10 + Int(b - 0x30)
            count += 1
        }
        return count == 0 ? nil : n
    }

    /// `grpc-timeout` (`1*8DIGIT` then one of `H M S m u n`) in nanoseconds, saturating;
    /// nil when it is malformed (the header is then ignored, as gRPC servers do).
    public static func parseTimeout<S: Sequence<UInt8>>(_ bytes: S) -> Int64? {
        var value: Int64 = 0
        var digits = 0
        var unit: UInt8?
        for b in bytes {
            if unit != nil { return nil }
            if b >= 0x30 && b <= 0x39 {
                guard digits < 8 else { return nil }
                value = value * 10 + Int64(b - 0x30)
                digits += 1
            } else {
                unit = b
            }
        }
        guard digits > 0, let unit else { return nil }
        let scale: Int64
        switch unit {
        case UInt8(ascii: "H"): scale = 3_600_000_000_000
        case UInt8(ascii: "M"): scale = 60_000_000_000
        case UInt8(ascii: "S"): scale = 1_000_000_000
        case UInt8(ascii: "m"): scale = 1_000_000
        case UInt8(ascii: "u"): scale = 1_000
        case UInt8(ascii: "n"): scale = 1
        default: return nil
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: scale)
        return overflow ? Int64.max : product
    }

    /// `grpc-message` percent-encoded as the protocol asks: bytes outside 0x20...0x7E and
    /// `%` itself as `%XX`, so the value is always a safe header value.
    public static func encodeMessage(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in text.utf8 {
            if b >= 0x20 && b <= 0x7E && b != UInt8(ascii: "%") {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
