/// `round_robin`: smooth weighted round robin, the algorithm NGINX uses for
/// its upstreams (`ngx_http_upstream_get_peer`).
///
/// Each pick adds every available target's weight to that target's score,
/// takes the target with the highest score (the lowest index on a tie) and
/// subtracts the total weight of the available targets from its score. While
/// the set of available targets does not change, every window of
/// `sum(weights)` picks holds each target exactly `weight` times, and heavy
/// targets are interleaved with light ones instead of picked in a burst:
/// weights `[5, 1, 1]` give `a a b a c a a`.
///
/// Unavailable targets are neither scored nor picked, so the available ones
/// share the traffic in proportion to their own weights. A target's score is
/// kept while it is unavailable, as NGINX does; it is bounded by the total
/// weight, so a returning target gets at most a couple of extra picks.
///
/// Picks are indices into the `weights` given at `init`. One instance per
/// event loop per upstream: it is a plain value with no lock, so confine it to
/// one thread and mutate it where it is stored (`pool.balancer.next()`);
/// copying it out and writing it back would copy its score array on each pick.
public struct WeightedRoundRobin: Sendable {
    /// Number of targets; picks are in `0..<count`.
    public let count: Int
    private let weights: [Int]
    private let totalWeight: Int
    /// All weights equal: a plain rotating index gives the same sequence with
    /// one closure call per pick instead of `count`.
    private let isUniform: Bool
    /// Scores of the smooth algorithm; empty on the equal-weights path.
    private var scores: [Int]
    /// The next index to try on the equal-weights path.
    private var cursor: Int

    /// - Parameters:
    ///   - weights: one per target, each `>= 1` (validated config guarantees it).
    ///   - start: where the sequence begins, so that event loops do not all send
    ///     their first request to the same target; pass the loop's index. The
    ///     weighted sequence is advanced `start % sum(weights)` picks at init,
    ///     which costs `O(min(start, sum(weights)) × count)`: keep it small.
    public init(weights: [Int], start: Int = 0) {
        precondition(weights.allSatisfy { $0 >= 1 }, "target weights must be >= 1")
        let first = weights.first ?? 1
        let total = weights.reduce(0, +)
        count = weights.count
        self.weights = weights
        totalWeight = total
        isUniform = weights.allSatisfy { $0 == first }
        scores = isUniform ? [] : Array(repeating: 0, count: weights.count)
        cursor = 0
        guard count > 0 else { return }
        if isUniform {
            cursor = positiveRemainder(start, count)
        } else {
            // Advancing the sequence, rather than reordering the targets,
            // keeps its smoothness and its exact shares.
            for _ in 0..<positiveRemainder(start, total) { _ = next() }
        }
    }

    /// The next target among those for which `isAvailable` is true, or `nil`
    /// when none is. Calls `isAvailable` at most once per target.
    public mutating func next(isAvailable: (Int) -> Bool) -> Int? {
        if isUniform {
            // Resuming right after the last pick visits each available target
            // once per turn of the list: a down target's neighbour does not get
            // a double share.
            var index = cursor
            for _ in 0..<count {
                if isAvailable(index) {
                    cursor = index + 1 == count ? 0 : index + 1
                    return index
                }
                index = index + 1 == count ? 0 : index + 1
            }
            return nil
        }
        var best = -1
        var bestScore = Int.min
        var availableWeight = 0
        for index in 0..<count where isAvailable(index) {
            let score = scores[index] + weights[index]
            scores[index] = score
            availableWeight += weights[index]
            if score > bestScore {
                best = index
                bestScore = score
            }
        }
        guard best >= 0 else { return nil }
        scores[best] -= availableWeight
        return best
    }

    /// The next target when all are available. Requires `count > 0`.
    public mutating func next() -> Int {
        precondition(count > 0, "no targets")
        if isUniform {
            let index = cursor
            cursor = index + 1 == count ? 0 : index + 1
            return index
        }
        var best = 0
        var bestScore = Int.min
        for index in 0..<count {
            let score = scores[index] + weights[index]
            scores[index] = score
            if score > bestScore {
                best = index
                bestScore = score
            }
        }
        scores[best] -= totalWeight
        return best
    }
}

/// `value mod divisor` in `0..<divisor`, also for a negative `value`.
private func positiveRemainder(_ value: Int, _ divisor: Int) -> Int {
    let remainder = value % divisor
    return remainder < 0 ? remainder + divisor : remainder
}
