import GatewayPolicies
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// One access-log line (SPEC §2.8) as JSON, written straight into the loop's byte buffer:
/// no `Date`, no `String(format:)`, no intermediate strings (those cost more than a
/// whole request did).
enum AccessLogLine {
    static func append(_ ex: Exchange, listener: String, to out: inout [UInt8], clock: inout WallClockCache) {
        let nowNanos = NIODeadline.now().uptimeNanoseconds
        out.append(contentsOf: #"{"ts":""#.utf8)
        clock.appendTimestamp(to: &out)
        out.append(contentsOf: #"","request_id":"#.utf8)
        appendJSONString(ex.requestID, to: &out)
        out.append(contentsOf: #","client_ip":"#.utf8)
        appendJSONString(ex.clientIP, to: &out)
        out.append(contentsOf: #","method":"#.utf8)
        appendJSONString(ex.head.method.rawValue, to: &out)
        out.append(contentsOf: #","path":"#.utf8)
        appendJSONString(ex.head.uri, to: &out)
        out.append(contentsOf: #","route":"#.utf8)
        appendOptional(ex.route?.name, to: &out)
        out.append(contentsOf: #","upstream":"#.utf8)
        appendOptional(ex.upstream?.spec.name, to: &out)
        out.append(contentsOf: #","target":"#.utf8)
        appendOptional(ex.pool?.target.url, to: &out)
        out.append(contentsOf: #","status":"#.utf8)
        appendInt(ex.status, to: &out)
        out.append(contentsOf: #","duration_ms":"#.utf8)
        appendMillis(Int64(truncatingIfNeeded: nowNanos &- ex.start.uptimeNanoseconds), to: &out)
        out.append(contentsOf: #","upstream_ms":"#.utf8)
        if ex.upstreamNanos >= 0 { appendMillis(ex.upstreamNanos, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","attempts":"#.utf8)
        appendInt(ex.attempts, to: &out)
        out.append(contentsOf: #","bytes_in":"#.utf8)
        appendInt(ex.requestBytes, to: &out)
        out.append(contentsOf: #","bytes_out":"#.utf8)
        appendInt(ex.responseBytes, to: &out)
        out.append(contentsOf: #","tier":"#.utf8)
        appendOptional(ex.tier, to: &out)
        out.append(contentsOf: #","listener":"#.utf8)
        appendJSONString(listener, to: &out)
        if ex.isGRPC {
            // null when the call ended with no status (the client left, say).
            out.append(contentsOf: #","grpc_status":"#.utf8)
            if ex.grpcStatus >= 0 { appendInt(ex.grpcStatus, to: &out) } else { out.append(contentsOf: "null".utf8) }
        }
        out.append(contentsOf: "}\n".utf8)
    }

    static func appendOptional(_ s: String?, to out: inout [UInt8]) {
        if let s { appendJSONString(s, to: &out) } else { out.append(contentsOf: "null".utf8) }
    }

    /// A JSON string literal (`JSON.appendString`).
    static func appendJSONString(_ s: String, to out: inout [UInt8]) { JSON.appendString(s, to: &out) }

    static func appendInt(_ v: Int, to out: inout [UInt8]) {
        if v < 0 {
            out.append(UInt8(ascii: "-"))
            appendUInt(UInt64(v.magnitude), to: &out)
        } else {
            appendUInt(UInt64(v), to: &out)
        }
    }

    static func appendUInt(_ v: UInt64, to out: inout [UInt8]) {
        if v < 10 {
            out.append(UInt8(ascii: "0") &+ UInt8(v))
            return
        }
        var digits:
            (
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
            ) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = v
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buf in
            while n > 0 {
                buf[count] = UInt8(ascii: "0") &+ UInt8(n % 10)
                n /= 10
                count += 1
            }
            for i in stride(from: count - 1, through: 0, by: -1) { out.append(buf[i]) }
        }
    }

    /// Nanoseconds as milliseconds with three decimals ("12.345").
    static func appendMillis(_ nanos: Int64, to out: inout [UInt8]) {
        let micros = max(0, nanos) / 1000
        appendUInt(UInt64(micros / 1000), to: &out)
        out.append(UInt8(ascii: "."))
        let frac = micros % 1000
        out.append(UInt8(ascii: "0") &+ UInt8(frac / 100))
        out.append(UInt8(ascii: "0") &+ UInt8(frac / 10 % 10))
        out.append(UInt8(ascii: "0") &+ UInt8(frac % 10))
    }

    static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? UInt8(ascii: "0") + v : UInt8(ascii: "a") + v - 10 }
}

/// The wall clock as "2026-11-22T04:59:00.123Z", with the part up to the second formatted
/// once per second per loop.
struct WallClockCache {
    private var second: Int = -1
    private var prefix: [UInt8] = []

    mutating func appendTimestamp(to out: inout [UInt8]) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let s = Int(ts.tv_sec)
        if s != second {
            second = s
            var t = time_t(s)
            var parts = tm()
            gmtime_r(&t, &parts)
            prefix.removeAll(keepingCapacity: true)
            func two(_ v: Int32) {
                prefix.append(UInt8(ascii: "0") &+ UInt8(v / 10 % 10))
                prefix.append(UInt8(ascii: "0") &+ UInt8(v % 10))
            }
            AccessLogLine.appendUInt(UInt64(parts.tm_year + 1900), to: &prefix)
            prefix.append(UInt8(ascii: "-"))
            two(parts.tm_mon + 1)
            prefix.append(UInt8(ascii: "-"))
            two(parts.tm_mday)
            prefix.append(UInt8(ascii: "T"))
            two(parts.tm_hour)
            prefix.append(UInt8(ascii: ":"))
            two(parts.tm_min)
            prefix.append(UInt8(ascii: ":"))
            two(parts.tm_sec)
            prefix.append(UInt8(ascii: "."))
        }
        out.append(contentsOf: prefix)
        let ms = Int(ts.tv_nsec) / 1_000_000
        out.append(UInt8(ascii: "0") &+ UInt8(ms / 100))
        out.append(UInt8(ascii: "0") &+ UInt8(ms / 10 % 10))
        out.append(UInt8(ascii: "0") &+ UInt8(ms % 10))
        out.append(UInt8(ascii: "Z"))
    }
}
