import Foundation
import NIOCore

/// One access-log line (SPEC §2.8) as JSON.
enum AccessLogLine {
    static func json(_ ex: Exchange, listener: String) -> String {
        let now = Date()
        let durationMs = Double(NIODeadline.now().uptimeNanoseconds &- ex.start.uptimeNanoseconds) / 1e6
        var s = "{\"ts\":\"\(timestamp(now))\",\"request_id\":\(jsonString(ex.requestID)),\"client_ip\":\(jsonString(ex.clientIP))"
        s += ",\"method\":\(jsonString(ex.head.method.rawValue)),\"path\":\(jsonString(ex.head.uri))"
        s += ",\"route\":\(ex.route.map { jsonString($0.name) } ?? "null")"
        s += ",\"upstream\":\(ex.upstream.map { jsonString($0.spec.name) } ?? "null")"
        s += ",\"target\":\(ex.pool.map { jsonString($0.target.url) } ?? "null")"
        s += ",\"status\":\(ex.status),\"duration_ms\":\(format(durationMs))"
        s += ",\"upstream_ms\":\(ex.upstreamNanos >= 0 ? format(Double(ex.upstreamNanos) / 1e6) : "null")"
        s +=
            ",\"attempts\":\(ex.connection != nil || ex.pool != nil ? 1 : 0),\"bytes_in\":\(ex.requestBytes),\"bytes_out\":\(ex.responseBytes)"
        s += ",\"tier\":null,\"listener\":\(jsonString(listener))}"
        return s
    }

    private static func format(_ v: Double) -> String {
        String(format: "%.3f", v)
    }

    private static func timestamp(_ d: Date) -> String {
        var t = time_t(d.timeIntervalSince1970)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let ms = Int((d.timeIntervalSince1970 - Double(t)) * 1000)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min,
            tmv.tm_sec, ms)
    }
}
