import GatewayPolicies

extension GatewayFile {
    /// Route `aggregate`: backends, templates, `after` as a DAG.
    func validateAggregate(_ r: Route, _ a: AggregateConfig, into out: inout [Diagnostic]) {
        func error(_ path: String, _ message: String) { out.append(Diagnostic(path: path, message: message)) }
        func warn(_ path: String, _ message: String) { out.append(Diagnostic(.warning, path: path, message: message)) }
        let p = "routes[\(r.sourceIndex)].aggregate"
        if a.backends.isEmpty { error("\(p).backends", "list at least one backend") }
        if let t = a.timeout, t.nanoseconds <= 0 { error("\(p).timeout", "must be more than 0") }
        if let t = a.timeout, let total = r.timeout, t > total {
            warn("\(p).timeout", "is longer than the route's timeout (\(total)), which ends the request first")
        }
        if r.rewrite != nil {
            error(
                "routes[\(r.sourceIndex)].rewrite",
                "an aggregate route takes its backend paths from `backends[].path`; `rewrite` does not apply")
        }
        let params = Set(
            r.match.path.flatMap { try? PathPattern.parse($0).get() }.map { pattern in
                pattern.segments.compactMap { seg -> String? in
                    if case .parameter(let n) = seg { return n }
                    return nil
                }
            } ?? [])
        let names = a.backends.map(\.name)
        let reserved: Set<String> = ["param", "claim", "header", "query"]
        var seen = Set<String>()
        for (i, b) in a.backends.enumerated() {
            let bp = "\(p).backends[\(i)]"
            if b.name.isEmpty || b.name.contains(".") || reserved.contains(b.name) {
                error("\(bp).name", "\"\(b.name)\" cannot name a backend (not empty, no dot, not param/claim/header/query)")
            }
            if !seen.insert(b.name).inserted { error("\(bp).name", "backend name \"\(b.name)\" is used twice") }
            if upstreams[b.upstream] == nil {
                let hint = Array(upstreams.keys).nearest(to: b.upstream).map { "; did you mean \"\($0)\"?" } ?? ""
                error("\(bp).upstream", "no upstream named \"\(b.upstream)\"\(hint)")
            }
            if let t = b.timeout, t.nanoseconds <= 0 { error("\(bp).timeout", "must be more than 0") }
            if let t = b.timeout, let total = a.timeout ?? r.timeout, t > total {
                warn("\(bp).timeout", "is longer than the time all backends get (\(total)); it is cut to what is left of that")
            }
            if let g = b.group, g.isEmpty { error("\(bp).group", "must not be empty") }
            if let shape = b.shape { Self.validateShape(shape, path: "\(bp).shape", into: &out) }
            for (j, dep) in b.after.enumerated() {
                if dep == b.name {
                    error("\(bp).after[\(j)]", "a backend cannot wait for itself")
                } else if !names.contains(dep) {
                    let hint = names.nearest(to: dep).map { "; did you mean \"\($0)\"?" } ?? ""
                    error("\(bp).after[\(j)]", "no backend named \"\(dep)\"\(hint)")
                }
            }
            guard b.path.hasPrefix("/") else {
                error("\(bp).path", "must start with /")
                continue
            }
            switch PathTemplate.parse(b.path) {
            case .failure(let e):
                let why: String
                switch e {
                case .unclosed: why = "a { is not closed"
                case .empty(let inner): why = "{\(inner)} is not SOURCE.NAME (param, claim, header, query or a backend's name)"
                case .unknown(let c): why = "a stray \(c)"
                }
                error("\(bp).path", "\"\(b.path)\": \(why)")
            case .success(let t):
                for part in t.parts {
                    guard case .value(let source) = part else { continue }
                    switch source {
                    case .param(let n) where !params.contains(n):
                        error("\(bp).path", "{param.\(n)}: the route's match.path captures no {\(n)}")
                    case .backend(let n, _) where !b.after.contains(n):
                        error("\(bp).path", "{\(n)…} reads backend \"\(n)\": list it in `after`")
                    default: break
                    }
                }
            }
        }
        // `after` must not loop (depth-first search with colours).
        var state = Array(repeating: 0, count: a.backends.count)  // 0 new, 1 on the stack, 2 done
        func visit(_ i: Int) -> Bool {
            if state[i] == 1 { return false }
            if state[i] == 2 { return true }
            state[i] = 1
            for dep in a.backends[i].after { if let j = names.firstIndex(of: dep), j != i, !visit(j) { return false } }
            state[i] = 2
            return true
        }
        for i in a.backends.indices where !visit(i) {
            error("\(p).backends[\(i)].after", "`after` makes a cycle through \"\(a.backends[i].name)\"")
            break
        }
    }
}
