import GatewayConfig
import NIOCore
import NIOHTTP1

/// The ways bytes from a client or an upstream become header lines the gateway writes, as
/// entry points for the `headers` fuzz target (Fuzz/README.md). SPI, not API: nothing in the
/// gateway calls them; they run the same parsers and writers the data path does.
@_spi(Fuzzing) public enum HeaderPaths {
    /// Parses `bytes` as requests from a client (HTTP/1.1, pipelined) and writes each head as
    /// `route` forwards it upstream, and each request's trailers as a route that forwards
    /// them would. Returns what would be sent, head by head; parsing stops at an error.
    public static func forwardRequests(_ bytes: [UInt8], route: CompiledRoute, target: UpstreamSpec.TargetSpec) -> [[UInt8]] {
        var parser = RequestParser(maxHeadBytes: 32 * 1024)
        var buffer = ByteBuffer(bytes: bytes)
        var ids = IDGenerator(seed: 1)
        var out: [[UInt8]] = []
        while let part = try? parser.next(&buffer) {
            var sink = ByteBuffer()
            switch part {
            case .head(let head):
                _ = ForwardHeaders.requestHead(
                    head, route: route, path: "/", query: nil, target: target, requestID: "0123", peerIP: "127.0.0.1", trusted: true,
                    upgrade: head.headers.first(name: "upgrade"), ids: &ids, into: &sink)
            case .end(let trailers?):
                ForwardHeaders.requestTrailers(trailers, route: route, apiKeyHeader: "x-api-key", into: &sink)
            default:
                continue
            }
            out.append(Array(sink.readableBytesView))
        }
        return out
    }

    /// Parses `bytes` as an upstream's answer and writes the head the client gets (HTTP/1.1),
    /// and the fields of the same head for an HTTP/2 client. Nil when the bytes are refused.
    public static func answerHead(_ bytes: [UInt8], route: CompiledRoute) -> (head: [UInt8], h2: [(String, String)])? {
        var parser = ResponseParser()
        var buffer = ByteBuffer(bytes: bytes)
        guard case .head(let head)? = try? parser.next(&buffer) else { return nil }
        var sink = ByteBuffer()
        var closeAfter = false
        _ = ForwardHeaders.responseHead(
            head, request: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"), route: route, requestID: "0123", isHead: false,
            closeAfter: &closeAfter, into: &sink)
        let fields = HTTP2StreamAdapter.responseFields(head).map { ($0.name, $0.value) }
        return (Array(sink.readableBytesView), fields)
    }

    /// One header line through the writer's last guard.
    public static func headerLine(_ name: String, _ value: String) -> [UInt8] {
        var sink = ByteBuffer()
        sink.writeHeaderLine(name, value)
        return Array(sink.readableBytesView)
    }
}
