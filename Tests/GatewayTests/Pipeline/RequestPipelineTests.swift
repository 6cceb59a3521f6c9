import NIOCore
import Testing

@testable import GatewayProxy

/// The phases in order on an `EmbeddedChannel`: pipelined requests answered in order, one
/// buffer each; a request held by a phase (a fault's delay) holds what follows it on the
/// connection until it resumes.
@Suite struct RequestPipelineTests {
    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                routes: #"{ "name": "a", "match": { "path_prefix": "/a" }, "respond": { "status": 201 } },"#))
        let out = try rig.send("GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(PipelineRig.statuses(out) == [201, 200, 201])
        #expect(rig.channel.isActive)
    }

    @Test func aHeldRequestHoldsTheNextUntilItResumes() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "slow", "match": { "path_prefix": "/slow" }, "upstream": "app",
                      "fault": { "delay": { "duration": "2s", "percent": 100 }, "abort": { "status": 502, "percent": 100 } } },
                    """))
        let out = try rig.send("GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(out.isEmpty)  // held: the delay runs on the loop's clock
        #expect(try rig.channel.readOutbound(as: ByteBuffer.self) == nil)
        rig.loop.advanceTime(by: .seconds(2))
        let after = try rig.written()
        #expect(PipelineRig.statuses(after) == [502, 200])
    }

    @Test func aHeldRequestPastTheRouteTimeoutIs504AndTheNextGoesOn() throws {
        let rig = try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "slow", "match": { "path_prefix": "/slow" }, "upstream": "app", "timeout": "1s",
                      "fault": { "delay": { "duration": "10s", "percent": 100 } } },
                    """), manualClock: true)
        #expect(try rig.send("GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").isEmpty)
        rig.advance(seconds: 0.9)
        #expect(try rig.written().isEmpty)
        rig.advance(seconds: 0.2)
        #expect(PipelineRig.statuses(try rig.written()) == [504, 200])
    }
}
