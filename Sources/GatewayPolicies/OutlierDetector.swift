/// Passive health: which targets of one upstream to take out of rotation, from what their
/// responses say (SPEC §2.4 `outlier_detection`, after Envoy's outlier detection).
///
/// A pure state machine: it is fed outcomes and the time, and answers which targets are
/// ejected until when. It reads no clock and does no I/O, so every rule is tested with a
/// manual clock. Times are nanoseconds on any monotonic scale.
///
/// - `consecutive_5xx`: that many 5xx answers (or failures to get one) in a row eject.
/// - `consecutive_gateway_failures`: that many connect failures, resets, timeouts, 502, 503
///   or 504 in a row eject.
/// - success rate: at the end of each `interval`, among targets that saw at least
///   `request_volume` requests in it (when at least `minimum_hosts` did), those whose success
///   rate is below `mean − stdev_factor × stdev` are ejected.
/// - An ejection lasts `base × times ejected`, capped at `max`. A target that stays in
///   rotation through a whole interval has its multiplier lowered by one.
/// - No ejection ever takes the ejected share of targets above `max_ejection_percent`.
public struct OutlierDetector: Sendable {
    public struct Config: Sendable, Hashable {
        /// 0 turns the rule off.
        public var consecutive5xx: Int
        /// 0 turns the rule off.
        public var consecutiveGatewayFailures: Int
        public var intervalNanos: Int64
        public var baseEjectionNanos: Int64
        public var maxEjectionNanos: Int64
        public var maxEjectionPercent: Int
        public var successRate: SuccessRate?

        public struct SuccessRate: Sendable, Hashable {
            public var minimumHosts: Int
            public var requestVolume: Int
            public var stdevFactor: Double
            public init(minimumHosts: Int = 3, requestVolume: Int = 100, stdevFactor: Double = 1.9) {
                self.minimumHosts = minimumHosts
                self.requestVolume = requestVolume
                self.stdevFactor = stdevFactor
            }
        }

        public init(
            consecutive5xx: Int = 5, consecutiveGatewayFailures: Int = 5, intervalNanos: Int64 = 10_000_000_000,
            baseEjectionNanos: Int64 = 30_000_000_000, maxEjectionNanos: Int64 = 300_000_000_000, maxEjectionPercent: Int = 50,
            successRate: SuccessRate? = nil
        ) {
            self.consecutive5xx = consecutive5xx
            self.consecutiveGatewayFailures = consecutiveGatewayFailures
            self.intervalNanos = intervalNanos
            self.baseEjectionNanos = baseEjectionNanos
            self.maxEjectionNanos = maxEjectionNanos
            self.maxEjectionPercent = maxEjectionPercent
            self.successRate = successRate
        }
    }

    /// What one try at a target came to.
    public enum Outcome: Sendable, Hashable {
        /// A response with a status below 500.
        case success
        /// A response with this 5xx status.
        case status(Int)
        /// No response: the connection failed, was reset, or the try timed out.
        case gatewayFailure
    }

    public enum Reason: String, Sendable, Hashable {
        case consecutive5xx = "consecutive_5xx"
        case consecutiveGatewayFailures = "consecutive_gateway_failures"
        case successRate = "success_rate"
    }

    public struct Ejection: Sendable, Hashable {
        public var target: Int
        public var reason: Reason
        public var until: Int64
        public init(target: Int, reason: Reason, until: Int64) {
            self.target = target
            self.reason = reason
            self.until = until
        }
    }

    public struct TargetState: Sendable, Hashable {
        public var consecutive5xx = 0
        public var consecutiveGatewayFailures = 0
        /// When the current ejection ends; 0 when the target has never been ejected.
        public var ejectedUntil: Int64 = 0
        /// The ejection multiplier: ejections in a row, lowered by one per interval spent in rotation.
        public var timesEjected = 0
        /// Every ejection since the state was created (not lowered).
        public var totalEjections = 0
        public var intervalSuccesses = 0
        public var intervalRequests = 0
        /// The success rate of the last interval with any requests, 0...1.
        public var lastSuccessRate: Double?
        public init() {}

        public func isEjected(at now: Int64) -> Bool { ejectedUntil > now }
    }

    public let config: Config
    public private(set) var targets: [TargetState]
    /// When the current interval ends.
    public private(set) var intervalEnds: Int64

    public init(config: Config, targets count: Int, now: Int64) {
        self.config = config
        self.targets = Array(repeating: TargetState(), count: count)
        self.intervalEnds = now + max(1, config.intervalNanos)
    }

    /// A detector for a new target list that keeps the state of targets it shares with an
    /// earlier one (`carried[i]` is the old state of new target `i`, if it had one).
    public init(config: Config, carrying carried: [TargetState?], now: Int64) {
        self.config = config
        self.targets = carried.map { $0 ?? TargetState() }
        self.intervalEnds = now + max(1, config.intervalNanos)
    }

