import Foundation
import GatewayConfig
import GatewayDemo
import GatewayProxy
import NIOCore
import NIOPosix

/// A gateway running in this process on an ephemeral port, in front of demo services.
/// The config is a JSON template: `@UP0@`, `@UP1@`… are the demo services' URLs.
final class Harness: Sendable {
    let server: GatewayServer
    let services: [DemoService]
    let group: MultiThreadedEventLoopGroup
    let port: Int

    static func start(
        services count: Int = 1, workers: Int = 1, environment: [String: String] = [:], _ template: String
    ) async throws -> Harness {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var services: [DemoService] = []
        for i in 0..<count {
            services.append(try await DemoService.start(name: "svc-\(i)", port: 0, group: group))
        }
        var text = template
        for (i, s) in services.enumerated() { text = text.replacingOccurrences(of: "@UP\(i)@", with: s.url) }
        let result = ConfigLoader.load(bytes: Array(text.utf8), source: "test.json")
        guard let snapshot = result.snapshot else {
            throw RawHTTPClient.Failure(description: "invalid test config: \(result.errors)")
        }
        let server = GatewayServer(snapshot: snapshot, environment: environment)
        try await server.start()
        guard let port = server.boundAddresses.values.first?.port else {
            throw RawHTTPClient.Failure(description: "no listener bound")
        }
        return Harness(server: server, services: services, group: group, port: port)
    }

    init(server: GatewayServer, services: [DemoService], group: MultiThreadedEventLoopGroup, port: Int) {
        self.server = server
        self.services = services
        self.group = group
        self.port = port
    }

    func stop() async {
        await server.shutdown()
        for s in services { await s.stop() }
        try? await group.shutdownGracefully()
    }
}

/// A minimal config: one listener on an ephemeral port, no access log, the given parts.
func config(server: String = "{}", upstreams: String, routes: String) -> String {
    """
    { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
      "server": \(server),
      "upstreams": \(upstreams),
      "routes": \(routes),
      "access_log": { "enabled": false } }
    """
}

/// The `gateway` executable built next to the tests.
func gatewayBinary() -> URL {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("gateway"),
        Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("gateway"),
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/gateway"),
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[2]
}

/// The repository root (for gateway.json and examples/).
func repositoryRoot() -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
}

/// A gateway process started from the built binary, for what only a process shows: signals, RSS, exit codes.
final class GatewayProcess: Sendable {
    let process: ChildProcess
    let port: Int
    /// The port `@ADMIN@` stood for in the config.
    let adminPort: Int
    let directory: URL
    /// The config file as the test sees it.
    let configPath: String

    /// Everything the process printed so far (stdout and stderr) contains `text`.
    func printed(_ text: String) -> Bool { process.output.contains(text) }

    /// Writes the config (`@PORT@` and `@ADMIN@` become free ports), starts `gateway run` on
    /// it, and returns once the listener accepts connections. With `diskBytes`, the config lives
    /// on a tmpfs of that size mounted for the gateway alone (a user and mount namespace of its
    /// own, `unshare -rm`), so the test can fill the disk under it; `configPath` is then where
    /// the test sees that file.
    static func start(configTemplate: String, diskBytes: Int? = nil) async throws -> GatewayProcess {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let port = freePort()
        let adminPort = freePort()
        let text = configTemplate.replacingOccurrences(of: "@PORT@", with: String(port))
            .replacingOccurrences(of: "@ADMIN@", with: String(adminPort))
        let path = directory.appendingPathComponent("gateway.json")
        try text.write(to: path, atomically: true, encoding: .utf8)
        let process: ChildProcess
        var configPath = path.path
        if let diskBytes {
            let disk = directory.appendingPathComponent("disk")
            try FileManager.default.createDirectory(at: disk, withIntermediateDirectories: true)
            let script =
                #"mount -t tmpfs -o size="$0" tmpfs "$1/disk" && cp "$1/gateway.json" "$1/disk/" && exec "$2" run --config "$1/disk/gateway.json""#
            process = try await ChildProcess.start(
                "/usr/bin/unshare", ["-rm", "sh", "-c", script, String(diskBytes), directory.path, gatewayBinary().path])
            configPath = "/proc/\(process.pid)/root" + disk.appendingPathComponent("gateway.json").path
        } else {
            process = try await ChildProcess.start(gatewayBinary().path, ["run", "--config", path.path])
        }
        let gateway = GatewayProcess(process: process, port: port, adminPort: adminPort, directory: directory, configPath: configPath)
        guard await waitUntilAsync(timeout: 20, { (try? RawHTTPClient(port: port)) != nil }) else {
            throw RawHTTPClient.Failure(description: "gateway process did not start listening: \(process.output)")
        }
        return gateway
    }

    private init(process: ChildProcess, port: Int, adminPort: Int, directory: URL, configPath: String) {
        self.process = process
        self.port = port
        self.adminPort = adminPort
        self.directory = directory
        self.configPath = configPath
    }

    var pid: Int32 { process.pid }

    /// Resident set size in KiB, from /proc.
    var rssKiB: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return 0
    }

    func signal(_ sig: Int32) { process.signal(sig) }

    /// Waits for the process to exit; nil when it is still running after `timeout`.
    func waitForExit(timeout: Double) async -> Int32? { await process.waitForExit(timeout: timeout) }

    deinit {
        if process.isRunning { kill(process.pid, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Runs `body` against a gateway started from `template`, and always stops it.
func withGateway(
    services: Int = 1, environment: [String: String] = [:], _ template: String, _ body: (Harness) async throws -> Void
) async throws {
    let h = try await Harness.start(services: services, environment: environment, template)
    do {
        try await body(h)
    } catch {
        await h.stop()
        throw error
    }
    await h.stop()
}

extension GatewayServer {
    /// Every JWT provider has fetched its keys (or failed for good). `authReady` is not the
    /// same: it also turns true once `jwks_initial_fetch_timeout` has passed without keys.
    var keysFetched: Bool { jwksStatus().allSatisfy { $0.status.ready } }
}
