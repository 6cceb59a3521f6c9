import Dispatch
import Foundation
import GatewayConfig
import GatewayProxy

// The gateway's data path for instruction counting (`Benchmarks/callgrind.sh`): loads a
// config, binds its listeners, and serves until SIGINT or SIGTERM. It exists because
// valgrind 3.19 crashes on `gateway run`, whose async main leaves the main thread in
// `dispatch_main` (pthread_exit) while the event-loop threads are created; here the main
// thread just waits on a semaphore (and the start runs in a detached task: top-level code
// is on the main actor, which that wait blocks).
guard CommandLine.arguments.count == 2 else {
    FileHandle.standardError.write(Data("usage: proxy-harness CONFIG\n".utf8))
    exit(2)
}
let path = CommandLine.arguments[1]
let loaded = ConfigLoader.load(path: path)
guard let snapshot = loaded.snapshot else {
    for d in loaded.diagnostics { FileHandle.standardError.write(Data("\(path):\(d)\n".utf8)) }
    exit(1)
}
// Exit (and so write callgrind's output) on SIGINT or SIGTERM.
signal(SIGINT) { _ in exit(0) }
signal(SIGTERM) { _ in exit(0) }
let server = GatewayServer(snapshot: snapshot)
let started = DispatchSemaphore(value: 0)
Task.detached {
    do {
        try await server.start()
    } catch {
        FileHandle.standardError.write(Data("cannot start: \(error)\n".utf8))
        exit(2)
    }
    let line = "listening " + server.boundAddresses.values.map { "\($0)" }.joined(separator: " ") + "\n"
    FileHandle.standardOutput.write(Data(line.utf8))
    started.signal()
}
started.wait()
let forever = DispatchSemaphore(value: 0)
forever.wait()
