import ArgumentParser
import Dispatch
import Foundation
import GatewayAdmin
import GatewayConfig
import GatewayDemo
import GatewayProxy
import GatewayReload
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Runs the gateway until SIGTERM/SIGINT: its parts (`Services.swift`) in one `ServiceGroup`
/// that binds the listeners and the admin API, reloads on SIGHUP and file changes, and
/// drains on stop (SPEC §9).
struct Runner {
    var configPath: String
    var demo: Bool
    /// The variable `gateway.json`'s demo login reads its cookie key from.
    static let demoCookieSecretEnv = "GATEWAY_COOKIE_SECRET"

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "gateway")
        logger.logLevel = .info

        var environment = ProcessInfo.processInfo.environment
        if demo && (environment[Self.demoCookieSecretEnv] ?? "").isEmpty {
            // The demo's browser login needs a cookie key; a fresh one per run (sessions end
            // with the process). A real deployment sets its own.
            var rng = SystemRandomNumberGenerator()
            environment[Self.demoCookieSecretEnv] = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }
                .joined()
        }
        let fileBytes = FileManager.default.contents(atPath: configPath).map { Array($0) }
        let loaded =
            fileBytes.map { ConfigLoader.load(bytes: $0, source: configPath, environment: environment) }
            ?? ConfigLoader.load(path: configPath, environment: environment)
        for d in loaded.diagnostics {
            FileHandle.standardError.write(Data("\(configPath):\(d)\n".utf8))
        }
        guard let snapshot = loaded.snapshot, let fileBytes else { throw ExitStatus.badConfig }

        // Signals are taken before anything starts so that none is lost.
        let signals = SignalStream.make([SIGTERM, SIGINT, SIGHUP])

        // The demo services come first: the gateway fetches the demo identity provider's keys
        // as soon as it exists.
        var demoServices: GatewayDemo.Demo.Services?
        if demo {
            do {
                demoServices = try await GatewayDemo.Demo.start()
            } catch {
                logger.error("could not start the demo services: \(error)")
                throw ExitStatus.cannotStart
            }
        }
        let server = GatewayServer(snapshot: snapshot, logger: logger, environment: environment)
        let reloader = ConfigReloader(
            path: configPath, initialBytes: fileBytes, version: loaded.version, server: server, logger: logger,
            environment: environment)
        let admin = snapshot.file.admin.flatMap { a in HostPort(parsing: a.address).map { (a, $0) } }
        let banner = StartupBanner(demo: demo, server: server, expectsAdmin: admin != nil)
        let shutdown = GroupHandle()
        let gate = StartGate()

        // Stopped in reverse order on a graceful shutdown: the proxy drains first.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: HealthChecks(service: server.healthService()))
        ]
        if let (a, hp) = admin {
            let token = a.tokenEnv.flatMap { environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
            services.append(
                .init(
                    service: AdminService(
                        address: hp, text: a.address, group: server.group, token: token, reloader: reloader, server: server, logger: logger,
                        gate: gate, bound: { await banner.adminBound($0) })))
        }
        services += [
            .init(
                service: ConfigWatcherService(path: configPath, reloader: reloader, logger: logger, gate: gate),
                successTerminationBehavior: .ignore),
            .init(
                service: SignalService(
                    signals: signals, reloader: reloader, shutdown: { await shutdown.triggerGracefulShutdown() }, gate: gate),
                successTerminationBehavior: .ignore),
            .init(
                service: ProxyService(
                    server: server, logger: logger,
                    started: {
                        await gate.open()
                        await banner.proxyStarted()
                    }),
                successTerminationBehavior: .gracefullyShutdownGroup),
        ]
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: logger))
        await shutdown.set(group)
        do {
            try await group.run()
        } catch {
            logger.error("\(error)")
            await demoServices?.stop()
            await server.shutdown()
            throw ExitStatus.cannotStart
        }
        // Everything else on the event loops has stopped; the loops go last.
        await demoServices?.stop()
        await server.shutdown()
        logger.info("stopped")
    }
}

/// The group, for the signal service to shut it down (it exists only after its services).
actor GroupHandle {
    private var group: ServiceGroup?
    func set(_ g: ServiceGroup) { group = g }
    func triggerGracefulShutdown() async { await group?.triggerGracefulShutdown() }
}

/// `gateway demo`'s lines to try, printed once the listeners (and the admin API) are up and
/// the demo identity provider's keys are in.
actor StartupBanner {
    let demo: Bool
    let server: GatewayServer
    let expectsAdmin: Bool
    private var proxyUp = false
    private var adminPort: Int??
    private var printed = false

    init(demo: Bool, server: GatewayServer, expectsAdmin: Bool) {
        self.demo = demo
        self.server = server
        self.expectsAdmin = expectsAdmin
    }

    func proxyStarted() async {
        proxyUp = true
        await printIfReady()
    }

    func adminBound(_ port: Int?) async {
        adminPort = .some(port)
        await printIfReady()
    }

    private func printIfReady() async {
        guard demo, !printed, proxyUp, !expectsAdmin || adminPort != nil else { return }
        printed = true
        // The lines below include JWT routes: print them once the demo's keys are in.
        for _ in 0..<100 where !server.authReady { try? await Task.sleep(nanoseconds: 50_000_000) }
        let listeners = server.shared.snapshots.snapshot.file.listeners
        let bound = server.boundAddresses
        let plain = listeners.first { $0.tls == nil }.flatMap { bound[$0.name] }
        let secure = listeners.first { $0.tls != nil }.flatMap { bound[$0.name] }
        let base = "http://127.0.0.1:\(plain?.port ?? 8080)"
        let tlsBase = "https://localhost:\(secure?.port ?? 8443)"
        let adminBase = "http://127.0.0.1:\((adminPort ?? nil) ?? 9901)"
        print("gateway demo is running. Try:\n")
        for line in GatewayDemo.Demo.curlLines(base: base, tlsBase: tlsBase, admin: adminBase) { print("  " + line) }
        print("\nStop with Ctrl-C.")
        fflush(nil)
    }
}

/// POSIX signals as an async sequence (the default action of each is turned off).
enum SignalStream {
    static func make(_ numbers: [Int32]) -> AsyncStream<Int32> {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        let queue = DispatchQueue(label: "gateway.signals")
        var sources: [any DispatchSourceSignal] = []
        for n in numbers {
            signal(n, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: n, queue: queue)
            source.setEventHandler(handler: { @Sendable in continuation.yield(n) })
            source.resume()
            sources.append(source)
        }
        let keep = SourceBox(sources)
        continuation.onTermination = { @Sendable _ in keep.cancel() }
        return stream
    }

    /// Keeps the signal sources alive as long as the stream.
    final class SourceBox: Sendable {
        // Only read in `cancel()`, after construction: the array itself is never mutated.
        nonisolated(unsafe) let sources: [any DispatchSourceSignal]
        init(_ s: [any DispatchSourceSignal]) { sources = s }
        func cancel() { for s in sources { s.cancel() } }
    }
}
