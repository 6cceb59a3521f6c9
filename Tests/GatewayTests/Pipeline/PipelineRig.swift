import Foundation
import GatewayConfig
import NIOCore
import NIOEmbedded
import Testing

@testable import GatewayProxy

/// One `ProxyHandler` on an `EmbeddedChannel`: bytes in, bytes out, no sockets, no threads,
/// no sleeps. The phases that answer from the gateway (guards, routing, limits, auth,
/// fixed responses, faults) run whole here; what needs an upstream is tested over loopback.
final class PipelineRig {
    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel
    let context: LoopContext
    let snapshot: Snapshot
    let handler: ProxyHandler

    /// `json`: a gateway.json; its routes may answer without an upstream. `manualClock`: the
    /// loop's clock starts at 1,000 s of uptime and moves only when the test moves it.
    init(
        _ json: String, manualClock: Bool = false, accessLog: AccessLogWriter? = nil,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) throws {
        let loaded = ConfigLoader.load(bytes: Array(json.utf8), source: "rig.json")
        snapshot = try #require(loaded.snapshot, "\(loaded.diagnostics)", sourceLocation: sourceLocation)
        let shared = SharedState(snapshots: SnapshotStore(snapshot), accessLog: accessLog)
        context = LoopContext(loop: loop, shared: shared, loopCount: 1, seed: 7)
        if manualClock {
            context.time.set(uptime: 1_000 * 1_000_000_000, wall: 1_800_000_000)
            // The connection clock read the system's uptime when it was made: deadlines from
            // that reading would fall before or after the test's time depending on the machine's uptime.
            context.clock.tick()
        }
        handler = ProxyHandler(loopContext: context, server: snapshot.server, listenerName: "rig")
        channel = EmbeddedChannel(loop: loop)
        // Connected first, so the handler finds the client's address when it is added.
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.10", port: 4000)).wait()
        try channel.pipeline.syncOperations.addHandler(handler)
    }

    deinit {
        _ = try? channel.finish()
        context.shared.login.stopAll()
        context.shared.auth.stopAll()
    }

    /// Moves the loop's (manual) clock and lets the connection check its deadlines.
    func advance(seconds: Double) {
        context.time.advance(byNanos: UInt64(seconds * 1e9))
        context.clock.tick()
    }

    /// Writes `request` as the client would, then returns everything the gateway wrote.
    func send(_ request: String) throws -> String {
        try channel.writeInbound(ByteBuffer(string: request))
        return try written()
    }

    func written() throws -> String {
        var out = ""
        while let part = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: part) }
        return out
    }

    /// The status codes of the responses in `text`, in order.
    static func statuses(_ text: String) -> [Int] {
        text.components(separatedBy: "HTTP/1.1 ").dropFirst().compactMap { Int($0.prefix(3)) }
    }

    /// `routes`, then (unless `fallback` is false) a catch-all route answering 200 itself,
    /// plus what `extra` adds to the file.
    static func config(routes: String = "", extra: String = "", fallback: Bool = true) -> String {
        let hello = #"{ "name": "hello", "match": { "path_prefix": "/" }, "respond": { "status": 200, "body": "hi" } }"#
        let all = fallback ? routes + hello : String(routes.trimmingCharacters(in: .whitespacesAndNewlines).dropLast())
        return
            """
            { "listeners": [ { "name": "rig", "address": "127.0.0.1:0" } ],
              "upstreams": { "app": { "targets": [ "http://127.0.0.1:9" ] } },
              \(extra)
              "routes": [ \(all) ],
              "access_log": { "enabled": false } }
            """
    }
}
