import Foundation

/// A command-line tool run to completion on a thread of its own (never on the cooperative
/// pool): its exit status (-1 when it could not start) and what it printed on stdout (and
/// stderr when `stderr` is true). A tool still running after `timeout` seconds is stopped.
struct Tool {
    var status: Int32
    var output: String

    static func run(_ path: String, _ arguments: [String], stderr: Bool = false, timeout: Double = 60) async -> Tool {
        await withCheckedContinuation { (c: CheckedContinuation<Tool, Never>) in
            Thread.detachNewThread {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: path)
                p.arguments = arguments
                let out = Pipe()
                p.standardOutput = out
                p.standardError = stderr ? out : FileHandle.nullDevice
                guard (try? p.run()) != nil else { return c.resume(returning: Tool(status: -1, output: "")) }
                DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { if p.isRunning { p.terminate() } }
                let data = out.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                c.resume(returning: Tool(status: p.terminationStatus, output: String(decoding: data, as: UTF8.self)))
            }
        }
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
