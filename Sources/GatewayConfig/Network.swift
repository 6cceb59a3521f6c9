#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `host:port` as written in `listeners[].address` and `admin.address`; IPv6 as `[::1]:8080`.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(parsing text: String) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") { return nil }
        }
        guard !hostPart.isEmpty, let port = Int(portPart), (0...65535).contains(port) else { return nil }
        self.host = String(hostPart)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// True for 127.0.0.0/8, ::1 and `localhost`.
    public var isLoopback: Bool {
        if host == "localhost" { return true }
        guard let ip = IPAddressBytes(host) else { return false }
        return ip.isLoopback
    }
}

/// The host of a `Host` value or URI authority as a client sends it.
public enum HostName {
    /// The host without its port or IPv6 brackets, lower-cased; nil when the port is not a
    /// number or a bracket is not closed.
    public static func withoutPort(_ authority: some StringProtocol) -> String? {
        let lower = authority.lowercased()
        if lower.hasPrefix("[") {
            guard let close = lower.firstIndex(of: "]") else { return nil }
            let rest = lower[lower.index(after: close)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && Int(rest.dropFirst()) != nil) else { return nil }
            return String(lower[lower.index(after: lower.startIndex)..<close])
        }
        let parts = lower.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, !parts[0].isEmpty, parts.count == 1 || Int(parts[1]) != nil else { return nil }
        return String(parts[0])
    }

    /// `localhost`, a `*.localhost` name (RFC 6761), or a loopback address (of `withoutPort`'s form).
    public static func isLoopback(_ name: String) -> Bool {
        name == "localhost" || name.hasSuffix(".localhost") || IPAddressBytes(name)?.isLoopback == true
    }
}

/// An IPv4 or IPv6 address as bytes (4 or 16), parsed with `inet_pton`.
public struct IPAddressBytes: Sendable, Hashable {
    public var bytes: [UInt8]

    public init?(_ text: some StringProtocol) {
        var text = String(text)
        if let pct = text.firstIndex(of: "%") { text = String(text[..<pct]) }  // zone id
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            let b = withUnsafeBytes(of: &v6) { Array($0) }
            // IPv4-mapped IPv6 (::ffff:a.b.c.d) compares as IPv4
            if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {
                bytes = Array(b[12..<16])
            } else {
                bytes = b
            }
            return
        }
        return nil
    }

    public var isLoopback: Bool {
        if bytes.count == 4 { return bytes[0] == 127 }
        return bytes == [UInt8](repeating: 0, count: 15) + [1]
    }
}

/// A CIDR block of `trusted_proxies`, e.g. `10.0.0.0/8` or `fd00::/8`; a bare address is a /32 or /128.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public var network: [UInt8]
    public var prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first, let addr = IPAddressBytes(first) else { return nil }
        let maxLen = addr.bytes.count * 8
        var len = maxLen
        if parts.count == 2 {
            guard let l = Int(parts[1]), (0...maxLen).contains(l) else { return nil }
            len = l
        }
        network = addr.bytes
        prefixLength = len
    }

    public func contains(_ ip: IPAddressBytes) -> Bool {
        guard ip.bytes.count == network.count else { return false }
        var remaining = prefixLength
        var i = 0
        while remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xff : UInt8(truncatingIfNeeded: 0xff << (8 - remaining))
            if ip.bytes[i] & mask != network[i] & mask { return false }
            remaining -= 8
            i += 1
        }
        return true
    }

    public var description: String { "\(network.map(String.init).joined(separator: "."))/\(prefixLength)" }
}

/// `http://host:port` of an upstream target.
public struct TargetURL: Sendable, Hashable {
    public var scheme: String
    public var host: String
    public var port: Int

    public init?(_ text: String) {
        guard let sep = text.range(of: "://") else { return nil }
        scheme = text[..<sep.lowerBound].lowercased()
        var rest = Substring(text[sep.upperBound...])
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/"), !rest.contains("?"), !rest.contains("@") else { return nil }
        let defaultPort = scheme == "https" ? 443 : 80
        let bracketed = rest.hasPrefix("[")
        if bracketed {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.isEmpty {
                port = defaultPort
            } else {
                guard after.hasPrefix(":"), let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
        } else {
            host = String(rest)
            port = defaultPort
        }
        // Checked on its bytes: the host goes into `Host` lines and TLS server names.
        guard HeaderBytes.isHost(host, bracketed: bracketed) else { return nil }
    }

    /// `host:port` as sent in the `Host` header when a route does not rewrite it.
    public var authority: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return (scheme == "http" && port == 80) || (scheme == "https" && port == 443) ? h : "\(h):\(port)"
    }
}
