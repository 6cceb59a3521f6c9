/// Why a try may be retried (route `retry.on`). The retry loop reads only this: each failure
/// carries its condition (or none when it may not be retried), and each response status maps
/// to the conditions it meets.
public enum RetryCondition: Sendable, Hashable {
    /// The connection to the target could not be opened (refused, unreachable, timed out).
    case connectFailure
    /// The target took the request but no response came: reset, closed, an invalid response,
    /// or the per-try timeout.
    case reset
    /// The target answered 502, 503 or 504.
    case gatewayError
    /// The target answered any 5xx.
    case serverError
    /// The target answered exactly this status.
    case status(Int)
    /// A gRPC response (trailers-only, before anything reached the client) with this
    /// `grpc-status` (`unavailable`, `resource-exhausted`, ...: `GRPC.retryNames`).
    case grpc(Int)

    public init?(_ text: String) {
        switch text {
        case "connect-failure": self = .connectFailure
        case "reset": self = .reset
        case "gateway-error": self = .gatewayError
        case "5xx": self = .serverError
        default:
            if let code = GRPC.retryNames[text] {
                self = .grpc(code)
                return
            }
            guard text.hasPrefix("status:"), let n = Int(text.dropFirst(7)), (100...599).contains(n) else { return nil }
            self = .status(n)
        }
    }
}

/// The `on` list of a retry policy, compiled to answer "may this failure or status be
/// retried" without allocating.
public struct RetryOn: Sendable, Hashable {
    public var connectFailure = false
    public var reset = false
    public var gatewayError = false
    public var serverError = false
    public var statuses: Set<Int> = []
    /// Bit `n`: `grpc-status` n may be retried.
    public var grpcCodes: UInt32 = 0

    public init(_ conditions: [RetryCondition]) {
        for c in conditions {
            switch c {
            case .connectFailure: connectFailure = true
            case .reset: reset = true
            case .gatewayError: gatewayError = true
            case .serverError: serverError = true
            case .status(let n): statuses.insert(n)
            case .grpc(let code): grpcCodes |= 1 << UInt32(code & 31)
            }
        }
    }

    /// Whether a failure without a response may be retried. As in Envoy, `5xx` and
    /// `gateway-error` cover a try that got no response at all, and a refused connection is
    /// also a reset.
    public func allows(failure: RetryCondition) -> Bool {
        switch failure {
        case .connectFailure: return connectFailure || reset || gatewayError || serverError
        case .reset: return reset || gatewayError || serverError
        default: return false
        }
    }

    /// Whether a gRPC response with this `grpc-status` may be retried.
    public func allows(grpc code: Int) -> Bool { code >= 0 && code < 32 && grpcCodes & (1 << UInt32(code)) != 0 }

    /// Whether a response with this status may be retried.
    public func allows(status: Int) -> Bool {
        if statuses.contains(status) { return true }
        if serverError && (500...599).contains(status) { return true }
        if gatewayError && (status == 502 || status == 503 || status == 504) { return true }
        return false
    }
}

/// The retry budget: retries in flight stay under `percent` of the active requests, with a
/// floor of `minimum` concurrent retries so that a quiet pool can still retry.
public enum RetryBudget {
    public static func allows(activeRequests: Int, activeRetries: Int, percent: Double, minimum: Int = 3) -> Bool {
        let share = Int((Double(max(0, activeRequests)) * percent / 100).rounded(.down))
        return activeRetries < max(minimum, share)
    }
}

/// Exponential backoff with full jitter: before retry `n` (1 for the first), a wait drawn
/// uniformly from [0, min(max, base × 2^(n−1))].
public enum Backoff {
    /// The upper bound of the wait before retry `n`.
    public static func ceiling(retry n: Int, baseNanos: Int64, maxNanos: Int64) -> Int64 {
        let shift = min(max(0, n - 1), 40)
        let (product, overflow) = max(0, baseNanos).multipliedReportingOverflow(by: Int64(1) << Int64(shift))
        return overflow ? max(0, maxNanos) : min(max(0, maxNanos), product)
    }

    /// The wait before retry `n`, from a random 64-bit draw.
    public static func delay(retry n: Int, baseNanos: Int64, maxNanos: Int64, random: UInt64) -> Int64 {
        let cap = ceiling(retry: n, baseNanos: baseNanos, maxNanos: maxNanos)
        guard cap > 0 else { return 0 }
        return Int64(random % UInt64(cap + 1))
    }
}

/// Active health of one target from its probes: it turns unhealthy after
/// `unhealthyThreshold` failed probes in a row and healthy again only after
/// `healthyThreshold` passes in a row. Before its first probe a target counts as healthy;
/// that first probe decides at once (a target that is down at start leaves the rotation
/// on its first failed probe, not after several).
public struct HealthCheckState: Sendable, Hashable {
    public enum Status: String, Sendable, Hashable {
        case unknown, healthy, unhealthy
    }
    public private(set) var status = Status.unknown
    public private(set) var consecutivePasses = 0
    public private(set) var consecutiveFailures = 0

