import Foundation
import GatewayConfig
import GatewayProxy

/// The JSON of `GET /routes` and `GET /explain` (SPEC §5).
enum AdminViews {
    /// The compiled routes in match order.
    static func routes(_ snapshot: Snapshot) -> [UInt8] {
        let items = snapshot.routes.map { route(snapshot, $0) }
        return Array("{\"version\":\(jsonString(snapshot.version)),\"routes\":[\(items.joined(separator: ","))]}".utf8)
    }

    static func route(_ snapshot: Snapshot, _ r: CompiledRoute) -> String {
        var s = "{\"index\":\(r.index),\"name\":\(jsonString(r.name)),\"match\":\(matchJSON(r.config.match))"
        switch r.action {
        case .upstream(let i):
            let name = i >= 0 && i < snapshot.upstreams.count ? snapshot.upstreams[i].name : ""
            s += ",\"upstream\":\(jsonString(name))"
        case .respond(let status, _, _):
            s += ",\"respond\":\(status)"
        }
        if let t = r.timeoutNanos { s += ",\"timeout_ms\":\(t / 1_000_000)" }
        return s + "}"
    }

    /// Per target: the connections and requests the event loops hold for it now.
    static func upstreams(_ targets: [GatewayServer.TargetStatus]) -> [UInt8] {
        let items = targets.map { t in
            "{\"upstream\":\(jsonString(t.upstream)),\"url\":\(jsonString(t.url)),\"weight\":\(t.weight),"
                + "\"active_requests\":\(t.activeRequests),\"open_connections\":\(t.openConnections),"
                + "\"idle_connections\":\(t.idleConnections)}"
        }
        return Array("{\"targets\":[\(items.joined(separator: ","))]}".utf8)
    }

    /// `GET /explain?method=GET&path=/api/x&header=x-client:mobile&host=…`
    static func explain(_ snapshot: Snapshot, query: Substring?) -> [UInt8] {
        var method = "GET"
        var path = "/"
        var host: String?
        var headers: [(String, String)] = []
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            let key = Router.percentDecoded(parts[0])
            let value = parts.count > 1 ? Router.percentDecoded(parts[1]) : ""
            switch key {
            case "method": method = value.uppercased()
            case "path": path = value
            case "host": host = value
            case "header":
                if let colon = value.firstIndex(of: ":") {
                    headers.append(
                        (String(value[..<colon]), String(value[value.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
                }
            default: break
            }
        }
        if host == nil, let h = headers.first(where: { $0.0.lowercased() == "host" }) { host = h.1 }
        let e = Router.explain(snapshot, method: method, target: path, headers: headers, host: host)
        var s = "{\"method\":\(jsonString(method)),\"path\":\(jsonString(path))"
        if let n = e.normalizedPath { s += ",\"normalized_path\":\(jsonString(n))" }
        s += ",\"decision\":\(jsonString(e.decision))"
        if let error = e.error { s += ",\"error\":\(jsonString(error))" }
        if let r = e.route { s += ",\"route\":\(route(snapshot, r))" }
        if !e.allow.isEmpty { s += ",\"allow\":[\(e.allow.map(jsonString).joined(separator: ","))]" }
        let steps = e.steps.map { step in
            let result = step.mismatch.map { "\"no match: \($0)\"" } ?? "\"matched\""
            return "{\"index\":\(step.index),\"name\":\(jsonString(step.name)),\"result\":\(result)}"
        }
        s += ",\"tried\":[\(steps.joined(separator: ","))]}"
        return Array(s.utf8)
    }

    private static func matchJSON(_ m: Route.Match) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(m) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
