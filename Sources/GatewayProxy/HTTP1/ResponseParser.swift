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

    enum Framing: Equatable {
        case none
        case length(Int)
        case chunked
        case untilClose
    }

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

        func name(_ f: Field) -> ByteBufferView {
            block.readableBytesView[Int(f.nameStart)..<Int(f.nameEnd)]
        }
        func value(_ f: Field) -> ByteBufferView {
            block.readableBytesView[Int(f.valueStart)..<Int(f.valueEnd)]
        }
        func nameIs(_ f: Field, _ lower: StaticString) -> Bool {
            let count = Int(f.nameEnd - f.nameStart)
            guard count == lower.utf8CodeUnitCount else { return false }
            return block.withUnsafeReadableBytes { raw in
                asciiCaseInsensitiveEquals(UnsafeRawBufferPointer(rebasing: raw[Int(f.nameStart)..<Int(f.nameEnd)]), lower)
            }
        }
    }

    enum Event {
        case head(Head)
        case body(ByteBuffer)
        /// The response is complete. `trailers` holds the trailer field lines (each ending in
        /// CRLF, without the final empty line) when a chunked body had any.
        case end(trailers: ByteBuffer?)
    }

    struct Error: Swift.Error, Equatable {
        let reason: String
    }

    private enum State {
        case head
        case length(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        case endPending
        /// After a 101: the bytes that follow are not HTTP; the parser leaves them alone.
        case upgraded
    }

    private var state = State.head
    /// How far the search for the end of a head or a line already got (bytes from the reader
    /// index), so a head arriving in pieces is not rescanned from its start each time.
    private var scanned = 0
    /// The request was `HEAD`: its response has no body, whatever its headers say.
    var requestIsHead = false
    let maxHeadBytes: Int
    /// The longest chunk-size line (with extensions) accepted.
    static let maxChunkLineBytes = 4096

    init(maxHeadBytes: Int = 64 * 1024) {
        self.maxHeadBytes = maxHeadBytes
    }

    /// True while a body runs until the connection closes: the close is then its end.
    var endsAtClose: Bool {
        if case .untilClose = state { return true }
        return false
    }

    /// Between messages: no byte of a response has been seen since the last one ended.
    var isIdle: Bool {
        if case .head = state { return scanned == 0 }
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
        case .length(let remaining):
            guard buffer.readableBytes > 0 else { return nil }
            let n = min(remaining, buffer.readableBytes)
            guard let slice = buffer.readSlice(length: n) else { return nil }
            state = n == remaining ? .endPending : .length(remaining: remaining - n)
            return .body(slice)
        case .untilClose:
            guard buffer.readableBytes > 0, let slice = buffer.readSlice(length: buffer.readableBytes) else { return nil }
            return .body(slice)
        case .endPending:
            state = .head
            return .end(trailers: nil)
        case .chunkSize:
            guard let lineEnd = try findCRLF(buffer, limit: Self.maxChunkLineBytes, what: "chunk size line") else { return nil }
            let size = try parseChunkSize(buffer, lineLength: lineEnd)
            buffer.moveReaderIndex(forwardBy: lineEnd + 2)
            state = size == 0 ? .trailers : .chunkData(remaining: size)
            return try next(&buffer)
        case .chunkData(let remaining):
            guard buffer.readableBytes > 0 else { return nil }
            let n = min(remaining, buffer.readableBytes)
            guard let slice = buffer.readSlice(length: n) else { return nil }
            state = n == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - n)
            return .body(slice)
        case .chunkDataEnd:
            guard buffer.readableBytes >= 2 else { return nil }
            guard buffer.readableBytesView.starts(with: crlf) else { throw Error(reason: "chunk data not followed by CRLF") }
            buffer.moveReaderIndex(forwardBy: 2)
            state = .chunkSize
            return try next(&buffer)
        case .trailers:
            return try parseTrailers(&buffer)
        case .upgraded:
            return nil
        }
    }

    // MARK: head

    private mutating func parseHead(_ buffer: inout ByteBuffer) throws(Error) -> Event? {
        while true {
            guard let end = try findHeadEnd(buffer) else { return nil }
            scanned = 0
            guard let block = buffer.readSlice(length: end) else { return nil }
            let head = try Self.parseHeadBlock(block, requestIsHead: requestIsHead)
            if head.status >= 100 && head.status < 200 && head.status != 101 {
                continue  // interim responses (100 Continue, 103 Early Hints) are not forwarded
            }
            switch head.framing {
            case .none: state = head.status == 101 ? .upgraded : .endPending
            case .length(let n): state = .length(remaining: n)
            case .chunked: state = .chunkSize
            case .untilClose: state = .untilClose
            }
            return .head(head)
        }
    }

    /// The length of the head including its final CRLFCRLF, once it is all in `buffer`.
    private mutating func findHeadEnd(_ buffer: ByteBuffer) throws(Error) -> Int? {
        let readable = buffer.readableBytes
        let found: Int? = buffer.withUnsafeReadableBytes { raw in
            var i = max(0, scanned - 3)
            while i + 3 < raw.count {
                if raw[i + 3] != UInt8(ascii: "\n") {
                    i += 1
                    continue
                }
                if raw[i] == UInt8(ascii: "\r") && raw[i + 1] == UInt8(ascii: "\n") && raw[i + 2] == UInt8(ascii: "\r") {
                    return i + 4
                }
                i += 1
            }
            return nil
        }
        if let found {
            if found > maxHeadBytes { throw Error(reason: "response head too large") }
            return found
        }
        if readable > maxHeadBytes { throw Error(reason: "response head too large") }
        scanned = readable
        return nil
    }

    static func parseHeadBlock(_ block: ByteBuffer, requestIsHead: Bool) throws(Error) -> Head {
        var fields: [Field] = []
        fields.reserveCapacity(12)
        let parsed: Result<(status: Int, minor: Int, reason: Range<Int>, info: FramingInfo), Error> = block.withUnsafeReadableBytes { raw in
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
                    if (c < 0x20 && c != 0x09) || c == 0x7F { return .failure(Error(reason: "invalid character in the reason phrase")) }
                    i += 1
                }
                reason = start..<i
            }
            guard i + 1 < p.count, p[i] == UInt8(ascii: "\r"), p[i + 1] == UInt8(ascii: "\n") else {
                return .failure(Error(reason: "malformed status line"))
            }
            i += 2
            var info = FramingInfo()
            // Field lines: token ":" OWS value OWS CRLF
            while i < n {
                let nameStart = i
                while i < n && isTokenChar(p[i]) { i += 1 }
                guard i > nameStart, i < n, p[i] == UInt8(ascii: ":") else {
                    return .failure(Error(reason: "malformed header line"))
                }
                let nameEnd = i
                i += 1
                while i < n && (p[i] == UInt8(ascii: " ") || p[i] == 0x09) { i += 1 }
                let valueStart = i
                var valueEnd = i
                while i < n {
                    let c = p[i]
                    if c == UInt8(ascii: "\r") { break }
                    if (c < 0x20 && c != 0x09) || c == 0x7F { return .failure(Error(reason: "invalid character in a header value")) }
                    i += 1
                    if c != UInt8(ascii: " ") && c != 0x09 { valueEnd = i }
                }
                guard i + 1 < p.count, p[i] == UInt8(ascii: "\r"), p[i + 1] == UInt8(ascii: "\n") else {
                    return .failure(Error(reason: "malformed header line"))
                }
                i += 2
                let field = Field(
                    nameStart: Int32(nameStart), nameEnd: Int32(nameEnd), valueStart: Int32(valueStart), valueEnd: Int32(valueEnd))
                fields.append(field)
                let name = UnsafeRawBufferPointer(rebasing: raw[nameStart..<nameEnd])
                let value = UnsafeRawBufferPointer(rebasing: raw[valueStart..<valueEnd])
                if let failure = info.note(name: name, value: value) { return .failure(failure) }
            }
            return .success((status, minor, reason, info))
        }
        let (status, minor, reason, info): (Int, Int, Range<Int>, FramingInfo)
        switch parsed {
        case .success(let v): (status, minor, reason, info) = v
        case .failure(let e): throw e
        }
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

    /// What the framing and connection headers of a head said.
    private struct FramingInfo {
        var contentLength: Int?
        var chunked = false
        var connectionClose = false
        var connectionKeepAlive = false
        var connectionNamesHeaders = false

        mutating func note(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Error? {
            switch name.count {
            case 14 where asciiCaseInsensitiveEquals(name, "content-length"):
                guard value.count > 0, value.count <= 18, value.allSatisfy(isDigit) else { return Error(reason: "invalid Content-Length") }
                var n = 0
                for c in value { n = n * 10 + Int(c - 48) }
                if let previous = contentLength, previous != n { return Error(reason: "conflicting Content-Length headers") }
                contentLength = n
            case 17 where asciiCaseInsensitiveEquals(name, "transfer-encoding"):
                // Only `chunked`, once: any other coding would need the body decoded to find its end.
                guard !chunked, asciiCaseInsensitiveEquals(value, "chunked") else { return Error(reason: "unsupported Transfer-Encoding") }
                chunked = true
            case 10 where asciiCaseInsensitiveEquals(name, "connection"):
                forEachToken(value) { token in
                    if asciiCaseInsensitiveEquals(token, "close") {
                        connectionClose = true
                    } else if asciiCaseInsensitiveEquals(token, "keep-alive") {
                        connectionKeepAlive = true
                    } else {
                        connectionNamesHeaders = true
                    }
                }
            default:
                break
            }
            return nil
        }
    }

    // MARK: chunked

    /// Offset of the CRLF ending the line at the reader index; nil while it has not arrived.
    private mutating func findCRLF(_ buffer: ByteBuffer, limit: Int, what: String) throws(Error) -> Int? {
        let found: Int? = buffer.withUnsafeReadableBytes { raw in
            var i = max(0, scanned - 1)
            while i + 1 < raw.count {
                if raw[i] == UInt8(ascii: "\r") && raw[i + 1] == UInt8(ascii: "\n") { return i }
                i += 1
            }
            return nil
        }
        if let found {
            scanned = 0
            if found > limit { throw Error(reason: "\(what) too long") }
            return found
        }
        if buffer.readableBytes > limit { throw Error(reason: "\(what) too long") }
        scanned = buffer.readableBytes
        return nil
    }

    /// chunk-size [ chunk-ext ]: hex digits, then nothing or `;` and extensions (ignored).
    private func parseChunkSize(_ buffer: ByteBuffer, lineLength: Int) throws(Error) -> Int {
        let size: Int? = buffer.withUnsafeReadableBytes { raw in
            var i = 0
            var size = 0
            while i < lineLength, let d = hexValue(raw[i]) {
                guard i < 15 else { return nil }  // more than 2^60 bytes: not a real chunk
                size = size << 4 | d
                i += 1
            }
            guard i > 0 else { return nil }
            while i < lineLength && (raw[i] == UInt8(ascii: " ") || raw[i] == 0x09) { i += 1 }
            if i < lineLength {
                guard raw[i] == UInt8(ascii: ";") else { return nil }
                while i < lineLength {
                    let c = raw[i]
                    if (c < 0x20 && c != 0x09) || c == 0x7F { return nil }
                    i += 1
                }
            }
            return size
        }
        guard let size else { throw Error(reason: "invalid chunk size") }
        return size
    }

    private mutating func parseTrailers(_ buffer: inout ByteBuffer) throws(Error) -> Event? {
        guard buffer.readableBytes >= 2 else { return nil }
        if buffer.readableBytesView.starts(with: crlf) {
            buffer.moveReaderIndex(forwardBy: 2)
            state = .head
            return .end(trailers: nil)
        }
        // Trailer fields, then the empty line: the same search as for a head.
        guard let end = try findHeadEnd(buffer) else { return nil }
        scanned = 0
        guard var block = buffer.readSlice(length: end) else { return nil }
        let valid: Bool = block.withUnsafeReadableBytes { raw in
            var i = 0
            let n = raw.count - 2
            while i < n {
                let start = i
                while i < n && isTokenChar(raw[i]) { i += 1 }
                guard i > start, i < n, raw[i] == UInt8(ascii: ":") else { return false }
                while i < n && raw[i] != UInt8(ascii: "\r") {
                    let c = raw[i]
                    if (c < 0x20 && c != 0x09) || c == 0x7F { return false }
                    i += 1
                }
                guard i + 1 < raw.count, raw[i + 1] == UInt8(ascii: "\n") else { return false }
                i += 2
            }
            return true
        }
        guard valid else { throw Error(reason: "malformed trailer") }
        block.moveWriterIndex(to: block.writerIndex - 2)
        state = .head
        return .end(trailers: block)
    }
}

private let crlf: [UInt8] = [13, 10]

@inline(__always)
func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }

@inline(__always)
private func hexValue(_ c: UInt8) -> Int? {
    switch c {
    case 48...57: return Int(c - 48)
    case 65...70: return Int(c - 55)
    case 97...102: return Int(c - 87)
    default: return nil
    }
}

/// tchar of RFC 9110 §5.6.2.
@inline(__always)
func isTokenChar(_ c: UInt8) -> Bool {
    tokenTable[Int(c)]
}

private let tokenTable: [Bool] = (0..<256).map { c in
    switch UInt8(c) {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
    default: return "!#$%&'*+-.^_`|~".utf8.contains(UInt8(c))
    }
}

@inline(__always)
func asciiCaseInsensitiveEquals(_ a: UnsafeRawBufferPointer, _ lower: StaticString) -> Bool {
    guard a.count == lower.utf8CodeUnitCount else { return false }
    let b = lower.utf8Start
    for i in 0..<a.count {
        var c = a[i]
        if c >= 65 && c <= 90 { c |= 0x20 }
        if c != b[i] { return false }
    }
    return true
}

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
