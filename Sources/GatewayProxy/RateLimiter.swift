import GatewayConfig
import GatewayPolicies
import NIOConcurrencyHelpers

/// The in-memory rate-limit counters of this process: one GCRA state per key and limit,
/// in shards with a lock each, so the event loops rarely meet on a lock. Lives in
/// `SharedState`, so counters survive reloads. Bounded: a key whose every limit has fully
/// refilled holds no information (GCRA's state is then the same as no state) and is the
/// first to go when a shard is full.
public final class MemoryLimiter: Sendable {
    struct Entry {
        /// Each limit's theoretical arrival time, by the limit's identity.
        var tats: [(limit: GCRALimit, tat: Int64)]
        /// After this time every limit has refilled: the entry may be dropped.
        var idleAfter: Int64
    }

    static let shardCount = 64
    private let shards: [NIOLockedValueBox<[String: Entry]>]
    let maxEntriesPerShard: Int

    public init(maxEntries: Int = 1_000_000) {
        shards = (0..<Self.shardCount).map { _ in NIOLockedValueBox([:]) }
        maxEntriesPerShard = max(16, maxEntries / Self.shardCount)
    }

    public var count: Int { shards.reduce(0) { $0 + $1.withLockedValue { $0.count } } }

    /// Decides one request for `key` against every limit in `limits` (all must admit; a
    /// refusal charges none). `now` is monotonic nanoseconds.
    public func decide(key: String, limits: [GCRALimit], now: Int64) -> GCRA.Outcome {
        let shard = shards[Int(UInt(bitPattern: key.hashValue) % UInt(Self.shardCount))]
        return shard.withLockedValue { map in
            let entry = map[key]
            var tats = limits.map { l in entry?.tats.first { $0.limit == l }?.tat ?? 0 }
            let outcome = GCRA.decide(limits, tats: &tats, now: now)
            if outcome.admitted {
                var idle = now
                var stored: [(limit: GCRALimit, tat: Int64)] = []
                stored.reserveCapacity(limits.count)
                for (i, l) in limits.enumerated() {
                    stored.append((l, tats[i]))
                    idle = max(idle, tats[i])
                }
                if entry == nil && map.count >= maxEntriesPerShard { Self.evict(&map, now: now, keep: maxEntriesPerShard * 3 / 4) }
                map[key] = Entry(tats: stored, idleAfter: idle)
            }
            return outcome
        }
    }

    /// Drops refilled entries; if that is not enough, drops others (the limit then forgets
    /// some keys: lenient, never stricter than configured).
    private static func evict(_ map: inout [String: Entry], now: Int64, keep: Int) {
        map = map.filter { $0.value.idleAfter > now }
        if map.count > keep {
            var drop = map.count - keep
            for k in map.keys {
                if drop == 0 { break }
                map[k] = nil
                drop -= 1
            }
        }
    }
}
