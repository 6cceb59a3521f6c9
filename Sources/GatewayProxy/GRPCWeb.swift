import Foundation
import NIOCore

/// gRPC-Web (the protocol of grpc/grpc's PROTOCOL-WEB) translated to gRPC at the gateway,
/// with no `.proto` file: the messages pass as they are.
///
/// - Request: `application/grpc-web[+proto]` goes up as `application/grpc[+proto]`;
///   `application/grpc-web-text[+proto]` is base64, decoded on the way (its length changes:
///   it goes up chunked). `x-grpc-web` is dropped.
/// - Response: the content type goes back to the client's kind; the trailers become the
///   last message of the body, a frame flagged 0x80 holding `name: value\r\n` lines (so an
///   HTTP/1.1 browser, which cannot read trailers, gets them); for `-text` the whole body is
///   base64, one run with its padding only at the end.
///
/// One per gRPC-Web request, allocated only for those.
final class GRPCWebState {
    enum Mode { case binary, text }
    let mode: Mode
    /// The suffix the client's type had (`+proto`, `+json`, or none), kept both ways.
    let suffix: Substring
    private var decodeCarry: [UInt8] = []
    private var encodeCarry: [UInt8] = []
    private(set) var ended = false

    /// The state for a request of `contentType`, or nil when it is not gRPC-Web.
    init?(contentType: String) {
        let media = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        let rest: Substring
        if media.hasPrefix("application/grpc-web-text") {
            mode = .text
            rest = Substring(media.dropFirst(25))
        } else if media.hasPrefix("application/grpc-web") {
            mode = .binary
            rest = Substring(media.dropFirst(20))
        } else {
            return nil
        }
        guard rest.isEmpty || rest.first == "+" else { return nil }
        suffix = rest
    }

    /// The content type the upstream gets.
    var upstreamContentType: String { "application/grpc" + suffix }
    /// The content type the client gets back.
    var clientContentType: String { (mode == .text ? "application/grpc-web-text" : "application/grpc-web") + suffix }

    /// Request bytes for the upstream: as they came (binary), or decoded (text; nil when
    /// they are not base64). Bytes of an unfinished 4-character group wait for the next part.
    func decode(_ buffer: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard mode == .text else { return buffer }
        var out = allocator.buffer(capacity: buffer.readableBytes * 3 / 4 + 3)
        var run: [UInt8] = decodeCarry
        decodeCarry = []
        run.reserveCapacity(run.count + buffer.readableBytes)
        for b in buffer.readableBytesView where !(b == 0x0D || b == 0x0A || b == 0x20 || b == 0x09) { run.append(b) }
        // Whole groups only; a padded group ends a run (runs may follow one another).
        var start = 0
        var i = 0
        while i + 4 <= run.count {
            let padded = run[i + 3] == UInt8(ascii: "=")
            i += 4
            if padded || i + 4 > run.count {
                guard let data = Data(base64Encoded: Data(run[start..<i])) else { return nil }
                out.writeBytes(data)
                start = i
            }
        }
        decodeCarry = Array(run[start...])
        return out
    }

    /// The request ended: nothing may be left over.
    var decodedCompletely: Bool { decodeCarry.isEmpty }

    /// Response bytes for the client: as they came (binary), or base64 (text), three bytes
    /// at a time so that the body is one base64 run; the rest waits for the next part or `end`.
    func encode(_ buffer: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard mode == .text else { return buffer }
        var bytes = encodeCarry
        bytes.append(contentsOf: buffer.readableBytesView)
        let whole = bytes.count / 3 * 3
        encodeCarry = Array(bytes[whole...])
        return allocator.buffer(string: Data(bytes[..<whole]).base64EncodedString())
    }

    /// The end of the response body: the trailer frame (from the upstream's trailer section,
    /// `name: value\r\n` lines), encoded for the client with what was left.
    func end(trailers: ByteBuffer?, allocator: ByteBufferAllocator) -> ByteBuffer {
        ended = true
        var frame: [UInt8] = []
        if let trailers {
            var lines: [UInt8] = []
            forEachTrailerField(trailers) { name, value in
                lines.append(contentsOf: name.lowercased().utf8)
                lines.append(contentsOf: ": ".utf8)
                lines.append(contentsOf: value.utf8)
                lines.append(contentsOf: "\r\n".utf8)
            }
            let n = UInt32(lines.count)
            frame = [0x80, UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + lines
        }
        guard mode == .text else { return allocator.buffer(bytes: frame) }
        let rest = encodeCarry + frame
        encodeCarry = []
        return allocator.buffer(string: rest.isEmpty ? "" : Data(rest).base64EncodedString())
    }
}
