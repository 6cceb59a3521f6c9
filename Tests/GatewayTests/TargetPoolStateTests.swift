import Testing

@testable import GatewayProxy

/// `TargetPoolState` driven with no sockets: fake connections and waiters, a counter for
/// the gateway-wide slots; each event's actions are checked.
@Suite struct TargetPoolStateTests {
    final class Conn: PoolConnection, CustomStringConvertible {
        let id: Int
        var isUsable = true
        var holdsSlot = false
        init(_ id: Int) { self.id = id }
        var description: String { "c\(id)" }
    }
    final class Wait: PoolWaiter {
        var isLive = true
    }
    final class Slots: PoolSlots {
        let max: Int
        var used = 0
        var waitingForSlot = 0
        init(max: Int) { self.max = max }
        func tryReserve() -> Bool {
            guard used < max else { return false }
            used += 1
            return true
        }
        func release() { used -= 1 }
        func waitForSlot() { waitingForSlot += 1 }
    }
    typealias State = TargetPoolState<Conn, Wait>

    /// The actions, spelled for comparison.
    static func names(_ actions: [State.Action]) -> [String] {
        actions.map {
            switch $0 {
            case .connect: return "connect"
            case .hand(let c, _): return "hand \(c)"
            case .close(let c): return "close \(c)"
            case .fail: return "fail"
            }
        }
    }

    /// A pool with `idle` connections opened and released, and no slot in use: `idle`
    /// requests queue (each gets a connection opened), the connections open, are handed to
    /// them, and come back.
    static func pool(max: Int, slots: Slots, idle: Int) -> State {
        var s = State(maxConnections: max)
        for _ in 0..<idle {
            let reserved: Bool
            if case .queue(let r) = s.acquire(slots) { reserved = r } else { reserved = false }
            _ = s.enqueue(Wait(), reserved: reserved, slots)
        }
        var handed: [Conn] = []
        for i in 0..<idle {
            if case .hand(let c, _)? = s.connected(Conn(i), slots) { handed.append(c) }
        }
        for c in handed { _ = s.release(c, reusable: true, slots) }
        return s
    }

    @Test func aColdPoolOpensAConnectionForTheFirstRequest() {
        let slots = Slots(max: 2)
        var s = State(maxConnections: 2)
        guard case .queue(let reserved) = s.acquire(slots) else { Issue.record("ready on a cold pool"); return }
        #expect(reserved && slots.used == 1)
        let w = Wait()
        #expect(Self.names(s.enqueue(w, reserved: reserved, slots)) == ["connect"])
        #expect(s.open == 1 && s.connecting == 1)
        let c = Conn(1)
        guard case .hand(let got, let to)? = s.connected(c, slots) else { Issue.record("not handed"); return }
        #expect(got === c && to === w && c.holdsSlot && s.connecting == 0)
    }

    @Test func anIdleConnectionIsReusedWithASlot() {
        let slots = Slots(max: 2)
        var s = Self.pool(max: 2, slots: slots, idle: 1)
        #expect(s.idle.count == 1 && slots.used == 0)
        guard case .ready(let c) = s.acquire(slots) else { Issue.record("not ready"); return }
        #expect(c.holdsSlot && slots.used == 1)
        guard case .idle = s.release(c, reusable: true, slots) else { Issue.record("not kept"); return }
        #expect(!c.holdsSlot && slots.used == 0 && s.idle.count == 1)
    }

    @Test func atTheGatewayWideLimitARequestWaitsAndGetsTheReleasedConnection() {
        let slots = Slots(max: 1)
        var s = Self.pool(max: 1, slots: slots, idle: 1)
        guard case .ready(let c) = s.acquire(slots) else { Issue.record("not ready"); return }
        guard case .queue(let reserved) = s.acquire(slots) else { Issue.record("ready past the limit"); return }
        #expect(!reserved)
        let w = Wait()
        #expect(s.enqueue(w, reserved: reserved, slots).isEmpty)
        #expect(slots.waitingForSlot >= 1)
        // Released with the slot still held: it goes straight to the waiter, slot and all.
        guard case .hand(let got, let to) = s.release(c, reusable: true, slots) else { Issue.record("not handed"); return }
        #expect(got === c && to === w && slots.used == 1)
    }

