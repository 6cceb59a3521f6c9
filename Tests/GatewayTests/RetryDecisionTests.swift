import GatewayPolicies
import Testing

/// `RetryRule.decide`, the one retry decision of proxied requests and aggregate backends,
/// table-tested: time is a number the test sets (a manual clock), and the jitter's draw too.
@Suite struct RetryDecisionTests {
    static let ms: Int64 = 1_000_000
    static let rule = RetryRule(
        on: RetryOn([.connectFailure, .reset, .gatewayError, .status(429)]), attempts: 6, backoffBaseNanos: 25 * ms,
        backoffMaxNanos: 250 * ms, budgetPercent: 20)
    static let idle = RetryRule.Load(activeRequests: 1, activeRetries: 0)

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var outcome: TryOutcome
        var replayable = true
        var attempts = 1
        var now: UInt64 = 1_000_000_000
        var deadline: UInt64 = 0
        var budget: RetryRule.Load? = RetryDecisionTests.idle
        var random: UInt64 = 0
        var want: RetryRule.Decision
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(
            name: "a refused connection is retried at once with a zero draw", outcome: .failed(.connectFailure), want: .retry(afterNanos: 0)
        ),
        Row(name: "a reset is retried", outcome: .failed(.reset), random: 7, want: .retry(afterNanos: 7)),
        Row(name: "503 is a gateway error", outcome: .status(503), random: 1_000, want: .retry(afterNanos: 1_000)),
        Row(name: "a status named on its own", outcome: .status(429), want: .retry(afterNanos: 0)),
        Row(name: "500 is not a gateway error", outcome: .status(500), want: .giveUp(.notRetryable)),
        Row(name: "a success is never retried", outcome: .status(200), want: .giveUp(.notRetryable)),
        Row(name: "a request that cannot be sent again", outcome: .status(503), replayable: false, want: .giveUp(.notReplayable)),
        Row(name: "the last of six tries", outcome: .failed(.reset), attempts: 6, want: .giveUp(.noTriesLeft)),
        Row(
            name: "the jitter is drawn under base x 2^(n-1): 50 ms before the second retry", outcome: .failed(.reset), attempts: 2,
            random: UInt64(50 * ms) + 1, want: .retry(afterNanos: 0)),
        Row(
            name: "the wait is at most base x 2^(n-1)", outcome: .failed(.reset), attempts: 2,
            random: UInt64(50 * ms), want: .retry(afterNanos: 50 * ms)),
        Row(
            name: "and at most max: 250 ms before the sixth try", outcome: .failed(.reset), attempts: 5,
            random: UInt64(250 * ms), want: .retry(afterNanos: 250 * ms)),
        Row(
            name: "a backoff ending at the deadline is no retry", outcome: .failed(.reset), now: 1_000, deadline: 1_000 + 10,
            random: 10, want: .giveUp(.noTimeLeft)),
        Row(
            name: "a backoff ending before the deadline is one", outcome: .failed(.reset), now: 1_000, deadline: 1_000 + 11,
            random: 10, want: .retry(afterNanos: 10)),
        Row(
            name: "the budget's floor: three retries in flight on a quiet upstream", outcome: .failed(.reset),
            budget: .init(activeRequests: 4, activeRetries: 3), want: .giveUp(.budgetSpent)),
        Row(
            name: "20% of 100 active requests", outcome: .failed(.reset), budget: .init(activeRequests: 100, activeRetries: 19),
            want: .retry(afterNanos: 0)),
        Row(
            name: "20% of 100 active requests, spent", outcome: .failed(.reset), budget: .init(activeRequests: 100, activeRetries: 20),
            want: .giveUp(.budgetSpent)),
        Row(
            name: "a request holding a retry slot is not counted again", outcome: .failed(.reset), budget: nil,
            want: .retry(afterNanos: 0)),
    ]

    @Test(arguments: rows) func decide(_ row: Row) {
        let got = Self.rule.decide(
            row.outcome, replayable: row.replayable, attempts: row.attempts, now: row.now, deadline: row.deadline, budget: row.budget,
            random: row.random)
        #expect(got == row.want)
    }

    @Test func theMetricReasonNamesWhatHappened() {
        #expect(TryOutcome.failed(.connectFailure).reason == "connect-failure")
        #expect(TryOutcome.failed(.reset).reason == "reset")
        #expect(TryOutcome.status(503).reason == "status:503")
    }
}
