import Atomics
import Foundation
import GatewayAuth
import GatewayConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// The proxy: its event loops, its listeners and the per-loop state behind them.
public final class GatewayServer: Sendable {
    public let group: MultiThreadedEventLoopGroup
    public let shared: SharedState
    private let ownsGroup: Bool
    private let contexts: [ObjectIdentifier: NIOLoopBound<LoopContext>]
    private let listeners = NIOLockedValueBox<[BoundListener]>([])
    private let logger: Logger
    /// Each loop's `ConnectionClock` tick, cancelled before the loops stop.
    private let ticks: [RepeatedTask]
    /// Health checks and outlier housekeeping (`HealthService`), from `start()` to `shutdown()`.
    private let healthTask = NIOLockedValueBox<Task<Void, Never>?>(nil)

    /// A listener that is bound: what the file said, its channel, and the task watching its
    /// certificate files (TLS).
    private struct BoundListener {
        var spec: Listener
        var channel: any Channel
        var watcher: Task<Void, Never>?
        var name: String { spec.name }

        /// Whether `other` (from a new file) is this listener unchanged; else it is bound again.
        func same(as other: Listener) -> Bool {
            spec.name == other.name && spec.address == other.address && spec.tls == other.tls && spec.http2 == other.http2
                && spec.maxConnections == other.maxConnections
        }
    }

