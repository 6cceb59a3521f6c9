import AsyncHTTPClient
import Atomics
import Foundation
import GatewayConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The keys of one JWKS source (a URL, a file, or an HMAC secret), kept current: fetched at
/// start, refreshed in the background every `jwks_refresh`, fetched again when a token names a
/// key it does not hold (at most once every `kidMissInterval`; concurrent misses wait on the
/// same fetch). A failed fetch keeps the last good keys.
public final class JWKSStore: Sendable {
    public enum Source: Sendable, Hashable, CustomStringConvertible {
        case uri(String)
        case file(String)
        case secret(env: String)
        public var description: String {
            switch self {
            case .uri(let u): return u
            case .file(let f): return "file:" + f
            case .secret(let e): return "env:" + e
            }
        }
    }

    public struct Settings: Sendable, Hashable {
        public var source: Source
        public var algorithms: Set<String>
        public var refreshNanos: Int64
        public var timeoutNanos: Int64
        /// `jwks_initial_fetch_timeout`: how long readiness waits for the first fetch.
        public var initialFetchNanos: Int64
        /// The secret of an HMAC source, read from the environment when the store is made.
        var secret: [UInt8]

        public init(_ spec: JWTProviderSpec, environment: [String: String]) {
            let c = spec.config
            if let u = c.jwksURI {
                source = .uri(u)
            } else if let f = c.jwksFile {
                source = .file(f)
            } else {
                source = .secret(env: c.hmacSecretEnv ?? "")
            }
            algorithms = Set(c.algorithms)
            refreshNanos = c.jwksRefresh.nanoseconds
            timeoutNanos = c.jwksTimeout.nanoseconds
            initialFetchNanos = c.jwksInitialFetchTimeout.nanoseconds
            secret = c.hmacSecretEnv.flatMap { environment[$0] }.map { Array($0.utf8) } ?? []
        }
    }

    public struct Status: Sendable {
        public var source: String
        public var keyIDs: [String]
        public var lastFetch: Date?
        public var lastError: String?
        public var fetches: Int
        public var ready: Bool
        public var skipped: [String]
    }

    private struct State {
        var keys = KeySet.empty
        var fetchedOnce = false
        /// The source answered, but with something that is not a usable JWKS.
        var failedForGood = false
        var lastFetch: Date?
        var lastError: String?
        var fetching = false
        var waiters: [@Sendable () -> Void] = []
        var lastMissFetch: NIODeadline?
        var fetches = 0
        var task: Task<Void, Never>?
        var stopped = false
    }

    public static let kidMissInterval = TimeAmount.seconds(30)
    static let maxDocumentBytes = 1 << 20

    public let settings: Settings
    /// Changes whenever the key material changes: cached verifications made with other keys
    /// are checked again.
    let keyGeneration = ManagedAtomic<UInt64>(0)
    private let state = NIOLockedValueBox(State())
    private let logger: Logger
    private let now: @Sendable () -> NIODeadline
    /// When the store was made: the initial fetch timeout runs from here.
    private let created: NIODeadline

    public init(settings: Settings, logger: Logger = Logger(label: "gateway.jwks"), now: @escaping @Sendable () -> NIODeadline = { .now() })
    {
        self.settings = settings
        self.logger = logger
        self.now = now
        created = now()
    }

    public var keys: KeySet { state.withLockedValue { $0.keys } }
    public var generation: UInt64 { keyGeneration.load(ordering: .acquiring) }
    /// Fetched once, failed for good, or waited for longer than `jwks_initial_fetch_timeout`:
    /// `/readyz` waits for this, and never for ever on a source that does not answer.
    public var isReady: Bool {
        if state.withLockedValue({ $0.fetchedOnce || $0.failedForGood }) { return true }
        return now() >= created + .nanoseconds(settings.initialFetchNanos)
    }

    public var status: Status {
        state.withLockedValue { s in
            Status(
                source: settings.source.description, keyIDs: s.keys.keyIDs.map { $0.isEmpty ? "(no kid)" : $0 }, lastFetch: s.lastFetch,
                lastError: s.lastError, fetches: s.fetches, ready: s.fetchedOnce || s.failedForGood, skipped: s.keys.skipped)
        }
    }

    /// Starts the first fetch and the background refresh.
    public func start() {
        let task = Task { [self] in
            var failures = 0
            while !Task.isCancelled {
                await fetchAndWait()
                if case .secret = settings.source { return }
                let failed = state.withLockedValue { $0.lastError != nil }
                failures = failed ? failures + 1 : 0
                // After a failure: 1s, 2s, 4s … at most 30s (or the refresh interval), until it answers.
                let delay =
                    failed
                    ? min(Int64(1_000_000_000) << min(failures - 1, 5), min(30_000_000_000, settings.refreshNanos))
                    : settings.refreshNanos
                try? await Task.sleep(nanoseconds: UInt64(max(delay, 1_000_000)))
            }
        }
        state.withLockedValue { s in
            if s.stopped { task.cancel() } else { s.task = task }
        }
    }

