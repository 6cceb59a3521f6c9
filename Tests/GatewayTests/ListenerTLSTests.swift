import Foundation
import GatewayConfig
import GatewayProxy
import Testing

/// TLS termination on a listener (issue 10): HTTPS with a test CA, SNI picking the
/// certificate, and a certificate swapped on disk seen by the next handshake (its fingerprint)
/// while a connection opened before keeps working. Checked with curl and a NIOSSL client.
@Suite struct ListenerTLSTests {
    /// `curl` against the listener; the status code, or nil when TLS (or anything) failed.
    static func curl(_ port: Int, host: String, ca: String) async -> Int? {
        await Tool.curl(["-o", "/dev/null", "--cacert", ca, "--resolve", "\(host):\(port):127.0.0.1", "https://\(host):\(port)/hello"])
            .status
    }

    @Test(.timeLimit(.minutes(2))) func httpsWithSNIAndACertificateSwappedOnDisk() async throws {
        let main = try await TestCA()
        let api = try await TestCA(name: "api.test", ipSAN: false)
        let next = try await TestCA()
        defer {
            main.remove()
            api.remove()
            next.remove()
        }
        // The listener reads its default pair from copies the test can replace.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cert = dir.appendingPathComponent("gw.pem").path
        let key = dir.appendingPathComponent("gw.key").path
        try FileManager.default.copyItem(atPath: main.certFile, toPath: cert)
        try FileManager.default.copyItem(atPath: main.keyFile, toPath: key)
        let text = """
            { "listeners": [ { "name": "tls", "address": "127.0.0.1:0",
                "tls": { "certificate_file": "\(cert)", "private_key_file": "\(key)", "min_version": "1.2",
                         "sni": { "api.test": { "certificate_file": "\(api.certFile)", "private_key_file": "\(api.keyFile)" } } } } ],
              "access_log": { "enabled": false }, "upstreams": {},
              "routes": [ { "match": { "path": "/hello" }, "respond": { "status": 200, "body": "hello over TLS" } } ] }
            """
        let loaded = ConfigLoader.load(bytes: Array(text.utf8), source: "tls.json")
        let snapshot = try #require(loaded.snapshot, "\(loaded.errors)")
        let server = GatewayServer(snapshot: snapshot)
        try await server.start()
        defer { Task { await server.shutdown() } }
        let port = try #require(server.boundAddresses["tls"]?.port)

        #expect(await Self.curl(port, host: "localhost", ca: main.caFile) == 200)
        // SNI: api.test gets its own certificate (only its CA verifies it).
        #expect(await Self.curl(port, host: "api.test", ca: api.caFile) == 200)
        #expect(await Self.curl(port, host: "api.test", ca: main.caFile) == nil)
        // A connection opened now, and kept open across the swap.
        let open = try await TLSClient.connect(port: port, caFile: main.caFile, group: server.group)
        defer { Task { await open.close() } }
        #expect(try await open.get("/hello", expect: "hello over TLS") != nil)
        let before = try await open.fingerprint()
        let mainPrint = try certificateFingerprint(main.certFile)
        #expect(before != nil && before == mainPrint)
        // A new certificate on disk: the next handshakes present it.
        try FileManager.default.removeItem(atPath: cert)
        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.copyItem(atPath: next.certFile, toPath: cert)
        try FileManager.default.copyItem(atPath: next.keyFile, toPath: key)
        var swapped = false
        for _ in 0..<60 where !swapped {
            swapped = await Self.curl(port, host: "localhost", ca: next.caFile) == 200
            if !swapped { try await Task.sleep(nanoseconds: 250_000_000) }
        }
        #expect(swapped)
        #expect(await Self.curl(port, host: "localhost", ca: main.caFile) == nil)
        let fresh = try await TLSClient.connect(port: port, caFile: next.caFile, group: server.group)
        defer { Task { await fresh.close() } }
        #expect(try await fresh.get("/hello", expect: "hello over TLS") != nil)
        let after = try await fresh.fingerprint()
        let nextPrint = try certificateFingerprint(next.certFile)
        #expect(after != nil && after == nextPrint && after != before)
        // The connection opened before the swap was not dropped: it still answers, on the old certificate.
        #expect(try await open.get("/hello", expect: "hello over TLS") != nil)
        let still = try await open.fingerprint()
        #expect(still == before)
    }
}
