import Atomics
import GatewayAuth
import GatewayConfig
import NIOConcurrencyHelpers
import NIOCore

/// The current snapshot, swapped atomically on reload. Readers compare a generation number
/// (one relaxed atomic load) and take the lock only when it changed.
public final class SnapshotStore: Sendable {
    private let box: NIOLockedValueBox<(Snapshot, Int)>
    private let gen = ManagedAtomic<Int>(0)

    public init(_ initial: Snapshot) {
        box = NIOLockedValueBox((initial, 0))
    }

    @inline(__always)
    var generation: Int { gen.load(ordering: .acquiring) }

    func current() -> (Snapshot, Int) { box.withLockedValue { $0 } }

    public var snapshot: Snapshot { box.withLockedValue { $0.0 } }

    /// Publishes a new snapshot; requests already running keep the one they pinned.
    public func publish(_ snapshot: Snapshot) {
        box.withLockedValue { value in
            value = (snapshot, value.1 + 1)
            gen.store(value.1, ordering: .releasing)
        }
    }
}

/// State shared by every loop: the snapshot, the drain flag, the access log.
public final class SharedState: Sendable {
    public let snapshots: SnapshotStore
    let drainingFlag = ManagedAtomic<Bool>(false)
    public let accessLog: AccessLogWriter?
    public let metrics: GatewayMetrics
    /// JWT providers and their key stores, shared by every loop.
    public let auth: AuthRegistry
    /// Browser login providers (endpoints, cookie keys, token calls).
    public let login: LoginRegistry
    /// Rate-limit counters (the memory store), kept across reloads.
    public let limiter = MemoryLimiter()
    /// Health checks and outlier ejections of each upstream's targets, kept across reloads.
    public let health: HealthRegistry
    /// The gateway-wide counts behind `max_connections_per_target` and `max_pending_requests`.
    let limits = LimitRegistry()

    public init(
        snapshots: SnapshotStore, accessLog: AccessLogWriter?, metrics: GatewayMetrics = GatewayMetrics(),
        auth: AuthRegistry = AuthRegistry(), login: LoginRegistry = LoginRegistry(environment: [:])
    ) {
        self.login = login
        self.snapshots = snapshots
        self.auth = auth
        self.accessLog = accessLog
        self.metrics = metrics
        self.health = HealthRegistry(metrics: metrics)
    }

    public var draining: Bool { drainingFlag.load(ordering: .relaxed) }
}