    public func stop() {
        state.withLockedValue { s in
            s.stopped = true
            s.task?.cancel()
            s.task = nil
        }
    }

    /// A fetch for a token whose `kid` is unknown: joins the fetch under way, or starts one
    /// unless one started less than `kidMissInterval` ago (then nil: the token is refused).
    public func fetchForUnknownKid(on loop: any EventLoop) -> EventLoopFuture<Void>? {
        let promise = loop.makePromise(of: Void.self)
        let outcome: (join: Bool, start: Bool) = state.withLockedValue { s in
            if s.fetching {
                s.waiters.append { promise.succeed() }
                return (true, false)
            }
            let t = now()
            if let last = s.lastMissFetch, t - last < Self.kidMissInterval { return (false, false) }
            s.lastMissFetch = t
            s.fetching = true
            s.waiters.append { promise.succeed() }
            return (true, true)
        }
        guard outcome.join else {
            promise.succeed()  // nobody waits on it
            return nil
        }
        if outcome.start { Task { await self.performFetch() } }
        return promise.futureResult
    }

    /// Fetches now (or waits for the fetch under way) and returns when it is done.
    public func fetchAndWait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let start: Bool = state.withLockedValue { s in
                s.waiters.append { c.resume() }
                if s.fetching { return false }
                s.fetching = true
                return true
            }
            if start { Task { await self.performFetch() } }
        }
    }

    private func performFetch() async {
        var result: Result<KeySet, FetchError>
        do {
            switch settings.source {
            case .secret:
                result = .success(await KeySet.fromSecret(settings.secret, allowed: settings.algorithms))
            case .file(let path):
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw FetchError(message: "cannot read \(path)", permanent: false)
                }
                result = .success(try await keySet([UInt8](data)))
            case .uri(let uri):
                result = .success(try await keySet(try await download(uri)))
            }
        } catch let e as FetchError {
            result = .failure(e)
        } catch {
            result = .failure(FetchError(message: "\(error)", permanent: false))
        }
        let waiters: [@Sendable () -> Void] = state.withLockedValue { s in
            s.fetches += 1
            switch result {
            case .success(let keys):
                if keys.fingerprint != s.keys.fingerprint { keyGeneration.wrappingIncrement(ordering: .releasing) }
                s.keys = keys
                s.fetchedOnce = true
                s.lastFetch = Date()
                s.lastError = nil
            case .failure(let e):
                s.lastError = e.message
                if e.permanent { s.failedForGood = true }
            }
            s.fetching = false
            defer { s.waiters = [] }
            return s.waiters
        }
        if case .failure(let e) = result {
            logger.warning(
                "JWKS fetch failed; keeping the last good keys", metadata: ["source": "\(settings.source)", "error": "\(e.message)"])
        }
        for w in waiters { w() }
    }

    private func keySet(_ bytes: [UInt8]) async throws -> KeySet {
        do {
            let keys = try await KeySet.fromJWKS(bytes, allowed: settings.algorithms)
            if keys.isEmpty {
                throw FetchError(
                    message: "no usable key: " + (keys.skipped.isEmpty ? "the set is empty" : keys.skipped.joined(separator: "; ")),
                    permanent: true)
            }
            return keys
        } catch let e as KeySetError {
            throw FetchError(message: e.description, permanent: true)
        }
    }

    private func download(_ uri: String) async throws -> [UInt8] {
        var request = HTTPClientRequest(url: uri)
        request.headers.add(name: "accept", value: "application/jwk-set+json, application/json")
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(settings.timeoutNanos))
        } catch {
            throw FetchError(message: "cannot fetch \(uri): \(error)", permanent: false)
        }
        guard response.status == .ok else {
            // A 4xx will not get better by itself; a 5xx may.
            throw FetchError(message: "\(uri) answered \(response.status.code)", permanent: (400..<500).contains(response.status.code))
        }
        do {
            var body = try await response.body.collect(upTo: Self.maxDocumentBytes)
            return body.readBytes(length: body.readableBytes) ?? []
        } catch {
            throw FetchError(message: "cannot read the JWKS from \(uri): \(error)", permanent: false)
        }
    }

    struct FetchError: Error {
        var message: String
        var permanent: Bool
    }
}
