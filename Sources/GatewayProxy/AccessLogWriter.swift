import Foundation
import NIOConcurrencyHelpers

/// Writes access-log lines (SPEC §2.8) from a background queue. Requests only append to an
/// in-memory buffer; a slow stdout never blocks the data path. When the backlog passes
/// `maxBacklog` bytes new lines are dropped and counted instead.
public final class AccessLogWriter: Sendable {
    private let fd: Int32
    private let ownsFD: Bool
    private let state = NIOLockedValueBox(State())
    private let queue = DispatchQueue(label: "gateway.access-log")
    private let maxBacklog: Int

    struct State {
        var buffer: [UInt8] = []
        var flushScheduled = false
        var inFlight = 0
        var dropped = 0
    }

    /// `path`: "stdout", "stderr" or a file (appended to, created 0644).
    public init?(path: String, maxBacklog: Int = 8 << 20) {
        switch path {
        case "stdout": fd = 1; ownsFD = false
        case "stderr": fd = 2; ownsFD = false
        default:
            let f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard f >= 0 else { return nil }
            fd = f
            ownsFD = true
        }
        self.maxBacklog = maxBacklog
    }

    deinit { if ownsFD { close(fd) } }

    public var droppedLines: Int { state.withLockedValue { $0.dropped } }

    /// Appends complete lines (each ending in a newline) gathered by one event loop.
    public func append(lines: [UInt8]) {
        let schedule: Bool = state.withLockedValue { s in
            if s.buffer.count + s.inFlight > maxBacklog {
                s.dropped += lines.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
                return false
            }
            s.buffer.append(contentsOf: lines)
            if s.flushScheduled { return false }
            s.flushScheduled = true
            return true
        }
        if schedule {
            queue.async { [self] in flush() }
        }
    }

    /// Writes what is buffered now (also called at shutdown).
    public func flush() {
        let chunk: [UInt8] = state.withLockedValue { s in
            let b = s.buffer
            s.buffer = []
            s.buffer.reserveCapacity(min(b.count, 1 << 16))
            s.flushScheduled = false
            s.inFlight = b.count
            return b
        }
        var offset = 0
        chunk.withUnsafeBytes { raw in
            while offset < raw.count, let base = raw.baseAddress {
                let n = write(fd, base + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    break
                }
                offset += n
            }
        }
        state.withLockedValue { $0.inFlight = 0 }
    }

    public func flushSync() { queue.sync { flush() } }
}
