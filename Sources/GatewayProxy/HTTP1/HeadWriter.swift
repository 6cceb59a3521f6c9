import GatewayConfig
import NIOCore
import NIOHTTP1

/// Where heads are serialized: a `ByteBuffer`, or a `HeadAppender` writing through a raw
/// pointer into space reserved once (the hot path: one capacity check per piece instead of a
/// uniqueness and exclusivity check per `ByteBuffer` write). The gateway writes bytes to its
/// sockets itself rather than through NIO's HTTP encoders (see docs/design-notes.md).
protocol HeadSink {
    @discardableResult mutating func writeStaticString(_ s: StaticString) -> Int
    @discardableResult mutating func writeString(_ s: String) -> Int
    @discardableResult mutating func writeSubstring(_ s: Substring) -> Int
    mutating func writeRaw(_ bytes: UnsafeRawBufferPointer)
    mutating func writeByte(_ byte: UInt8)
    /// Bytes written so far, and going back to an earlier count (a refused header line).
    var writtenCount: Int { get }
    mutating func rewind(to count: Int)
}

extension ByteBuffer: HeadSink {
    @inline(__always)
    mutating func writeRaw(_ bytes: UnsafeRawBufferPointer) { writeBytes(bytes) }
    @inline(__always)
    mutating func writeByte(_ byte: UInt8) { writeInteger(byte) }
    var writtenCount: Int { writerIndex }
    mutating func rewind(to count: Int) { moveWriterIndex(to: count) }
}

/// Appends through a raw pointer into `capacity` reserved bytes. Never writes past them: a
/// piece that does not fit sets `overflowed` and the caller starts again with more room.
struct HeadAppender: HeadSink {
    private let base: UnsafeMutableRawBufferPointer
    private(set) var count = 0
    private(set) var overflowed = false

    init(_ base: UnsafeMutableRawBufferPointer) { self.base = base }

    @inline(__always)
    mutating func writeRaw(_ bytes: UnsafeRawBufferPointer) {
        guard !overflowed, bytes.count <= base.count - count else {
            overflowed = true
            return
        }
        UnsafeMutableRawBufferPointer(rebasing: base[count..<(count + bytes.count)]).copyMemory(from: bytes)
        count += bytes.count
    }

    @inline(__always)
    mutating func writeByte(_ byte: UInt8) {
        guard !overflowed, count < base.count else {
            overflowed = true
            return
        }
        base[count] = byte
        count += 1
    }

    @inline(__always) @discardableResult
    mutating func writeStaticString(_ s: StaticString) -> Int {
        writeRaw(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
        return s.utf8CodeUnitCount
    }

    @inline(__always) @discardableResult
    mutating func writeString(_ s: String) -> Int {
        var s = s
        return s.withUTF8 { u in
            writeRaw(UnsafeRawBufferPointer(u))
            return u.count
        }
    }

    var writtenCount: Int { count }

    @inline(__always)
    mutating func rewind(to count: Int) { self.count = min(self.count, count) }

    @inline(__always) @discardableResult
    mutating func writeSubstring(_ s: Substring) -> Int {
        var s = s
        return s.withUTF8 { u in
            writeRaw(UnsafeRawBufferPointer(u))
            return u.count
        }
    }
}

extension ByteBuffer {
    /// Writes a head through a `HeadAppender` with `capacity` bytes reserved, growing the
    /// reservation until the head fits. `body` may run more than once.
    mutating func writeHead<R>(capacity: Int, _ body: (inout HeadAppender) -> R) -> R {
        var room = max(256, capacity)
        while true {
            var result: R?
            writeWithUnsafeMutableBytes(minimumWritableBytes: room) { ptr in
                var appender = HeadAppender(ptr)
                let r = body(&appender)
                if appender.overflowed { return 0 }
                result = r
                return appender.count
            }
            if let result { return result }
            room *= 4
        }
    }
}

/// The last guard of every header line the gateway writes: a name or value holding CR, LF or
/// NUL is never written (the line is left out), whatever check upstream of the writer missed.
/// Config, request and claim values are refused long before this; this keeps a missed check
/// from becoming a split message. Eight bytes at a time: one test per word finds whether any
/// byte is below 14, and only such a word is looked at byte by byte (a tab is fine).
enum LineGuard {
    @inline(__always)
    static func isClean(_ b: UnsafeRawBufferPointer) -> Bool {
        let n = b.count
        var i = 0
        while i &+ 8 <= n {
            let x = b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            if (x &- 0x0E0E_0E0E_0E0E_0E0E) & ~x & 0x8080_8080_8080_8080 != 0 {
                for j in i..<(i &+ 8) where isBreaking(b[j]) { return false }
            }
            i &+= 8
        }
        while i < n {
            if isBreaking(b[i]) { return false }
            i &+= 1
        }
        return true
    }

