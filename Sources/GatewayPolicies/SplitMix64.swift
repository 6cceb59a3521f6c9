/// splitmix64 (Steele, Lea & Flood 2014; Vigna's `splitmix64.c`): a 64-bit
/// counter advanced by the golden-ratio constant and passed through a mixing
/// finalizer.
///
/// The balancers take their randomness as a parameter so that tests can use a
/// fixed seed and get the same picks on every run, and so that the proxy can
/// keep one generator per event loop: a few multiplies per number, no lock, no
/// system call. Not cryptographic; never use it for tokens or nonces.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The counter; the next output is `mix(state &+ golden)`.
    @usableFromInline var state: UInt64

    /// A generator whose sequence is fixed by `seed` (tests, replays).
    public init(seed: UInt64) {
        state = seed
    }

    /// A generator seeded from the system's random source, for one event loop.
    public init() {
        var system = SystemRandomNumberGenerator()
        state = system.next()
    }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= SplitMix64.golden
        return SplitMix64.mix(state)
    }

    /// 2^64 / φ, odd: the counter visits every 64-bit value once per period.
    @inlinable static var golden: UInt64 { 0x9E37_79B9_7F4A_7C15 }

    /// The splitmix64 finalizer (a variant of murmur3's fmix64): every input
    /// bit flips about half of the output bits. Also used to finish
    /// `StableHash` and to place ring points.
    @inlinable
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }
}
