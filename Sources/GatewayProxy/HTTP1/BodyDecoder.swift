import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A malformed HTTP/1.x message. `tooLarge` marks a head over its size limit (431 for a request).
struct HTTP1ParseError: Error, Equatable {
    let reason: String
    var tooLarge = false
}

/// How a message body is delimited (RFC 9112 §6.3).
enum BodyFraming: Equatable {
    case none
    case length(Int)
    case chunked
    case untilClose
}

/// The body half of the HTTP/1.1 parsers: a body delimited by `Content-Length`, by chunked
/// coding (sizes, extensions, trailers), or by the close of the connection. Body bytes are
/// handed on as slices of the buffers they arrived in.
struct BodyDecoder {
    enum Step {
        case body(ByteBuffer)
        /// The body is complete. `trailers`: the trailer field lines of a chunked body, each
        /// ending in CRLF, without the final empty line.
        case end(trailers: ByteBuffer?)
        case needMore
    }

    private enum State {
        case length(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        case endPending
        case done
    }

    private var state: State
    private var scanned = 0
    /// The longest chunk-size line (with extensions) accepted.
    static let maxChunkLineBytes = 4096
    /// The largest trailer section accepted.
    static let maxTrailerBytes = 16 * 1024

    init(_ framing: BodyFraming = .none) {
        switch framing {
        case .none: state = .endPending
        case .length(let n): state = n > 0 ? .length(remaining: n) : .endPending
        case .chunked: state = .chunkSize
        case .untilClose: state = .untilClose
        }
    }

    var endsAtClose: Bool {
        if case .untilClose = state { return true }
        return false
    }

    /// Up to `remaining` body bytes as a slice of `buffer`, and how many are still to come;
    /// nil when `buffer` is empty.
    private static func take(_ buffer: inout ByteBuffer, upTo remaining: Int) -> (ByteBuffer, Int)? {
        let n = min(remaining, buffer.readableBytes)
        guard n > 0, let slice = buffer.readSlice(length: n) else { return nil }
        return (slice, remaining - n)
    }

    mutating func next(_ buffer: inout ByteBuffer) throws(HTTP1ParseError) -> Step {
        while true {
            switch state {
            case .length(let remaining):
                guard let (slice, left) = Self.take(&buffer, upTo: remaining) else { return .needMore }
                state = left == 0 ? .endPending : .length(remaining: left)
                return .body(slice)
            case .untilClose:
                guard buffer.readableBytes > 0, let slice = buffer.readSlice(length: buffer.readableBytes) else { return .needMore }
                return .body(slice)
            case .endPending:
                state = .done
                return .end(trailers: nil)
            case .done:
                return .needMore
            case .chunkSize:
                guard let lineEnd = try findCRLF(buffer, scanned: &scanned, limit: Self.maxChunkLineBytes) else { return .needMore }
                guard let size = parseChunkSize(buffer, lineLength: lineEnd) else { throw HTTP1ParseError(reason: "invalid chunk size") }
                buffer.moveReaderIndex(forwardBy: lineEnd + 2)
                state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                guard let (slice, left) = Self.take(&buffer, upTo: remaining) else { return .needMore }
                state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
                return .body(slice)
            case .chunkDataEnd:
                guard buffer.readableBytes >= 2 else { return .needMore }
                guard buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A else {
                    throw HTTP1ParseError(reason: "chunk data not followed by CRLF")
                }
                buffer.moveReaderIndex(forwardBy: 2)
                state = .chunkSize
            case .trailers:
                guard buffer.readableBytes >= 2 else { return .needMore }
                if buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
                    buffer.moveReaderIndex(forwardBy: 2)
                    state = .done
                    return .end(trailers: nil)
                }
                guard let end = try findHeadEnd(buffer, scanned: &scanned, max: Self.maxTrailerBytes) else { return .needMore }
                guard var block = buffer.readSlice(length: end) else { return .needMore }
                guard block.withUnsafeReadableBytes({ validFieldLines($0) }) else { throw HTTP1ParseError(reason: "malformed trailer") }
                block.moveWriterIndex(to: block.writerIndex - 2)
                state = .done
                return .end(trailers: block)
            }
        }
    }
}

