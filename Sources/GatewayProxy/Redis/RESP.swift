import NIOCore

/// A reply in the Redis serialization protocol (RESP2, and the RESP3 types a server may
/// send). Only what the rate limiter needs: commands go out as arrays of bulk strings.
public enum RESPValue: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8]?)
    case array([RESPValue]?)
    case double(Double)
    case boolean(Bool)
    case null

    public var int: Int64? {
        switch self {
        case .integer(let i): return i
        case .bulk(let b?): return Int64(String(decoding: b, as: UTF8.self))
        case .simple(let s): return Int64(s)
        default: return nil
        }
    }

    public var string: String? {
        switch self {
        case .simple(let s): return s
        case .bulk(let b?): return String(decoding: b, as: UTF8.self)
        default: return nil
        }
    }
}

public enum RESPError: Error, Equatable {
    case protocolError(String)
    case tooDeep
}

/// Parses RESP replies out of a buffer; returns nil until a whole reply is there.
package enum RESPParser {
    static let maxDepth = 8
    static let maxBulk = 16 * 1024 * 1024

    /// Reads one reply from `buffer`, consuming its bytes only when it is complete.
    package static func parse(_ buffer: inout ByteBuffer) throws -> RESPValue? {
        var copy = buffer
        guard let v = try value(&copy, depth: 0) else { return nil }
        buffer = copy
        return v
    }

    private static func line(_ b: inout ByteBuffer) -> String? {
        guard let view = b.readableBytesView.firstIndex(of: UInt8(ascii: "\r")) else { return nil }
        let length = view - b.readerIndex
        guard b.readableBytes >= length + 2 else { return nil }
        let s = b.readString(length: length)
        b.moveReaderIndex(forwardBy: 2)
        return s
    }

    private static func value(_ b: inout ByteBuffer, depth: Int) throws -> RESPValue? {
        guard depth < maxDepth else { throw RESPError.tooDeep }
        guard let type = b.readInteger(as: UInt8.self) else { return nil }
        guard let text = line(&b) else { return nil }
        switch type {
        case UInt8(ascii: "+"): return .simple(text)
        case UInt8(ascii: "-"), UInt8(ascii: "!"):
            if type == UInt8(ascii: "!") {
                guard let n = Int(text), n >= 0, n <= maxBulk else { throw RESPError.protocolError("bad blob error length") }
                guard b.readableBytes >= n + 2, let bytes = b.readBytes(length: n) else { return nil }
                b.moveReaderIndex(forwardBy: 2)
                return .error(String(decoding: bytes, as: UTF8.self))
            }
            return .error(text)
        case UInt8(ascii: ":"):
            guard let i = Int64(text) else { throw RESPError.protocolError("bad integer") }
            return .integer(i)
        case UInt8(ascii: "$"), UInt8(ascii: "="):
            guard let n = Int(text) else { throw RESPError.protocolError("bad bulk length") }
            if n < 0 { return .bulk(nil) }
            guard n <= maxBulk else { throw RESPError.protocolError("bulk string too large") }
            guard b.readableBytes >= n + 2, let bytes = b.readBytes(length: n) else { return nil }
            b.moveReaderIndex(forwardBy: 2)
            return .bulk(bytes)
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"):
            guard var n = Int(text) else { throw RESPError.protocolError("bad array length") }
            if n < 0 { return .array(nil) }
            // Checked before a map's count is doubled: a huge count must not overflow (found by Fuzz/resp).
            guard n <= 1_000_000 else { throw RESPError.protocolError("array too large") }
            if type == UInt8(ascii: "%") { n *= 2 }  // a map: keys and values in turn
            var items: [RESPValue] = []
            items.reserveCapacity(min(n, 64))
            for _ in 0..<n {
                guard let v = try value(&b, depth: depth + 1) else { return nil }
                items.append(v)
            }
            return .array(items)
        case UInt8(ascii: "_"): return .null
        case UInt8(ascii: "#"): return .boolean(text == "t")
        case UInt8(ascii: ","):
            guard let d = Double(text) else { throw RESPError.protocolError("bad double") }
            return .double(d)
        case UInt8(ascii: "("): return .simple(text)
        default:
            throw RESPError.protocolError("unknown reply type \(type)")
        }
    }

    /// A command as an array of bulk strings.
    package static func encode(_ args: [String], into out: inout ByteBuffer) {
        out.writeString("*\(args.count)\r\n")
        for a in args {
            out.writeString("$\(a.utf8.count)\r\n")
            out.writeString(a)
            out.writeString("\r\n")
        }
    }
}
