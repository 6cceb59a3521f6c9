import Foundation
import GatewayAuth
import GatewayConfig
import GatewayPolicies
import GatewayProxy
import GatewayReload

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
        case .split(let split):
            s += ",\"split\":\(splitJSON(split))"
        case .aggregate(let a):
            let backends = a.backends.map { b in
                let upstream = b.upstream >= 0 && b.upstream < snapshot.upstreams.count ? snapshot.upstreams[b.upstream].name : ""
                let after = b.after.map { jsonString(a.backends[$0].name) }.joined(separator: ",")
                return
                    "{\"name\":\(jsonString(b.name)),\"upstream\":\(jsonString(upstream)),\"required\":\(b.required),\"after\":[\(after)]}"
            }
            s += ",\"aggregate\":{\"backends\":[\(backends.joined(separator: ","))]}"
        }
        if let m = r.mirror { s += ",\"mirror\":{\"upstream\":\(jsonString(m.name)),\"percent\":\(Double(m.perMillion) / 10_000)}" }
        if let t = r.timeoutNanos { s += ",\"timeout_ms\":\(t / 1_000_000)" }
        if let a = r.auth { s += ",\"auth\":\(authJSON(snapshot, a))" }
        if let c = r.config.cors { s += ",\"cors\":{\"origins\":[\(c.origins.map(jsonString).joined(separator: ","))]}" }
        return s + "}"
    }

    /// A split's members with their weights and bucket ranges.
    static func splitJSON(_ split: SplitPolicy) -> String {
        var lower = 0
        let members = split.names.enumerated().map { i, name -> String in
            let upper = split.split.bounds[i]
            defer { lower = upper }
            return "{\"upstream\":\(jsonString(name)),\"weight\":\(split.split.weights[i]),\"buckets\":[\(lower),\(upper)]}"
        }
        var s = "{\"to\":[\(members.joined(separator: ","))]"
        if let sticky = split.sticky { s += ",\"sticky\":\(jsonString(sticky.description))" }
        if let h = split.overrideHeader { s += ",\"override_header\":\(jsonString(h))" }
        return s + "}"
    }

    /// What a route asks of a request: each accepted credential with its scopes and claims.
    static func authJSON(_ snapshot: Snapshot, _ a: AuthRequirement) -> String {
        let alts = a.alternatives.map { alt -> String in
            var s: String
            switch alt.method {
            case .jwt(let i):
                let p = i < snapshot.jwtProviders.count ? snapshot.jwtProviders[i] : nil
                s = "{\"jwt\":\(jsonString(p?.name ?? ""))"
                if let iss = p?.config.issuer { s += ",\"issuer\":\(jsonString(iss))" }
                if let aud = p?.config.audiences, !aud.isEmpty { s += ",\"audiences\":[\(aud.map(jsonString).joined(separator: ","))]" }
                if let from = p?.config.from { s += ",\"from\":[\(from.map(jsonString).joined(separator: ","))]" }
            case .apiKey:
                s = "{\"api_key\":true"
            }
            if !alt.scopes.isEmpty { s += ",\"scopes\":[\(alt.scopes.map(jsonString).joined(separator: ","))]" }
            if !alt.claims.isEmpty {
                let c = alt.claims.map { "\(jsonString($0.name)):[\($0.values.map(jsonString).joined(separator: ","))]" }
                s += ",\"claims\":{\(c.joined(separator: ","))}"
            }
            return s + "}"
        }
        return "{\"any_of\":[\(alts.joined(separator: ","))],\"summary\":\(jsonString(a.summary))}"
    }

    /// `GET /jwks`: per provider, the key ids held, the last fetch and the last error.
    static func jwks(_ providers: [(provider: String, status: JWKSStore.Status)]) -> [UInt8] {
        let fmt = ISO8601DateFormatter()
        let items = providers.map { p in
            var s = "{\"provider\":\(jsonString(p.provider)),\"source\":\(jsonString(p.status.source)),"
            s += "\"key_ids\":[\(p.status.keyIDs.map(jsonString).joined(separator: ","))],\"ready\":\(p.status.ready),"
            s += "\"fetches\":\(p.status.fetches),\"last_fetch\":\(p.status.lastFetch.map { jsonString(fmt.string(from: $0)) } ?? "null"),"
            s += "\"last_error\":\(p.status.lastError.map(jsonString) ?? "null")"
            if !p.status.skipped.isEmpty { s += ",\"skipped_keys\":[\(p.status.skipped.map(jsonString).joined(separator: ","))]" }
            return s + "}"
        }
        return Array("{\"providers\":[\(items.joined(separator: ","))]}".utf8)
    }

    /// Per target: the connections and requests the event loops hold for it now.
    static func upstreams(_ targets: [GatewayServer.TargetStatus]) -> [UInt8] {
        let items = targets.map { t in
            let until = t.ejectedUntil.map { jsonString(ConfigReloader.timestamp($0)) } ?? "null"
            let rate = t.successRate.map { String(format: "%.4f", $0) } ?? "null"
            return "{\"upstream\":\(jsonString(t.upstream)),\"url\":\(jsonString(t.url)),\"weight\":\(t.weight),"
                + "\"available\":\(t.available),\"health\":\(jsonString(t.health)),\"ejected_until\":\(until),"
                + "\"times_ejected\":\(t.timesEjected),\"total_ejections\":\(t.totalEjections),\"success_rate\":\(rate),"
                + "\"active_requests\":\(t.activeRequests),\"open_connections\":\(t.openConnections),"
                + "\"idle_connections\":\(t.idleConnections)}"
        }
        return Array("{\"targets\":[\(items.joined(separator: ","))]}".utf8)
    }

    /// The parameters of `GET /explain?method=GET&path=/api/x&header=x-client:mobile&host=…`,
    /// checked as bytes: a `header=` name that is not a token or a value with a control byte
    /// is refused (400) before it reaches `HTTPHeaders`, which traps on a non-ASCII name.
    struct ExplainQuery {
        var clientIP = "127.0.0.1"
        var method = "GET"
        var path = "/"
        var host: String?
        var headers: [(String, String)] = []
        var sticky: String?

        static func parse(_ query: Substring?) -> Result<ExplainQuery, GatewayError> {
            var q = ExplainQuery()
            // (`=` and `==` are pairs with an empty name: fuzz-headers found `/explain?==` trapping.)
            for (key, value) in Router.queryPairs(query) {
                switch key {
                case "method":
                    guard HeaderBytes.isToken(value) else { return .failure(.badRequest("method=\(value) is not an HTTP method")) }
                    q.method = value.uppercased()
                case "path": q.path = value
                case "host": q.host = value
                case "client_ip": q.clientIP = value
                case "sticky": q.sticky = value
                case "header":
                    guard let colon = value.firstIndex(of: ":") else {
                        return .failure(.badRequest("header= takes NAME:VALUE"))
                    }
                    let name = String(value[..<colon])
                    let v = String(value[value.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                    guard HeaderBytes.isToken(name) else { return .failure(.badRequest("header= has a name that is not a header name")) }
                    guard HeaderBytes.isFieldValue(v) else {
                        return .failure(.badRequest("header= has a value with a control byte (CR, LF, NUL...)"))
                    }
                    q.headers.append((name, v))
                default: break
                }
            }
            return .success(q)
        }
    }

    /// `GET /explain?…`: the error body when the query is refused (see `ExplainQuery`).
    static func explain(_ snapshot: Snapshot, query: Substring?, server: GatewayServer? = nil) -> [UInt8] {
        switch ExplainQuery.parse(query) {
        case .success(let q): return explain(snapshot, q, server: server)
        case .failure(let e): return Array(e.body(requestID: "").utf8)
        }
    }

    static func explain(_ snapshot: Snapshot, _ q: ExplainQuery, server: GatewayServer?) -> [UInt8] {
        let (clientIP, method, path, headers, sticky) = (q.clientIP, q.method, q.path, q.headers, q.sticky)
        var host = q.host
        if host == nil, let h = headers.first(where: { $0.0.lowercased() == "host" }) { host = h.1 }
        let e = Router.explain(snapshot, method: method, target: path, headers: headers, host: host)
        var s = "{\"method\":\(jsonString(method)),\"path\":\(jsonString(path))"
        if let n = e.normalizedPath { s += ",\"normalized_path\":\(jsonString(n))" }
        s += ",\"decision\":\(jsonString(e.decision))"
        if let error = e.error { s += ",\"error\":\(jsonString(error))" }
        if let r = e.route {
            s += ",\"route\":\(route(snapshot, r))"
            if case .split(let split) = r.action, let key = sticky {
                // The member a sticky key lands on: the same hash and buckets as the data path.
                let bucket = CanarySplit.bucket(StableHash.hash(key))
                let member = split.split.member(forBucket: bucket)
                s += ",\"sticky\":{\"key\":\(jsonString(key)),\"bucket\":\(bucket),\"upstream\":\(jsonString(split.names[member]))}"
            }
            if let server {
                let l = server.explainLimits(snapshot, route: r, headers: headers, clientIP: clientIP)
                if r.auth != nil {
                    s += ",\"credential\":\(l.credential.map(jsonString) ?? "null")"
                    if let f = l.authFailure { s += ",\"auth_failure\":\(jsonString(f))" }
                }
                s += ",\"rate_limit\":{\"limit\":\(jsonString(l.limit)),\"tier\":\(l.tier.map(jsonString) ?? "null"),"
                s += "\"key\":\(l.key.map(jsonString) ?? "null"),\"per_ip\":\(l.perIP),\"shadow\":\(l.shadow)}"
            }
        }
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

/// `GET /explain` for the `headers` fuzz target (SPI, not API): the query as the admin API
/// reads it, answered for `snapshot`. `ok` is false when the query is refused (400).
@_spi(Fuzzing) public enum AdminExplain {
    public static func answer(_ snapshot: Snapshot, query: Substring) -> (ok: Bool, body: [UInt8]) {
        switch AdminViews.ExplainQuery.parse(query) {
        case .success(let q): return (true, AdminViews.explain(snapshot, q, server: nil))
        case .failure(let e): return (false, Array(e.body(requestID: "").utf8))
        }
    }
}
