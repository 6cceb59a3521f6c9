import Foundation
import GatewayConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// The certificates of a TLS listener (SPEC §2.1 `tls`): the default pair and one per SNI
/// name, read from their files and read again when a file changes. Every handshake asks
/// for the pair of the name the client sent (or the default) as it is now, so new
/// handshakes get a new certificate at once and open connections keep the one they have.
final class ListenerCertificates: Sendable {
    struct Pair {
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }
    private struct State {
        var pairs: [String: Pair] = [:]  // "" is the default
        var stamps: [String: Date] = [:]  // file → modification date when read
    }
    let spec: Listener.TLS
    let listener: String
    private let state = NIOLockedValueBox(State())
    private static let logger = Logger(label: "gateway.tls")

    init(listener: String, spec: Listener.TLS) throws {
        self.listener = listener
        self.spec = spec
        var s = State()
        for (name, files) in Self.files(spec) {
            s.pairs[name] = try Self.load(files.cert, files.key)
            s.stamps[files.cert] = Self.modified(files.cert)
            s.stamps[files.key] = Self.modified(files.key)
        }
        state.withLockedValue { $0 = s }
    }

    private static func files(_ spec: Listener.TLS) -> [(String, (cert: String, key: String))] {
        [("", (spec.certificateFile, spec.privateKeyFile))]
            + spec.sni.sorted { $0.key < $1.key }.map { ($0.key.lowercased(), ($0.value.certificateFile, $0.value.privateKeyFile)) }
    }

    private static func load(_ cert: String, _ key: String) throws -> Pair {
        Pair(chain: try NIOSSLCertificate.fromPEMFile(cert), key: try NIOSSLPrivateKey(file: key, format: .pem))
    }

    private static func modified(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }

    /// Reads again the pairs whose files changed; a pair that does not load keeps the old one
    /// (logged). Returns whether anything was swapped.
    @discardableResult
    func reloadIfChanged() -> Bool {
        var swapped = false
        for (name, files) in Self.files(spec) {
            let now = (Self.modified(files.cert), Self.modified(files.key))
            let changed = state.withLockedValue { $0.stamps[files.cert] != now.0 || $0.stamps[files.key] != now.1 }
            guard changed else { continue }
            do {
                let pair = try Self.load(files.cert, files.key)
                state.withLockedValue { s in
                    s.pairs[name] = pair
                    s.stamps[files.cert] = now.0
                    s.stamps[files.key] = now.1
                }
                swapped = true
                Self.logger.info(
                    "certificate reloaded", metadata: ["listener": "\(listener)", "name": "\(name.isEmpty ? "default" : name)"])
            } catch {
                Self.logger.error(
                    "certificate files changed but do not load; the previous certificate stays",
                    metadata: ["listener": "\(listener)", "file": "\(files.cert)", "error": "\(error)"])
            }
        }
        return swapped
    }

    /// The certificate for a handshake: the SNI name's, else the default.
    func override(for host: String?) -> NIOSSLContextConfigurationOverride {
        let pair = state.withLockedValue { s in host.flatMap { s.pairs[$0.lowercased()] } ?? s.pairs[""] }
        var o = NIOSSLContextConfigurationOverride()
        if let pair {
            o.certificateChain = pair.chain.map { .certificate($0) }
            o.privateKey = .privateKey(pair.key)
        }
        return o
    }

    /// The listener's server context: TLS `min_version` and up, ALPN `h2` (with `http2`) and
    /// `http/1.1`, the certificate chosen per handshake.
    func makeContext(http2: Bool) throws -> NIOSSLContext {
        guard let initial = state.withLockedValue({ $0.pairs[""] }) else { throw NIOSSLError.failedToLoadCertificate }
        var config = TLSConfiguration.makeServerConfiguration(
            certificateChain: initial.chain.map { .certificate($0) }, privateKey: .privateKey(initial.key))
        config.minimumTLSVersion = spec.minVersion == "1.3" ? .tlsv13 : .tlsv12
        config.applicationProtocols = http2 ? ["h2", "http/1.1"] : ["http/1.1"]
        config.sslContextCallback = { [self] values, promise in promise.succeed(override(for: values.serverHostname)) }
        return try NIOSSLContext(configuration: config)
    }
}
