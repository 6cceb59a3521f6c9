import GatewayPolicies
import Testing

@testable import GatewayProxy

/// `UpstreamTry` on a loop's real pools, with no connection opened: the pick avoids the
/// targets already tried, and the retry decision sees the upstream's budget as it stands.
@Suite struct UpstreamTryTests {
    static func rig() throws -> PipelineRig {
        try PipelineRig(
            PipelineRig.config(
                routes: """
                    { "name": "up", "match": { "path_prefix": "/up" }, "upstream": "two", "retry": { "attempts": 3, "on": ["reset"] } },
                    """,
                extra: #""upstreams": { "two": { "targets": [ "http://127.0.0.1:9", "http://127.0.0.1:10" ] } },"#
            ).replacingOccurrences(of: "\"upstreams\": { \"app\": { \"targets\": [ \"http://127.0.0.1:9\" ] } },\n", with: ""))
    }

    @Test func aRetryGoesToAnotherTargetWhileThereIsOne() throws {
        let rig = try Self.rig()
        var tries = UpstreamTry()
        tries.upstream = rig.context.upstreams.first
        let picked1 = tries.pick(hashKey: nil, rig.context)
        let first = tries.poolIndex
        let picked2 = tries.pick(hashKey: nil, rig.context)
        #expect(picked1 && picked2 && tries.poolIndex != first)
        let picked3 = tries.pick(hashKey: nil, rig.context)  // both tried: any target again
        #expect(picked3 && tries.attempts == 3)
    }

    @Test func theDecisionCountsTheRetrySlotOnce() throws {
        let rig = try Self.rig()
        let policy = try #require(rig.snapshot.routes.first { $0.name == "up" }?.retry)
        guard let upstream = rig.context.upstreams.first else { Issue.record("no upstream"); return }
        var tries = UpstreamTry()
        tries.upstream = upstream
        _ = tries.pick(hashKey: nil, rig.context)
        // The budget's floor is three retries in flight: others hold them all.
        upstream.activeRetries = 3
        #expect(tries.retryDecision(.failed(.reset), policy, replayable: true, deadline: 0, rig.context) == .giveUp(.budgetSpent))
        upstream.activeRetries = 2
        guard case .retry = tries.retryDecision(.failed(.reset), policy, replayable: true, deadline: 0, rig.context) else {
            Issue.record("no retry")
            return
        }
        tries.backOff()
        #expect(upstream.activeRetries == 3 && upstream.backingOff == 1 && tries.backingOff)
        // Holding its slot, this request is not refused by the budget it fills itself.
        guard case .retry = tries.retryDecision(.failed(.reset), policy, replayable: true, deadline: 0, rig.context) else {
            Issue.record("refused by its own slot")
            return
        }
        tries.settle()
        #expect(upstream.activeRetries == 2 && upstream.backingOff == 0)
    }
}
