import GatewayPolicies

extension GatewayFile {
    /// `health_check` and `outlier_detection` of each upstream, `retry` and `fault` of each route.
    func validateResilience(into out: inout [Diagnostic]) {
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: path, message: message)) }
        func warn(_ path: String, _ message: String) { out.append(Diagnostic(.warning, path: path, message: message)) }

        for (name, u) in upstreams.sorted(by: { $0.key < $1.key }) {
            let p = JSONPath.format([.key("upstreams"), .key(name)])
            if let h = u.healthCheck {
                let hp = "\(p).health_check"
                if !h.path.hasPrefix("/") || h.path.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) {
                    error("\(hp).path", "must be a path starting with / (no spaces)")
                }
                if h.interval.nanoseconds < 10_000_000 { error("\(hp).interval", "must be at least 10ms") }
                if h.timeout.nanoseconds <= 0 { error("\(hp).timeout", "must be more than 0") }
                if h.timeout > h.interval { warn("\(hp).timeout", "is longer than the interval: probes of one target will overlap") }
                if h.healthyThreshold < 1 { error("\(hp).healthy_threshold", "must be at least 1") }
                if h.unhealthyThreshold < 1 { error("\(hp).unhealthy_threshold", "must be at least 1") }
                let s = h.expectedStatus
                if s.count != 2 || !s.allSatisfy({ (100...599).contains($0) }) || s[0] > s[1] {
                    error("\(hp).expected_status", "must be an inclusive range [low, high] of statuses between 100 and 599")
                }
            }
            if let o = u.outlierDetection {
                let op = "\(p).outlier_detection"
                if o.consecutive5xx < 0 { error("\(op).consecutive_5xx", "must be 0 (off) or more") }
                if o.consecutiveGatewayFailures < 0 { error("\(op).consecutive_gateway_failures", "must be 0 (off) or more") }
                if o.interval.nanoseconds < 1_000_000 { error("\(op).interval", "must be at least 1ms") }
                if o.baseEjectionTime.nanoseconds <= 0 { error("\(op).base_ejection_time", "must be more than 0") }
                if o.maxEjectionTime < o.baseEjectionTime {
                    error("\(op).max_ejection_time", "must be at least base_ejection_time (\(o.baseEjectionTime))")
                }
                if !(0...100).contains(o.maxEjectionPercent) { error("\(op).max_ejection_percent", "must be between 0 and 100") }
                if o.maxEjectionPercent * u.targets.count < 100 {
                    warn(
                        "\(op).max_ejection_percent",
                        "\(o.maxEjectionPercent)% of \(u.targets.count) target(s) is less than one target: nothing will ever be ejected")
                }
                if let sr = o.successRate {
                    if sr.minimumHosts < 1 { error("\(op).success_rate.minimum_hosts", "must be at least 1") }
                    if sr.requestVolume < 1 { error("\(op).success_rate.request_volume", "must be at least 1") }
                    if !(sr.stdevFactor > 0 && sr.stdevFactor.isFinite) { error("\(op).success_rate.stdev_factor", "must be more than 0") }
                }
                if o.consecutive5xx == 0 && o.consecutiveGatewayFailures == 0 && o.successRate == nil {
                    warn(op, "every ejection rule is off")
                }
            }
        }

        for r in routes {
            let p = "routes[\(r.sourceIndex)]"
            if let split = r.split {
                let sp = "\(p).split"
                if split.to.isEmpty { error("\(sp).to", "list at least one member") }
                if split.to.count == 1 { warn("\(sp).to", "a split with one member sends everything to it") }
                var seen = Set<String>()
                for (j, m) in split.to.enumerated() {
                    if upstreams[m.upstream] == nil {
                        let hint = Array(upstreams.keys).nearest(to: m.upstream).map { "; did you mean \"\($0)\"?" } ?? ""
                        error("\(sp).to[\(j)].upstream", "no upstream named \"\(m.upstream)\"\(hint)")
                    }
                    if !seen.insert(m.upstream).inserted { error("\(sp).to[\(j)].upstream", "\(m.upstream) is listed twice") }
                    if !(0...1_000_000).contains(m.weight) { error("\(sp).to[\(j)].weight", "must be between 0 and 1000000") }
                }
                if !split.to.isEmpty && split.to.allSatisfy({ $0.weight == 0 }) {
                    error("\(sp).to", "at least one weight must be more than 0")
                }
                if let sticky = split.sticky, HashOn(sticky) == nil {
                    error("\(sp).sticky", "\"\(sticky)\" is not one of claim:NAME, header:NAME, cookie:NAME, client_ip")
                }
                if let h = split.overrideHeader, !isToken(h) { error("\(sp).override_header", "\"\(h)\" is not a header name") }
            }
            if let shape = r.shape { Self.validateShape(shape, path: "\(p).shape", into: &out) }
            if let aggregate = r.aggregate { validateAggregate(r, aggregate, into: &out) }
            if let m = r.mirror {
                let mp = "\(p).mirror"
                if upstreams[m.upstream] == nil {
                    let hint = Array(upstreams.keys).nearest(to: m.upstream).map { "; did you mean \"\($0)\"?" } ?? ""
                    error("\(mp).upstream", "no upstream named \"\(m.upstream)\"\(hint)")
                }
                if !(m.percent >= 0 && m.percent <= 100) { error("\(mp).percent", "must be between 0 and 100") }
                if let u = upstreams[m.upstream], u.protocol != "http1" {
                    error("\(mp).upstream", "mirrors go out as HTTP/1.1: \"\(m.upstream)\" is \(u.protocol) (mirror to an http1 upstream)")
                }
                if r.upstream == nil && r.split == nil { warn(mp, "only a route to an upstream or a split is mirrored") }
                if m.upstream == r.upstream {
                    warn("\(mp).upstream", "mirrors to the route's own upstream: every mirrored request is served twice")
                }
            }
            if let retry = r.retry {
                let rp = "\(p).retry"
                if r.upstream == nil && r.split == nil && r.aggregate == nil {
                    warn(rp, "only a route to an upstream, a split or an aggregate retries")
                }
                if !(1...10).contains(retry.attempts) {
                    error("\(rp).attempts", "must be between 1 and 10 (tries in all, the first included)")
                }
                if retry.on.isEmpty { error("\(rp).on", "give at least one condition") }
                for (j, c) in retry.on.enumerated() where RetryCondition(c) == nil {
                    error("\(rp).on[\(j)]", "\"\(c)\" is not one of connect-failure, reset, gateway-error, 5xx, status:NNN")
                }
                if let t = retry.perTryTimeout {
                    if t.nanoseconds <= 0 { error("\(rp).per_try_timeout", "must be more than 0") }
                    if let total = r.timeout, t > total { warn("\(rp).per_try_timeout", "is longer than the route timeout (\(total))") }
                }
                if retry.backoff.base.nanoseconds <= 0 { error("\(rp).backoff.base", "must be more than 0") }
                if retry.backoff.max < retry.backoff.base { error("\(rp).backoff.max", "must be at least backoff.base") }
                for (j, m) in retry.methods.enumerated() where !isToken(m) {
                    error("\(rp).methods[\(j)]", "\"\(m)\" is not an HTTP method")
                }
                for (j, m) in retry.methods.enumerated() where ["POST", "PATCH", "CONNECT"].contains(m.uppercased()) {
                    warn("\(rp).methods[\(j)]", "\(m) is not idempotent: a retry may apply the request twice")
                }
                if !(retry.budgetPercent >= 0 && retry.budgetPercent <= 100) { error("\(rp).budget_percent", "must be between 0 and 100") }
            }
            if let f = r.fault {
                let fp = "\(p).fault"
                if f.delay == nil && f.abort == nil { warn(fp, "has neither delay nor abort") }
                if let d = f.delay {
                    if d.duration.nanoseconds <= 0 { error("\(fp).delay.duration", "must be more than 0") }
                    if !(d.percent >= 0 && d.percent <= 100) { error("\(fp).delay.percent", "must be between 0 and 100") }
                }
                if let a = f.abort {
                    if !(400...599).contains(a.status) { error("\(fp).abort.status", "must be an error status (400-599)") }
                    if !(a.percent >= 0 && a.percent <= 100) { error("\(fp).abort.percent", "must be between 0 and 100") }
                }
            }
        }
    }

    /// Every path well formed; a path that the other steps make impossible is a warning.
    static func validateShape(_ s: ShapeConfig, path p: String, into out: inout [Diagnostic]) {
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: path, message: message)) }
        func warn(_ path: String, _ message: String) { out.append(Diagnostic(.warning, path: path, message: message)) }
        let dotted = "is not a dot path like \"data.user\" (no empty segments)"
        if let t = s.target, ShapeSpec.path(t) == nil { error("\(p).target", "\"\(t)\" \(dotted)") }
        for (j, a) in (s.allow ?? []).enumerated() where ShapeSpec.path(a) == nil { error("\(p).allow[\(j)]", "\"\(a)\" \(dotted)") }
        for (j, d) in s.deny.enumerated() where ShapeSpec.path(d) == nil { error("\(p).deny[\(j)]", "\"\(d)\" \(dotted)") }
        for (from, to) in s.rename where from.isEmpty || to.isEmpty {
            error("\(p).rename", "\"\(from)\" → \"\(to)\": keys must not be empty")
        }
        if let g = s.group, g.isEmpty { error("\(p).group", "must not be empty") }
        if s.maxBytes.bytes < 1 { error("\(p).max_bytes", "must be more than 0") }
        if s.allow?.isEmpty == true { warn("\(p).allow", "an empty list keeps nothing: every object becomes {}") }
        // Paths the other steps make impossible.
        if let allow = s.allow {
            let trie = PathTrie(allow.compactMap(ShapeSpec.path))
            for (j, d) in s.deny.enumerated() {
                if let path = ShapeSpec.path(d), !trie.overlaps(path) {
                    warn("\(p).deny[\(j)]", "\"\(d)\" can never match: `allow` already removes it")
                }
            }
            let roots = Set(allow.compactMap { ShapeSpec.path($0)?.first })
            for from in s.rename.keys.sorted() where !roots.contains(from) {
                warn("\(p).rename", "\"\(from)\" can never match: `allow` keeps no such top-level key")
            }
        }
        let denied = Set(s.deny.compactMap { ShapeSpec.path($0) }.filter { $0.count == 1 }.map { $0[0] })
        for from in s.rename.keys.sorted() where denied.contains(from) {
            warn("\(p).rename", "\"\(from)\" can never match: `deny` removes it")
        }
    }
}
