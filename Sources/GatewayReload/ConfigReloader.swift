import Foundation
import GatewayConfig
import GatewayProxy
import Logging

/// Every way the config changes while the gateway runs goes through here, one at a time
/// (SPEC §6): SIGHUP, `POST /reload`, `PUT /config`. A reload reads the file, validates and
/// compiles it, and publishes the snapshot atomically; an invalid file changes nothing and
/// is kept as `lastError`. A file whose bytes did not change is not applied again.
public actor ConfigReloader {
    public enum Outcome: Sendable {
        /// `millis`: reading aside, how long parsing, validating, compiling and publishing took.
        case applied(version: String, millis: Double)
        case unchanged(version: String)
        case invalid([Diagnostic])
    }

    /// What `GET /config` shows of a failed reload.
    public struct Failure: Sendable {
        public var at: Date
        public var errors: [Diagnostic]
    }

    public let path: String
    private let server: GatewayServer
    private let logger: Logger
    private let environment: [String: String]
    private(set) var version: String
    private(set) var loadedAt: Date
    private(set) var configText: [UInt8]
    public private(set) var lastError: Failure?

    /// `initial` is the load the gateway started with, `bytes` the file it came from.
    public init(
        path: String, initialBytes bytes: [UInt8], version: String, server: GatewayServer, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.path = path
        self.server = server
        self.logger = logger
        self.environment = environment
        self.version = version
        self.loadedAt = Date()
        self.configText = bytes
    }

    /// Re-reads the file (SIGHUP, `POST /reload`, a change seen on disk).
    public func reloadFromFile(trigger: String) async -> Outcome {
        guard let data = FileManager.default.contents(atPath: path) else {
            return fail([Diagnostic(path: "", message: "\(path) cannot be read")], trigger: trigger)
        }
        return await apply(Array(data), trigger: trigger)
    }

    /// `POST /config/validate`: the errors `bytes` would give, nothing applied.
    public func validate(_ bytes: [UInt8]) -> [Diagnostic] {
        ConfigLoader.load(bytes: bytes, source: path, environment: environment).errors
    }

    /// `PUT /config`: validates; when valid, writes the file atomically (a temp file in the
    /// same directory, fsync, rename) and applies it. When invalid, nothing changes.
    public func replace(with bytes: [UInt8]) async -> Outcome {
        if ConfigLoader.version(of: bytes) == version { return .unchanged(version: version) }
        let started = DispatchTime.now().uptimeNanoseconds
        let result = ConfigLoader.load(bytes: bytes, source: path, environment: environment)
        guard let snapshot = result.snapshot else { return .invalid(result.errors) }
        do {
            try Self.writeAtomically(bytes, to: path)
        } catch {
            let why = Diagnostic(path: "", message: "the file could not be written: \(error)")
            return .invalid([why])
        }
        return await publish(snapshot, bytes: bytes, version: result.version, trigger: "PUT /config", started: started)
    }

    /// What `GET /config` answers: version, load time, source, the config itself, last error.
    public func describe() -> [UInt8] {
        var out = "{\"version\":\(jsonString(version)),\"loaded_at\":\(jsonString(Self.timestamp(loadedAt))),"
        out += "\"source\":\(jsonString((path as NSString).lastPathComponent)),\"config\":"
        var bytes = Array(out.utf8)
        // The file as applied: valid JSON. Tokens and secrets are named by environment
        // variable; the one secret a file may hold, a password in a redis:// URL, is masked.
        bytes += Self.redacted(configText)
        var tail = ",\"last_error\":"
        if let e = lastError {
            tail += "{\"at\":\(jsonString(Self.timestamp(e.at))),\"errors\":\(Self.errorsJSON(e.errors))}"
        } else {
            tail += "null"
        }
        tail += "}"
        bytes += Array(tail.utf8)
        return bytes
    }

    /// `redis://user:password@host` → `redis://user:***@host`, wherever it appears.
    static func redacted(_ text: [UInt8]) -> [UInt8] {
        let s = String(decoding: text, as: UTF8.self)
        guard s.contains("redis://") else { return text }
        var out = ""
        var rest = Substring(s)
        while let r = rest.range(of: "redis://") {
            out += rest[..<r.upperBound]
            rest = rest[r.upperBound...]
            let end = rest.firstIndex { $0 == "\"" || $0 == "/" || $0 == " " } ?? rest.endIndex
            if let at = rest[..<end].lastIndex(of: "@") {
                let userinfo = rest[..<at]
                if let colon = userinfo.firstIndex(of: ":") {
                    out += userinfo[...colon] + "***"
                } else {
                    out += "***"
                }
                rest = rest[at...]
            }
        }
        out += rest
        return Array(out.utf8)
    }

    // MARK: internals

    private func apply(_ bytes: [UInt8], trigger: String) async -> Outcome {
        // Unchanged bytes are recognised by their hash, before any parsing.
        if ConfigLoader.version(of: bytes) == version {
            lastError = nil
            return .unchanged(version: version)
        }
        let started = DispatchTime.now().uptimeNanoseconds
        let result = ConfigLoader.load(bytes: bytes, source: path, environment: environment)
        guard let snapshot = result.snapshot else { return fail(result.errors, trigger: trigger) }
        for w in result.warnings { logger.warning("\(path):\(w)") }
        return await publish(snapshot, bytes: bytes, version: result.version, trigger: trigger, started: started)
    }

    private func publish(_ snapshot: Snapshot, bytes: [UInt8], version: String, trigger: String, started: UInt64) async -> Outcome {
        let current = server.shared.snapshots.snapshot.file
        if snapshot.file.admin != current.admin || snapshot.file.server.workers != current.server.workers
            || snapshot.file.accessLog != current.accessLog
        {
            logger.warning("admin, server.workers and access_log take effect at the next start; the rest is applied now")
        }
        for failure in await server.apply(snapshot) { logger.error("\(failure)") }
        server.shared.metrics.reloaded(result: "applied")
        server.shared.metrics.configVersion(version)
        self.version = version
        self.loadedAt = Date()
        self.configText = bytes
        self.lastError = nil
        let millis = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
        logger.info(
            "config reloaded", metadata: ["version": "\(version)", "trigger": "\(trigger)", "ms": "\((millis * 10).rounded() / 10)"])
        return .applied(version: version, millis: millis)
    }

    private func fail(_ errors: [Diagnostic], trigger: String) -> Outcome {
        lastError = Failure(at: Date(), errors: errors)
        server.shared.metrics.reloaded(result: "invalid")
        for e in errors { logger.error("\(path):\(e)") }
        logger.error(
            "config not reloaded: \(errors.count) error(s); the old config keeps serving", metadata: ["trigger": "\(trigger)"])
        return .invalid(errors)
    }

    /// Temp file in the same directory, fsync, rename over the target, fsync the directory:
    /// a crash leaves the old file or the new one, never a mix.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let temp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WriteError(step: "create \(temp)", code: errno) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                raw.baseAddress.map { write(fd, $0 + written, bytes.count - written) } ?? 0
            }
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                close(fd)
                unlink(temp)
                throw WriteError(step: "write", code: code)
            }
            written += n
        }
        if fsync(fd) != 0 {
            let code = errno
            close(fd)
            unlink(temp)
            throw WriteError(step: "fsync", code: code)
        }
        close(fd)
        if rename(temp, path) != 0 {
            let code = errno
            unlink(temp)
            throw WriteError(step: "rename", code: code)
        }
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    struct WriteError: Error, CustomStringConvertible {
        var step: String
        var code: Int32
        var description: String { "\(step) failed: \(String(cString: strerror(code)))" }
    }

    public static func errorsJSON(_ errors: [Diagnostic]) -> String {
        let items = errors.map { d -> String in
            var s = "{\"path\":\(jsonString(d.path)),\"message\":\(jsonString(d.message))"
            if let l = d.location { s += ",\"line\":\(l.line),\"column\":\(l.column)" }
            return s + "}"
        }
        return "[" + items.joined(separator: ",") + "]"
    }

    public static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }
}
