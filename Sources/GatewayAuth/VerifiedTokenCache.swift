import Crypto

/// The sha256 of a token: what the cache is keyed by, so it never holds tokens themselves.
public struct TokenDigest: Hashable, Sendable {
    let a: UInt64, b: UInt64, c: UInt64, d: UInt64

    public init(_ token: some StringProtocol) {
        let digest =
            token.utf8.withContiguousStorageIfAvailable { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
            ?? SHA256.hash(data: Array(token.utf8))
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        digest.withUnsafeBytes { raw in
            words.0 = raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            words.1 = raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            words.2 = raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            words.3 = raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        }
        (a, b, c, d) = words
    }

    public func hash(into h: inout Hasher) { h.combine(a) }
}

/// Tokens already verified, per event loop (no locks): a repeated token costs a sha256 and a
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
