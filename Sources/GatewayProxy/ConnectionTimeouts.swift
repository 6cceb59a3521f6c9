import NIOCore

/// The connection's own deadlines, apart from the request's: a slow client gets 408 after
/// `header_read_timeout` from the first byte of a request head, an idle keep-alive connection
/// is closed quietly after `idle_timeout`.
///
/// No timer is scheduled per connection or per request: a deadline is stored and the loop's
/// `ConnectionClock` checks it on its tick (NGINX and Envoy keep timers as coarse for the same
/// reason: a scheduled task per request costs more than the request). The first byte of a head
/// is seen as a read that ended without a complete head, so no handler has to sit below the
/// HTTP decoder looking at every buffer.
struct ConnectionTimeouts {
    enum State { case idle, readingHead, busy }
    enum Expiry { case none, closeQuietly, requestTimeout }

    private(set) var state = State.idle
    /// Uptime nanoseconds after which the current state times out; 0 for none.
    private var deadline: UInt64 = 0
    let headerTimeout: UInt64
    let idleTimeout: UInt64

    init(headerTimeout: Int64, idleTimeout: Int64) {
        self.headerTimeout = UInt64(max(1, headerTimeout))
        self.idleTimeout = UInt64(max(1, idleTimeout))
    }

    /// A new connection must send its first request within the header timeout.
    mutating func connectionStarted(now: UInt64) {
        state = .idle
        deadline = now &+ headerTimeout
    }

    /// A read ended without a complete request head.
    @inline(__always)
    mutating func bytesWithoutHead(now: UInt64) {
        if state == .idle {
            state = .readingHead
            deadline = now &+ headerTimeout
        }
    }

    /// A request head was decoded: the request timeout takes over.
    @inline(__always)
    mutating func headReceived() {
        state = .busy
        deadline = 0
    }

    /// The exchange is over; the connection waits for the next request.
    @inline(__always)
    mutating func exchangeFinished(now: UInt64) {
        state = .idle
        deadline = now &+ idleTimeout
    }

    /// What to do at `now`.
    mutating func check(now: UInt64) -> Expiry {
        guard deadline != 0, now >= deadline else { return .none }
        deadline = 0
        switch state {
        case .busy: return .none
        case .idle: return .closeQuietly
        case .readingHead:
            state = .busy
            return .requestTimeout
        }
    }
}

/// What the clock ticks: an HTTP/1.1 connection (`ProxyHandler`), an HTTP/2 stream's
/// `ProxyHandler`, or an HTTP/2 connection (`HTTP2Connection`).
protocol ClockedConnection: AnyObject {
    /// This connection's index in its loop's `ConnectionClock`.
    var clockSlot: Int { get set }
    var listenerName: String { get }
    /// Whether the connection counts as one to drain (an HTTP/2 stream does not: its
    /// connection does).
    var isConnection: Bool { get }
    func tick(now: UInt64)
    /// Drain: finish what is in flight, then close.
    func quiesce()
}

/// One per event loop: ticks every `interval` and lets each connection check its deadlines.
/// Connections register when they start and leave when they close (swap-remove, O(1)).
final class ConnectionClock {
    private var handlers: [any ClockedConnection] = []
    static let interval = TimeAmount.milliseconds(50)

    func register(_ h: any ClockedConnection) {
        h.clockSlot = handlers.count
        handlers.append(h)
    }

    func unregister(_ h: any ClockedConnection) {
        let i = h.clockSlot
        guard i >= 0, i < handlers.count, handlers[i] === h else { return }
        let last = handlers.removeLast()
        if i < handlers.count {
            handlers[i] = last
            last.clockSlot = i
        }
        h.clockSlot = -1
    }

    /// Open connections (HTTP/2 streams are not counted; their connections are).
    var count: Int { handlers.reduce(0) { $0 + ($1.isConnection ? 1 : 0) } }

    /// Calls `body` for every registered connection (on a copy: `body` may close them).
    func forEach(_ body: (any ClockedConnection) -> Void) {
        let current = handlers
        for h in current { body(h) }
    }

    /// Uptime nanoseconds at the last tick: a time at most one tick old, for deadlines that
    /// are only checked at ticks anyway (it saves a clock read per request).
    private(set) var lastTick: UInt64
    private let time: LoopClock

    init(time: LoopClock) {
        self.time = time
        lastTick = time.uptime()
    }

    func tick() {
        let now = time.uptime()
        lastTick = now
        // A tick may close connections, which unregisters them: walk a copy.
        let current = handlers
        for h in current { h.tick(now: now) }
    }
}
