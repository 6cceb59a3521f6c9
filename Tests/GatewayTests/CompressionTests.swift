import CompressNIO
import Foundation
import NIOCore
import Testing

@testable import GatewayProxy

/// The static checks of `GzipStream`.
enum GzipStreamProbe {
    static func accepts(_ v: String) -> Bool { GzipStream.accepts(v) }
    static func compressible(_ t: String) -> Bool { GzipStream.isCompressible(t) }
}

/// gzip response compression (issue 10): applied and decodable, streamed; not applied below
/// `min_bytes`, to an encoded upstream body, without `Accept-Encoding`, or to other types.
@Suite struct CompressionTests {
    static func gunzip(_ bytes: [UInt8]) -> String? {
        var b = ByteBufferAllocator().buffer(bytes: bytes)
        return (try? b.decompress(with: .gzip())).map { String(buffer: $0) }
    }

    static func rig() async throws -> ResilienceRig {
        try await ResilienceRig.start(1) { u in
            """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "server": { "workers": 1, "compression": { "gzip": true, "min_bytes": 1024 } }, "access_log": { "enabled": false },
              "upstreams": { "app": { "targets": ["\(u[0])"] } },
              "routes": [ { "name": "app", "match": { "path_prefix": "/" }, "upstream": "app" } ] }
            """
        }
    }

    @Test func gzipIsAppliedAndDecodable() async throws {
        let rig = try await Self.rig()
        defer { Task { await rig.stop() } }
        let doc = "{\"items\":[" + (0..<300).map { "{\"id\":\($0),\"name\":\"item \($0)\"}" }.joined(separator: ",") + "]}"
        rig.upstreams[0].set { $0.body = Array(doc.utf8) }
        let r = try await rig.request("GET", "/x", headers: [("accept-encoding", "br;q=1, gzip;q=0.8")])
        #expect(r.status == 200)
        #expect(r.header("content-encoding") == "gzip")
        #expect(r.header("vary") == "Accept-Encoding")
        #expect(r.header("content-length") == nil && r.header("transfer-encoding") == "chunked")
        #expect(r.body.count < doc.utf8.count / 3)
        #expect(Self.gunzip(r.body) == doc)
        // A megabyte of text streams through compressed.
        let big = String(repeating: "All work and no play makes Jack a dull boy. ", count: 25_000)
        rig.upstreams[0].set {
            $0.body = Array(big.utf8)
            $0.headers = [("content-type", "text/plain; charset=utf-8")]
        }
        let b = try await rig.request("GET", "/big", headers: [("accept-encoding", "gzip")])
        #expect(b.header("content-encoding") == "gzip")
        #expect(Self.gunzip(b.body) == big)
    }

    @Test func gzipIsNotAppliedWhenItShouldNotBe() async throws {
        let rig = try await Self.rig()
        defer { Task { await rig.stop() } }
        let up = rig.upstreams[0]
        let doc = String(repeating: "{\"k\":\"v\"}", count: 300)
        // Below min_bytes.
        up.set { $0.body = Array("{\"small\":true}".utf8) }
        let small = try await rig.request("GET", "/s", headers: [("accept-encoding", "gzip")])
        #expect(small.header("content-encoding") == nil && small.text == "{\"small\":true}")
        // Already encoded by the upstream: passed as it is.
        up.set {
            $0.body = Array(doc.utf8)
            $0.headers = [("content-encoding", "br")]
        }
        let encoded = try await rig.request("GET", "/e", headers: [("accept-encoding", "gzip")])
        #expect(encoded.header("content-encoding") == "br" && encoded.text == doc)
        // The client does not accept it.
        up.set { $0.headers = [] }
        #expect(try await rig.request("GET", "/n").header("content-encoding") == nil)
        #expect(try await rig.request("GET", "/q", headers: [("accept-encoding", "gzip;q=0")]).header("content-encoding") == nil)
        // Not a compressible type.
        up.set { $0.headers = [("content-type", "image/png")] }
        #expect(try await rig.request("GET", "/p", headers: [("accept-encoding", "gzip")]).header("content-encoding") == nil)
    }

    @Test func acceptEncodingAndTypes() {
        #expect(GzipStreamProbe.accepts("gzip, deflate, br"))
        #expect(GzipStreamProbe.accepts("*"))
        #expect(!GzipStreamProbe.accepts("gzip;q=0, br"))
        #expect(!GzipStreamProbe.accepts("br, deflate"))
        #expect(!GzipStreamProbe.accepts("*;q=0"))
        #expect(GzipStreamProbe.compressible("application/problem+json"))
        #expect(GzipStreamProbe.compressible("text/html; charset=utf-8"))
        #expect(!GzipStreamProbe.compressible("application/octet-stream"))
    }
}
