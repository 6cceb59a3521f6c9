import Synchronization

/// One problem found in a config file, with the JSON path it is about and where that is in the text.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable { case error, warning }
    public var severity: Severity
    public var path: String
    public var message: String
    public var location: SourceLocation?

    public init(_ severity: Severity = .error, path: String, message: String, location: SourceLocation? = nil) {
        self.severity = severity
        self.path = path
        self.message = message
        self.location = location
    }

    public var description: String {
        let at = location.map { "\($0): " } ?? ""
        let p = path.isEmpty ? "(top level)" : path
        return "\(at)\(severity.rawValue): \(p): \(message)"
    }
}

/// Collects diagnostics while `JSONDecoder` runs, so that one bad key does not hide the next.
final class DiagnosticSink: Sendable {
    private let items = Mutex<[Diagnostic]>([])

    func add(_ d: Diagnostic) { items.withLock { $0.append(d) } }
    var all: [Diagnostic] { items.withLock { $0 } }

    static let key = CodingUserInfoKey(rawValue: "gateway.diagnostics")!
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) {
        self.stringValue = "\(intValue)"
        self.intValue = intValue
    }
}

extension Array where Element == any CodingKey {
    var jsonPath: [JSONPathComponent] {
        map { k in k.intValue.map { .index($0) } ?? .key(k.stringValue) }
    }
}

/// Keys the file format defines but that a later part of the gateway implements.
/// They are reported as such instead of as typos.
let notYetImplemented = "is part of the file format but not implemented in this version of gateway"

extension Decoder {
    var sink: DiagnosticSink? { userInfo[DiagnosticSink.key] as? DiagnosticSink }

    /// Records every key of this object that `Keys` does not name. Unknown keys are errors (SPEC §2).
    func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_: Keys.Type, reserved: Set<String> = []) throws {
        let c = try container(keyedBy: AnyKey.self)
        // `Keys(stringValue:)` answers without building a set (or a key path) per object:
        // a file of 10,000 routes decodes some 40,000 objects.
        for key in c.allKeys where Keys(stringValue: key.stringValue) == nil {
            let path = JSONPath.format((codingPath + [key]).jsonPath)
            if reserved.contains(key.stringValue) {
                sink?.add(Diagnostic(path: path, message: "`\(key.stringValue)` \(notYetImplemented)"))
            } else {
                let hint = Keys.allCases.map { $0.stringValue }.nearest(to: key.stringValue).map { "; did you mean `\($0)`?" } ?? ""
                sink?.add(Diagnostic(path: path, message: "unknown key `\(key.stringValue)`\(hint)"))
            }
        }
    }

    /// Decodes a value whose errors are recorded instead of aborting the whole file.
    func record(_ error: any Error) {
        sink?.add(Diagnostic(decodingError: error, fallbackPath: codingPath))
    }
}

extension Diagnostic {
    init(decodingError error: any Error, fallbackPath: [any CodingKey]) {
        switch error {
        case DecodingError.keyNotFound(let key, let ctx):
            self.init(path: JSONPath.format((ctx.codingPath + [key]).jsonPath), message: "required key `\(key.stringValue)` is missing")
        case DecodingError.typeMismatch(let type, let ctx):
            self.init(path: JSONPath.format(ctx.codingPath.jsonPath), message: "expected \(Self.describe(type))")
        case DecodingError.valueNotFound(let type, let ctx):
            self.init(path: JSONPath.format(ctx.codingPath.jsonPath), message: "expected \(Self.describe(type)), found null")
        case DecodingError.dataCorrupted(let ctx):
            self.init(path: JSONPath.format(ctx.codingPath.jsonPath), message: ctx.debugDescription)
        default:
            self.init(path: JSONPath.format(fallbackPath.jsonPath), message: "\(error)")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type, is UInt16.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is [Any].Type: return "an array"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "an object (\(name))"
        }
    }
}

extension KeyedDecodingContainer {
    /// A JSON object of named entries, each decoded on its own (`Collected`): the error of
    /// every bad entry is recorded, not only the first met. Decoding the whole dictionary
    /// would stop at the first bad entry in hash order, which changes from one load to the
    /// next, so the same file would give different diagnostics (found by Fuzz/config).
    func decodeEntries<T: Decodable & Sendable>(_: T.Type, forKey key: Key) throws -> [String: T]? {
        try decodeIfPresent([String: Collected<T>].self, forKey: key)?.compactMapValues(\.value)
    }
}

/// A value decoded on its own: an error inside it is recorded and the rest of the file still decodes.
struct Collected<T: Decodable & Sendable>: Decodable, Sendable {
    var value: T?
    init(from decoder: any Decoder) throws {
        do { value = try T(from: decoder) } catch {
            decoder.record(error)
            value = nil
        }
    }
}

extension Array where Element == String {
    /// The closest name by edit distance, for "did you mean" hints. A tie goes to the name
    /// that sorts first, so the hint does not depend on the order of a dictionary's keys
    /// (which changes from one process to the next).
    func nearest(to word: String) -> String? {
        var best: (String, Int)?
        for candidate in self {
            let d = editDistance([UInt8](candidate.utf8), [UInt8](word.utf8))
            guard d <= Swift.max(2, candidate.count / 3) else { continue }
            if let b = best, b.1 < d || (b.1 == d && b.0 <= candidate) { continue }
            best = (candidate, d)
        }
        return best?.0
    }
}

private func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
