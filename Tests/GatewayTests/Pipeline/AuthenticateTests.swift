import Crypto
import Testing

@testable import GatewayProxy

/// The `authenticate` phase on an `EmbeddedChannel` with API keys (no key fetch to wait for).
@Suite struct AuthenticateTests {
    static func sha256Hex(_ s: String) -> String { SHA256.hash(data: Array(s.utf8)).map { String(format: "%02x", $0) }.joined() }

    static func rig() throws -> PipelineRig {
        try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "keyed", "match": { "path_prefix": "/keyed" }, "respond": { "status": 200 }, "auth": { "api_key": true } },
                    { "name": "pro", "match": { "path_prefix": "/pro" }, "respond": { "status": 200 },
                      "auth": { "api_key": true, "claims": { "tier": ["pro"] } } },
                    """,
                extra: """
                    "auth": { "api_keys": { "header": "x-api-key", "keys": [
                      { "id": "a", "sha256": "\(sha256Hex("secret-a"))", "tier": "free" } ] } },
                    """))
    }

    @Test func aMissingOrWrongKeyIs401WithAChallenge() throws {
        let rig = try Self.rig()
        let out = try rig.send(
            "GET /keyed HTTP/1.1\r\nHost: h\r\n\r\nGET /keyed HTTP/1.1\r\nHost: h\r\nx-api-key: nope\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [401, 401])
        #expect(out.lowercased().contains("www-authenticate: "))
    }

    @Test func aValidKeyGoesOnAndAMissingClaimIs403() throws {
        let rig = try Self.rig()
        let out = try rig.send(
            "GET /keyed HTTP/1.1\r\nHost: h\r\nx-api-key: secret-a\r\n\r\nGET /pro HTTP/1.1\r\nHost: h\r\nx-api-key: secret-a\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [200, 403])
    }
}