    @inline(__always)
    static func isBreaking(_ c: UInt8) -> Bool { c <= 13 && (c == 13 || c == 10 || c == 0) }
}

extension HeadSink {
    /// Writes `s` when it holds no CR, LF or NUL (`LineGuard`); false, and nothing written, else.
    @inline(__always)
    mutating func writeCheckedString(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { u in
            let r = UnsafeRawBufferPointer(u)
            guard LineGuard.isClean(r) else { return false }
            writeRaw(r)
            return true
        }
    }

    /// `name: value` and CRLF; nothing when either holds CR, LF or NUL (`LineGuard`): the
    /// bytes are checked as they are copied, and a refused line is taken back.
    @inline(__always)
    mutating func writeHeaderLine(_ name: String, _ value: String) {
        let mark = writtenCount
        guard writeCheckedString(name) else { return rewind(to: mark) }
        writeStaticString(": ")
        guard writeCheckedString(value) else { return rewind(to: mark) }
        writeStaticString("\r\n")
    }

    @inline(__always)
    mutating func writeHeaderLine(_ name: StaticString, _ value: String) {
        let mark = writtenCount
        writeStaticString(name)
        writeStaticString(": ")
        guard writeCheckedString(value) else { return rewind(to: mark) }
        writeStaticString("\r\n")
    }

    /// `HTTP/1.1 <code> <reason>` and CRLF.
    mutating func writeStatusLine(_ code: Int, reason: String) {
        writeStaticString("HTTP/1.1 ")
        writeStatusCode(code)
        writeStaticString(" ")
        writeString(reason)
        writeStaticString("\r\n")
    }

    @inline(__always)
    mutating func writeStatusCode(_ code: Int) {
        let c = min(max(code, 100), 999)
        writeByte(UInt8(48 + c / 100))
        writeByte(UInt8(48 + c / 10 % 10))
        writeByte(UInt8(48 + c % 10))
    }

    mutating func writeHeaders(_ headers: HTTPHeaders) {
        for (name, value) in headers { writeHeaderLine(name, value) }
    }

    /// The size line of a chunk: hex length and CRLF.
    mutating func writeChunkSize(_ size: Int) {
        var digits = 0
        var v = size
        repeat {
            digits += 1
            v >>= 4
        } while v > 0
        var shift = (digits - 1) * 4
        while shift >= 0 {
            let d = (size >> shift) & 0xF
            writeByte(UInt8(d < 10 ? 48 + d : 87 + d))
            shift -= 4
        }
        writeStaticString("\r\n")
    }
}

enum HeadWriter {
    /// A whole response the gateway answers itself: head and body in one buffer.
    static func localResponse(
        status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer?, allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var out = allocator.buffer(capacity: 128 + headers.count * 48 + (body?.readableBytes ?? 0))
        out.writeStatusLine(Int(status.code), reason: status.reasonPhrase)
        out.writeHeaders(headers)
        out.writeStaticString("\r\n")
        if var body { out.writeBuffer(&body) }
        return out
    }

    /// Copies the upstream's field lines that `keep` accepts, as they arrived, in runs: the
    /// lines between two dropped ones are one copy.
    @inline(__always)
    static func copyFields<Sink: HeadSink>(
        of head: ResponseParser.Head, into out: inout Sink, keep: (UnsafeRawBufferPointer) -> Bool
    ) {
        head.block.withUnsafeReadableBytes { raw in
            var runStart = -1
            for f in head.fields {
                let name = UnsafeRawBufferPointer(rebasing: raw[Int(f.nameStart)..<Int(f.nameEnd)])
                if keep(name) {
                    if runStart < 0 { runStart = Int(f.nameStart) }
                } else if runStart >= 0 {
                    out.writeRaw(UnsafeRawBufferPointer(rebasing: raw[runStart..<Int(f.nameStart)]))
                    runStart = -1
                }
            }
            if runStart >= 0 { out.writeRaw(UnsafeRawBufferPointer(rebasing: raw[runStart..<(raw.count - 2)])) }
        }
    }
}