    public init() {}

    /// Whether the target may take traffic as far as active checks go.
    public var isHealthy: Bool { status != .unhealthy }

    /// Records one probe; returns true when the status changed.
    public mutating func record(passed: Bool, healthyThreshold: Int, unhealthyThreshold: Int) -> Bool {
        let before = status
        if passed {
            consecutivePasses += 1
            consecutiveFailures = 0
            if status == .unknown || (status == .unhealthy && consecutivePasses >= max(1, healthyThreshold)) { status = .healthy }
        } else {
            consecutiveFailures += 1
            consecutivePasses = 0
            if status == .unknown || (status == .healthy && consecutiveFailures >= max(1, unhealthyThreshold)) { status = .unhealthy }
        }
        return status != before
    }
}

/// How one try ended, as the retry decision sees it.
public enum TryOutcome: Sendable, Hashable {
    /// No response: the condition the failure meets (connect failure, reset, per-try timeout).
    case failed(RetryCondition)
    /// The target answered with this status.
    case status(Int)
    /// The target answered a gRPC request with this `grpc-status` in its head (trailers-only).
    case grpc(Int)
}

extension TryOutcome {
    /// The `reason` label of `gateway_retries_total` for a retry after this outcome.
    public var reason: String {
        switch self {
        case .failed(.connectFailure): return "connect-failure"
        case .failed: return "reset"
        case .status(let status): return "status:\(status)"
        case .grpc(let code): return "grpc:\(GRPC.name(code))"
        }
    }
}

/// The numbers of a route's `retry` that decide whether a try is tried again.
public struct RetryRule: Sendable {
    public var on: RetryOn
    public var attempts: Int
    public var backoffBaseNanos: Int64
    public var backoffMaxNanos: Int64
    public var budgetPercent: Double

    public init(on: RetryOn, attempts: Int, backoffBaseNanos: Int64, backoffMaxNanos: Int64, budgetPercent: Double) {
        self.on = on
        self.attempts = attempts
        self.backoffBaseNanos = backoffBaseNanos
        self.backoffMaxNanos = backoffMaxNanos
        self.budgetPercent = budgetPercent
    }

    /// What the upstream's retry budget is counting when the decision is made.
    public struct Load: Sendable, Hashable {
        public var activeRequests: Int
        public var activeRetries: Int
        public init(activeRequests: Int, activeRetries: Int) {
            self.activeRequests = activeRequests
            self.activeRetries = activeRetries
        }
    }

    public enum Decision: Sendable, Hashable {
        /// Try again after this backoff.
        case retry(afterNanos: Int64)
        case giveUp(GiveUp)
    }

    public enum GiveUp: Sendable, Hashable {
        /// `retry.on` does not name what happened.
        case notRetryable
        /// The request cannot be sent again: its method is not in `retry.methods` and it has no
        /// `Idempotency-Key`, its body outgrew what is kept, or it is an upgrade.
        case notReplayable
        /// `retry.attempts` tries were made.
        case noTriesLeft
        /// Retries in flight are at the budget's share of active requests.
        case budgetSpent
        /// The backoff would end at or after the deadline.
        case noTimeLeft
    }

    /// The retry decision, a pure function of what happened and when: `attempts` tries were
    /// made; `now` and `deadline` are uptime nanoseconds (`deadline` 0: none); `budget` is
    /// nil when this request already holds a retry slot (it is not counted twice); `random`
    /// draws the backoff's jitter.
    public func decide(
        _ outcome: TryOutcome, replayable: Bool, attempts made: Int, now: UInt64, deadline: UInt64, budget: Load?, random: UInt64
    ) -> Decision {
        let named: Bool
        switch outcome {
        case .failed(let condition): named = on.allows(failure: condition)
        case .status(let status): named = on.allows(status: status)
        case .grpc(let code): named = on.allows(grpc: code)
        }
        guard named else { return .giveUp(.notRetryable) }
        guard replayable else { return .giveUp(.notReplayable) }
        guard made < attempts else { return .giveUp(.noTriesLeft) }
        if let budget,
            !RetryBudget.allows(activeRequests: budget.activeRequests, activeRetries: budget.activeRetries, percent: budgetPercent)
        {
            return .giveUp(.budgetSpent)
        }
        let wait = Backoff.delay(retry: made, baseNanos: backoffBaseNanos, maxNanos: backoffMaxNanos, random: random)
        if deadline != 0 && now &+ UInt64(max(0, wait)) >= deadline { return .giveUp(.noTimeLeft) }
        return .retry(afterNanos: wait)
    }
}
