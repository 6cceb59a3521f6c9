import GatewayConfig
import NIOCore

/// An incremental parser of the HTTP/1.x responses an upstream sends, one at a time.
///
/// Written for the proxy's hot path (see docs/design-notes.md, "The upstream HTTP/1 codec"):
/// a response head is kept as the bytes it arrived in plus the offsets of its fields, so the
/// gateway forwards header bytes without building a `String` per name and value, and body
/// bytes are handed on as slices of the buffers they were read into (no copies).
///
/// It is strict where leniency would let two parties disagree about where a message ends
/// (RFC 9112 §6.3, §11.2): a malformed status line, a field line that is not `token ":" value`,
/// obs-fold, bare CR or LF, a bad or conflicting `Content-Length`, `Transfer-Encoding` other
/// than `chunked`, or both framing headers are all errors, and so the gateway's 502.
struct ResponseParser {
    /// A field line's name and value as byte offsets into `Head.block`.
    struct Field {
        var nameStart: Int32
        var nameEnd: Int32
        var valueStart: Int32
        var valueEnd: Int32
    }

    typealias Framing = BodyFraming

    struct Head {
        var status: Int
        var minorVersion: Int
        /// The whole head as received, from the status line to the empty line.
        var block: ByteBuffer
        /// The reason phrase, as offsets into `block`.
        var reason: Range<Int>
        var fields: [Field]
        var keepAlive: Bool
        var framing: Framing
        /// A `Connection` header names other headers, which are then hop-by-hop too.
        var connectionNamesHeaders: Bool
    }

    enum Event {
        case head(Head)
        case body(ByteBuffer)
        /// The response is complete. `trailers` holds the trailer field lines (each ending in
        /// CRLF, without the final empty line) when a chunked body had any.
        case end(trailers: ByteBuffer?)
    }

    typealias Error = HTTP1ParseError

    private enum State {
        case head
        case body
        /// After a 101: the bytes that follow are not HTTP; the parser leaves them alone.
        case upgraded
    }

    private var state = State.head
    private var body = BodyDecoder()
    /// The field offsets of the last head, kept so their storage is reused (the previous
    /// head is gone by the time the next one is parsed).
    private var fieldStore: [Field] = []
    /// How far the search for the end of a head already got.
    private var scanned = 0
    /// The request was `HEAD`: its response has no body, whatever its headers say.
    var requestIsHead = false
    let maxHeadBytes: Int

    init(maxHeadBytes: Int = 64 * 1024) {
        self.maxHeadBytes = maxHeadBytes
    }

    /// True while a body runs until the connection closes: the close is then its end.
    var endsAtClose: Bool {
        if case .body = state { return body.endsAtClose }
        return false
    }

    var isUpgraded: Bool {
        if case .upgraded = state { return true }
        return false
    }

    /// The next event from `buffer`, consuming the bytes it covers; nil when more bytes are
    /// needed (what is left in `buffer` is then an incomplete head or line, to be kept and
    /// prefixed to the next read).
    mutating func next(_ buffer: inout ByteBuffer) throws(Error) -> Event? {
        switch state {
        case .head:
            return try parseHead(&buffer)
        case .body:
            switch try body.next(&buffer) {
            case .body(let slice): return .body(slice)
            case .end(let trailers):
                state = .head
                return .end(trailers: trailers)
            case .needMore: return nil
            }
        case .upgraded:
            return nil
        }
    }

    // MARK: head

    private mutating func parseHead(_ buffer: inout ByteBuffer) throws(Error) -> Event? {
        while true {
            guard let end = try findHeadEnd(buffer, scanned: &scanned, max: maxHeadBytes) else { return nil }
            guard let block = buffer.readSlice(length: end) else { return nil }
            fieldStore.removeAll(keepingCapacity: true)
            let head = try Self.parseHeadBlock(block, requestIsHead: requestIsHead, fields: &fieldStore)
            if head.status >= 100 && head.status < 200 && head.status != 101 {
                continue  // interim responses (100 Continue, 103 Early Hints) are not forwarded
            }
            if head.status == 101 {
                state = .upgraded
            } else {
                state = .body
                body = BodyDecoder(head.framing)
            }
            return .head(head)
        }
    }

