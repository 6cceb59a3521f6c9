import NIOCore

/// A connection as the pool's state machine sees it.
protocol PoolConnection: AnyObject {
    /// Still open and not closing.
    var isUsable: Bool { get }
    /// It holds one of the gateway-wide slots of `max_connections_per_target`.
    var holdsSlot: Bool { get set }
}

/// A request waiting for a connection; it stops being live when the request goes away.
protocol PoolWaiter: AnyObject {
    var isLive: Bool { get }
}

/// The gateway-wide slots of `max_connections_per_target` (`TargetLimits` in the gateway, a
/// counter in tests).
protocol PoolSlots {
    /// Takes a slot when one is free.
    func tryReserve() -> Bool
    func release()
    /// Asks to be woken (`dispatch`) when a slot frees.
    func waitForSlot()
}

/// The connections of one event loop to one target, with no sockets: each event (a
/// request asks, a connection is opened, released or closed, the pool shuts down) changes
/// the state and returns what the shell (`TargetPool`) must do, as async-http-client's
/// connection pool is built. A connection is handed out, or opened, only with a slot
/// taken; it gives the slot back when released, closed, or when its tunnel ends.
struct TargetPoolState<Connection: PoolConnection, Waiter: PoolWaiter> {
    /// What the shell does after an event, in order.
    enum Action {
        /// Open a connection (the slot it needs is taken and counted in `open`).
        case connect
        /// Give the connection to the waiter (it carries the slot along).
        case hand(Connection, to: Waiter)
        /// Close the connection.
        case close(Connection)
        /// Tell the waiter no connection comes.
        case fail(Waiter)
    }

    /// What `acquire` decided.
    enum Acquire {
        /// An idle connection, with a slot taken for it.
        case ready(Connection)
        /// The request waits: add it with `enqueue` (`reserved`: a slot is already taken for it).
        case queue(reserved: Bool)
    }

    /// What `release` decided.
    enum Release {
        /// Kept idle, its slot given back.
        case idle
        case hand(Connection, to: Waiter)
        /// Closed (it cannot be reused), its slot given back.
        case close(Connection)
    }

    private(set) var maxConnections: Int
    private(set) var idle: [Connection] = []
    private var waiters = CircularBuffer<Waiter>()
    /// Connections open or being opened.
    private(set) var open = 0
    /// Connections being opened.
    private(set) var connecting = 0
    private(set) var closed = false

    init(maxConnections: Int) { self.maxConnections = max(1, maxConnections) }

    mutating func setMaxConnections(_ n: Int) { maxConnections = max(1, n) }

    var liveWaiters: Int { waiters.reduce(0) { $0 + ($1.isLive ? 1 : 0) } }

    // MARK: events

    /// A request asks for a connection: an idle one when nobody waits before it and a slot
    /// is free; otherwise it queues (the shell may refuse it instead, when the line is full
    /// and no slot was free).
    mutating func acquire(_ slots: some PoolSlots) -> Acquire {
        dropCancelledWaiters()
        guard waiters.isEmpty, slots.tryReserve() else { return .queue(reserved: false) }
        while let c = idle.popLast() {
            if c.isUsable {
                c.holdsSlot = true
                return .ready(c)
            }
        }
        return .queue(reserved: true)
    }

    /// The request waits in line; a connection is opened for it when its slot allows.
    mutating func enqueue(_ w: Waiter, reserved: Bool, _ slots: some PoolSlots) -> [Action] {
        waiters.append(w)
        guard reserved else {
            slots.waitForSlot()
            return dispatch(slots)
        }
        if open < maxConnections { return [startConnect()] }
        slots.release()
        slots.waitForSlot()
        return []
    }

    /// Serves waiting requests while the gateway-wide limit has room: an idle connection
    /// each, or a connection opened for them.
    mutating func dispatch(_ slots: some PoolSlots) -> [Action] {
        dropCancelledWaiters()
        var actions: [Action] = []
        while !closed, needsConnection {
            if !slots.tryReserve() {
                // Registered first, then tried once more: a slot freed in between is not missed.
                slots.waitForSlot()
                guard slots.tryReserve() else { return actions }
            }
            if let c = takeIdle(), let w = nextWaiter() {
                c.holdsSlot = true
                actions.append(.hand(c, to: w))
            } else if open < maxConnections {
                actions.append(startConnect())
            } else {
                slots.release()
                return actions
            }
        }
        return actions
    }

    /// A connection opened: to the first live waiter, else idle (closed when the pool was).
    mutating func connected(_ c: Connection, _ slots: some PoolSlots) -> Action? {
        connecting -= 1
        c.holdsSlot = true
        if closed {
            freeSlot(c, slots)
            return .close(c)
        }
        if let w = nextWaiter() { return .hand(c, to: w) }
        freeSlot(c, slots)
        idle.append(c)
        return nil
    }

    /// A connection could not be opened: its slot frees, the first live waiter fails.
    mutating func connectFailed(_ slots: some PoolSlots) -> Action? {
        open -= 1
        connecting -= 1
        slots.release()
        return nextWaiter().map { .fail($0) }
    }

    /// A connection comes back after a complete exchange.
    mutating func release(_ c: Connection, reusable: Bool, _ slots: some PoolSlots) -> Release {
        guard reusable && c.isUsable && !closed else {
            freeSlot(c, slots)
            return .close(c)
        }
        if c.holdsSlot, let w = nextWaiter() { return .hand(c, to: w) }  // the slot goes with it
        freeSlot(c, slots)
        idle.append(c)
        return .idle
    }

    /// The connection leaves the pool for good (a WebSocket tunnel): it keeps its slot
    /// until `tunnelEnded`.
    mutating func detach() { open -= 1 }

    /// A tunnel made from one of this pool's connections closed: its slot is free.
    mutating func tunnelEnded(_ c: Connection, _ slots: some PoolSlots) -> [Action] {
        freeSlot(c, slots)
        return closed ? [] : dispatch(slots)
    }

    /// A connection of this pool closed (idle or not).
    mutating func connectionClosed(_ c: Connection?, _ slots: some PoolSlots) -> [Action] {
        open -= 1
        if let c {
            freeSlot(c, slots)
            if let i = idle.firstIndex(where: { $0 === c }) { idle.remove(at: i) }
        }
        // Someone is waiting and a slot is free again: open a fresh connection for them.
        return closed ? [] : dispatch(slots)
    }

    /// The pool is removed (reload) or the gateway stops: idle connections close, waiters fail.
    mutating func shutdown() -> [Action] {
        closed = true
        var actions = idle.map { Action.close($0) }
        idle.removeAll()
        while let w = nextWaiter() { actions.append(.fail(w)) }
        return actions
    }

    // MARK: helpers

    private mutating func startConnect() -> Action {
        open += 1
        connecting += 1
        return .connect
    }

    /// More live waiters than connections being opened for them (counted only that far).
    private var needsConnection: Bool {
        var n = 0
        for w in waiters where w.isLive {
            n += 1
            if n > connecting { return true }
        }
        return false
    }

    private mutating func dropCancelledWaiters() {
        while let w = waiters.first, !w.isLive { waiters.removeFirst() }
    }

    private mutating func takeIdle() -> Connection? {
        while let c = idle.popLast() {
            if c.isUsable { return c }
        }
        return nil
    }

    private mutating func nextWaiter() -> Waiter? {
        while let w = waiters.popFirst() {
            if w.isLive { return w }
        }
        return nil
    }

    private func freeSlot(_ c: Connection, _ slots: some PoolSlots) {
        guard c.holdsSlot else { return }
        c.holdsSlot = false
        slots.release()
    }
}
