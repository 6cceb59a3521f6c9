import CompressNIO
import NIOCore

/// gzip response compression (SPEC §2.3 `server.compression`, §3): one zlib stream per
/// response, fed each upstream body buffer as it arrives and flushed after each (the body
/// is streamed, never held whole).
final class GzipStream {
    private let compressor: any NIOCompressor

    init?() {
        compressor = CompressionAlgorithm.gzip().compressor
        guard (try? compressor.startStream()) != nil else { return nil }
    }

    /// The compressed form of `buffer` (nil if zlib failed).
    func compress(_ buffer: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        var input = buffer
        return try? input.compressStream(with: compressor, flush: .sync, allocator: allocator)
    }

    /// The end of the stream (gzip trailer).
    func finish(allocator: ByteBufferAllocator) -> ByteBuffer? {
        var empty = allocator.buffer(capacity: 0)
        let out = try? empty.compressStream(with: compressor, flush: .finish, allocator: allocator)
        try? compressor.finishStream()
        return out
    }

    /// Whether an `Accept-Encoding` value accepts gzip (`gzip`, `x-gzip` or `*`, not with `q=0`).
    static func accepts(_ value: String) -> Bool {
        var wildcard = false
        for item in value.split(separator: ",") {
            let parts = item.split(separator: ";")
            let coding = parts.first.map { $0.trimmingCharacters(in: " \t").lowercased() } ?? ""
            var q = 1.0
            for p in parts.dropFirst() {
                let kv = p.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: " \t") }
                if kv.count == 2, kv[0].lowercased() == "q" { q = Double(kv[1]) ?? 0 }
            }
            if coding == "gzip" || coding == "x-gzip" { return q > 0 }
            if coding == "*" { wildcard = q > 0 }
        }
        return wildcard
    }

    /// Types worth compressing: text, JSON, JavaScript, XML, SVG, and `+json` / `+xml`.
    static func isCompressible(_ contentType: String) -> Bool {
        let media = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: " \t").lowercased() } ?? ""
        // Server-sent events go out event by event: a compressor would hold them back.
        if media == "text/event-stream" { return false }
        if media.hasPrefix("text/") { return true }
        switch media {
        case "application/json", "application/javascript", "application/x-javascript", "application/xml", "application/ecmascript",
            "image/svg+xml", "application/wasm":
            return true
        default:
            return media.hasPrefix("application/") && (media.hasSuffix("+json") || media.hasSuffix("+xml"))
        }
    }
}
