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

/// Runs the gateway until SIGTERM/SIGINT: binds listeners and the admin API, reloads on SIGHUP,
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
        do {
            try await server.start()
        } catch {
            logger.error("\(error)")
            await demoServices?.stop()
            await server.shutdown()
            throw ExitStatus.cannotStart
        }
        // Changes to the file are picked up by themselves (SPEC §6); SIGHUP and the admin API
        // remain for when the file system does not report them (some network file systems).
        var watcher: ConfigWatcher?
        do {
            watcher = try ConfigWatcher(path: configPath) { Task { _ = await reloader.reloadFromFile(trigger: "file change") } }
        } catch {
            logger.warning("not watching \(configPath) for changes: \(error); SIGHUP and POST /reload still reload it")
        }
        var admin: AdminServer?
        if let a = snapshot.file.admin, let hp = HostPort(parsing: a.address) {
            do {
                let token = a.tokenEnv.flatMap { environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
                admin = try await AdminServer.start(
                    address: hp, group: server.group, token: token, reloader: reloader,
                    snapshot: { [shared = server.shared] in shared.snapshots.snapshot }, metrics: server.shared.metrics, server: server,
                    isReady: { [shared = server.shared] in !shared.draining })
                logger.info("admin API", metadata: ["address": "\(a.address)"])
            } catch {
                logger.error("could not bind the admin API on \(a.address): \(error)")
                await demoServices?.stop()
                await server.shutdown()
                throw ExitStatus.cannotStart
            }
        }
        if demo {
            // The lines below include JWT routes: print them once the demo's keys are in.
            for _ in 0..<100 where !server.authReady { try? await Task.sleep(nanoseconds: 50_000_000) }
            let listeners = server.shared.snapshots.snapshot.file.listeners
            let bound = server.boundAddresses
            let plain = listeners.first { $0.tls == nil }.flatMap { bound[$0.name] }
            let secure = listeners.first { $0.tls != nil }.flatMap { bound[$0.name] }
            let base = "http://127.0.0.1:\(plain?.port ?? 8080)"
            let tlsBase = "https://localhost:\(secure?.port ?? 8443)"
            let adminBase = "http://127.0.0.1:\(admin?.port ?? 9901)"
            print("gateway demo is running. Try:\n")
            for line in GatewayDemo.Demo.curlLines(base: base, tlsBase: tlsBase, admin: adminBase) { print("  " + line) }
            print("\nStop with Ctrl-C.")
            fflush(nil)
        }

        for await signal in signals {
            if signal == SIGHUP {
                _ = await reloader.reloadFromFile(trigger: "SIGHUP")
                continue
            }
            logger.info("draining", metadata: ["timeout": "\(server.shared.snapshots.snapshot.file.server.drainTimeout)"])
            await server.drain(timeout: .nanoseconds(server.shared.snapshots.snapshot.server.drainTimeoutNanos))
            watcher?.stop()
            // Everything else on the event loops stops before the loops themselves.
            await admin?.stop()
            await demoServices?.stop()
            await server.shutdown()
            logger.info("stopped")
            return
        }
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
