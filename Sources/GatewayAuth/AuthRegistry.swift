import Atomics
import Foundation
import GatewayConfig
import Logging
import NIOConcurrencyHelpers

/// One JWT provider of a snapshot: how its tokens are checked and where its keys come from.
public final class JWTProviderRuntime: Sendable {
    public let spec: JWTProviderSpec
    public let verifier: TokenVerifier
    public let store: JWKSStore
    /// Unique for the life of the process: verified-token caches key on it, so a provider
    /// whose settings changed never reuses a verification made under the old ones.
    public let id: UInt64

    private static let ids = ManagedAtomic<UInt64>(1)

    init(spec: JWTProviderSpec, store: JWKSStore) {
        self.spec = spec
        self.verifier = TokenVerifier(spec: spec)
        self.store = store
        self.id = Self.ids.loadThenWrappingIncrement(ordering: .relaxed)
    }
}

/// The JWT providers of the running snapshots and their key stores. A reload keeps the store
/// (and its keys) of every source whose settings did not change (SPEC §6).
public final class AuthRegistry: Sendable {
    private struct State {
        var stores: [JWKSStore.Settings: JWKSStore] = [:]
        var providers: [JWTProviderSpec: JWTProviderRuntime] = [:]
    }
    private let state = NIOLockedValueBox(State())
    private let environment: [String: String]
    private let logger: Logger

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger = Logger(label: "gateway.auth")) {
        self.environment = environment
        self.logger = logger
    }

    /// The providers of `snapshot`, indexed like `snapshot.jwtProviders`; stores are made
    /// (and start fetching) on first use.
    public func providers(for snapshot: Snapshot) -> [JWTProviderRuntime] {
        let specs = snapshot.jwtProviders
        var started: [JWKSStore] = []
        let out: [JWTProviderRuntime] = state.withLockedValue { s in
            specs.map { spec in
                if let p = s.providers[spec] { return p }
                let settings = JWKSStore.Settings(spec, environment: environment)
                let store: JWKSStore
                if let existing = s.stores[settings] {
                    store = existing
                } else {
                    store = JWKSStore(settings: settings, logger: logger)
                    s.stores[settings] = store
                    started.append(store)
                }
                let p = JWTProviderRuntime(spec: spec, store: store)
                s.providers[spec] = p
                return p
            }
        }
        for s in started { s.start() }
        return out
    }

    /// Stops the stores no provider of `snapshot` uses (after a reload has been published).
    public func retainOnly(_ snapshot: Snapshot) {
        let keep = Set(snapshot.jwtProviders)
        let stopped: [JWKSStore] = state.withLockedValue { s in
            s.providers = s.providers.filter { keep.contains($0.key) }
            let used = Set(s.providers.values.map { $0.store.settings })
            let gone = s.stores.filter { !used.contains($0.key) }
            for k in gone.keys { s.stores[k] = nil }
            return Array(gone.values)
        }
        for s in stopped { s.stop() }
    }

    /// Names of the providers some route of `snapshot` uses.
    public static func usedProviders(_ snapshot: Snapshot) -> Set<Int> {
        var used = Set<Int>()
        for r in snapshot.routes {
            for alt in r.auth?.alternatives ?? [] {
                if case .jwt(let i) = alt.method { used.insert(i) }
            }
        }
        return used
    }

    /// Every provider a route uses has fetched its keys once (or failed for good).
    public func isReady(_ snapshot: Snapshot) -> Bool {
        let all = providers(for: snapshot)
        return Self.usedProviders(snapshot).allSatisfy { i in i < all.count && all[i].store.isReady }
    }

    public func stopAll() {
        let all: [JWKSStore] = state.withLockedValue { s in
            defer {
                s.stores = [:]
                s.providers = [:]
            }
            return Array(s.stores.values)
        }
        for s in all { s.stop() }
    }
}
