import Foundation

/// A real `redis-server` (the Debian package) on a free loopback port, persistence off,
/// for the tests of the Redis rate-limit store. `.ci/run` installs the package.
final class RedisServer: @unchecked Sendable {
    // `process` is set in `start` and `stop`, which a test calls in turn from its own task;
    // `port` never changes.
    let port: Int
    private var process: ChildProcess?

    init(port: Int = freePort()) { self.port = port }

    static var binary: String? {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts it and waits until it answers PING.
    func start() async throws {
        if let p = process, p.isRunning, ping() { return }
        guard let bin = Self.binary else {
            throw RawHTTPClient.Failure(description: "redis-server is not installed (apt-get install redis-server)")
        }
        process = try await ChildProcess.start(
            bin,
            [
                "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile",
                "", "--protected-mode", "no",
            ])
        guard await waitUntilAsync(timeout: 10, { self.ping() }) else {
            throw RawHTTPClient.Failure(description: "redis-server did not start")
        }
    }

    /// Stopped once it no longer answers; killed if it does not stop.
    func stop() {
        guard let p = process, p.isRunning else { return }
        p.signal(SIGTERM)
        if !waitUntil(timeout: 5, { !self.ping() }) { p.signal(SIGKILL) }
    }

    /// Sends one inline command and returns the first reply line (or nil when it cannot connect).
    func command(_ text: String) -> String? {
        guard let c = try? RawHTTPClient(port: port, timeout: 2) else { return nil }
        defer { c.close() }
        guard (try? c.send(text + "\r\n")) != nil else { return nil }
        return try? c.readUntil("\r\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func ping() -> Bool { command("PING") == "+PONG" }

    deinit { if let p = process, p.isRunning { kill(p.pid, SIGKILL) } }
}
