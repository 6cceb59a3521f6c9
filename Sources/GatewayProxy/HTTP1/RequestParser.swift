import NIOCore
import NIOHTTP1

/// An incremental parser of the HTTP/1.x requests a client sends on one connection, one at a
/// time: the gateway's front door, so strict (RFC 9112) wherever leniency would let the
/// gateway and an upstream disagree about where a request ends:
/// - request line `method SP request-target SP HTTP-version CRLF`, the method a token, the
///   target visible ASCII or valid UTF-8 (no controls, no spaces);
/// - field lines `token ":" value`, no obs-fold, no bare CR or LF, no NUL or other controls;
/// - `Content-Length` digits only, repeated only with the same value; `Transfer-Encoding`
///   only `chunked`, once, and never with `Content-Length`;
/// - the head (request line and fields) at most `maxHeadBytes` (431 beyond).
/// Body bytes are handed on as slices of the buffers they arrived in.
struct RequestParser {
    typealias Error = HTTP1ParseError

    private enum State {
        case head
        case body
    }

    private var state = State.head
    private var body = BodyDecoder()
    private var scanned = 0
    let maxHeadBytes: Int
    /// Whether the last head allows the connection to stay open (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`), found while parsing.
    private(set) var lastHeadKeepsAlive = true

    init(maxHeadBytes: Int) {
        self.maxHeadBytes = maxHeadBytes
    }

    /// The next part from `buffer`, consuming the bytes it covers; nil when more bytes are
    /// needed (what is left in `buffer` is then the start of a head or of a chunk line).
    mutating func next(_ buffer: inout ByteBuffer) throws(Error) -> HTTPServerRequestPart? {
        switch state {
        case .head:
            // Empty lines before a request line are skipped (RFC 9112 §2.2).
            while buffer.readableBytes >= 2 && buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
                buffer.moveReaderIndex(forwardBy: 2)
                scanned = 0
            }
            guard let end = try findHeadEnd(buffer, scanned: &scanned, max: maxHeadBytes) else {
                try Self.rejectEarly(buffer)
                return nil
            }
            guard let block = buffer.readSlice(length: end) else { return nil }
            let (head, framing, keepAlive) = try Self.parseHead(block)
            lastHeadKeepsAlive = keepAlive
            body = BodyDecoder(framing)
            state = .body
            return .head(head)
        case .body:
            switch try body.next(&buffer) {
            case .body(let slice): return .body(slice)
            case .end(let trailers):
                state = .head
                return .end(trailers.map(Self.trailerHeaders))
            case .needMore: return nil
            }
        }
    }

    /// An incomplete head that can already be seen not to be HTTP (its method is not a token)
    /// is refused now, not after `maxHeadBytes` of it.
    private static func rejectEarly(_ buffer: ByteBuffer) throws(Error) {
        let bad: Bool = buffer.withUnsafeReadableBytes { raw in
            var i = 0
            while i < raw.count && (raw[i] == 13 || raw[i] == 10) { i += 1 }  // the start of an empty line
            while i < raw.count {
                if raw[i] == UInt8(ascii: " ") { return false }
                if !isTokenChar(raw[i]) { return true }
                i += 1
            }
            return false
        }
        if bad { throw Error(reason: "malformed request line") }
    }

    static func parseHead(_ block: ByteBuffer) throws(Error) -> (HTTPRequestHead, BodyFraming, keepAlive: Bool) {
        // Built as an array and handed to HTTPHeaders whole: `add` checks every name for
        // non-ASCII bytes, and the scanner has already allowed only token bytes in names.
        var fields: [(String, String)] = []
        fields.reserveCapacity(12)
        // A struct, not a tuple, in the Result: a tuple type's metadata is looked up at run
        // time on every call.
        struct RequestLine {
            var method: String
            var uri: String
            var major: Int
            var minor: Int
            var info: FramingHeaders
        }
        let parsed: Result<RequestLine, Error> =
            block.withUnsafeReadableBytes { raw in
                let n = raw.count - 2
                var i = 0
                while i < n && isTokenChar(raw[i]) { i += 1 }
                guard i > 0, i < n, raw[i] == UInt8(ascii: " ") else { return .failure(Error(reason: "malformed request line")) }
                let method = String(decoding: UnsafeRawBufferPointer(rebasing: raw[0..<i]), as: UTF8.self)
                i += 1
                let targetStart = i
                var ascii = true
                while i < n && raw[i] != UInt8(ascii: " ") {
                    let c = raw[i]
                    if c <= 0x20 || c == 0x7F { return .failure(Error(reason: "invalid character in the request target")) }
                    if c >= 0x80 { ascii = false }
                    i += 1
                }
                guard i > targetStart, i < n, i + 10 < raw.count else { return .failure(Error(reason: "malformed request line")) }
                let targetBytes = UnsafeRawBufferPointer(rebasing: raw[targetStart..<i])
                let uri: String
                if ascii {
                    uri = String(decoding: targetBytes, as: UTF8.self)
                } else {
                    guard let valid = String(validating: targetBytes, as: UTF8.self) else {
                        return .failure(Error(reason: "the request target is not valid UTF-8"))
                    }
                    uri = valid
                }
                // SP "HTTP/" DIGIT "." DIGIT CRLF
                guard raw[i + 1] == UInt8(ascii: "H"), raw[i + 2] == UInt8(ascii: "T"), raw[i + 3] == UInt8(ascii: "T"),
                    raw[i + 4] == UInt8(ascii: "P"), raw[i + 5] == UInt8(ascii: "/"), isDigit(raw[i + 6]), raw[i + 7] == UInt8(ascii: "."),
                    isDigit(raw[i + 8]), raw[i + 9] == UInt8(ascii: "\r"), raw[i + 10] == UInt8(ascii: "\n")
                else { return .failure(Error(reason: "malformed request line")) }
                let major = Int(raw[i + 6] - 48)
                let minor = Int(raw[i + 8] - 48)
                var info = FramingHeaders()
                let failure = scanFieldLines(raw, from: i + 11) { name, value in
                    let nameBytes = UnsafeRawBufferPointer(rebasing: raw[name])
                    let valueBytes = UnsafeRawBufferPointer(rebasing: raw[value])
                    fields.append((String(decoding: nameBytes, as: UTF8.self), String(decoding: valueBytes, as: UTF8.self)))
                    return info.note(name: nameBytes, value: valueBytes)
                }
                if let failure { return .failure(failure) }
                return .success(RequestLine(method: method, uri: uri, major: major, minor: minor, info: info))
            }
        let request: RequestLine
        switch parsed {
        case .success(let r): request = r
        case .failure(let e): throw e
        }
        let framing: BodyFraming
        if request.info.chunked {
            if request.info.contentLength != nil { throw Error(reason: "both Content-Length and Transfer-Encoding") }
            framing = .chunked
        } else if let length = request.info.contentLength {
            framing = .length(length)
        } else {
            framing = .none  // a request without framing headers has no body (RFC 9112 §6.3)
        }
        let head = HTTPRequestHead(
            version: HTTPVersion(major: request.major, minor: request.minor), method: HTTPMethod(rawValue: request.method),
            uri: request.uri, headers: HTTPHeaders(fields))
        let info = request.info
        let keepAlive = request.minor >= 1 ? !info.connectionClose : info.connectionKeepAlive && !info.connectionClose
        return (head, framing, keepAlive)
    }

    /// Trailer field lines (already validated) as headers.
    private static func trailerHeaders(_ block: ByteBuffer) -> HTTPHeaders {
        var headers = HTTPHeaders()
        forEachTrailerField(block) { headers.add(name: $0, value: $1) }
        return headers
    }
}
