import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

extension ProxyHandler {
    /// The exchange is over: metrics, and the access log when there is one.
    func log(_ ex: Exchange) {
        ex.tries.settle()
        let nanos = Int64(truncatingIfNeeded: loopContext.time.uptime() &- ex.start.uptimeNanoseconds)
        loopContext.metrics.request(route: ex.route, method: ex.head.method, code: ex.status, nanos: nanos)
        if ex.isGRPC { loopContext.metrics.grpc(route: ex.route?.name ?? "", status: ex.grpcStatus < 0 ? GRPC.unknown : ex.grpcStatus) }
        guard loopContext.shared.accessLog != nil else { return }
        AccessLogLine.append(ex, listener: listenerName, to: &loopContext.accessLogBuffer, clock: &loopContext.wallClock)
        if loopContext.accessLogBuffer.count >= 64 * 1024 { loopContext.flushAccessLog() }
    }
}
