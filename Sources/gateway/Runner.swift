import ArgumentParser
import Dispatch
import Foundation
import GatewayAdmin
import GatewayConfig
import GatewayDemo
import GatewayProxy
import Logging
import NIOCore
import NIOPosix

/// Runs the gateway until SIGTERM/SIGINT: binds listeners and the admin API, reloads on SIGHUP,
/// drains on stop (SPEC §9).
struct Runner {
    var configPath: String
    var demo: Bool

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "gateway")
        logger.logLevel = .info

        let loaded = ConfigLoader.load(path: configPath)
        for d in loaded.diagnostics {
            FileHandle.standardError.write(Data("\(configPath):\(d)\n".utf8))
        }
        guard let snapshot = loaded.snapshot else { throw ExitStatus.badConfig }

        // Signals are taken before anything starts so that none is lost.
        let signals = SignalStream.make([SIGTERM, SIGINT, SIGHUP])

        let server = GatewayServer(snapshot: snapshot, logger: logger)
        var demoServices: GatewayDemo.Demo.Services?
        if demo {
            do {
                demoServices = try await GatewayDemo.Demo.start(group: server.group)
            } catch {
                logger.error("could not start the demo services: \(error)")
                await server.shutdown()
                throw ExitStatus.cannotStart
            }
        }
        do {
            try await server.start()
        } catch {
            logger.error("\(error)")
            await demoServices?.stop()
            await server.shutdown()
            throw ExitStatus.cannotStart
        }
        var admin: AdminServer?
        if let a = snapshot.file.admin, let hp = HostPort(parsing: a.address) {
            do {
                admin = try await AdminServer.start(
                    address: hp, group: server.group, isReady: { [shared = server.shared] in !shared.draining })
                logger.info("admin API", metadata: ["address": "\(a.address)"])
            } catch {
                logger.error("could not bind the admin API on \(a.address): \(error)")
                await demoServices?.stop()
                await server.shutdown()
                throw ExitStatus.cannotStart
            }
        }
        if demo {
            let addr = server.boundAddresses.values.first
            let base = "http://127.0.0.1:\(addr?.port ?? 8080)"
            let adminBase = "http://127.0.0.1:\(admin?.port ?? 9901)"
            print("gateway demo is running. Try:\n")
            for line in GatewayDemo.Demo.curlLines(base: base, admin: adminBase) { print("  " + line) }
            print("\nStop with Ctrl-C.")
            fflush(nil)
        }

        for await signal in signals {
            if signal == SIGHUP {
                let next = ConfigLoader.load(path: configPath)
                for d in next.diagnostics { logger.warning("\(configPath):\(d)") }
                if let snap = next.snapshot {
                    let current = server.shared.snapshots.snapshot.file
                    if snap.file.listeners != current.listeners || snap.file.admin != current.admin
                        || snap.file.server.workers != current.server.workers || snap.file.accessLog != current.accessLog
                    {
                        logger.warning(
                            "listeners, admin, server.workers and access_log take effect at the next start; the rest is applied now")
                    }
                    server.shared.snapshots.publish(snap)
                    logger.info("config reloaded", metadata: ["version": "\(snap.version)"])
                } else {
                    logger.error("config not reloaded: \(next.errors.count) error(s); the old config keeps serving")
                }
                continue
            }
            logger.info("draining", metadata: ["timeout": "\(server.shared.snapshots.snapshot.file.server.drainTimeout)"])
            await server.drain(timeout: .nanoseconds(server.shared.snapshots.snapshot.server.drainTimeoutNanos))
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
