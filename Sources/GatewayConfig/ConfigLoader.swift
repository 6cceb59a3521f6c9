import Crypto
import Foundation

/// What loading a file produced: the decoded file and its compiled snapshot when it is valid,
/// and every diagnostic (errors and warnings) with its path and line:column.
public struct LoadResult: Sendable {
    public var source: String
    public var file: GatewayFile?
    public var snapshot: Snapshot?
    public var diagnostics: [Diagnostic]
    public var version: String

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }
    public var isValid: Bool { snapshot != nil }
}

/// Reads, decodes, validates and compiles a config file (SPEC §2).
public enum ConfigLoader {
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> LoadResult {
        guard let data = FileManager.default.contents(atPath: path) else {
            let why = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            return LoadResult(source: path, diagnostics: [Diagnostic(path: "", message: "\(path) \(why)")], version: "")
        }
        return load(bytes: Array(data), source: path, environment: environment)
    }

    /// The version of a file: `sha256:` and the hex digest of its bytes.
    public static func version(of bytes: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    public static func load(bytes: [UInt8], source: String, environment: [String: String] = [:]) -> LoadResult {
        let version = version(of: bytes)
        var result = LoadResult(source: source, diagnostics: [], version: version)
        let locator: JSONLocator
        do {
            locator = try JSONLocator(parsing: bytes)
        } catch {
            result.diagnostics = [Diagnostic(path: "", message: "not valid JSON: \(error.message)", location: error.location)]
            return result
        }
        var diagnostics: [Diagnostic] = locator.duplicateKeys.map {
            Diagnostic(path: $0.path, message: "key appears twice in the same object", location: $0.location)
        }
        let sink = DiagnosticSink()
        let decoder = JSONDecoder()
        decoder.userInfo[DiagnosticSink.key] = sink
        var file: GatewayFile?
        do {
            file = try decoder.decode(GatewayFile.self, from: Data(bytes))
        } catch {
            sink.add(Diagnostic(decodingError: error, fallbackPath: []))
        }
        diagnostics += sink.all
        if let file {
            diagnostics += file.validate(environment: environment)
        }
        result.diagnostics = diagnostics.map { d in
            var d = d
            if d.location == nil { d.location = locator.keyLocation(of: d.path) ?? locator.nearestLocation(of: d.path) }
            return d
        }.sorted {
            // In file order; at one place, by path and message (validation walks dictionaries,
            // whose order changes from one load to the next).
            ($0.location?.line ?? 0, $0.location?.column ?? 0, $0.path, $0.message)
                < ($1.location?.line ?? 0, $1.location?.column ?? 0, $1.path, $1.message)
        }
        result.file = file
        if let file, result.errors.isEmpty {
            result.snapshot = Snapshot(file: file, version: version)
        }
        return result
    }
}