    @Test func aWaiterThatWentAwayIsSkipped() {
        let slots = Slots(max: 1)
        var s = Self.pool(max: 1, slots: slots, idle: 1)
        guard case .ready(let c) = s.acquire(slots) else { Issue.record("not ready"); return }
        let gone = Wait()
        let next = Wait()
        _ = s.enqueue(gone, reserved: false, slots)
        _ = s.enqueue(next, reserved: false, slots)
        gone.isLive = false
        guard case .hand(_, let to) = s.release(c, reusable: true, slots) else { Issue.record("not handed"); return }
        #expect(to === next)
    }

    @Test func aFailedConnectFreesItsSlotAndFailsTheFirstWaiter() {
        let slots = Slots(max: 2)
        var s = State(maxConnections: 2)
        guard case .queue(let reserved) = s.acquire(slots) else { return }
        let w = Wait()
        _ = s.enqueue(w, reserved: reserved, slots)
        guard case .fail(let failed)? = s.connectFailed(slots) else { Issue.record("no failure"); return }
        #expect(failed === w && slots.used == 0 && s.open == 0 && s.connecting == 0)
    }

    @Test func aConnectionThatCannotBeReusedIsClosedAndAWaiterGetsAFreshOne() {
        let slots = Slots(max: 1)
        var s = Self.pool(max: 1, slots: slots, idle: 1)
        guard case .ready(let c) = s.acquire(slots) else { return }
        let w = Wait()
        _ = s.enqueue(w, reserved: false, slots)
        guard case .close(let closed) = s.release(c, reusable: false, slots) else { Issue.record("kept"); return }
        #expect(closed === c && slots.used == 0)
        // Its channel closes: a slot is free and someone waits, so a connection is opened.
        #expect(Self.names(s.connectionClosed(c, slots)) == ["connect"])
        #expect(slots.used == 1 && s.open == 1)
    }

    @Test func dispatchServesWaitersFromIdleConnectionsFirst() {
        let slots = Slots(max: 3)
        var s = Self.pool(max: 3, slots: slots, idle: 2)
        let waiters = [Wait(), Wait(), Wait()]
        // Slots are free but others wait first: each queues, then dispatch serves them.
        for w in waiters { _ = s.enqueue(w, reserved: false, slots) }
        #expect(s.idle.isEmpty)
        #expect(s.open == 3 && s.connecting == 1 && slots.used == 3)
    }

    @Test func shutdownClosesIdleConnectionsAndFailsWaiters() {
        let slots = Slots(max: 1)
        var s = Self.pool(max: 1, slots: slots, idle: 1)
        guard case .ready(let busy) = s.acquire(slots) else { return }
        _ = s.release(busy, reusable: true, slots)
        _ = s.acquire(slots)  // takes it again
        let w = Wait()
        _ = s.enqueue(w, reserved: false, slots)
        #expect(Self.names(s.shutdown()) == ["fail"])
        // A connection released after the shutdown is closed.
        guard case .close = s.release(busy, reusable: true, slots) else { Issue.record("kept after shutdown"); return }
        #expect(slots.used == 0)
    }

    @Test func aConnectionOpenedAfterShutdownIsClosed() {
        let slots = Slots(max: 1)
        var s = State(maxConnections: 1)
        guard case .queue(let reserved) = s.acquire(slots) else { return }
        #expect(Self.names(s.enqueue(Wait(), reserved: reserved, slots)) == ["connect"])
        #expect(Self.names(s.shutdown()) == ["fail"])
        guard case .close? = s.connected(Conn(9), slots) else { Issue.record("kept after shutdown"); return }
        #expect(slots.used == 0)
    }

    @Test func aTunnelKeepsItsSlotUntilItEnds() {
        let slots = Slots(max: 1)
        var s = Self.pool(max: 1, slots: slots, idle: 1)
        guard case .ready(let c) = s.acquire(slots) else { return }
        s.detach()
        #expect(s.open == 0 && slots.used == 1)
        let w = Wait()
        _ = s.enqueue(w, reserved: false, slots)
        #expect(Self.names(s.tunnelEnded(c, slots)) == ["connect"])
        #expect(slots.used == 1)
    }
}
