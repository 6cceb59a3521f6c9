/// A compiled `match.path`: literal segments, `{name}` segments that capture one segment,
/// and an optional trailing `/*` that captures the rest.
public struct PathPattern: Sendable, Hashable {
    public enum Segment: Sendable, Hashable {
        case literal([UInt8])
        case parameter(String)
    }
    public var segments: [Segment]
    public var catchAll: Bool

    /// Parses a pattern; returns a message when it is malformed. Works on the UTF-8 bytes
    /// (a reload of 10,000 routes parses thousands of patterns).
    public static func parse(_ text: String) -> Result<PathPattern, PatternError> {
        let bytes = Array(text.utf8)
        guard bytes.first == UInt8(ascii: "/") else { return .failure(PatternError("must start with /")) }
        var parts = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        var catchAll = false
        if let last = parts.last, last.elementsEqual([UInt8(ascii: "*")]) {
            catchAll = true
            parts = parts.dropLast()
        }
        if parts.count == 1 && parts.first?.isEmpty == true { parts = [] }  // "/" itself
        var segments: [Segment] = []
        var names = Set<String>()
        for part in parts {
            if part.elementsEqual([UInt8(ascii: "*")]) {
                return .failure(PatternError("`*` is only allowed as the last segment (`/*`)"))
            }
            if part.count > 2 && part.first == UInt8(ascii: "{") && part.last == UInt8(ascii: "}") {
                let nameBytes = part.dropFirst().dropLast()
                let name = String(decoding: nameBytes, as: UTF8.self)
                guard nameBytes.allSatisfy({ isNameByte($0) }) else {
                    return .failure(PatternError("parameter name `\(name)` may use letters, digits, _ and - only"))
                }
                guard names.insert(name).inserted else { return .failure(PatternError("parameter `{\(name)}` appears twice")) }
                segments.append(.parameter(name))
            } else {
                if part.contains(UInt8(ascii: "{")) || part.contains(UInt8(ascii: "}")) {
                    return .failure(PatternError("a parameter must be a whole segment, like /users/{id}"))
                }
                if part.isEmpty && !segments.isEmpty || part.elementsEqual([46]) || part.elementsEqual([46, 46]) {
                    return .failure(PatternError("empty or dot segments never match a normalized path"))
                }
                segments.append(.literal(Array(part)))
            }
        }
        return .success(PathPattern(segments: segments, catchAll: catchAll))
    }

    private static func isNameByte(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
    }

    public struct PatternError: Error, Sendable { public var message: String; init(_ m: String) { message = m } }

    /// Matches a normalized path (no query). `/*` matches the pattern's own path and anything below it.
    @inlinable
    public func matches(_ path: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = path.count
        for seg in segments {
            guard i < n, path[i] == UInt8(ascii: "/") else { return false }
            i += 1
            var j = i
            while j < n && path[j] != UInt8(ascii: "/") { j += 1 }
            switch seg {
            case .literal(let lit):
                guard j - i == lit.count else { return false }
                var k = 0
                while k < lit.count {
                    if path[i + k] != lit[k] { return false }
                    k += 1
                }
            case .parameter:
                if j == i { return false }
            }
            i = j
        }
        if catchAll { return i == n || path[i] == UInt8(ascii: "/") }
        if segments.isEmpty { return n == 1 }  // pattern "/"
        return i == n
    }

    /// The captured values, in pattern order (`{name}` and `*` for the rest); nil when it does not match.
    public func captures(_ path: String) -> [(String, String)]? {
        let bytes = Array(path.utf8)
        let ok = bytes.withUnsafeBytes { matches($0) }
        guard ok else { return nil }
        var out: [(String, String)] = []
        // Split on the "/" byte, as `matches` does: split by Character, a combining mark
        // after a "/" would hide it (found by Fuzz/route).
        let parts = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        for (seg, part) in zip(segments, parts) {
            if case .parameter(let name) = seg { out.append((name, String(decoding: part, as: UTF8.self))) }
        }
        if catchAll {
            let rest = parts.dropFirst(segments.count).joined(separator: [UInt8(ascii: "/")])
            out.append(("*", String(decoding: Array(rest), as: UTF8.self)))
        }
        return out
    }
}

/// Request-target normalization (SPEC §2.7): percent-decoding of unreserved characters and
/// removal of dot segments. A path that climbs above the root is rejected.
public enum RequestPath {
    public enum Failure: Error, Sendable { case notOriginForm, climbsAboveRoot, badPercentEncoding }

