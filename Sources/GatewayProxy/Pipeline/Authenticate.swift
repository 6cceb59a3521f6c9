import GatewayAuth
import GatewayConfig
import NIOCore
import NIOHTTP1

extension ProxyHandler {
    /// The route's `auth`: the first alternative whose credential is present and valid
    /// admits the request as an identity; otherwise 401 or 403 with a challenge. A token
    /// naming a key its provider does not hold yet holds the request until the keys are
    /// fetched, then is decided once more without another fetch.
    func authenticate(_ ex: Exchange, _ a: Admission) -> PhaseResult {
        guard let route = ex.route, route.login == nil, let auth = route.auth else { return .next }
        var fetched = false
        if case .keysFetched? = ex.resumed {
            ex.resumed = nil
            fetched = true
        }
        switch loopContext.authenticate(auth, headers: ex.head.headers, allowFetch: !fetched) {
        case .allow(let identity):
            ex.identity = identity
            return .next
        case .deny(let status, let failure, let provider, let scopes):
            loopContext.metrics.authFailure(provider: provider, reason: failure.rawValue)
            let error: GatewayError =
                status == .forbidden
                ? .init(.forbidden, "forbidden", failure.description, source: .downstream)
                : .init(.unauthorized, "unauthorized", failure.description, source: .downstream)
            let challenge = AuthDecision.challenge(status: status, failure: failure, scopes: scopes)
            return .reply(.error(error, extraHeaders: [("www-authenticate", challenge)]))
        case .wait(let fetch):
            return hold(ex, a, at: .authenticate, until: fetch) { _ in .keysFetched }
        }
    }
}