    static func parseHeadBlock(_ block: ByteBuffer, requestIsHead: Bool, fields: inout [Field]) throws(Error) -> Head {
        if fields.capacity < 16 { fields.reserveCapacity(16) }
        // A struct, not a tuple, in the Result: a tuple type's metadata is looked up at run
        // time on every call (callgrind showed ~350 instructions per request for it).
        struct StatusLine {
            var status: Int
            var minor: Int
            var reason: Range<Int>
            var info: FramingHeaders
        }
        let parsed: Result<StatusLine, Error> = block.withUnsafeReadableBytes {
            raw in
            let p = raw.bindMemory(to: UInt8.self)
            let n = p.count - 2  // the final CRLF of the empty line
            // Status line: "HTTP/1." DIGIT SP 3DIGIT [SP reason] CRLF
            guard n >= 14, p[0] == UInt8(ascii: "H"), p[1] == UInt8(ascii: "T"), p[2] == UInt8(ascii: "T"), p[3] == UInt8(ascii: "P"),
                p[4] == UInt8(ascii: "/"), p[5] == UInt8(ascii: "1"), p[6] == UInt8(ascii: "."), isDigit(p[7]), p[8] == UInt8(ascii: " "),
                isDigit(p[9]), isDigit(p[10]), isDigit(p[11])
            else { return .failure(Error(reason: "malformed status line")) }
            let minor = Int(p[7] - 48)
            let status = Int(p[9] - 48) * 100 + Int(p[10] - 48) * 10 + Int(p[11] - 48)
            guard status >= 100 else { return .failure(Error(reason: "malformed status line")) }
            var i = 12
            var reason = 12..<12
            if p[i] == UInt8(ascii: " ") {
                i += 1
                let start = i
                while i < n && p[i] != UInt8(ascii: "\r") {
                    let c = p[i]
                    if isControl(c) { return .failure(Error(reason: "invalid character in the reason phrase")) }
                    i += 1
                }
                reason = start..<i
            }
            guard i + 1 < p.count, p[i] == UInt8(ascii: "\r"), p[i + 1] == UInt8(ascii: "\n") else {
                return .failure(Error(reason: "malformed status line"))
            }
            i += 2
            var info = FramingHeaders()
            let failure = scanFieldLines(raw, from: i) { name, value in
                fields.append(
                    Field(
                        nameStart: Int32(name.lowerBound), nameEnd: Int32(name.upperBound), valueStart: Int32(value.lowerBound),
                        valueEnd: Int32(value.upperBound)))
                return info.note(name: UnsafeRawBufferPointer(rebasing: raw[name]), value: UnsafeRawBufferPointer(rebasing: raw[value]))
            }
            if let failure { return .failure(failure) }
            return .success(StatusLine(status: status, minor: minor, reason: reason, info: info))
        }
        let line: StatusLine
        switch parsed {
        case .success(let v): line = v
        case .failure(let e): throw e
        }
        let (status, minor, reason, info) = (line.status, line.minor, line.reason, line.info)
        var keepAlive = minor >= 1 ? !info.connectionClose : info.connectionKeepAlive && !info.connectionClose
        let framing: Framing
        if requestIsHead || status < 200 || status == 204 || status == 304 {
            framing = .none
        } else if info.chunked {
            if info.contentLength != nil { throw Error(reason: "both Content-Length and Transfer-Encoding") }
            framing = .chunked
        } else if let length = info.contentLength {
            framing = length == 0 ? .none : .length(length)
        } else {
            framing = .untilClose
            keepAlive = false
        }
        if status == 101 { keepAlive = false }
        return Head(
            status: status, minorVersion: minor, block: block, reason: reason, fields: fields, keepAlive: keepAlive, framing: framing,
            connectionNamesHeaders: info.connectionNamesHeaders)
    }
}

@inline(__always)
func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }

/// tchar of RFC 9110 §5.6.2 (`HeaderBytes.isTokenByte`).
@inline(__always)
func isTokenChar(_ c: UInt8) -> Bool { HeaderBytes.isTokenByte(c) }

/// Calls `body` with each comma-separated token of a header value, trimmed of whitespace.
@inline(__always)
func forEachToken(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
    var start = 0
    var i = 0
    while i <= value.count {
        if i == value.count || value[i] == UInt8(ascii: ",") {
            var s = start
            var e = i
            while s < e && (value[s] == 32 || value[s] == 9) { s += 1 }
            while e > s && (value[e - 1] == 32 || value[e - 1] == 9) { e -= 1 }
            if e > s { body(UnsafeRawBufferPointer(rebasing: value[s..<e])) }
            start = i + 1
        }
        i += 1
    }
}