    /// Splits `uri` into its normalized path and its raw query (without `?`, nil when absent).
    /// Returns the path unchanged (no allocation) in the common case of a clean path.
    public static func normalize(_ uri: String) -> Result<(path: String, query: Substring?), Failure> {
        var uri = Substring(uri)
        // absolute-form (a proxy request): keep the path part only
        // Every search below is on the UTF-8 view: byte compares, no grapheme breaking (a
        // combining mark after "/" must not hide the "/" from the parser).
        if uri.utf8.first != UInt8(ascii: "/") {
            if uri.utf8.elementsEqual("*".utf8) { return .failure(.notOriginForm) }
            guard let afterScheme = afterSchemeSeparator(uri) else { return .failure(.notOriginForm) }
            if let end = afterScheme.utf8.firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }) {
                uri = afterScheme[end...]
                if uri.utf8.first == UInt8(ascii: "?") { uri = "/" + uri }
            } else {
                uri = "/"
            }
        }
        // Searched on the UTF-8 view: byte compares, no grapheme breaking.
        var path = uri
        var query: Substring? = nil
        if let q = uri.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = uri[..<q]
            query = uri[uri.utf8.index(after: q)...]
        }
        if let h = path.utf8.firstIndex(of: UInt8(ascii: "#")) { path = path[..<h] }
        if isClean(path.utf8) { return .success((String(path), query)) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(path.utf8.count)
        var it = Array(path.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%") {
                guard it.count >= 2, let hi = hexValue(it[it.startIndex]), let lo = hexValue(it[it.startIndex + 1]) else {
                    return .failure(.badPercentEncoding)
                }
                let decoded = hi << 4 | lo
                if isUnreserved(decoded) {
                    bytes.append(decoded)
                } else {
                    bytes.append(b)
                    bytes.append(upperHex(it[it.startIndex]))
                    bytes.append(upperHex(it[it.startIndex + 1]))
                }
                it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        // remove dot segments (RFC 3986 §5.2.4), refusing to climb above the root
        var out: [[UInt8]] = []
        let segments = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        let trailingSlash =
            bytes.last == UInt8(ascii: "/") || segments.last.map { $0.elementsEqual([46]) || $0.elementsEqual([46, 46]) } == true
        for seg in segments {
            if seg.elementsEqual([46]) { continue }
            if seg.elementsEqual([46, 46]) {
                if out.popLast() == nil { return .failure(.climbsAboveRoot) }
                continue
            }
            out.append(Array(seg))
        }
        // keep empty segments as they were (except a trailing one, re-added below)
        if out.last?.isEmpty == true { out.removeLast() }
        var result: [UInt8] = []
        for seg in out {
            result.append(UInt8(ascii: "/"))
            result.append(contentsOf: seg)
        }
        if result.isEmpty || trailingSlash { result.append(UInt8(ascii: "/")) }
        return .success((String(decoding: result, as: UTF8.self), query))
    }

    /// The authority of an absolute-form target (`http://host:port/path` → `host:port`), without user info.
    public static func authority(of uri: String) -> Substring? {
        guard var rest = afterSchemeSeparator(Substring(uri)) else { return nil }
        if let end = rest.utf8.firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) {
            rest = rest[..<end]
        }
        if let at = rest.utf8.lastIndex(of: UInt8(ascii: "@")) { rest = rest[rest.utf8.index(after: at)...] }
        return rest.isEmpty ? nil : rest
    }

    /// What follows the first `://` of `uri`, found byte by byte; nil without one.
    static func afterSchemeSeparator(_ uri: Substring) -> Substring? {
        guard let separator = uri.utf8.firstRange(of: "://".utf8) else { return nil }
        return uri[separator.upperBound...]
    }

    @inline(__always)
    static func isClean(_ p: Substring.UTF8View) -> Bool {
        // clean: starts with "/", no "%", and no "/." (so no dot segments)
        var prevSlash = false
        for b in p {
            if b == UInt8(ascii: "%") { return false }
            if b == UInt8(ascii: ".") && prevSlash { return false }
            prevSlash = b == UInt8(ascii: "/")
        }
        return true
    }

    static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default: return false
        }
    }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    static func upperHex(_ b: UInt8) -> UInt8 {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "f")) ? b - 32 : b
    }
}
