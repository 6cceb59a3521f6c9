import Foundation
import NIOPosix
import Testing

/// `https://` upstream targets (issue 10): verified against a test CA, refused (502) with
/// the wrong CA, and `verify: false` accepted with a warning.
@Suite struct UpstreamTLSTests {
    @Test func httpsTargetsAreVerifiedAgainstTheirCA() async throws {
        let ca = try await TestCA()
        let other = try await TestCA()
        let nameOnly = try await TestCA(ipSAN: false)
        defer {
            ca.remove()
            other.remove()
            nameOnly.remove()
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await TLSUpstream(ca: ca, group: group)
        // A certificate for the name `localhost` only: the name sent and checked decides.
        let named = try await TLSUpstream(ca: nameOnly, group: group)
        defer {
            Task {
                await upstream.stop()
                await named.stop()
                try? await group.shutdownGracefully()
            }
        }
        let rig = try await ResilienceRig.start(0) { _ in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 1 }, "access_log": { "enabled": false },
              "upstreams": {
                "good": { "targets": ["https://127.0.0.1:\(upstream.port)"], "tls": { "ca_file": "\(ca.caFile)", "server_name": "localhost" } },
                "wrong": { "targets": ["https://127.0.0.1:\(upstream.port)"], "tls": { "ca_file": "\(other.caFile)", "server_name": "localhost" } },
                "name": { "targets": ["https://127.0.0.1:\(named.port)"], "tls": { "ca_file": "\(nameOnly.caFile)", "server_name": "other.example" } },
                "named": { "targets": ["https://127.0.0.1:\(named.port)"], "tls": { "ca_file": "\(nameOnly.caFile)", "server_name": "localhost" } },
                "unverified": { "targets": ["https://127.0.0.1:\(upstream.port)"], "tls": { "verify": false } } },
              "routes": [
                { "match": { "path_prefix": "/good" }, "upstream": "good" },
                { "match": { "path_prefix": "/wrong" }, "upstream": "wrong" },
                { "match": { "path_prefix": "/name" }, "upstream": "name" },
                { "match": { "path_prefix": "/localhost" }, "upstream": "named" },
                { "match": { "path_prefix": "/unverified" }, "upstream": "unverified" } ] }
            """
        }
        defer { Task { await rig.stop() } }
        let good = try await rig.request("GET", "/good")
        #expect(good.status == 200 && good.text == "{\"secure\":true}")
        let wrong = try await rig.request("GET", "/wrong")
        #expect(wrong.status == 502 && wrong.json?["error"] as? String == "bad_gateway")
        #expect(try await rig.request("GET", "/name").status == 502)  // the certificate is not for that name
        #expect(try await rig.request("GET", "/localhost").status == 200)
        #expect(try await rig.request("GET", "/unverified").status == 200)
    }
}
