import GatewayPolicies

/// SPEC §2.7 route `aggregate`: several backend calls merged into one JSON response.
public struct AggregateConfig: Sendable, Codable, Hashable {
    /// The time all backends get together (default: the route's `timeout`).
    public var timeout: ConfigDuration?
    public var backends: [Backend]

    public struct Backend: Sendable, Codable, Hashable {
        public var name: String
        public var upstream: String
        /// A path template: `/users/{claim.sub}`, `/orders?user={param.id}`, `/recs/{profile.favorite}`.
        public var path: String
        public var group: String?
        public var timeout: ConfigDuration?
        public var required: Bool = false
        public var shape: ShapeConfig?
        public var after: [String] = []

        enum CodingKeys: String, CodingKey, CaseIterable { case name, upstream, path, group, timeout, required, shape, after }

        public init(name: String, upstream: String, path: String) {
            self.name = name
            self.upstream = upstream
            self.path = path
        }

        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            upstream = try c.decode(String.self, forKey: .upstream)
            path = try c.decode(String.self, forKey: .path)
            group = try c.decodeIfPresent(String.self, forKey: .group)
            timeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .timeout)
            required = try c.decodeIfPresent(Bool.self, forKey: .required) ?? false
            shape = try c.decodeIfPresent(ShapeConfig.self, forKey: .shape)
            after = try c.decodeIfPresent([String].self, forKey: .after) ?? []
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case timeout, backends }

    public init(backends: [Backend]) { self.backends = backends }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        timeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .timeout)
        backends = try c.decode([Backend].self, forKey: .backends)
    }
}

/// A backend path template, parsed: literal text and placeholders. A value is escaped the
/// same way in the path and in the query (everything but unreserved characters), so it can
/// add neither a segment nor a parameter.
public struct PathTemplate: Sendable, Hashable {
    public enum Source: Sendable, Hashable {
        case param(String)
        case claim(String)
        case header(String)
        case query(String)
        /// A field (dot path) of an earlier backend's JSON response.
        case backend(String, [String])
    }
    public enum Part: Sendable, Hashable {
        case literal(String)
        case value(Source)
    }
    public var parts: [Part]

    public enum ParseError: Error, Equatable { case unclosed, empty(String), unknown(String) }

    public static func parse(_ text: String) -> Result<PathTemplate, ParseError> {
        var parts: [Part] = []
        var literal = ""
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if c == "{" {
                guard let close = text[i...].firstIndex(of: "}") else { return .failure(.unclosed) }
                let inner = String(text[text.index(after: i)..<close])
                if !literal.isEmpty {
                    parts.append(.literal(literal))
                    literal = ""
                }
                let pieces = inner.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                guard pieces.count >= 2, pieces.allSatisfy({ !$0.isEmpty }) else { return .failure(.empty(inner)) }
                let rest = pieces.dropFirst().joined(separator: ".")
                let source: Source
                switch pieces[0] {
                case "param": source = .param(rest)
                case "claim": source = .claim(rest)
                case "header": source = .header(rest.lowercased())
                case "query": source = .query(rest)
                default: source = .backend(pieces[0], Array(pieces.dropFirst()))
                }
                parts.append(.value(source))
                i = text.index(after: close)
                continue
            }
            if c == "}" { return .failure(.unknown("}")) }
            literal.append(c)
            i = text.index(after: i)
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        return .success(PathTemplate(parts: parts))
    }

    /// The backends a template reads from.
    public var backendNames: [String] {
        parts.compactMap {
            if case .value(.backend(let name, _)) = $0 { return name }
            return nil
        }
    }

    /// The path with every placeholder filled, each value percent-encoded for where it
    /// stands; nil when a value is missing, or when a value makes a path segment `.` or `..`
    /// (escaping keeps dots, which are unreserved, and a dot segment would climb out of the
    /// path the template names).
    public func render(_ value: (Source) -> String?) -> String? {
        var out = ""
        var inQuery = false
        var segmentStart = out.utf8.count
        var segmentHasValue = false
        func segmentIsDots() -> Bool {
            let seg = out.utf8.dropFirst(segmentStart)
            return segmentHasValue && (1...2).contains(seg.count) && seg.allSatisfy { $0 == UInt8(ascii: ".") }
        }
        for part in parts {
            switch part {
            case .literal(let s):
                var rest = Substring(s)
                while !inQuery, let i = rest.utf8.firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }) {
                    out += rest[..<i]
                    if segmentIsDots() { return nil }
                    let isQuery = rest.utf8[i] == UInt8(ascii: "?")
                    out += isQuery ? "?" : "/"
                    inQuery = isQuery
                    segmentStart = out.utf8.count
                    segmentHasValue = false
                    rest = rest[rest.utf8.index(after: i)...]
                }
                out += rest
            case .value(let source):
                guard let v = value(source) else { return nil }
                out += Self.escape(v)
                segmentHasValue = true
            }
        }
        if !inQuery && segmentIsDots() { return nil }
        return out
    }

    /// RFC 3986: unreserved characters stay; everything else is %XX of its UTF-8 bytes.
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            let unreserved =
                (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x2E || b == 0x5F
                || b == 0x7E
            if unreserved {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 0xF)]))
            }
        }
        return out
    }
}

/// Route `aggregate`, compiled: backends with indexes into `Snapshot.upstreams`, their
/// templates parsed, and `after` as indexes (validation guarantees a DAG).
public struct AggregatePolicy: Sendable {
    public struct Backend: Sendable {
        public var name: String
        public var upstream: Int
        public var template: PathTemplate
        public var group: String?
        public var timeoutNanos: Int64?
        public var required: Bool
        public var shape: ShapeSpec?
        public var after: [Int]
    }
    public var timeoutNanos: Int64?
    public var backends: [Backend]

    init(_ a: AggregateConfig, upstreams index: [String: Int]) {
        timeoutNanos = a.timeout?.nanoseconds
        let names = a.backends.map(\.name)
        backends = a.backends.map { b in
            Backend(
                name: b.name, upstream: index[b.upstream] ?? -1,
                template: (try? PathTemplate.parse(b.path).get()) ?? PathTemplate(parts: [.literal(b.path)]), group: b.group,
                timeoutNanos: b.timeout?.nanoseconds, required: b.required, shape: b.shape.map { ShapePolicy($0).spec },
                after: b.after.compactMap { names.firstIndex(of: $0) })
        }
    }
}
