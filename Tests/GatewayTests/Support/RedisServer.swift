import Foundation

/// A real `redis-server` (the Debian package) on a free loopback port, persistence off,
/// for the tests of the Redis rate-limit store. `.ci/run` installs the package.
final class RedisServer: @unchecked Sendable {
    // `process` is set in `start` and only read after; `port` never changes.
    let port: Int
    private var process: Process?

    init(port: Int = freePort()) { self.port = port }

    static var binary: String? {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts it and waits until it answers PING.
    func start() throws {
        if let p = process, p.isRunning, ping() { return }
        guard let bin = Self.binary else {
            throw RawHTTPClient.Failure(description: "redis-server is not installed (apt-get install redis-server)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
            "--protected-mode", "no",
        ]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        guard waitUntil(timeout: 10, { self.ping() }) else { throw RawHTTPClient.Failure(description: "redis-server did not start") }
    }

    func stop() {
        guard let p = process, p.isRunning else { return }
        p.terminate()
        // Stopped once it no longer answers (`waitUntilExit` can wait for a run loop an
        // async test does not run); killed if it does not stop.
        if !waitUntil(timeout: 5, { !self.ping() }) { kill(p.processIdentifier, SIGKILL) }
    }

    /// Sends one inline command and returns the first reply line (or nil when it cannot connect).
    func command(_ text: String) -> String? {
        guard let c = try? RawHTTPClient(port: port, timeout: 2) else { return nil }
        defer { c.close() }
        guard (try? c.send(text + "\r\n")) != nil else { return nil }
        return try? c.readUntil("\r\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func ping() -> Bool { command("PING") == "+PONG" }

    deinit { stop() }
}
