import CompressNIO
import GatewayConfig
import GatewayPolicies
import NIOCore

/// A 2xx JSON response of a route with `shape`, held whole until its end so it can be
/// parsed, shaped and sent with its new length. When it grows past the route's
/// `shape.max_bytes` it is let go unshaped: what was held is forwarded and the rest streams.
final class ShapeBuffer {
    let head: ResponseParser.Head
    let gzip: Bool
    let limit: Int
    private(set) var parts: [ByteBuffer] = []
    private(set) var bytes = 0

    init(head: ResponseParser.Head, gzip: Bool, limit: Int) {
        self.head = head
        self.gzip = gzip
        self.limit = limit
    }

    /// Adds body bytes; false when the body is now over the limit (then pass it unshaped).
    func append(_ buffer: ByteBuffer) -> Bool {
        bytes += buffer.readableBytes
        parts.append(buffer)
        return bytes <= limit
    }

    enum Outcome {
        case shaped([UInt8])
        /// Pass the body as it came; the reason is counted.
        case unshaped(String)
    }

    /// Decompresses (gzip, bounded by the limit), parses, shapes, serializes.
    func shape(_ spec: ShapeSpec, allocator: ByteBufferAllocator) -> Outcome {
        var whole = allocator.buffer(capacity: bytes)
        for var p in parts { whole.writeBuffer(&p) }
        if gzip {
            do {
                whole = try whole.decompress(with: .gzip(), maxSize: limit + 1, allocator: allocator)
            } catch let error as CompressNIOError where error == .bufferOverflow {
                return .unshaped("too_large")
            } catch {
                return .unshaped("bad_encoding")
            }
            if whole.readableBytes > limit { return .unshaped("too_large") }
        }
        let parsed: JSON? = whole.withUnsafeReadableBytes { raw in try? JSON.parse(raw) }
        guard let value = parsed else { return .unshaped("not_json") }
        return .shaped(spec.apply(value).serialized())
    }

    /// Whether a response should be held for shaping: 2xx with a body, JSON, identity or
    /// gzip encoded. `contentLength` over the limit is let go at once.
    static func wants(_ head: ResponseParser.Head, isHead: Bool) -> (gzip: Bool, length: Int?)? {
        guard (200..<300).contains(head.status), head.status != 204, !isHead else { return nil }
        guard let type = ForwardHeaders.value(of: "content-type", in: head), isJSON(type) else { return nil }
        var gzip = false
        if let encoding = ForwardHeaders.value(of: "content-encoding", in: head) {
            let e = encoding.trimmingCharacters(in: " \t").lowercased()
            if e == "gzip" || e == "x-gzip" {
                gzip = true
            } else if e != "identity" {
                return nil
            }
        }
        let length = ForwardHeaders.value(of: "content-length", in: head).flatMap { Int($0.trimmingCharacters(in: " \t")) }
        return (gzip, length)
    }

    /// `application/json` or any `+json` type, parameters ignored.
    static func isJSON(_ contentType: String) -> Bool {
        let media = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: " \t").lowercased() } ?? ""
        return media == "application/json" || (media.hasPrefix("application/") && media.hasSuffix("+json"))
    }
}
