import Foundation
import GatewayAdmin
import GatewayConfig
import GatewayProxy
import GatewayReload
import Logging
import NIOCore
import ServiceLifecycle

// The long-lived parts of a running gateway, each a `Service` of one `ServiceGroup`
// (Runner). On a graceful shutdown the group stops them in the reverse order of its list:
// the proxy drains first, then signals, the file watcher, health checks and the admin API
// stop; the event loops close after the group has returned.

/// The listeners: bound when the group starts; on a graceful shutdown, drained (SPEC §9:
/// new connections refused, those in flight finished within `drain_timeout`).
struct ProxyService: Service {
    let server: GatewayServer
    let logger: Logger
    /// Called once the listeners are bound.
    let started: @Sendable () async -> Void

    func run() async throws {
        try await server.start(healthChecks: false)
        await started()
        // Cancelled (another part failed to start): nothing to drain.
        do { try await gracefulShutdown() } catch { return }
        let drain = server.shared.snapshots.snapshot.server.drainTimeoutNanos
        logger.info("draining", metadata: ["timeout": "\(server.shared.snapshots.snapshot.file.server.drainTimeout)"])
        await server.drain(timeout: .nanoseconds(drain))
    }
}

/// Active health checks and outlier housekeeping of every upstream, until the shutdown.
struct HealthChecks: Service {
    let service: HealthService
    func run() async throws {
        try await cancelWhenGracefulShutdown { try await service.run() }
    }
}

/// The admin API (SPEC §5), when the file has `admin`; closed on the shutdown.
struct AdminService: Service {
    let address: HostPort
    let text: String
    let group: any EventLoopGroup
    let token: String?
    let reloader: ConfigReloader
    let server: GatewayServer
    let logger: Logger
    /// Opened when the proxy's listeners are bound: `POST /reload` never races them.
    let gate: StartGate
    /// The port it bound (the demo's lines print it).
    let bound: @Sendable (Int?) async -> Void

    func run() async throws {
        guard await gate.wait() else { return }
        let shared = server.shared
        let admin: AdminServer
        do {
            admin = try await AdminServer.start(
                address: address, group: group, token: token, reloader: reloader, snapshot: { shared.snapshots.snapshot },
                metrics: shared.metrics, server: server, isReady: { !shared.draining })
        } catch {
            logger.error("could not bind the admin API on \(text): \(error)")
            throw error
        }
        logger.info("admin API", metadata: ["address": "\(text)"])
        await bound(admin.port)
        try? await gracefulShutdown()
        await admin.stop()
    }
}

/// Changes to the file are picked up by themselves (SPEC §6); SIGHUP and the admin API
/// remain for when the file system does not report them (some network file systems).
struct ConfigWatcherService: Service {
    let path: String
    let reloader: ConfigReloader
    let logger: Logger
    /// A change seen while the listeners are being bound reloads once they are.
    let gate: StartGate

    func run() async throws {
        let watcher: ConfigWatcher
        do {
            watcher = try ConfigWatcher(path: path) { [reloader, gate] in
                Task {
                    guard await gate.wait() else { return }
                    _ = await reloader.reloadFromFile(trigger: "file change")
                }
            }
        } catch {
            logger.warning("not watching \(path) for changes: \(error); SIGHUP and POST /reload still reload it")
            try? await gracefulShutdown()
            return
        }
        try? await gracefulShutdown()
        watcher.stop()
    }
}

/// SIGHUP reloads; SIGTERM and SIGINT start the group's graceful shutdown. The signals are
/// taken before anything starts (`SignalStream`), so none is lost. It runs until the group
/// stops it (a service that returns before its turn would fail the shutdown).
struct SignalService: Service {
    let signals: AsyncStream<Int32>
    let reloader: ConfigReloader
    let shutdown: @Sendable () async -> Void
    /// Signals wait (in the stream) until the listeners are bound: a SIGHUP never races them.
    let gate: StartGate

    func run() async throws {
        guard await gate.wait() else { return }
        for await signal in signals.cancelOnGracefulShutdown() {
            if signal == SIGHUP {
                _ = await reloader.reloadFromFile(trigger: "SIGHUP")
            } else {
                await shutdown()
            }
        }
    }
}
