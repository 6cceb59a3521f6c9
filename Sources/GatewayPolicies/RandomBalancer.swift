/// `random`: each pick is an independent draw, in proportion to the targets'
/// weights, among the available targets.
///
/// A draw is a binary search over cumulative weights (a plain random index
/// when all weights are equal). When the drawn target is unavailable, the
/// fallback scans the targets and draws again in proportion to the weights of
/// the available ones. Taking the next available target after the drawn one
/// would be cheaper but would hand a down target's whole share to its
/// neighbour, which can overload it and cascade; with this fallback the
/// shares among available targets are exact.
///
/// Picks are indices into the `weights` given at `init`. Immutable after
/// `init`; the randomness comes from the caller's generator (one `SplitMix64`
/// per event loop, a seeded one in tests).
public struct WeightedRandom: Sendable {
    /// Number of targets; picks are in `0..<count`.
    public let count: Int
    let weights: [Int]
    /// `cumulative[i] == weights[0] + … + weights[i]`.
    let cumulative: [Int]
    let totalWeight: Int
    /// All weights equal: draw an index directly, no search.
    let isUniform: Bool

    /// - Parameter weights: one per target, each `>= 1`.
    public init(weights: [Int]) {
        precondition(weights.allSatisfy { $0 >= 1 }, "target weights must be >= 1")
        var running = 0
        cumulative = weights.map { weight in
            running += weight
            return running
        }
        let first = weights.first ?? 1
        count = weights.count
        self.weights = weights
        totalWeight = running
        isUniform = weights.allSatisfy { $0 == first }
    }

    /// A target drawn in proportion to weight among those for which
    /// `isAvailable` is true, or `nil` when none is. Calls `isAvailable` once
    /// when the first draw is available, up to `2 × count + 1` times otherwise.
    public func pick<R: RandomNumberGenerator>(
        isAvailable: (Int) -> Bool,
        using rng: inout R
    ) -> Int? {
        guard count > 0 else { return nil }
        let drawn = draw(using: &rng)
        if isAvailable(drawn) { return drawn }
        return drawAmongAvailable(excluding: -1, isAvailable: isAvailable, using: &rng)
    }

    /// Like `pick(isAvailable:using:)`, never returning `excluded`: the second
    /// candidate of `LeastRequest`, drawn without replacement.
    func pick<R: RandomNumberGenerator>(
        excluding excluded: Int,
        isAvailable: (Int) -> Bool,
        using rng: inout R
    ) -> Int? {
        guard count > 1 else { return nil }
        let drawn = draw(excluding: excluded, using: &rng)
        if isAvailable(drawn) { return drawn }
        return drawAmongAvailable(excluding: excluded, isAvailable: isAvailable, using: &rng)
    }

    /// A target in proportion to weight, ignoring availability. `count > 0`.
    func draw<R: RandomNumberGenerator>(using rng: inout R) -> Int {
        if isUniform { return Int(rng.next(upperBound: UInt(count))) }
        return index(covering: Int(rng.next(upperBound: UInt(totalWeight))))
    }

    /// A target other than `excluded` in proportion to weight: one draw over
    /// the total without `excluded`'s weight, stepping over its range.
    /// `count > 1`.
    func draw<R: RandomNumberGenerator>(excluding excluded: Int, using rng: inout R) -> Int {
        if isUniform {
            let drawn = Int(rng.next(upperBound: UInt(count - 1)))
            return drawn >= excluded ? drawn + 1 : drawn
        }
        let weight = weights[excluded]
        let rangeStart = cumulative[excluded] - weight
        var point = Int(rng.next(upperBound: UInt(totalWeight - weight)))
        if point >= rangeStart { point += weight }
        return index(covering: point)
    }

    /// The target whose weight range holds `point`: the first `i` with
    /// `cumulative[i] > point`, for `point` in `0..<totalWeight`.
    func index(covering point: Int) -> Int {
        var low = 0
        var high = count - 1
        while low < high {
            let middle = low + (high - low) / 2
            if cumulative[middle] > point {
                high = middle
            } else {
                low = middle + 1
            }
        }
        return low
    }

    /// The slow path: two passes over the targets, no allocation.
    private func drawAmongAvailable<R: RandomNumberGenerator>(
        excluding excluded: Int,
        isAvailable: (Int) -> Bool,
        using rng: inout R
    ) -> Int? {
        var availableWeight = 0
        for index in 0..<count where index != excluded && isAvailable(index) {
            availableWeight += weights[index]
        }
        guard availableWeight > 0 else { return nil }
        var point = Int(rng.next(upperBound: UInt(availableWeight)))
        var lastAvailable: Int?
        for index in 0..<count where index != excluded && isAvailable(index) {
            if point < weights[index] { return index }
            point -= weights[index]
            lastAvailable = index
        }
        // Only reached if availability changed between the two passes.
        return lastAvailable
    }
}
