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
        /// The limits the TATs are for, in the order of `tats`.
        var limits: [GCRALimit]
        /// Each limit's theoretical arrival time.
        var tats: [Int64]
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
    /// refusal charges none). `now` is monotonic nanoseconds. A key seen before with the same
    /// limits is decided in place: one hash of the key for the shard, one for its entry, no
    /// allocation.
    public func decide(key: String, limits: [GCRALimit], now: Int64) -> GCRA.Outcome {
        var hasher = Hasher()
        hasher.combine(key)
        let shard = shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(Self.shardCount))]
        return shard.withLockedValue { map in
            if let i = map.index(forKey: key), map.values[i].limits == limits {
                let outcome = GCRA.decide(limits, tats: &map.values[i].tats, now: now)
                if outcome.admitted { map.values[i].idleAfter = Self.idleAfter(map.values[i].tats, now: now) }
                return outcome
            }
            // New, or its limits changed with a reload: each limit keeps its TAT.
            let entry = map[key]
            var tats = limits.map { l in
                entry.flatMap { e in e.limits.firstIndex(of: l).map { e.tats[$0] } } ?? 0
            }
            let outcome = GCRA.decide(limits, tats: &tats, now: now)
            if outcome.admitted {
                if entry == nil && map.count >= maxEntriesPerShard { Self.evict(&map, now: now, keep: maxEntriesPerShard * 3 / 4) }
                map[key] = Entry(limits: limits, tats: tats, idleAfter: Self.idleAfter(tats, now: now))
            }
            return outcome
        }
    }

    private static func idleAfter(_ tats: [Int64], now: Int64) -> Int64 {
        var idle = now
        for t in tats { idle = max(idle, t) }
        return idle
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
