import Foundation

extension GatewayFile {
    /// Headers the gateway sets itself from the framing of each message.
    static let framingHeaders: Set<String> = [
        "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
    ]
    /// Sum of the weights of a consistent-hash upstream (1000 ring points per unit).
    static let maxHashWeight = 100
    static let balancers = ["round_robin", "least_request", "random", "consistent_hash"]

    /// Every semantic problem of the file (after decoding), each with its JSON path.
    public func validate(environment: [String: String] = [:]) -> [Diagnostic] {
        var out: [Diagnostic] = []
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: path, message: message)) }
        func warn(_ path: String, _ message: String) { out.append(Diagnostic(.warning, path: path, message: message)) }

        if listeners.isEmpty { error("listeners", "at least one listener is needed") }
        var names = Set<String>(), addresses = Set<String>()
        for l in listeners {
            let i = l.sourceIndex
            if HostPort(parsing: l.address) == nil {
                error("listeners[\(i)].address", "\"\(l.address)\" is not host:port (IPv6 as [::1]:8080)")
            }
            if !names.insert(l.name).inserted { error("listeners[\(i)].name", "listener name \"\(l.name)\" is used twice") }
            if !addresses.insert(l.address).inserted { error("listeners[\(i)].address", "address \(l.address) is used by two listeners") }
            if l.maxConnections < 1 || l.maxConnections > 1_000_000 {
                error("listeners[\(i)].max_connections", "must be between 1 and 1000000")
            }
            if let tls = l.tls {
                let tp = "listeners[\(i)].tls"
                var files = [("certificate_file", tls.certificateFile), ("private_key_file", tls.privateKeyFile)]
                for (name, pair) in tls.sni.sorted(by: { $0.key < $1.key }) {
                    if name.isEmpty || name.contains(" ") || name.contains("/") { error("\(tp).sni", "\"\(name)\" is not a host name") }
                    files += [
                        ("sni.\(name).certificate_file", pair.certificateFile), ("sni.\(name).private_key_file", pair.privateKeyFile),
                    ]
                }
                for (key, file) in files where !FileManager.default.isReadableFile(atPath: file) {
                    error("\(tp).\(key)", "cannot read \(file)")
                }
                if !["1.2", "1.3"].contains(tls.minVersion) { error("\(tp).min_version", "\"1.2\" or \"1.3\"") }
            }
        }
        if let admin {
            if let hp = HostPort(parsing: admin.address) {
                if !hp.isLoopback && admin.tokenEnv == nil {
                    error("admin.address", "the admin API on a non-loopback address (\(admin.address)) needs a token: set `token_env`")
                }
            } else {
                error("admin.address", "\"\(admin.address)\" is not host:port")
            }
            if let env = admin.tokenEnv, !env.isEmpty, !environment.isEmpty, (environment[env] ?? "").isEmpty {
                // Without the variable there is no token: on a non-loopback address that would
                // leave the admin API open, so it is an error there (`validate` run elsewhere,
                // with an empty environment, does not check it).
                if let hp = HostPort(parsing: admin.address), !hp.isLoopback {
                    error(
                        "admin.token_env",
                        "environment variable \(env) is not set or empty: the admin API on \(admin.address) would have no token")
                } else {
                    warn("admin.token_env", "environment variable \(env) is not set or empty")
                }
            }
        }

        validateServer(into: &out)

        for (name, u) in upstreams.sorted(by: { $0.key < $1.key }) {
            let p = JSONPath.format([.key("upstreams"), .key(name)])
            if u.targets.isEmpty { error("\(p).targets", "an upstream needs at least one target") }
            var seen = Set<String>()
            for (i, t) in u.targets.enumerated() {
                let tp = "\(p).targets[\(i)]"
                if let url = TargetURL(t.url) {
                    if url.scheme != "http" && url.scheme != "https" {
                        error(tp, "scheme `\(url.scheme)` is not supported; use http:// or https://")
                    }
                } else {
                    error(tp, "\"\(t.url)\" is not a target URL like http://10.0.0.5:8080 (no path)")
                }
                if !seen.insert(t.url).inserted { error(tp, "target \(t.url) is listed twice") }
                if !(1...1_000_000).contains(t.weight) { error("\(tp).weight", "weight must be between 1 and 1000000") }
            }
            if !Self.balancers.contains(u.balancer) {
                error("\(p).balancer", "unknown balancer \"\(u.balancer)\"; one of \(Self.balancers.joined(separator: ", "))")
            }
            if let h = u.hashOn {
                if HashOn(h) == nil {
                    error("\(p).hash_on", "\"\(h)\" is not one of header:NAME, cookie:NAME, claim:NAME, client_ip")
                }
                if u.balancer != "consistent_hash" { warn("\(p).hash_on", "hash_on is used only by the consistent_hash balancer") }
            }
            if u.balancer == "consistent_hash" && u.targets.reduce(0, { $0 + $1.weight }) > Self.maxHashWeight {
                error(
                    "\(p).targets",
                    "consistent_hash weights are relative and must add up to at most \(Self.maxHashWeight) (each unit is 1000 ring points)")
            }
            if u.connectTimeout.nanoseconds <= 0 { error("\(p).connect_timeout", "must be more than 0") }
            if u.maxConnectionsPerTarget < 1 { error("\(p).max_connections_per_target", "must be at least 1") }
            if u.maxPendingRequests < 0 { error("\(p).max_pending_requests", "must be 0 or more") }
            switch UpstreamProtocol(rawValue: u.protocol) {
            case nil:
                error("\(p).protocol", "unknown protocol \"\(u.protocol)\"; one of http1, h2, h2c")
            case .h2?:
                if u.targets.contains(where: { TargetURL($0.url)?.scheme == "http" }) {
                    error("\(p).protocol", "h2 is HTTP/2 over TLS: its targets are https:// (use h2c for http:// targets)")
                }
            case .h2c?:
                if u.targets.contains(where: { TargetURL($0.url)?.scheme == "https" }) {
                    error("\(p).protocol", "h2c is HTTP/2 in clear text: its targets are http:// (use h2 for https:// targets)")
                }
            case .http1?:
                if u.healthCheck?.grpc != nil {
                    error("\(p).health_check.grpc", "gRPC health checks need an HTTP/2 upstream (protocol h2 or h2c)")
                }
            }
            if let tls = u.tls {
                if !u.targets.contains(where: { TargetURL($0.url)?.scheme == "https" }) {
                    warn("\(p).tls", "no target is https://: these settings are not used")
                }
                if let ca = tls.caFile, !FileManager.default.isReadableFile(atPath: ca) {
                    error("\(p).tls.ca_file", "cannot read \(ca)")
                }
                if let n = tls.serverName, n.isEmpty || n.contains(" ") { error("\(p).tls.server_name", "\"\(n)\" is not a host name") }
                if !tls.verify {
                    warn(
                        "\(p).tls.verify",
                        "certificates of these targets are not verified: anyone on the path can read and change the traffic")
                }
            }
        }

        var routeNames = Set<String>()
        for r in routes {
            let i = r.sourceIndex
            let p = "routes[\(i)]"
            if let n = r.name {
                if n.isEmpty { error("\(p).name", "must not be empty") }
                if !routeNames.insert(n).inserted { error("\(p).name", "route name \"\(n)\" is used twice") }
            }
            if let path = r.match.path, case .failure(let e) = PathPattern.parse(path) {
                error("\(p).match.path", "\"\(path)\": \(e.message)")
            }
            if let prefix = r.match.pathPrefix, !prefix.hasPrefix("/") {
                error("\(p).match.path_prefix", "must start with /")
            }
            for (j, m) in (r.match.methods ?? []).enumerated() where !isToken(m) {
                error("\(p).match.methods[\(j)]", "\"\(m)\" is not an HTTP method")
            }
            if r.match.methods?.isEmpty == true {
                error("\(p).match.methods", "an empty list matches nothing; leave `methods` out to match all")
            }
            if let h = r.match.host, h.isEmpty || h.contains("/") { error("\(p).match.host", "\"\(h)\" is not a host name") }
            for name in (r.match.headers ?? [:]).keys where !isToken(name) {
                error(
                    JSONPath.format([.key("routes"), .index(i), .key("match"), .key("headers"), .key(name)]),
                    "\"\(name)\" is not a header name")
            }
            let destinations = [r.upstream != nil, r.respond != nil, r.split != nil, r.aggregate != nil].filter { $0 }.count
            if destinations != 1 {
                error(
                    p,
                    destinations == 0
                        ? "a route needs exactly one of `upstream`, `split`, `aggregate`, `respond`"
                        : "give only one of `upstream`, `split`, `aggregate`, `respond`")
            }
            if let u = r.upstream, upstreams[u] == nil {
                let hint = Array(upstreams.keys).nearest(to: u).map { "; did you mean \"\($0)\"?" } ?? ""
                error("\(p).upstream", "no upstream named \"\(u)\"\(hint)")
            }
            if let resp = r.respond {
                if !(200...599).contains(resp.status) {
                    error("\(p).respond.status", "\(resp.status) is not a final HTTP status (200-599)")
                }
                checkHeaders(resp.headers, path: "\(p).respond.headers", into: &out)
            }
            if let rw = r.rewrite {
                if let s = rw.stripPrefix, !s.hasPrefix("/") { error("\(p).rewrite.strip_prefix", "must start with /") }
                if let a = rw.addPrefix, !a.hasPrefix("/") { error("\(p).rewrite.add_prefix", "must start with /") }
                if let h = rw.host, !isAuthority(h) {
                    error("\(p).rewrite.host", "\"\(h)\" is not a host")
                }
            }
            if let t = r.timeout, t.nanoseconds <= 0 { error("\(p).timeout", "must be more than 0") }
            if let t = r.streamIdleTimeout, t.nanoseconds <= 0 { error("\(p).stream_idle_timeout", "must be more than 0") }
            for (key, ops) in [("request_headers", r.requestHeaders), ("response_headers", r.responseHeaders)] {
                guard let ops else { continue }
                checkHeaders(ops.set, path: "\(p).\(key).set", into: &out)
                checkHeaders(ops.add, path: "\(p).\(key).add", into: &out)
                for (j, n) in ops.remove.enumerated() where !isToken(n) {
                    error("\(p).\(key).remove[\(j)]", "\"\(n)\" is not a header name")
                }
                for n in Array(ops.set.keys) + Array(ops.add.keys) + ops.remove where Self.framingHeaders.contains(n.lowercased()) {
                    error("\(p).\(key)", "`\(n)` describes the connection or the message framing and is managed by the gateway")
                }
            }
        }
        if routes.isEmpty { warn("routes", "no routes: every request will get 404") }
        validateAuth(environment: environment, into: &out)
        validateRateLimits(into: &out)
        validateResilience(into: &out)

        if accessLog.format != "json" { error("access_log.format", "only \"json\" is supported") }
        if accessLog.path.isEmpty { error("access_log.path", "must be stdout, stderr or a file path") }
        return out
    }

    private func validateServer(into out: inout [Diagnostic]) {
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: "server.\(path)", message: message)) }
        let s = server
        if s.workers < 0 || s.workers > 1024 { error("workers", "must be between 0 (one per core) and 1024") }
        for (k, d) in [
            ("request_timeout", s.requestTimeout), ("idle_timeout", s.idleTimeout), ("header_read_timeout", s.headerReadTimeout),
            ("drain_timeout", s.drainTimeout), ("tunnel_idle_timeout", s.tunnelIdleTimeout),
        ]
        where d.nanoseconds <= 0 {
            error(k, "must be more than 0")
        }
        if s.maxHeaderBytes.bytes < 1024 { error("max_header_bytes", "must be at least 1024") }
        if s.maxHeaderBytes.bytes > 1024 * 1024 { error("max_header_bytes", "must be at most 1MiB") }
        if s.http2MaxConcurrentStreams < 1 || s.http2MaxConcurrentStreams > 10000 {
            error("http2_max_concurrent_streams", "must be between 1 and 10000")
        }
        for (i, c) in s.trustedProxies.enumerated() where CIDR(c) == nil {
            error("trusted_proxies[\(i)]", "\"\(c)\" is not an IP address or CIDR block")
        }
    }

    private func checkHeaders(_ headers: [String: String], path: String, into out: inout [Diagnostic]) {
        for (name, value) in headers {
            let p = path + JSONPath.format([.key("x"), .key(name)]).dropFirst(1)
            if !isToken(name) { out.append(Diagnostic(path: p, message: "\"\(name)\" is not a header name")) }
            if !HeaderBytes.isFieldValue(value) {
                out.append(Diagnostic(path: p, message: "a header value may not contain CR, LF, NUL or another control byte"))
            }
        }
    }
}

