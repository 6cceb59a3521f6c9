import Foundation
import Testing

@testable import GatewayProxy

/// The `log` step at the end of each exchange: the access-log line in the loop's buffer,
/// and the request counted in this loop's metric cells.
@Suite struct AccessLogTests {
    @Test func eachExchangeIsOneLineAndOneCount() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("access-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let rig = try PipelineRig(PipelineRig.config(), accessLog: AccessLogWriter(path: path))
        _ = try rig.send("GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        let lines = String(decoding: rig.context.accessLogBuffer, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 2)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        #expect(first?["method"] as? String == "GET")
        #expect(first?["path"] as? String == "/a?x=1")
        #expect(first?["route"] as? String == "hello")
        #expect(first?["status"] as? Int == 200)
        #expect(first?["client_ip"] as? String == "192.0.2.10")
        let m = try PrometheusText(String(decoding: rig.context.shared.metrics.exposition(), as: UTF8.self))
        #expect(m.value("gateway_requests_total", ["route": "hello", "method": "GET", "code": "200"]) == 1)
        #expect(m.value("gateway_requests_total", ["route": "hello", "method": "POST", "code": "200"]) == 1)
    }
}
