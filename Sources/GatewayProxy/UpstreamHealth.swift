import Atomics
import GatewayConfig
import GatewayPolicies
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The health of one target as every event loop reads it: two atomics, written rarely
/// (an ejection, a health-check verdict) and read with relaxed loads when a target is picked.
public final class TargetHealth: Sendable {
    public let url: String
    /// Uptime nanoseconds when the current ejection ends (0: never ejected).
    let ejectedUntil = ManagedAtomic<Int64>(0)
    /// False while active health checks fail.
    let healthy = ManagedAtomic<Bool>(true)
    /// The active checks' verdicts (only the health checker writes it).
    let check = NIOLockedValueBox(HealthCheckState())

    init(url: String) { self.url = url }

    @inline(__always)
    func isAvailable(now: Int64) -> Bool {
        healthy.load(ordering: .relaxed) && ejectedUntil.load(ordering: .relaxed) <= now
    }
}

/// One upstream's passive and active health, shared by every loop: the published state of
/// each target, and the outlier detector that decides ejections (behind a lock, taken once
/// per response only on upstreams with `outlier_detection`).
public final class UpstreamHealth: Sendable {
    public let name: String
    let targets: [TargetHealth]
    let healthCheck: HealthCheckSpec?
    let outlierConfig: OutlierDetector.Config?
    private let detector: NIOLockedValueBox<OutlierDetector>?
    private let metrics: GatewayMetrics
    private static let logger = Logger(label: "gateway.health")

    init(
        name: String, targets: [TargetHealth], healthCheck: HealthCheckSpec?, outlier: OutlierDetector.Config?,
        carried: [OutlierDetector.TargetState?], metrics: GatewayMetrics, now: Int64
    ) {
        self.name = name
        self.targets = targets
        self.healthCheck = healthCheck
        self.outlierConfig = outlier
        self.metrics = metrics
        detector = outlier.map { NIOLockedValueBox(OutlierDetector(config: $0, carrying: carried, now: now)) }
    }

    var hasOutlierDetection: Bool { detector != nil }

    @inline(__always)
    func isAvailable(_ i: Int, now: Int64) -> Bool {
        i >= 0 && i < targets.count ? targets[i].isAvailable(now: now) : false
    }

    /// Feeds one try's outcome to the outlier detector; publishes and counts any ejection.
    func record(_ i: Int, _ outcome: OutlierDetector.Outcome, now: Int64) {
        guard let detector else { return }
        let ejections = detector.withLockedValue { $0.record(i, outcome, now: now) }
        if !ejections.isEmpty { publish(ejections, now: now) }
    }

    /// Ends the detector's interval when it is due (success-rate ejections need no traffic
    /// to be decided once the interval is over).
    func tick(now: Int64) {
        guard let detector else { return }
        let ejections = detector.withLockedValue { $0.tick(now: now) }
        if !ejections.isEmpty { publish(ejections, now: now) }
    }

    private func publish(_ ejections: [OutlierDetector.Ejection], now: Int64) {
        for e in ejections where e.target < targets.count {
            let t = targets[e.target]
            t.ejectedUntil.store(e.until, ordering: .relaxed)
            metrics.counter("gateway_outlier_ejections_total", [("upstream", name), ("target", t.url), ("reason", e.reason.rawValue)])
                .increment()
            Self.logger.warning(
                "target ejected",
                metadata: [
                    "upstream": "\(name)", "target": "\(t.url)", "reason": "\(e.reason.rawValue)",
                    "for_ms": "\((e.until - now) / 1_000_000)",
                ])
        }
    }

    /// The detector's view of each target, for `GET /upstreams` and carrying state over a reload.
    func detectorStates() -> [OutlierDetector.TargetState]? { detector?.withLockedValue { $0.targets } }
}

/// Health state by upstream name, kept across reloads: every loop asks it for the health of
/// the upstreams of a new snapshot and gets the same object for the same settings, and the
/// state of targets that stay carries over when the settings change (SPEC §6).
public final class HealthRegistry: Sendable {
    private struct Key: Hashable {
        var urls: [String]
        var healthCheck: HealthCheckSpec?
        var outlier: OutlierDetector.Config?
    }
    private let state = NIOLockedValueBox<[String: (Key, UpstreamHealth)]>([:])
    private let metrics: GatewayMetrics

    init(metrics: GatewayMetrics) { self.metrics = metrics }

    /// The health of `spec`'s targets; nil when it has neither health checks nor outlier
    /// detection (every target is then always available, and nothing is recorded).
    func health(for spec: UpstreamSpec) -> UpstreamHealth? {
        guard spec.healthCheck != nil || spec.outlierDetection != nil else { return nil }
        let key = Key(urls: spec.targets.map(\.url), healthCheck: spec.healthCheck, outlier: spec.outlierDetection)
        return state.withLockedValue { byName in
            if let (k, existing) = byName[spec.name], k == key { return existing }
            let previous = byName[spec.name]?.1
            let oldTargets = Dictionary((previous?.targets ?? []).map { ($0.url, $0) }, uniquingKeysWith: { a, _ in a })
            let oldStates = previous?.detectorStates() ?? []
            var carried: [OutlierDetector.TargetState?] = []
            let targets = spec.targets.map { t -> TargetHealth in
                let index = previous?.targets.firstIndex { $0.url == t.url }
                carried.append(index.flatMap { $0 < oldStates.count ? oldStates[$0] : nil })
                let th = oldTargets[t.url] ?? TargetHealth(url: t.url)
                // A check or a detector that is gone no longer holds the target out.
                if spec.healthCheck == nil {
                    th.healthy.store(true, ordering: .relaxed)
                    th.check.withLockedValue { $0 = HealthCheckState() }
                }
                if spec.outlierDetection == nil { th.ejectedUntil.store(0, ordering: .relaxed) }
                return th
            }
            let now = Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds)
            let h = UpstreamHealth(
                name: spec.name, targets: targets, healthCheck: spec.healthCheck, outlier: spec.outlierDetection, carried: carried,
                metrics: metrics, now: now)
            byName[spec.name] = (key, h)
            return h
        }
    }

    /// Forgets upstreams no longer in the file.
    func retain(names: Set<String>) {
        state.withLockedValue { byName in byName = byName.filter { names.contains($0.key) } }
    }

    func current(named name: String) -> UpstreamHealth? { state.withLockedValue { $0[name]?.1 } }
}