func isToken(_ s: String) -> Bool { HeaderBytes.isToken(s) }

/// `[v6]` or `[v6]:port`'s host part, checked on its bytes.
func isBracketedHost(_ h: String) -> Bool {
    guard h.hasPrefix("["), let close = h.firstIndex(of: "]") else { return false }
    return HeaderBytes.isHost(h[h.index(after: h.startIndex)..<close], bracketed: true)
}

/// A `Host` value the config sets (`rewrite.host`): host or host:port, checked on its bytes.
func isAuthority(_ h: String) -> Bool {
    if h.hasPrefix("[") {
        guard let close = h.firstIndex(of: "]"), isBracketedHost(h) else { return false }
        let rest = h[h.index(after: close)...]
        return rest.isEmpty || (rest.hasPrefix(":") && Int(rest.dropFirst()).map { (1...65535).contains($0) } == true)
    }
    let parts = h.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count <= 2, HeaderBytes.isHost(parts[0]) else { return false }
    return parts.count == 1 || Int(parts[1]).map { (1...65535).contains($0) } == true
}

/// `hash_on` of a consistent-hash upstream.
public enum HashOn: Sendable, Hashable, CustomStringConvertible {
    case header(String)
    case cookie(String)
    case claim(String)
    case clientIP

    public var description: String {
        switch self {
        case .header(let n): return "header:" + n
        case .cookie(let n): return "cookie:" + n
        case .claim(let n): return "claim:" + n
        case .clientIP: return "client_ip"
        }
    }

    public init?(_ text: String) {
        if text == "client_ip" { self = .clientIP; return }
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, !parts[1].isEmpty else { return nil }
        switch parts[0] {
        case "header": self = .header(parts[1].lowercased())
        case "cookie": self = .cookie(String(parts[1]))
        case "claim": self = .claim(String(parts[1]))
        default: return nil
        }
    }
}
