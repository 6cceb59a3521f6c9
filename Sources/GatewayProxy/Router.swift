import GatewayConfig
import NIOHTTP1

/// Route selection (SPEC §2.7): routes are tried in order and the first whose every matcher
/// agrees wins. A route that matched all but the method makes the answer 405 instead of 404.
package enum RouteDecision {
    case matched(CompiledRoute)
    case notFound
    case methodNotAllowed(allow: [String])
}

public enum Router {
    /// `host`: the request's host (its `Host` header, or the authority of an absolute-form target).
    package static func route(
        _ snapshot: Snapshot, method: String, path: String, query: Substring?, headers: HTTPHeaders, host: Substring?
    ) -> RouteDecision {
        var allow: [String]? = nil
        var pathCopy = path
        return pathCopy.withUTF8 { pathBytes in
            let raw = UnsafeRawBufferPointer(pathBytes)
            for route in snapshot.routes {
                guard route.matchesPath(raw) else { continue }
                guard route.matchesHost(host) else { continue }
                if !route.headers.isEmpty && !matchesHeaders(route, headers) { continue }
                if !route.query.isEmpty && !matchesQuery(route, query) { continue }
                if !route.allowsMethod(method) {
                    var a = allow ?? []
                    for m in route.methods ?? [] where !a.contains(m) { a.append(m) }
                    allow = a
                    continue
                }
                return .matched(route)
            }
            if let allow { return .methodNotAllowed(allow: allow) }
            return .notFound
        }
    }

    static func matchesHeaders(_ route: CompiledRoute, _ headers: HTTPHeaders) -> Bool {
        for (name, value) in route.headers {
            guard headers[name].contains(where: { $0.utf8.elementsEqual(value.utf8) }) else { return false }
        }
        return true
    }

    static func matchesQuery(_ route: CompiledRoute, _ query: Substring?) -> Bool {
        guard let query else { return false }
        var params: [(Substring, Substring)] = []
        for pair in query.utf8.split(separator: UInt8(ascii: "&")).map({ Substring($0) }) {
            if let eq = pair.utf8.firstIndex(of: UInt8(ascii: "=")) {
                params.append((pair[..<eq], pair[pair.utf8.index(after: eq)...]))
            } else {
                params.append((pair, ""))
            }
        }
        for (name, value) in route.query {
            guard
                params.contains(where: {
                    percentDecoded($0.0).utf8.elementsEqual(name.utf8) && percentDecoded($0.1).utf8.elementsEqual(value.utf8)
                })
            else { return false }
        }
        return true
    }

    /// The pairs of a query string, names and values decoded (`percentDecoded`), in order: the
    /// one query parser of the gateway. A pair without `=` has an empty value; a pair that is
    /// only `=` has an empty name (never an index out of range).
    public static func queryPairs(_ query: Substring?) -> [(name: String, value: String)] {
        guard let query, !query.isEmpty else { return [] }
        return query.split(separator: "&").map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (percentDecoded(kv[0]), kv.count > 1 ? percentDecoded(kv[1]) : "")
        }
    }

    /// `application/x-www-form-urlencoded` decoding of a query name or value (`+` is a space).
    public static func percentDecoded(_ s: Substring) -> String {
        if !s.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) { return String(s) }
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "+") {
                out.append(32)
            } else if b == UInt8(ascii: "%"), it.count >= 2, let hi = hex(it[it.startIndex]), let lo = hex(it[it.startIndex + 1]) {
                out.append(hi << 4 | lo)
                it = it.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case 48...57: return b - 48
        case 65...70: return b - 55
        case 97...102: return b - 87
        default: return nil
        }
    }
}

/// What `GET /explain` shows (SPEC §5): the routes tried in order, why each one before the
/// winner did not match, and the decision.
public struct RouteExplanation: Sendable {
    public struct Step: Sendable {
        public var index: Int
        public var name: String
        /// nil when the route matched; else the first matcher that disagreed.
        public var mismatch: String?
    }
    public var normalizedPath: String?
    /// `matched`, `no_route`, `method_not_allowed`, or `bad_request` (a path the gateway refuses).
    public var decision: String
    public var route: CompiledRoute?
    public var allow: [String]
    public var steps: [Step]
    public var error: String?
}

extension Router {
    /// The same decision `route` makes, with the reason for every route passed over.
    public static func explain(
        _ snapshot: Snapshot, method: String, target: String, headers: [(String, String)], host: String?
    ) -> RouteExplanation {
        var out = RouteExplanation(decision: "no_route", allow: [], steps: [])
        let normalized: (path: String, query: Substring?)
        switch RequestPath.normalize(target) {
        case .success(let n): normalized = n
        case .failure(let why):
            out.decision = "bad_request"
            out.error = "\(why)"
            return out
        }
        out.normalizedPath = normalized.path
        var h = HTTPHeaders()
        for (n, v) in headers where HeaderBytes.isToken(n) && HeaderBytes.isFieldValue(v) { h.add(name: n, value: v) }
        let hostValue = host.map { Substring($0) }
        var pathCopy = normalized.path
        pathCopy.withUTF8 { pathBytes in
            let raw = UnsafeRawBufferPointer(pathBytes)
            for route in snapshot.routes {
                var reason: String?
                if !route.matchesPath(raw) {
                    reason = "path"
                } else if !route.matchesHost(hostValue) {
                    reason = "host"
                } else if !route.headers.isEmpty && !matchesHeaders(route, h) {
                    reason = "headers"
                } else if !route.query.isEmpty && !matchesQuery(route, normalized.query) {
                    reason = "query"
                } else if !route.allowsMethod(method) {
                    reason = "method"
                    for m in route.methods ?? [] where !out.allow.contains(m) { out.allow.append(m) }
                }
                out.steps.append(.init(index: route.index, name: route.name, mismatch: reason))
                if reason == nil {
                    out.decision = "matched"
                    out.route = route
                    return
                }
            }
            if !out.allow.isEmpty { out.decision = "method_not_allowed" }
        }
        return out
    }
}
