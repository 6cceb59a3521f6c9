/// A weighted split of traffic between members (route `split`, SPEC §2.7).
///
/// With a sticky key, the key's stable hash picks a bucket in [0, 10000), and the buckets
/// are cut into consecutive ranges, one per member in the order written, each as wide as
/// the member's share of the weights. A key therefore keeps its member while the weights
/// stay, on every instance and across restarts (the hash has no seed), and when the last
/// member's weight grows (a canary going from 5% to 10%), its range only widens downwards:
/// every key it held, it keeps. Without a key, each request draws its member at random in
/// proportion to the weights.
public struct CanarySplit: Sendable, Hashable {
    public static let buckets = 10_000
    public let weights: [Int]
    /// `bounds[i]` is the end (exclusive) of member `i`'s bucket range; the last is 10000.
    public let bounds: [Int]
    public let totalWeight: Int

    public init(weights: [Int]) {
        self.weights = weights.map { max(0, $0) }
        totalWeight = self.weights.reduce(0, +)
        var cumulative = 0
        var bounds: [Int] = []
        for w in self.weights {
            cumulative += w
            bounds.append(totalWeight == 0 ? Self.buckets : cumulative * Self.buckets / totalWeight)
        }
        self.bounds = bounds
    }

    /// The bucket of a key's stable hash.
    @inline(__always)
    public static func bucket(_ hash: UInt64) -> Int { Int(hash % UInt64(buckets)) }

    /// The member whose range holds `bucket`.
    public func member(forBucket bucket: Int) -> Int {
        for (i, end) in bounds.enumerated() where bucket < end { return i }
        return max(0, bounds.count - 1)
    }

    /// A member drawn in proportion to the weights from a uniform random number.
    public func member(random: UInt64) -> Int {
        guard totalWeight > 0 else { return 0 }
        var r = Int(random % UInt64(totalWeight))
        for (i, w) in weights.enumerated() {
            if r < w { return i }
            r -= w
        }
        return max(0, weights.count - 1)
    }
}