    public func ejectedCount(at now: Int64) -> Int { targets.reduce(0) { $0 + ($1.isEjected(at: now) ? 1 : 0) } }

    /// Records one outcome for target `i`; returns the ejections it caused (the interval's
    /// success-rate pass included, when the interval ended).
    public mutating func record(_ i: Int, _ outcome: Outcome, now: Int64) -> [Ejection] {
        var out = tick(now: now)
        guard i >= 0, i < targets.count else { return out }
        var t = targets[i]
        t.intervalRequests += 1
        switch outcome {
        case .success:
            t.intervalSuccesses += 1
            t.consecutive5xx = 0
            t.consecutiveGatewayFailures = 0
        case .status(let code):
            t.consecutive5xx += 1
            if code == 502 || code == 503 || code == 504 {
                t.consecutiveGatewayFailures += 1
            } else {
                t.consecutiveGatewayFailures = 0
            }
        case .gatewayFailure:
            t.consecutive5xx += 1
            t.consecutiveGatewayFailures += 1
        }
        targets[i] = t
        // A target already out keeps counting (its in-flight requests end) but is not ejected again.
        guard !t.isEjected(at: now) else { return out }
        if config.consecutiveGatewayFailures > 0 && t.consecutiveGatewayFailures >= config.consecutiveGatewayFailures {
            if let e = eject(i, .consecutiveGatewayFailures, now: now) { out.append(e) }
        } else if config.consecutive5xx > 0 && t.consecutive5xx >= config.consecutive5xx {
            if let e = eject(i, .consecutive5xx, now: now) { out.append(e) }
        }
        return out
    }

    /// Ends the interval when its time has come: success-rate ejections, multipliers lowered
    /// for targets that stayed in, counters reset. Call it with any `now`; it does nothing
    /// before the interval ends.
    public mutating func tick(now: Int64) -> [Ejection] {
        guard now >= intervalEnds else { return [] }
        let intervalStart = intervalEnds - max(1, config.intervalNanos)
        var out: [Ejection] = []
        if let sr = config.successRate {
            var rates: [(Int, Double)] = []
            for (i, t) in targets.enumerated() where t.intervalRequests >= max(1, sr.requestVolume) && !t.isEjected(at: now) {
                rates.append((i, Double(t.intervalSuccesses) / Double(t.intervalRequests)))
            }
            if rates.count >= max(1, sr.minimumHosts) {
                let mean = rates.reduce(0) { $0 + $1.1 } / Double(rates.count)
                let variance = rates.reduce(0) { $0 + ($1.1 - mean) * ($1.1 - mean) } / Double(rates.count)
                let threshold = mean - sr.stdevFactor * variance.squareRoot()
                // The worst first, so the percent limit keeps the worst out.
                for (i, rate) in rates.sorted(by: { $0.1 < $1.1 }) where rate < threshold {
                    if let e = eject(i, .successRate, now: now) { out.append(e) }
                }
            }
        }
        for i in targets.indices {
            if targets[i].intervalRequests > 0 {
                targets[i].lastSuccessRate = Double(targets[i].intervalSuccesses) / Double(targets[i].intervalRequests)
            }
            targets[i].intervalRequests = 0
            targets[i].intervalSuccesses = 0
            // In rotation for the whole interval that just ended: one step back towards a first offence.
            if targets[i].timesEjected > 0 && targets[i].ejectedUntil <= intervalStart {
                targets[i].timesEjected -= 1
            }
        }
        intervalEnds = now + max(1, config.intervalNanos)
        return out
    }

    /// Whether one more ejection would keep the ejected share within `max_ejection_percent`.
    public func mayEject(now: Int64) -> Bool {
        (ejectedCount(at: now) + 1) * 100 <= config.maxEjectionPercent * targets.count
    }

    private mutating func eject(_ i: Int, _ reason: Reason, now: Int64) -> Ejection? {
        guard mayEject(now: now) else { return nil }
        var t = targets[i]
        t.timesEjected += 1
        t.totalEjections += 1
        let length = Self.ejectionTime(base: config.baseEjectionNanos, max: config.maxEjectionNanos, times: t.timesEjected)
        t.ejectedUntil = now + length
        t.consecutive5xx = 0
        t.consecutiveGatewayFailures = 0
        targets[i] = t
        return Ejection(target: i, reason: reason, until: t.ejectedUntil)
    }

    /// `base × times`, capped at `max` (and never overflowing).
    public static func ejectionTime(base: Int64, max cap: Int64, times: Int) -> Int64 {
        let (product, overflow) = base.multipliedReportingOverflow(by: Int64(Swift.max(1, times)))
        return overflow ? cap : Swift.min(cap, product)
    }
}
