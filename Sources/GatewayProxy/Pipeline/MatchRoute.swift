import GatewayConfig
import NIOCore
import NIOHTTP1

/// The second phase: the request target normalized, the authority it is routed on, and the
/// route that takes it (a CORS preflight routed as the request it announces). A login
/// provider's callback and logout paths are the gateway's own, whatever the routes say.
enum MatchRoute {
    enum Outcome {
        case matched(CompiledRoute, ProxyHandler.Admission, preflight: Bool)
        case loginEndpoint(provider: Int, isCallback: Bool, path: String, query: Substring?)
        /// `close`: the target itself was faulty, so nothing after it on the connection is trusted.
        case refuse(GatewayError, extraHeaders: [(String, String)], close: Bool)
    }

    /// `authority` is set when an absolute-form target names another authority than `Host`.
    static func match(
        _ head: HTTPRequestHead, facts: HeadFacts, snapshot: Snapshot, trusted: Bool, authority out: inout String?
    ) -> Outcome {
        let normalized: (path: String, query: Substring?)
        switch RequestPath.normalize(head.uri) {
        case .success(let n): normalized = n
        case .failure(let why):
            let message: String
            switch why {
            case .climbsAboveRoot: message = "the path climbs above the root"
            case .badPercentEncoding: message = "bad percent-encoding in the path"
            case .notOriginForm: message = "the request target must be a path"
            }
            return .refuse(.badRequest(message), extraHeaders: [], close: true)
        }

        // The authority of an absolute-form target takes the place of `Host` (RFC 9112 §3.2.2),
        // for routing and for what is forwarded alike: a request routed on one name (no auth)
        // never reaches the upstream under another. HTTP/2's `:path` in absolute form arrives
        // here the same way.
        let authority = head.uri.utf8.first == UInt8(ascii: "/") ? nil : RequestPath.authority(of: head.uri)
        if let authority {
            guard HeadGuards.isValidHost(String(authority)) else {
                return .refuse(.badRequest("invalid authority in the request target"), extraHeaders: [], close: true)
            }
            if facts.host.map({ !HeadGuards.sameAuthority($0, authority) }) ?? true { out = String(authority) }
        }

        if !snapshot.loginProviders.isEmpty, let (i, isCallback) = loginPath(snapshot, normalized.path) {
            return .loginEndpoint(provider: i, isCallback: isCallback, path: normalized.path, query: normalized.query)
        }

        var method = head.method.rawValue
        // A CORS preflight is routed as the request it announces; a route with `cors` answers it
        // before authentication (a preflight carries no credentials).
        var preflight = false
        if head.method == .OPTIONS, head.headers.contains(name: "origin"),
            let announced = head.headers.first(name: "access-control-request-method"), !announced.isEmpty
        {
            preflight = true
            method = announced
        }
        let host = authority ?? facts.host.map { Substring($0) }
        var route: CompiledRoute
        switch Router.route(snapshot, method: method, path: normalized.path, query: normalized.query, headers: head.headers, host: host) {
        case .matched(let r): route = r
        case .notFound: return .refuse(.noRoute(), extraHeaders: [], close: false)
        case .methodNotAllowed(let allow):
            return .refuse(.methodNotAllowed(), extraHeaders: [("allow", allow.joined(separator: ", "))], close: false)
        }
        if preflight && route.cors == nil {
            // Not a route with CORS: the OPTIONS request is routed as itself.
            switch Router.route(
                snapshot, method: "OPTIONS", path: normalized.path, query: normalized.query, headers: head.headers, host: host)
            {
            case .matched(let r): route = r
            case .notFound: return .refuse(.noRoute(), extraHeaders: [], close: false)
            case .methodNotAllowed(let allow):
                return .refuse(.methodNotAllowed(), extraHeaders: [("allow", allow.joined(separator: ", "))], close: false)
            }
            preflight = false
        }
        let admission = ProxyHandler.Admission(
            snapshot: snapshot, path: normalized.path, query: normalized.query, trusted: trusted,
            expectsContinue: facts.expectsContinue)
        return .matched(route, admission, preflight: preflight)
    }

    /// The login provider whose callback or logout path this is (`true`: the callback).
    static func loginPath(_ snapshot: Snapshot, _ path: String) -> (Int, Bool)? {
        for p in snapshot.loginProviders {
            if p.config.callbackPath == path { return (p.index, true) }
            if p.config.logoutPath == path { return (p.index, false) }
        }
        return nil
    }
}
