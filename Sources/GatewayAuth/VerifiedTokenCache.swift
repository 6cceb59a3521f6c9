/// A keyed 128-bit hash of a token: what the cache is keyed by, so it never holds tokens
/// themselves. Two SipHash passes (the standard library's `Hasher`), each behind its own
/// 128-bit key drawn at random per process: without the keys nobody can make a token that
/// hashes like another, so a hit is as good as comparing the tokens (a forged token would
/// have to guess a 128-bit value, one request per guess). About a tenth of a SHA-256 of the
/// same bytes, which was most of what a cached token cost (issue 12).
public struct TokenDigest: Hashable, Sendable {
    let a: UInt64, b: UInt64

    /// The keys, drawn once per process (the hasher's own seed is fixed when
    /// `SWIFT_DETERMINISTIC_HASHING` is set; these never are).
    private static let keys: (UInt64, UInt64, UInt64, UInt64) = {
        var g = SystemRandomNumberGenerator()
        return (g.next(), g.next(), g.next(), g.next())
    }()

    public init(_ token: some StringProtocol) {
        let k = Self.keys
        func digest(_ bytes: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
            var h1 = Hasher()
            h1.combine(k.0)
            h1.combine(k.1)
            var h2 = Hasher()
            h2.combine(k.2)
            h2.combine(k.3)
            // Whole words (the hasher's fast path), then the last 0–7 bytes in one word with
            // their count in its top byte; the hasher adds the total length of what it was
            // given, so different tokens never feed it the same sequence.
            let n = bytes.count
            var i = 0
            while i + 8 <= n {
                let w = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                h1.combine(w)
                h2.combine(w)
                i += 8
            }
            var last = UInt64(n - i) << 56
            var shift: UInt64 = 0
            while i < n {
                last |= UInt64(bytes[i]) << shift
                shift += 8
                i += 1
            }
            h1.combine(last)
            h2.combine(last)
            return (UInt64(UInt(bitPattern: h1.finalize())), UInt64(UInt(bitPattern: h2.finalize())))
        }
        let d =
            token.utf8.withContiguousStorageIfAvailable { digest(UnsafeRawBufferPointer($0)) }
            ?? Array(token.utf8).withUnsafeBytes(digest)
        (a, b) = d
    }

    public func hash(into h: inout Hasher) { h.combine(a) }
}

/// Tokens already verified, per event loop (no locks): a repeated token costs a keyed hash and a
/// lookup instead of a signature check. Bounded; an entry lasts until the token's `exp` (plus
/// the skew) and only while the provider's keys are the ones it was verified with.
public final class VerifiedTokenCache {
    struct Key: Hashable {
        var provider: UInt64
        var digest: TokenDigest
    }
    struct Entry {
        var identity: Identity
        var keyGeneration: UInt64
    }
    private var entries: [Key: Entry] = [:]
    public let capacity: Int
    public private(set) var hits = 0
    public private(set) var misses = 0

    public init(capacity: Int = 10_000) { self.capacity = max(16, capacity) }

    public var count: Int { entries.count }

    public func lookup(provider: JWTProviderRuntime, digest: TokenDigest, now: Double) -> Identity? {
        let key = Key(provider: provider.id, digest: digest)
        guard let e = entries[key] else {
            misses += 1
            return nil
        }
        if now > e.identity.validUntil || e.keyGeneration != provider.store.generation {
            entries[key] = nil
            misses += 1
            return nil
        }
        hits += 1
        return e.identity
    }

    public func insert(_ identity: Identity, provider: JWTProviderRuntime, digest: TokenDigest, keyGeneration: UInt64, now: Double) {
        if entries.count >= capacity { evict(now: now) }
        entries[Key(provider: provider.id, digest: digest)] = Entry(identity: identity, keyGeneration: keyGeneration)
    }

    /// Drops expired entries, then, if that was not enough, a quarter of the rest.
    private func evict(now: Double) {
        entries = entries.filter { now <= $0.value.identity.validUntil }
        if entries.count >= capacity * 7 / 8 {
            var drop = entries.count - capacity * 3 / 4
            for k in entries.keys {
                if drop == 0 { break }
                entries[k] = nil
                drop -= 1
            }
        }
    }
}
