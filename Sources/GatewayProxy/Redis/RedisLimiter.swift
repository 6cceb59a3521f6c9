import GatewayPolicies
import NIOCore

/// The rate-limit decision for all the limits of a request, made atomically in Redis with
/// one `EVALSHA` of a Lua script: the same GCRA as the memory store, on Redis's own clock
/// (`TIME`, microseconds), so every gateway instance shares the counters and the clocks of
/// the instances do not matter. Each limit's TAT is one key, which expires once the limit
/// has refilled.
final class RedisLimiter {
    static let script = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local n = #KEYS
        local admitted = 1
        local tightest, remaining, reset, retry = 1, -1, 0, 0
        local tats = {}
        for i = 1, n do
          local emission = tonumber(ARGV[2 * i - 1])
          local tolerance = tonumber(ARGV[2 * i])
          local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
          if tat < now then tat = now end
          local newtat = tat + emission
          local allow_at = newtat - tolerance
          if now < allow_at then
            if admitted == 1 or (allow_at - now) > retry then
              tightest, remaining, reset, retry = i, 0, tat - now, allow_at - now
            end
            admitted = 0
          else
            tats[i] = newtat
            local left = math.floor((tolerance - (newtat - now)) / emission)
            if admitted == 1 and (remaining < 0 or left < remaining) then
              tightest, remaining, reset = i, left, newtat - now
            end
          end
        end
        if admitted == 1 then
          for i = 1, n do
            redis.call('SET', KEYS[i], tats[i], 'PX', math.floor((tats[i] - now) / 1000) + 1)
          end
        end
        if remaining < 0 then remaining = 0 end
        return {admitted, tightest - 1, remaining, reset, retry}
        """

    let connection: RedisConnection
    let prefix: String
    let timeout: TimeAmount
    private var sha: String?

    init(connection: RedisConnection, prefix: String, timeout: TimeAmount) {
        self.connection = connection
        self.prefix = prefix
        self.timeout = timeout
        connection.onConnect = { [weak self] in self?.sha = nil }
    }

    /// The decision for `key` against `limits`; completes on the connection's loop.
    func decide(key: String, limits: [GCRALimit]) -> EventLoopFuture<GCRA.Outcome> {
        var args: [String] = []
        args.reserveCapacity(3 + 3 * limits.count)
        args.append("")  // the script's sha, filled in below
        args.append(String(limits.count))
        for l in limits { args.append("\(prefix):\(key):\(l.limit)/\(l.periodNanos)/\(l.burst)") }
        for l in limits {
            args.append(String(max(1, l.emissionNanos / 1000)))
            args.append(String(max(1, l.toleranceNanos / 1000)))
        }
        return withScript { sha in
            var a = args
            a[0] = sha
            return self.connection.send(["EVALSHA"] + a, timeout: self.timeout)
        }.flatMapThrowing { reply -> GCRA.Outcome in
            guard case .array(let items?) = reply, items.count == 5, let admitted = items[0].int, let tightest = items[1].int,
                let remaining = items[2].int, let reset = items[3].int, let retry = items[4].int
            else { throw RedisConnection.Failure.server("unexpected reply to the rate-limit script") }
            return GCRA.Outcome(
                admitted: admitted == 1, tightest: Int(tightest), remaining: Int(remaining), resetNanos: reset * 1000,
                retryAfterNanos: retry * 1000)
        }
    }

    /// Runs `body` with the script's sha, loading it first when needed and again when the
    /// server has forgotten it (`NOSCRIPT`, after a restart or `SCRIPT FLUSH`).
    private func withScript(_ body: @escaping (String) -> EventLoopFuture<RESPValue>) -> EventLoopFuture<RESPValue> {
        let loop = connection.loop
        func load() -> EventLoopFuture<String> {
            connection.send(["SCRIPT", "LOAD", Self.script], timeout: timeout).assumeIsolated().flatMapThrowing { reply in
                guard let s = reply.string else { throw RedisConnection.Failure.server("SCRIPT LOAD gave no sha") }
                self.sha = s
                return s
            }.nonisolated()
        }
        let sha = self.sha.map { loop.makeSucceededFuture($0) } ?? load()
        return sha.assumeIsolated().flatMap { s in
            body(s).assumeIsolated().flatMapError { error -> EventLoopFuture<RESPValue> in
                if case RedisConnection.Failure.server(let m) = error, m.hasPrefix("NOSCRIPT") {
                    return load().assumeIsolated().flatMap { body($0) }.nonisolated()
                }
                return loop.makeFailedFuture(error)
            }.nonisolated()
        }.nonisolated()
    }
}
