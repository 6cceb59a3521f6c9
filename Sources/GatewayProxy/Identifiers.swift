import GatewayPolicies

/// Request ids and W3C trace context ids, from a per-event-loop generator (no locks, no syscalls).
struct IDGenerator {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    /// 32 lowercase hex digits.
    mutating func requestID() -> String { hex(rng.next(), rng.next()) }

    /// A new `traceparent` starting a trace, `00-<trace-id>-<parent-id>-01`, written straight
    /// into a head (no `String` made).
    mutating func writeTraceparent<Sink: HeadSink>(into out: inout Sink) {
        let trace = (rng.next() | 1, rng.next())
        let span = rng.next() | 1
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 55) { buf in
            buf[0] = UInt8(ascii: "0")
            buf[1] = UInt8(ascii: "0")
            buf[2] = UInt8(ascii: "-")
            write(trace.0, into: buf, at: 3)
            write(trace.1, into: buf, at: 19)
            buf[35] = UInt8(ascii: "-")
            write(span, into: buf, at: 36)
            buf[52] = UInt8(ascii: "-")
            buf[53] = UInt8(ascii: "0")
            buf[54] = UInt8(ascii: "1")
            out.writeRaw(UnsafeRawBufferPointer(buf))
        }
    }

    private func hex(_ a: UInt64, _ b: UInt64) -> String {
        String(unsafeUninitializedCapacity: 32) { buf in
            write(a, into: buf, at: 0)
            write(b, into: buf, at: 16)
            return 32
        }
    }

    /// 16 hex digits of `v` at `offset`. Callers give a buffer with room (32 or 55 bytes,
    /// offsets fixed), so the stores skip bounds checks.
    private func write(_ v: UInt64, into buf: UnsafeMutableBufferPointer<UInt8>, at offset: Int) {
        guard offset >= 0, offset + 16 <= buf.count, let base = buf.baseAddress else { return }
        let out = base + offset
        var v = v
        var i = 15
        while i >= 0 {
            let d = UInt8(truncatingIfNeeded: v & 0xf)
            // 0-9 → '0'-'9', 10-15 → 'a'-'f', without a branch
            out[i] = d &+ 48 &+ (UInt8(truncatingIfNeeded: (Int8(9) &- Int8(bitPattern: d)) >> 7) & 39)
            v &>>= 4
            i &-= 1
        }
    }
}

enum TraceContext {
    /// A `traceparent` we can propagate: version 00, 32 + 16 hex digits not all zero, 2 hex flags.
    static func isValid(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count == 55, u[2] == 45, u[35] == 45, u[52] == 45 else { return false }
        func isHex(_ r: Range<Int>) -> Bool { u[r].allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) } }
        guard isHex(0..<2), isHex(3..<35), isHex(36..<52), isHex(53..<55) else { return false }
        guard !(u[0] == 102 && u[1] == 102) else { return false }  // version ff is invalid
        return !u[3..<35].allSatisfy { $0 == 48 } && !u[36..<52].allSatisfy { $0 == 48 }
    }
}

/// A request id we accept from a trusted peer: 1 to 200 visible ASCII characters.
func isAcceptableRequestID(_ s: String) -> Bool {
    let u = s.utf8
    return !u.isEmpty && u.count <= 200 && u.allSatisfy { $0 > 32 && $0 < 127 }
}