/// The length of a head (or trailer section) including its final CRLFCRLF, once it is all in
/// `buffer`. `scanned` remembers how far an earlier call searched, so a head arriving in
/// pieces is not rescanned from its start each time; it is reset when the end is found.
func findHeadEnd(_ buffer: ByteBuffer, scanned: inout Int, max limit: Int) throws(HTTP1ParseError) -> Int? {
    let from = max(0, scanned - 3)
    // -1: a bare LF (not after CR), refused at once rather than waited on until the
    // header timeout (RFC 9112 §2.2 lets a recipient refuse it; two parties reading it
    // differently is how requests are smuggled).
    let found: Int? = buffer.withUnsafeReadableBytes { raw in
        if from == 0 && raw.count > 0 && raw[0] == UInt8(ascii: "\n") { return -1 }
        guard let base = raw.baseAddress else { return nil }
        var i = from
        while i + 3 < raw.count {
            // The next LF at i + 3 or later: libc's memchr looks at many bytes per step where
            // a byte loop costs ~9 instructions per byte of the head.
            guard let lf = memchr(base + i + 3, 0x0A, raw.count - (i + 3)) else { break }
            i = base.distance(to: UnsafeRawPointer(lf)) - 3
            if raw[i + 2] != UInt8(ascii: "\r") { return -1 }
            if raw[i] == UInt8(ascii: "\r") && raw[i + 1] == UInt8(ascii: "\n") {
                return i + 4
            }
            i += 1
        }
        // A bare LF among the first three bytes (the loop starts looking at the fourth).
        if from == 0 {
            var j = 1
            while j < min(3, raw.count) {
                if raw[j] == UInt8(ascii: "\n") && raw[j - 1] != UInt8(ascii: "\r") { return -1 }
                j += 1
            }
        }
        return nil
    }
    if found == -1 { throw HTTP1ParseError(reason: "bare LF in the head") }
    if let found {
        scanned = 0
        if found > limit { throw HTTP1ParseError(reason: "head too large", tooLarge: true) }
        return found
    }
    if buffer.readableBytes > limit { throw HTTP1ParseError(reason: "head too large", tooLarge: true) }
    scanned = buffer.readableBytes
    return nil
}

/// Offset of the CRLF ending the line at the reader index; nil while it has not arrived.
func findCRLF(_ buffer: ByteBuffer, scanned: inout Int, limit: Int) throws(HTTP1ParseError) -> Int? {
    let from = max(0, scanned - 1)
    let found: Int? = buffer.withUnsafeReadableBytes { raw in
        var i = from
        while i + 1 < raw.count {
            if raw[i] == UInt8(ascii: "\r") && raw[i + 1] == UInt8(ascii: "\n") { return i }
            i += 1
        }
        return nil
    }
    if let found {
        scanned = 0
        if found > limit { throw HTTP1ParseError(reason: "chunk size line too long") }
        return found
    }
    if buffer.readableBytes > limit { throw HTTP1ParseError(reason: "chunk size line too long") }
    scanned = buffer.readableBytes
    return nil
}

/// chunk-size [ chunk-ext ]: hex digits, then nothing or `;` and extensions (ignored).
private func parseChunkSize(_ buffer: ByteBuffer, lineLength: Int) -> Int? {
    buffer.withUnsafeReadableBytes { raw in
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
                if isControl(raw[i]) { return nil }
                i += 1
            }
        }
        return size
    }
}

/// Field lines (`token ":" value CRLF`, values free of control characters but HTAB), ending
/// with the empty line.
func validFieldLines(_ raw: UnsafeRawBufferPointer) -> Bool {
    scanFieldLines(raw, from: 0) { _, _ in nil } == nil
}

/// CTL characters other than HTAB (never allowed in field values or reason phrases).
@inline(__always)
func isControl(_ c: UInt8) -> Bool { (c < 0x20 && c != 0x09) || c == 0x7F }

@inline(__always)
private func hexValue(_ c: UInt8) -> Int? {
    switch c {
    case 48...57: return Int(c - 48)
    case 65...70: return Int(c - 55)
    case 97...102: return Int(c - 87)
    default: return nil
    }
}

