/// `least_request`: power of two choices over in-flight requests, weighted.
///
/// Two distinct available targets are drawn at random, in proportion to their
/// weights, and the one with fewer in-flight requests per unit of weight
/// wins; on a tie the first draw wins, so an idle upstream's traffic follows
/// the weights. Two random candidates instead of the global minimum keep a
/// pick O(log n) and avoid the herd that forms when every event loop sends to
/// the one target that looked least loaded (Mitzenmacher's "power of two
/// choices"; Envoy's default for equal weights).
///
/// Picks are indices into the `weights` given at `init`. Immutable after
/// `init`; in-flight counts, availability and randomness come from the caller.
public struct LeastRequest: Sendable {
    /// Draws the candidates; also holds the weights.
    private let sampler: WeightedRandom

    /// Number of targets; picks are in `0..<count`.
    public var count: Int { sampler.count }

    /// - Parameter weights: one per target, each `>= 1`.
    public init(weights: [Int]) {
        sampler = WeightedRandom(weights: weights)
    }

    /// The less loaded of two random available targets, or `nil` when none is
    /// available. With one available target, that target (no draw needed).
    ///
    /// - Parameters:
    ///   - inFlight: requests currently outstanding on a target (`>= 0`);
    ///     called once for each of the two candidates.
    ///   - isAvailable: whether a target may be picked (healthy, not ejected).
    ///   - rng: the event loop's generator.
    public func pick<R: RandomNumberGenerator>(
        inFlight: (Int) -> Int,
        isAvailable: (Int) -> Bool,
        using rng: inout R
    ) -> Int? {
        if count == 1 { return isAvailable(0) ? 0 : nil }
        guard let first = sampler.pick(isAvailable: isAvailable, using: &rng) else {
            return nil
        }
        guard
            let second = sampler.pick(excluding: first, isAvailable: isAvailable, using: &rng)
        else { return first }
        // first/w1 <= second/w2  ⇔  first·w2 <= second·w1 (weights > 0); integers
        // avoid rounding, and full-width products cannot overflow.
        let firstLoad = inFlight(first).multipliedFullWidth(by: sampler.weights[second])
        let secondLoad = inFlight(second).multipliedFullWidth(by: sampler.weights[first])
        return (secondLoad.high, secondLoad.low) < (firstLoad.high, firstLoad.low)
            ? second : first
    }
}
