import Atomics
import GatewayConfig
import NIOConcurrencyHelpers
import NIOCore

/// `max_connections_per_target` as a limit of the gateway, not of each event loop: the
/// connections to one target that carry a request (or a WebSocket tunnel) or are being
/// opened for one, counted by every loop in one atomic, as Envoy's circuit breakers count
/// across workers. The pools stay per loop; a loop that finds the count at the limit queues
/// the request and is woken when another loop frees a slot.
final class TargetLimits: Sendable {
    let url: String
    /// Connections in use or being opened, in every loop.
    private let inUse = ManagedAtomic<Int>(0)
    /// Pools whose waiters found the count at the limit: each is woken (on its own loop) when
    /// a slot frees. `waitingCount` lets `release` skip the lock when nobody waits.
    private let waiting = NIOLockedValueBox<[ObjectIdentifier: NIOLoopBound<TargetPool>]>([:])
    private let waitingCount = ManagedAtomic<Int>(0)

    init(url: String) { self.url = url }

    var current: Int { inUse.load(ordering: .sequentiallyConsistent) }

    /// Takes one slot when fewer than `max` are in use.
    @inline(__always)
    func tryReserve(max: Int) -> Bool {
        // Sequentially consistent with `waitForSlot`'s count and `release`'s decrement: a
        // waiter that registered and then looks again cannot miss a slot freed in between.
        var now = inUse.load(ordering: .sequentiallyConsistent)
        while now < max {
            let (exchanged, original) = inUse.weakCompareExchange(
                expected: now, desired: now + 1, successOrdering: .acquiring, failureOrdering: .relaxed)
            if exchanged { return true }
            now = original
        }
        return false
    }

    /// Gives a slot back, and wakes the pools that wait for one.
    @inline(__always)
    func release() {
        inUse.wrappingDecrement(ordering: .sequentiallyConsistent)
        if waitingCount.load(ordering: .sequentiallyConsistent) > 0 { wakeWaiting() }
    }

    /// `pool` (on its loop) has waiters the limit holds back.
    func waitForSlot(_ pool: TargetPool) {
        let bound = NIOLoopBound(pool, eventLoop: pool.loop)
        waiting.withLockedValue { w in
            if w.updateValue(bound, forKey: ObjectIdentifier(pool)) == nil {
                waitingCount.wrappingIncrement(ordering: .sequentiallyConsistent)
            }
        }
    }

    private func wakeWaiting() {
        let pools = waiting.withLockedValue { w -> [NIOLoopBound<TargetPool>] in
            let all = Array(w.values)
            w.removeAll()
            waitingCount.store(0, ordering: .sequentiallyConsistent)
            return all
        }
        for bound in pools {
            bound.eventLoop.execute { bound.value.dispatch() }
        }
    }
}

/// The shared counts of every upstream, by name and target URL, kept across reloads (a
/// request in flight when the file changes gives its slot back to the same counter).
final class LimitRegistry: Sendable {
    final class Upstream: Sendable {
        /// Requests waiting for a connection to any target of the upstream, in every loop
        /// (`max_pending_requests`).
        let pending: ManagedAtomic<Int>
        let targets: [TargetLimits]
        var waiting: Int { pending.load(ordering: .relaxed) }
        init(pending: ManagedAtomic<Int>, targets: [TargetLimits]) {
            self.pending = pending
            self.targets = targets
        }
    }

    private let state = NIOLockedValueBox<[String: Upstream]>([:])

    func limits(for spec: UpstreamSpec) -> Upstream {
        state.withLockedValue { byName in
            let old = byName[spec.name]
            if let old, old.targets.map(\.url) == spec.targets.map(\.url) { return old }
            let kept = Dictionary((old?.targets ?? []).map { ($0.url, $0) }, uniquingKeysWith: { a, _ in a })
            let u = Upstream(
                pending: old?.pending ?? ManagedAtomic(0), targets: spec.targets.map { kept[$0.url] ?? TargetLimits(url: $0.url) })
            byName[spec.name] = u
            return u
        }
    }
}