/// Walks the field lines of a head (`raw` ends with the empty line's CRLF), from offset `start`:
/// `token ":" OWS value OWS CRLF`, values free of control characters but HTAB, no obs-fold.
/// Calls `field` with each line's name and (trimmed) value ranges; returns the first error.
@inline(__always)
func scanFieldLines(
    _ raw: UnsafeRawBufferPointer, from start: Int, _ field: (Range<Int>, Range<Int>) -> HTTP1ParseError?
) -> HTTP1ParseError? {
    let n = raw.count - 2
    guard n > start, let p = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
    var i = start
    while i < n {
        let nameStart = i
        while i < n && isTokenChar(p[i]) { i += 1 }
        guard i > nameStart, i < n, p[i] == UInt8(ascii: ":") else { return HTTP1ParseError(reason: "malformed header line") }
        let nameEnd = i
        i += 1
        while i < n && (p[i] == UInt8(ascii: " ") || p[i] == 0x09) { i += 1 }
        let valueStart = i
        var valueEnd = i
        while i < n {
            // Eight bytes at a time while none is below 0x21 (space, HTAB, CR, the other
            // controls) or DEL: then all are visible ASCII or obs-text and extend the value.
            // A word with any other byte goes through the loop below, byte by byte.
            if i &+ 8 <= n {
                let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let highs: UInt64 = 0x8080_8080_8080_8080
                let below21 = (w &- ones &* 0x21) & ~w & highs
                let d = w ^ (ones &* 0x7F)
                let del = (d &- ones) & ~d & highs
                if below21 | del == 0 {
                    i &+= 8
                    valueEnd = i
                    continue
                }
            }
            let c = p[i]
            // Visible ASCII (0x21-0x7E), the common case, in one compare.
            if c &- 0x21 < 0x5E {
                i &+= 1
                valueEnd = i
                continue
            }
            if c == UInt8(ascii: "\r") { break }
            // Space and HTAB pass (and are trimmed at the end); obs-text passes; any other
            // control character and DEL do not.
            if c == UInt8(ascii: " ") || c == 0x09 {
                i &+= 1
            } else if c >= 0x80 {
                i &+= 1
                valueEnd = i
            } else {
                return HTTP1ParseError(reason: "invalid character in a header value")
            }
        }
        guard i + 1 < raw.count, p[i] == UInt8(ascii: "\r"), p[i + 1] == UInt8(ascii: "\n") else {
            return HTTP1ParseError(reason: "malformed header line")
        }
        i += 2
        if let failure = field(nameStart..<nameEnd, valueStart..<valueEnd) { return failure }
    }
    return nil
}

/// Calls `body` with the name and value of each field line of a trailer section (lines
/// already validated by the body decoder, each ending in CRLF, without the empty line).
func forEachTrailerField(_ trailers: ByteBuffer, _ body: (String, String) -> Void) {
    var block = trailers
    block.writeStaticString("\r\n")  // the empty line the scanner expects at the end
    _ = block.withUnsafeReadableBytes { raw in
        scanFieldLines(raw, from: 0) { name, value in
            body(
                String(decoding: UnsafeRawBufferPointer(rebasing: raw[name]), as: UTF8.self),
                String(decoding: UnsafeRawBufferPointer(rebasing: raw[value]), as: UTF8.self))
            return nil
        }
    }
}

/// What the framing and connection headers of a head said.
struct FramingHeaders {
    var contentLength: Int?
    var chunked = false
    var connectionClose = false
    var connectionKeepAlive = false
    var connectionNamesHeaders = false

    mutating func note(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> HTTP1ParseError? {
        switch name.count {
        case 14 where asciiCaseInsensitiveEquals(name, "content-length"):
            guard value.count > 0, value.count <= 18, value.allSatisfy(isDigit) else {
                return HTTP1ParseError(reason: "invalid Content-Length")
            }
            var n = 0
            for c in value { n = n * 10 + Int(c - 48) }
            if let previous = contentLength, previous != n { return HTTP1ParseError(reason: "conflicting Content-Length headers") }
            contentLength = n
        case 17 where asciiCaseInsensitiveEquals(name, "transfer-encoding"):
            // Only `chunked`, once: any other coding would need the body decoded to find its end.
            guard !chunked, asciiCaseInsensitiveEquals(value, "chunked") else {
                return HTTP1ParseError(reason: "unsupported Transfer-Encoding")
            }
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