    /// `workers` event loops (0 = one per core) unless a group is given.
    /// `environment` holds the HMAC secrets JWT providers name.
    public init(
        snapshot: Snapshot, group: MultiThreadedEventLoopGroup? = nil, logger: Logger = Logger(label: "gateway"),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        let workers = snapshot.server.workers > 0 ? snapshot.server.workers : System.coreCount
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: workers)
        self.ownsGroup = group == nil
        self.logger = logger
        let log = snapshot.file.accessLog
        let writer = log.enabled ? AccessLogWriter(path: log.path) : nil
        if log.enabled && writer == nil { logger.error("cannot open access log \(log.path); access logging is off") }
        shared = SharedState(
            snapshots: SnapshotStore(snapshot), accessLog: writer, auth: AuthRegistry(environment: environment, logger: logger),
            login: LoginRegistry(environment: environment))
        shared.metrics.configVersion(snapshot.version)
        var contexts: [ObjectIdentifier: NIOLoopBound<LoopContext>] = [:]
        var ticks: [RepeatedTask] = []
        let loops = Array(self.group.makeIterator())
        var seeder = SystemRandomNumberGenerator()
        for loop in loops {
            let seed = seeder.next() as UInt64
            let shared = self.shared
            let count = loops.count
            let ctx = try? loop.submit {
                NIOLoopBound(LoopContext(loop: loop, shared: shared, loopCount: count, seed: seed), eventLoop: loop)
            }.wait()
            if let ctx {
                contexts[ObjectIdentifier(loop)] = ctx
                ticks.append(
                    loop.scheduleRepeatedTask(initialDelay: ConnectionClock.interval, delay: ConnectionClock.interval) { _ in
                        ctx.value.clock.tick()
                        ctx.value.flushAccessLog()
                    })
            }
        }
        self.contexts = contexts
        self.ticks = ticks
    }

    /// The addresses bound, by listener name (useful with port 0).
    public var boundAddresses: [String: SocketAddress] {
        listeners.withLockedValue { l in
            var out: [String: SocketAddress] = [:]
            for entry in l { if let a = entry.channel.localAddress { out[entry.name] = a } }
            return out
        }
    }

    /// The upstreams' health checks and outlier housekeeping, for a `ServiceGroup` to run
    /// (the executable's); `start(healthChecks: true)` runs them itself (tests, embedding).
    public func healthService() -> HealthService { HealthService(shared: shared, group: group) }

    /// Binds every listener of the snapshot. Throws when one cannot be bound (exit code 2).
    public func start(healthChecks: Bool = true) async throws {
        let snapshot = shared.snapshots.snapshot
        if healthChecks {
            let service = healthService()
            healthTask.withLockedValue { $0 = Task { try? await service.run() } }
        }
        for listener in snapshot.file.listeners {
            guard HostPort(parsing: listener.address) != nil else { throw BindError(address: listener.address, reason: "not host:port") }
            do {
                let entry = try await bind(listener)
                listeners.withLockedValue { $0.append(entry) }
                logger.info(
                    "listening",
                    metadata: [
                        "listener": "\(listener.name)", "address": "\(entry.channel.localAddress.map { "\($0)" } ?? listener.address)",
                    ])
            } catch {
                throw BindError(address: listener.address, reason: "\(error)")
            }
        }
    }

    public struct BindError: Error, CustomStringConvertible {
        public var address: String
        public var reason: String
        public var description: String { "could not bind \(address): \(reason)" }
    }

    private func bind(_ listener: Listener) async throws -> BoundListener {
        guard let hp = HostPort(parsing: listener.address) else { throw BindError(address: listener.address, reason: "not host:port") }
        let contexts = self.contexts
        let shared = self.shared
        let name = listener.name
        let http2 = listener.http2
        var made: NIOSSLContext?
        var certificates: ListenerCertificates?
        if let tls = listener.tls {
            let loaded = try ListenerCertificates(listener: name, spec: tls)
            made = try loaded.makeContext(http2: http2)
            certificates = loaded
        }
        let sslContext = made
        let limit = listener.maxConnections
        let open = ManagedAtomic(0)
        let rejected = shared.metrics.counter("gateway_connections_rejected_total", [("listener", name)])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                // `max_connections`: one connection over the limit is closed as soon as it is accepted.
                if open.loadThenWrappingIncrement(ordering: .relaxed) >= limit {
                    open.wrappingDecrement(ordering: .relaxed)
                    rejected.increment()
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in open.wrappingDecrement(ordering: .relaxed) }
                return channel.eventLoop.makeCompletedFuture {
                    guard let bound = contexts[ObjectIdentifier(channel.eventLoop)] else {
                        throw ChannelError.ioOnClosedChannel
                    }
                    let loopContext = bound.value
                    let server = shared.snapshots.snapshot.server
                    try Self.configure(
                        channel, loopContext: loopContext, server: server, listener: name, tls: sslContext, http2: http2)
                }
            }
            .bind(host: hp.host, port: hp.port).get()
        return BoundListener(spec: listener, channel: channel, watcher: certificates.map(Self.watch))
    }

    /// A new connection's pipeline: TLS when the listener has it, then HTTP/1.1 (`ProxyHandler`)
    /// or, with `http2`, HTTP/2 when ALPN picks `h2` or a cleartext client starts with its preface.
    static func configure(
        _ channel: any Channel, loopContext: LoopContext, server: ServerSettings, listener: String, tls: NIOSSLContext? = nil,
        http2: Bool = false
    ) throws {
        let ops = channel.pipeline.syncOperations
        let secure = tls != nil
        if let tls { try ops.addHandler(NIOSSLServerHandler(context: tls)) }
        // Requests are parsed and responses serialized by the proxy itself (HTTP1/).
        let http1 = ProxyHandler(loopContext: loopContext, server: server, listenerName: listener, tls: secure)
        guard http2 else { return try ops.addHandler(http1) }
        let bound = NIOLoopBound(loopContext, eventLoop: channel.eventLoop)
        if secure {
            let http1Bound = NIOLoopBound(http1, eventLoop: channel.eventLoop)
            try ops.addHandler(
                ApplicationProtocolNegotiationHandler { result, channel in
                    channel.eventLoop.makeCompletedFuture {
                        if case .negotiated("h2") = result {
                            try HTTP2Connection.configure(channel, loopContext: bound.value, server: server, listener: listener, tls: true)
                        } else {
                            try channel.pipeline.syncOperations.addHandler(http1Bound.value)
                        }
                    }
                })
        } else {
            try ops.addHandler(
                HTTP2PrefaceSniffer(http1: http1) { channel in
                    try HTTP2Connection.configure(channel, loopContext: bound.value, server: server, listener: listener, tls: false)
                })
            try ops.addHandler(http1)
        }
    }

    /// Certificate files are checked every 2 s and swapped when they change (SPEC §2.1),
    /// until the listener closes.
    private static func watch(_ certificates: ListenerCertificates) -> Task<Void, Never> {
        Task {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 2_000_000_000)
                certificates.reloadIfChanged()
            }
        }
    }

    /// Publishes `snapshot` (SPEC §6) and opens or closes listeners to match its file. A
    /// listener whose name or address is new is bound; one that left the file stops
    /// accepting, and its connections finish the request they are on and close; one whose
    /// `tls` or `http2` changed is closed that way and bound again. Returns a message for
    /// each listener that could not be bound (the rest of the snapshot applies).
    public func apply(_ snapshot: Snapshot) async -> [String] {
        // Key stores of new providers start fetching before any request can need them.
        _ = shared.auth.providers(for: snapshot)
        shared.snapshots.publish(snapshot)
        shared.auth.retainOnly(snapshot)
        if shared.draining { return [] }
        let wanted = snapshot.file.listeners
        let removed = listeners.withLockedValue { l -> [BoundListener] in
            let gone = l.filter { entry in !wanted.contains { entry.same(as: $0) } }
            l.removeAll { entry in !wanted.contains { entry.same(as: $0) } }
            return gone
        }
        for entry in removed {
            entry.watcher?.cancel()
            try? await entry.channel.close()
            let name = entry.name
            for (_, bound) in contexts {
                try? await bound.eventLoop.submit { bound.value.clock.forEach { if $0.listenerName == name { $0.quiesce() } } }.get()
            }
            logger.info("listener closed", metadata: ["listener": "\(name)", "address": "\(entry.spec.address)"])
        }
        let present = listeners.withLockedValue { $0 }
        var failures: [String] = []
        for listener in snapshot.file.listeners where !present.contains(where: { $0.same(as: listener) }) {
            guard HostPort(parsing: listener.address) != nil else { continue }
            do {
                let entry = try await bind(listener)
                listeners.withLockedValue { $0.append(entry) }
                logger.info("listening", metadata: ["listener": "\(listener.name)", "address": "\(listener.address)"])
            } catch {
                let message = "listener \(listener.name): could not bind \(listener.address): \(error)"
                logger.error("\(message)")
                failures.append(message)
            }
        }
        return failures
    }

    /// One target of one upstream, summed over the event loops (`GET /upstreams`).
    public struct TargetStatus: Sendable {
        public var upstream: String
        public var url: String
        public var weight: Int
        public var activeRequests: Int
        public var openConnections: Int
        public var idleConnections: Int
        /// Takes traffic: not failing health checks and not ejected.
        public var available = true
        /// `unchecked` (no `health_check`), `unknown` (not probed yet), `healthy`, `unhealthy`.
        public var health = "unchecked"
        /// When the current ejection ends, if the target is ejected now.
        public var ejectedUntil: Date?
        public var timesEjected = 0
        public var totalEjections = 0
        /// Successes over requests in the outlier detector's last interval (nil without
        /// outlier detection or without requests).
        public var successRate: Double?
    }

    /// The upstreams of the current snapshot, in file order, each loop asked on its own thread.
    public func upstreamStatus() async -> [TargetStatus] {
        let snapshot = shared.snapshots.snapshot
        let now = Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds)
        let wallNow = Date()
        var out: [TargetStatus] = []
        for spec in snapshot.upstreams {
            let health = shared.health.health(for: spec)
            let states = health?.detectorStates()
            for (i, t) in spec.targets.enumerated() {
                var status = TargetStatus(
                    upstream: spec.name, url: t.url, weight: t.weight, activeRequests: 0, openConnections: 0, idleConnections: 0)
                if let health, i < health.targets.count {
                    let th = health.targets[i]
                    status.available = th.isAvailable(now: now)
                    if health.healthCheck != nil { status.health = th.check.withLockedValue { $0.status.rawValue } }
                    let until = th.ejectedUntil.load(ordering: .relaxed)
                    if until > now { status.ejectedUntil = wallNow.addingTimeInterval(Double(until - now) / 1e9) }
                    if let states, i < states.count {
                        status.timesEjected = states[i].timesEjected
                        status.totalEjections = states[i].totalEjections
                        status.successRate =
                            states[i].intervalRequests > 0
                            ? Double(states[i].intervalSuccesses) / Double(states[i].intervalRequests) : states[i].lastSuccessRate
                    }
                }
                out.append(status)
            }
        }
        for (_, bound) in contexts {
            let counts: [(String, String, Int, Int, Int)] =
                (try? await bound.eventLoop.submit {
                    let ctx = bound.value
                    _ = ctx.currentSnapshot()  // a loop that served nothing since a reload catches up first
                    return ctx.upstreams.flatMap { u in
                        u.pools.map { p in (u.spec.name, p.key, p.active, p.open, p.idleCount) }
                    }
                }.get()) ?? []
            for (name, url, active, open, idle) in counts {
                guard let i = out.firstIndex(where: { $0.upstream == name && $0.url == url }) else { continue }
                out[i].activeRequests += active
                out[i].openConnections += open
                out[i].idleConnections += idle
            }
        }
        return out
    }

    /// Graceful drain (SPEC §9): stop accepting, close idle connections, let busy ones finish
    /// with `Connection: close`, and return when all are closed or `timeout` passed. The event
    /// loops keep running (other services on them stop next); `shutdown()` ends them.
    public func drain(timeout: TimeAmount) async {
        shared.drainingFlag.store(true, ordering: .relaxed)
        let deadline = NIODeadline.now() + timeout
        // Stop accepting; then every connection is told, on its own loop, to finish.
        await closeListeners()
        for (_, bound) in contexts {
            try? await bound.eventLoop.submit { bound.value.clock.forEach { $0.quiesce() } }.get()
        }
        // Wait (polling each loop's count of HTTP connections) until all are gone or time is up.
        while NIODeadline.now() < deadline {
            var open = 0
            for (_, bound) in contexts {
                open += (try? await bound.eventLoop.submit { bound.value.clock.count }.get()) ?? 0
            }
            if open == 0 { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        logger.warning("drain timeout passed; closing the remaining connections")
    }

    private func closeListeners() async {
        let closing = listeners.withLockedValue { l in
            defer { l.removeAll() }
            return l
        }
        for entry in closing {
            entry.watcher?.cancel()
            try? await entry.channel.close()
        }
    }

    /// Every JWKS a route needs has been fetched once (or failed for good): `/readyz`.
    public var authReady: Bool { shared.auth.isReady(shared.snapshots.snapshot) }

    /// Per JWT provider of the current snapshot: its key store's state (`GET /jwks`).
    public func jwksStatus() -> [(provider: String, status: JWKSStore.Status)] {
        let snapshot = shared.snapshots.snapshot
        return shared.auth.providers(for: snapshot).map { ($0.spec.name, $0.store.status) }
    }

    /// Fetches every provider's keys now (`POST /jwks/refresh`).
    public func refreshJWKS() async {
        let providers = shared.auth.providers(for: shared.snapshots.snapshot)
        await withTaskGroup(of: Void.self) { group in
            for p in providers { group.addTask { await p.store.fetchAndWait() } }
        }
    }

    /// Closes listeners and pools and stops the event loops the server owns.
    public func shutdown() async {
        await closeListeners()
        if let task = healthTask.withLockedValue({ t in
            defer { t = nil }; return t
        }) {
            task.cancel()
            await task.value
        }
        for (_, bound) in contexts {
            try? await bound.eventLoop.submit { bound.value.shutdownPools() }.get()
        }
        for t in ticks { t.cancel() }
        for (_, bound) in contexts {
            try? await bound.eventLoop.submit { bound.value.flushAccessLog() }.get()
        }
        shared.accessLog?.flushSync()
        shared.auth.stopAll()
        shared.login.stopAll()
        if ownsGroup { try? await group.shutdownGracefully() }
    }
}
