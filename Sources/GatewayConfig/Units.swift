/// A duration written in the file as a number with a unit: `"250ms"`, `"5s"`, `"10m"`, `"8h"`, `"1d"`.
public struct ConfigDuration: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func seconds(_ s: Int64) -> ConfigDuration { ConfigDuration(nanoseconds: s * 1_000_000_000) }
    public static func milliseconds(_ ms: Int64) -> ConfigDuration { ConfigDuration(nanoseconds: ms * 1_000_000) }

    /// Parses `"1.5s"`, `"250ms"`, `"10m"`. Units: ns, us, ms, s, m, h, d.
    public init?(parsing text: String) {
        var number = Substring(text)
        var unit = Substring("")
        guard let unitStart = text.firstIndex(where: { !($0.isASCII && ($0.isNumber || $0 == ".")) }) else { return nil }
        number = text[..<unitStart]
        unit = text[unitStart...]
        guard !number.isEmpty, let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let scale: Double
        switch unit {
        case "ns": scale = 1
        case "us", "µs": scale = 1e3
        case "ms": scale = 1e6
        case "s": scale = 1e9
        case "m": scale = 60e9
        case "h": scale = 3600e9
        case "d": scale = 86400e9
        default: return nil
        }
        let ns = value * scale
        guard ns < 9.2e18 else { return nil }
        self.nanoseconds = Int64(ns)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text = try c.decode(String.self)
        guard let d = ConfigDuration(parsing: text) else {
            throw DecodingError.dataCorruptedError(
                in: c,
                debugDescription:
                    "\"\(text)\" is not a duration; write a number and a unit, like \"250ms\", \"5s\", \"10m\", \"8h\", \"1d\"")
        }
        self = d
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    public var description: String {
        let units: [(Int64, String)] = [
            (86_400_000_000_000, "d"), (3_600_000_000_000, "h"), (60_000_000_000, "m"), (1_000_000_000, "s"), (1_000_000, "ms"),
            (1_000, "us"),
        ]
        for (scale, name) in units where nanoseconds >= scale && nanoseconds % scale == 0 {
            return "\(nanoseconds / scale)\(name)"
        }
        return "\(nanoseconds)ns"
    }

    public var seconds: Double { Double(nanoseconds) / 1e9 }
    public static func < (a: ConfigDuration, b: ConfigDuration) -> Bool { a.nanoseconds < b.nanoseconds }
}

/// A size in bytes: an integer, or a string such as `"64KiB"`, `"10MiB"`, `"1GiB"`, `"500KB"`.
public struct ByteSize: Sendable, Hashable, Codable, CustomStringConvertible {
    public var bytes: Int

    public init(bytes: Int) { self.bytes = bytes }

    public init?(parsing text: String) {
        let trimmed = text.trimmingSpaces
        guard let unitStart = trimmed.firstIndex(where: { !($0.isASCII && ($0.isNumber || $0 == ".")) }) else {
            guard let n = Int(trimmed), n >= 0 else { return nil }
            self.bytes = n
            return
        }
        guard let value = Double(trimmed[..<unitStart]), value.isFinite, value >= 0 else { return nil }
        let scale: Double
        switch trimmed[unitStart...].trimmingSpaces {
        case "B": scale = 1
        case "KiB": scale = 1024
        case "MiB": scale = 1024 * 1024
        case "GiB": scale = 1024 * 1024 * 1024
        case "TiB": scale = 1024 * 1024 * 1024 * 1024
        case "KB", "kB": scale = 1000
        case "MB": scale = 1e6
        case "GB": scale = 1e9
        case "TB": scale = 1e12
        default: return nil
        }
        let total = value * scale
        guard total < 9e18 else { return nil }
        self.bytes = Int(total)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) {
            guard n >= 0 else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "a size cannot be negative") }
            self.bytes = n
            return
        }
        let text = try c.decode(String.self)
        guard let s = ByteSize(parsing: text) else {
            throw DecodingError.dataCorruptedError(
                in: c, debugDescription: "\"\(text)\" is not a size; write bytes as an integer or a string like \"64KiB\", \"10MiB\"")
        }
        self = s
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(bytes)
    }

    public var description: String { "\(bytes) bytes" }
}

extension StringProtocol {
    var trimmingSpaces: Substring {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}
