import Foundation
import NIOConcurrencyHelpers
import Subprocess
import SystemPackage

/// A child process (curl, h2load, openssl, redis-server, the gateway binary), started with
/// swift-subprocess and watched by a task until it exits. Its standard output (and standard
/// error, when asked) goes to a file of its own, so a child never waits on a reader: tests
/// block threads with socket calls, and a pipe nobody drains would stall the child.
///
/// Not Foundation's `Process`: on Linux its `run()` can read past a buffer while it lists
/// the open file descriptors and crash the test process (swift-corelibs-foundation#5472),
/// which the HTTP/2 tests, spawning many clients, hit about one run in three.
final class ChildProcess: Sendable {
    let pid: pid_t
    private let outputFile: String
    private let status: NIOLockedValueBox<Int32?>

    private init(pid: pid_t, outputFile: String, status: NIOLockedValueBox<Int32?>) {
        self.pid = pid
        self.outputFile = outputFile
        self.status = status
    }

    /// Starts `path` and returns once it runs (throws when it cannot be started).
    static func start(
        _ path: String, _ arguments: [String], workingDirectory: String? = nil, stderr: Bool = true
    ) async throws
        -> ChildProcess
    {
        let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("child-\(UUID().uuidString).out").path
        let file = FilePath(outputFile)
        let mode: FileDescriptor.OpenOptions = [.create, .truncate, .append]
        let out = try FileDescriptor.open(file, .writeOnly, options: mode, permissions: .ownerReadWrite)
        let err = stderr ? try FileDescriptor.open(file, .writeOnly, options: [.append]) : nil
        let status = NIOLockedValueBox<Int32?>(nil)
        let (started, continuation) = AsyncStream<Result<pid_t, any Error>>.makeStream()
        let directory = workingDirectory.map { FilePath($0) }
        Task {
            do {
                let output = FileDescriptorOutput.fileDescriptor(out, closeAfterSpawningProcess: true)
                let body: (pid_t) -> Void = { continuation.yield(.success($0)) }
                let exit: TerminationStatus
                if let err {
                    let error = FileDescriptorOutput.fileDescriptor(err, closeAfterSpawningProcess: true)
                    exit = try await run(
                        .path(FilePath(path)), arguments: Arguments(arguments), workingDirectory: directory, input: .none, output: output,
                        error: error
                    ) { body($0.processIdentifier.value) }.terminationStatus
                } else {
                    exit = try await run(
                        .path(FilePath(path)), arguments: Arguments(arguments), workingDirectory: directory, input: .none, output: output,
                        error: .discarded
                    ) { body($0.processIdentifier.value) }.terminationStatus
                }
                switch exit {
                case .exited(let code): status.withLockedValue { $0 = code }
                case .signaled(let signal): status.withLockedValue { $0 = 128 + signal }
                }
            } catch {
                continuation.yield(.failure(error))
                status.withLockedValue { $0 = -1 }
            }
            continuation.finish()
        }
        for await first in started {
            return ChildProcess(pid: try first.get(), outputFile: outputFile, status: status)
        }
        throw RawHTTPClient.Failure(description: "\(path) did not start")
    }

    /// What it printed so far.
    var output: String { (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? "" }
    var isRunning: Bool { status.withLockedValue { $0 } == nil }
    /// The exit code (128 + the signal when a signal ended it); nil while it runs.
    var exitCode: Int32? { status.withLockedValue { $0 } }

    func signal(_ sig: Int32) { if isRunning { kill(pid, sig) } }

    /// Waits up to `timeout` seconds for it to exit; its exit code, or nil if it still runs.
    func waitForExit(timeout: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning && Date() < deadline { try? await Task.sleep(nanoseconds: 20_000_000) }
        return exitCode
    }

    deinit {
        if isRunning { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: outputFile)
    }
}

/// A command-line tool run to completion: its exit status (-1 when it could not start) and
/// what it printed on stdout (and stderr when `stderr` is true). A tool still running after
/// `timeout` seconds is killed.
struct Tool {
    var status: Int32
    var output: String

    static func run(
        _ path: String, _ arguments: [String], stderr: Bool = false, workingDirectory: String? = nil, timeout: Double = 60
    ) async -> Tool {
        guard let child = try? await ChildProcess.start(path, arguments, workingDirectory: workingDirectory, stderr: stderr) else {
            return Tool(status: -1, output: "")
        }
        if await child.waitForExit(timeout: timeout) == nil {
            child.signal(SIGKILL)
            _ = await child.waitForExit(timeout: 5)
        }
        return Tool(status: child.exitCode ?? -1, output: child.output)
    }

    /// curl with `arguments`, then `-w` for the status and the HTTP version (`200 2`).
    static func curl(_ arguments: [String]) async -> (status: Int?, version: String, body: String) {
        let marker = "\n@@curl@@"
        let r = await run("/usr/bin/curl", ["-s", "--max-time", "20", "-w", "\(marker)%{http_code} %{http_version}"] + arguments)
        guard r.status == 0, let range = r.output.range(of: marker, options: .backwards) else { return (nil, "", r.output) }
        let tail = r.output[range.upperBound...].split(separator: " ")
        return (tail.first.flatMap { Int($0) }, tail.count > 1 ? String(tail[1]) : "", String(r.output[..<range.lowerBound]))
    }
}
