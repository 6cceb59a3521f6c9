import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

extension ProxyHandler {
    /// The backoff before another try is over (or the exchange ended during it).
    func endBackoff(_ ex: Exchange) {
        guard ex.backingOff else { return }
        ex.backingOff = false
        ex.upstream?.backingOff -= 1
    }

    /// The exchange is over: metrics, and the access log when there is one.
    func log(_ ex: Exchange) {
        endBackoff(ex)
        if ex.holdsRetrySlot {
            ex.holdsRetrySlot = false
            ex.upstream?.activeRetries -= 1
        }
        let nanos = Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds &- ex.start.uptimeNanoseconds)
        loopContext.metrics.request(route: ex.route, method: ex.head.method, code: ex.status, nanos: nanos)
        guard loopContext.shared.accessLog != nil else { return }
        AccessLogLine.append(ex, listener: listenerName, to: &loopContext.accessLogBuffer, clock: &loopContext.wallClock)
        if loopContext.accessLogBuffer.count >= 64 * 1024 { loopContext.flushAccessLog() }
    }
}
