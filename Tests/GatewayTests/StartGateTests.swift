import GatewayReload
import Testing

/// The gate reloads wait behind until the listeners are bound.
@Suite struct StartGateTests {
    @Test func waitersGoOnlyOnceItOpens() async {
        let gate = StartGate()
        let order = Order()
        async let first: Bool = {
            let opened = await gate.wait()
            await order.note("waiter")
            return opened
        }()
        // The waiter cannot pass before `open`, however long it is given.
        for _ in 0..<50 { await Task.yield() }
        await order.note("open")
        await gate.open()
        #expect(await first)
        #expect(await order.events == ["open", "waiter"])
        #expect(await gate.wait())  // open stays open
    }

    @Test func aCancelledWaiterStopsWaitingWithoutTheGate() async {
        let gate = StartGate()
        let task = Task { await gate.wait() }
        for _ in 0..<10 { await Task.yield() }
        task.cancel()
        #expect(await task.value == false)
    }

    actor Order {
        var events: [String] = []
        func note(_ e: String) { events.append(e) }
    }
}
