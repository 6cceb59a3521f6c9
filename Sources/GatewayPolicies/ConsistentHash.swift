/// `consistent_hash`: a ketama-style hash ring.
///
/// Each target owns `weight × pointsPerWeight` points on a 64-bit ring. A key
/// goes to the owner of the first point at or after the key's hash, walking
/// clockwise (and wrapping) past points of unavailable targets. Points come
/// from the target's *name* (its URL) and a replica number, never from its
/// position in the list, so:
/// - adding or removing a target moves only the keys on its points, about
///   1/n of them, and a down target's keys spread over all the others;
/// - raising a target's weight adds points to it and moves keys only to it.
///
/// Not byte-compatible with libketama (which uses MD5): a key's target is
/// stable across restarts and across gateway instances of this gateway only.
/// Immutable after `init`; build it once per upstream per snapshot.
public struct ConsistentHashRing: Sendable {
    /// Number of targets; picks are indices into the `targets` given at `init`.
    public let count: Int
    /// Ring points, ascending.
    private let points: [UInt64]
    /// `owners[i]` is the target that owns `points[i]`; 32 bits keeps the
    /// ring's walk dense in cache.
    private let owners: [UInt32]

    /// - Parameters:
    ///   - targets: names that identify the targets across reloads (their URLs);
    ///     they should be distinct.
    ///   - weights: one per target, each `>= 1`.
    ///   - pointsPerWeight: ring points per unit of weight. More points even
    ///     out the shares (the spread of a share is about 1/√points) at the
    ///     cost of memory (12 bytes a point) and build time.
    /// Ring points per unit of weight. A target's points depend only on its own name and
    /// weight, so adding or removing a target moves only the keys it must. 1000 points per
    /// unit keeps every share within about 2% of its weight (config validation keeps the
    /// weights of a consistent-hash upstream small, so the ring stays under ~100k points).
    public static let defaultPointsPerWeight = 1000

    public init(targets: [String], weights: [Int], pointsPerWeight: Int = ConsistentHashRing.defaultPointsPerWeight) {
        precondition(targets.count == weights.count, "one weight per target")
        precondition(weights.allSatisfy { $0 >= 1 }, "target weights must be >= 1")
        precondition(pointsPerWeight >= 1, "pointsPerWeight must be >= 1")
        precondition(targets.count <= Int(UInt32.max), "too many targets")
        var entries: [(point: UInt64, owner: UInt32)] = []
        entries.reserveCapacity(weights.reduce(0, +) * pointsPerWeight)
        for (target, name) in targets.enumerated() {
            let seed = StableHash.hash(name)
            for replica in 0..<weights[target] * pointsPerWeight {
                entries.append((ringPoint(seed: seed, replica: replica), UInt32(target)))
            }
        }
        // Equal points (practically never) go by name, then position, so that
        // a point's owner does not depend on the order of the list.
        entries.sort { a, b in
            if a.point != b.point { return a.point < b.point }
            let nameA = targets[Int(a.owner)]
            let nameB = targets[Int(b.owner)]
            return nameA != nameB ? nameA < nameB : a.owner < b.owner
        }
        count = targets.count
        points = entries.map(\.point)
        owners = entries.map(\.owner)
    }

    /// The target for a key's `hash` (from `StableHash`), skipping targets for
    /// which `isAvailable` is false; `nil` when none is available.
    ///
    /// Usually one binary search and one `isAvailable` call. A walk asks about
    /// each of the first 64 targets at most once and stops as soon as all of
    /// them are known to be down.
    public func pick(hash: UInt64, isAvailable: (Int) -> Bool) -> Int? {
        let pointCount = points.count
        guard pointCount > 0 else { return nil }
        // The first point at or after the key, wrapping past the last.
        var low = 0
        var high = pointCount
        while low < high {
            let middle = low + (high - low) / 2
            if points[middle] < hash {
                low = middle + 1
            } else {
                high = middle
            }
        }
        var position = low == pointCount ? 0 : low
        var knownDown: UInt64 = 0
        var knownDownCount = 0
        for _ in 0..<pointCount {
            let owner = Int(owners[position])
            if owner < 64 {
                let bit: UInt64 = 1 << UInt64(owner)
                if knownDown & bit == 0 {
                    if isAvailable(owner) { return owner }
                    knownDown |= bit
                    knownDownCount += 1
                    if knownDownCount == count { return nil }
                }
            } else if isAvailable(owner) {
                return owner
            }
            position = position + 1 == pointCount ? 0 : position + 1
        }
        return nil
    }
}

/// A target's `replica`-th point: the splitmix64 sequence seeded with the
/// hash of its name, so points depend only on the name and replica number.
private func ringPoint(seed: UInt64, replica: Int) -> UInt64 {
    SplitMix64.mix(seed &+ UInt64(replica + 1) &* SplitMix64.golden)
}

/// A deterministic 64-bit hash for consistent-hash keys (a header, a cookie,
/// a claim, a client address) and ring points: FNV-1a 64 over the bytes, then
/// the splitmix64 finalizer, because FNV alone mixes its last bytes poorly
/// into the high bits, which decide a key's place on the ring.
///
/// It has no seed, so it is the same across restarts and across instances;
/// that is why it is not Swift's `Hasher`, which is seeded per process. For
/// the same reason do not key in-memory hash tables fed by clients with it.
public enum StableHash: Sendable {
    /// The hash of `bytes`; equal to `hash(string)` for a string's UTF-8 bytes.
    @inlinable
    public static func hash<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        SplitMix64.mix(fnv1a(bytes))
    }

    /// The hash of the string's UTF-8 bytes (no Unicode normalization).
    public static func hash(_ string: String) -> UInt64 {
        hash(string.utf8)
    }

    /// FNV-1a 64 (Fowler–Noll–Vo), unfinished.
    @inlinable
    static func fnv1a<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        // Contiguous bytes (native strings, arrays, buffers) skip the iterator.
        if let hash = bytes.withContiguousStorageIfAvailable({ fnv1a(buffer: $0) }) {
            return hash
        }
        var hash = fnvOffsetBasis
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* fnvPrime
        }
        return hash
    }

    @inlinable
    static func fnv1a(buffer: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var hash = fnvOffsetBasis
        for byte in buffer {
            hash = (hash ^ UInt64(byte)) &* fnvPrime
        }
        return hash
    }

    @inlinable static var fnvOffsetBasis: UInt64 { 0xCBF2_9CE4_8422_2325 }
    @inlinable static var fnvPrime: UInt64 { 0x0000_0100_0000_01B3 }
}
