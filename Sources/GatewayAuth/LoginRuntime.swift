import AsyncHTTPClient
import Foundation
import GatewayConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// One login provider of the running snapshot: its endpoints (from the file, or OIDC
/// discovery at `issuer/.well-known/openid-configuration`, fetched in the background and
/// retried until it answers), its cookie key, and the token endpoint calls.
public final class LoginProviderRuntime: Sendable {
    public struct Endpoints: Sendable, Equatable {
        public var authorization: String
        public var token: String
        public var endSession: String?
    }

    public let spec: LoginProviderSpec
    /// Nil when the cookie secret is missing or not 32 bytes (validation refuses such a file
    /// when the environment is known).
    public let sealer: CookieSealer?
    public let clientAuth: LoginFlow.ClientAuth
    /// `LoginFlow.binding` of this provider: the associated data of its sealed cookies.
    public let binding: String
    private let resolved: NIOLockedValueBox<Endpoints?>
    /// Refreshes in flight by refresh token: one per session at a time, whichever loop asks.
    private let refreshes = NIOLockedValueBox<[String: Task<LoginFlow.Tokens, any Error>]>([:])
    private let discovery = NIOLockedValueBox<Task<Void, Never>?>(nil)
    private let logger: Logger

    init(spec: LoginProviderSpec, environment: [String: String], logger: Logger) {
        self.spec = spec
        self.logger = logger
        let c = spec.config
        sealer = environment[c.cookieSecretEnv].flatMap(CookieSealer.init(secret:))
        binding = LoginFlow.binding(provider: spec.name, issuer: c.issuer, clientID: c.clientID)
        let secret = c.clientSecretEnv.flatMap { environment[$0] } ?? ""
        switch c.clientAuth ?? (secret.isEmpty ? "none" : "client_secret_basic") {
        case "client_secret_post": clientAuth = .post(secret: secret)
        case "client_secret_basic": clientAuth = .basic(secret: secret)
        default: clientAuth = .none
        }
        if let a = c.authorizationEndpoint, let t = c.tokenEndpoint {
            resolved = NIOLockedValueBox(Endpoints(authorization: a, token: t, endSession: c.endSessionEndpoint))
        } else {
            resolved = NIOLockedValueBox(nil)
        }
    }

    public var endpoints: Endpoints? { resolved.withLockedValue { $0 } }

    /// Fetches the discovery document until it answers, unless the file gave the endpoints.
    func startDiscovery() {
        guard endpoints == nil else { return }
        let task = Task { [self] in
            var wait: UInt64 = 250_000_000
            while !Task.isCancelled {
                if let found = await discover() {
                    resolved.withLockedValue { $0 = found }
                    return
                }
                try? await Task.sleep(nanoseconds: wait)
                wait = min(wait * 2, 30_000_000_000)
            }
        }
        discovery.withLockedValue { $0 = task }
    }

    func stop() { discovery.withLockedValue { $0?.cancel() } }

    private func discover() async -> Endpoints? {
        let c = spec.config
        let url = c.issuer.hasSuffix("/") ? c.issuer + ".well-known/openid-configuration" : c.issuer + "/.well-known/openid-configuration"
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 256 * 1024)
            guard response.status == .ok,
                let doc = try JSONSerialization.jsonObject(with: Data(Array(buffer: body))) as? [String: Any],
                let auth = c.authorizationEndpoint ?? (doc["authorization_endpoint"] as? String),
                let token = c.tokenEndpoint ?? (doc["token_endpoint"] as? String)
            else {
                logger.warning("login discovery answered without the endpoints", metadata: ["provider": "\(spec.name)", "url": "\(url)"])
                return nil
            }
            if let iss = doc["issuer"] as? String, iss != c.issuer {
                logger.warning("login discovery names another issuer", metadata: ["provider": "\(spec.name)", "issuer": "\(iss)"])
                return nil
            }
            return Endpoints(
                authorization: auth, token: token, endSession: c.endSessionEndpoint ?? (doc["end_session_endpoint"] as? String))
        } catch {
            logger.warning("login discovery failed", metadata: ["provider": "\(spec.name)", "url": "\(url)", "error": "\(error)"])
            return nil
        }
    }

    /// The authorization code for tokens (the verifier proves this login started it).
    public func exchange(code: String, verifier: String, redirectURI: String, on loop: any EventLoop) -> EventLoopFuture<LoginFlow.Tokens> {
        call(LoginFlow.codeGrant(code: code, redirectURI: redirectURI, verifier: verifier), on: loop)
    }

    /// New tokens for a refresh token; concurrent callers with the same token share one request.
    public func refresh(_ refreshToken: String, on loop: any EventLoop) -> EventLoopFuture<LoginFlow.Tokens> {
        let task = refreshes.withLockedValue { inFlight -> Task<LoginFlow.Tokens, any Error> in
            if let t = inFlight[refreshToken] { return t }
            let t = Task { [self] in
                defer { _ = refreshes.withLockedValue { $0.removeValue(forKey: refreshToken) } }
                return try await post(LoginFlow.refreshGrant(refreshToken))
            }
            inFlight[refreshToken] = t
            return t
        }
        let promise = loop.makePromise(of: LoginFlow.Tokens.self)
        promise.completeWithTask { try await task.value }
        return promise.futureResult
    }

    private func call(_ grant: [(String, String)], on loop: any EventLoop) -> EventLoopFuture<LoginFlow.Tokens> {
        let promise = loop.makePromise(of: LoginFlow.Tokens.self)
        promise.completeWithTask { [self] in try await post(grant) }
        return promise.futureResult
    }

    private func post(_ grant: [(String, String)]) async throws -> LoginFlow.Tokens {
        guard let endpoint = endpoints?.token else { throw LoginFlow.TokenError.refused("the token endpoint is not known yet") }
        let (body, headers) = LoginFlow.tokenRequest(grant: grant, clientID: spec.config.clientID, auth: clientAuth)
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        for (n, v) in headers { request.headers.add(name: n, value: v) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let bytes = try await response.body.collect(upTo: 256 * 1024)
        return try LoginFlow.parseTokens(status: Int(response.status.code), body: Array(buffer: bytes)).get()
    }
}

/// The login providers of the running snapshots, kept across reloads that leave a
/// provider's settings alone (its discovered endpoints stay).
public final class LoginRegistry: Sendable {
    private let state = NIOLockedValueBox<[String: (AuthSection.LoginProvider, LoginProviderRuntime)]>([:])
    private let environment: [String: String]
    private let logger: Logger

    public init(environment: [String: String], logger: Logger = Logger(label: "gateway.login")) {
        self.environment = environment
        self.logger = logger
    }

    /// Indexed like `snapshot.loginProviders`.
    public func providers(for snapshot: Snapshot) -> [LoginProviderRuntime] {
        var started: [LoginProviderRuntime] = []
        let out = state.withLockedValue { byName in
            snapshot.loginProviders.map { spec -> LoginProviderRuntime in
                if let (config, existing) = byName[spec.name], config == spec.config, existing.spec.jwtIndex == spec.jwtIndex {
                    return existing
                }
                byName[spec.name]?.1.stop()
                let r = LoginProviderRuntime(spec: spec, environment: environment, logger: logger)
                byName[spec.name] = (spec.config, r)
                started.append(r)
                return r
            }
        }
        for r in started { r.startDiscovery() }
        return out
    }

    public func stopAll() { state.withLockedValue { for (_, r) in $0.values { r.stop() } } }
}
