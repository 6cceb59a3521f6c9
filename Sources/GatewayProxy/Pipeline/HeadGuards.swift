import GatewayConfig
import NIOCore
import NIOHTTP1

/// What the head guards learned in their one pass over the request's headers, for the
/// phases after them: no arrays built, no later lookups.
struct HeadFacts {
    var host: String?
    var expectsContinue = false
    var asksUpgrade = false
    /// Content-Length > 0 or chunked.
    var expectsBody = false
    var acceptEncoding: String?
    /// Read for gRPC and gRPC-Web (`ProxyHandler.startRequest`).
    var contentType: String?
}

/// The first phase: request-smuggling guards the decoder does not cover (one `Host`, a
/// valid one, no Content-Length beside Transfer-Encoding, only `chunked`, HTTP/1.x), and the
/// body limit a Content-Length already breaks. A refusal closes the connection after it.
enum HeadGuards {
    enum Outcome {
        case pass(HeadFacts)
        case refuse(GatewayError)
    }

    static func check(_ head: HTTPRequestHead, maxBodyBytes: Int) -> Outcome {
        if head.version.major != 1 { return .refuse(.badRequest("unsupported HTTP version")) }
        var facts = HeadFacts()
        var hostCount = 0
        var lengthCount = 0
        var contentLengthValue: String?
        var hasTransferEncoding = false
        for (name, value) in head.headers {
            switch name.utf8.count {
            case 4 where nameEquals(name, "host"):
                hostCount += 1
                facts.host = value
            case 6 where nameEquals(name, "expect"): facts.expectsContinue = nameEquals(value, "100-continue")
            case 7 where nameEquals(name, "upgrade"): facts.asksUpgrade = true
            case 14 where nameEquals(name, "content-length"):
                lengthCount += 1
                contentLengthValue = value
            case 17 where nameEquals(name, "transfer-encoding"): hasTransferEncoding = true
            case 15 where nameEquals(name, "accept-encoding"): facts.acceptEncoding = value
            case 12 where nameEquals(name, "content-type"): facts.contentType = value
            default: break
            }
        }
        if hostCount > 1 || (head.version.minor >= 1 && hostCount == 0) {
            return .refuse(.badRequest(hostCount == 0 ? "missing Host header" : "more than one Host header"))
        }
        if let host = facts.host, !isValidHost(host) { return .refuse(.badRequest("invalid Host header")) }
        if hasTransferEncoding {
            // HTTP/1.0 has no chunked framing: a Transfer-Encoding there is faulty framing (RFC 9112 §6.1).
            if head.version.minor == 0 { return .refuse(.badRequest("Transfer-Encoding in an HTTP/1.0 request")) }
            if lengthCount > 0 { return .refuse(.badRequest("both Content-Length and Transfer-Encoding")) }
            let te = head.headers["transfer-encoding"].joined(separator: ",").lowercased().split(separator: ",")
                .map { $0.trimmingCharacters(in: " \t") }
            if te != ["chunked"] { return .refuse(.badRequest("unsupported Transfer-Encoding")) }
        }
        let contentLength = contentLengthValue.flatMap { Int($0) }
        facts.expectsBody = (contentLength ?? 0) > 0 || hasTransferEncoding
        if let cl = contentLength, cl > maxBodyBytes { return .refuse(.payloadTooLarge(maxBodyBytes)) }
        return .pass(facts)
    }

    /// The client address a trusted proxy reported: the right-most `X-Forwarded-For` entry
    /// that is not itself trusted (`peer` when there is none).
    static func forwardedClientIP(_ headers: HTTPHeaders, server: ServerSettings, peer: String) -> String {
        let entries = headers["x-forwarded-for"].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: " \t") }
        for entry in entries.reversed() {
            guard let ip = IPAddressBytes(entry) else { return peer }
            if !server.isTrusted(ip) { return entry }
        }
        return entries.first ?? peer
    }

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
