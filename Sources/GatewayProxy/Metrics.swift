import CoreMetrics
import GatewayConfig
import NIOConcurrencyHelpers
import NIOHTTP1
import Prometheus

/// The gateway's metrics (SPEC §7), on swift-metrics with the swift-prometheus backend.
///
/// Each server has its own registry (no process-wide `MetricsSystem.bootstrap`, so several
/// gateways can live in one process, as in the tests). Label values come from the file
/// (route, upstream, target, listener names) and from bounded sets (methods, status codes),
/// never from raw request paths. On the hot path each event loop looks its metric objects up
/// in its own cache (`LoopMetrics`): no lock is taken to find them, and a counter increment
/// is one atomic add.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Request durations: 1 ms to 60 s.
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
            .seconds(10), .seconds(30), .seconds(60),
        ]
        self.registry = registry
        self.factory = factory
    }

    /// Every family of SPEC §7: name, type, help.
    static let families: [(name: String, type: String, help: String)] = [
        ("gateway_requests_total", "counter", "Requests answered, by route, method and status code"),
        ("gateway_request_duration_seconds", "histogram", "Time from a request's head to the end of its answer, by route"),
        ("gateway_upstream_requests_total", "counter", "Tries sent to upstream targets, by status code"),
        ("gateway_upstream_duration_seconds", "histogram", "Time of a try at an upstream target, by upstream"),
        ("gateway_upstream_available", "gauge", "1 when the target is healthy and not ejected"),
        ("gateway_outlier_ejections_total", "counter", "Targets ejected by outlier detection, by reason"),
        ("gateway_retries_total", "counter", "Retries of a request, by route and reason"),
        ("gateway_ratelimit_decisions_total", "counter", "Rate limit decisions, by tier and decision"),
        ("gateway_auth_failures_total", "counter", "Requests refused by authentication, by provider and reason"),
        ("gateway_aggregate_backend_total", "counter", "Backend calls of aggregate routes, by outcome"),
        ("gateway_config_reloads_total", "counter", "Config reloads tried, by result"),
        ("gateway_config_info", "gauge", "The config version serving now"),
        ("gateway_active_connections", "gauge", "Open client connections per listener"),
    ]

    /// The Prometheus text exposition of every metric. Every SPEC §7 family is there from the
    /// start with its `# HELP` and `# TYPE` lines, samples or not (a dashboard or alert on a
    /// family finds it before its first sample).
    public func exposition() -> [UInt8] {
        let refreshers = beforeScrape.withLockedValue { $0 }
        for refresh in refreshers { refresh() }
        return Self.withEveryFamily(registry.emitToBuffer())
    }

    /// Run before each exposition: gauges whose value is a state read at that moment (a
    /// target's availability ends with an ejection's time, not with an event).
    private let beforeScrape = NIOLockedValueBox<[@Sendable () -> Void]>([])

    public func onScrape(_ refresh: @escaping @Sendable () -> Void) {
        beforeScrape.withLockedValue { $0.append(refresh) }
    }

    /// `emitted` with a `# HELP` line added before the `# TYPE` line of each SPEC family that
    /// has none, and the two lines appended for each family not emitted at all.
    static func withEveryFamily(_ emitted: [UInt8]) -> [UInt8] {
        let text = String(decoding: emitted, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        var missing: [String] = []
        for f in families {
            let type = "# TYPE \(f.name) "
            guard let at = lines.firstIndex(where: { $0.hasPrefix(type) }) else {
                missing += ["# HELP \(f.name) \(f.help)", "# TYPE \(f.name) \(f.type)"]
                continue
            }
            if at == 0 || !lines[at - 1].hasPrefix("# HELP \(f.name) ") { lines.insert("# HELP \(f.name) \(f.help)", at: at) }
        }
        let all = lines + missing
        return Array((all.joined(separator: "\n") + (all.isEmpty ? "" : "\n")).utf8)
    }

    func counter(_ name: String, _ labels: [(String, String)]) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: name, dimensions: labels, factory: factory)
    }

    func timer(_ name: String, _ labels: [(String, String)]) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: name, dimensions: labels, factory: factory)
    }

    /// A gauge that goes up and down (swift-metrics' `Gauge` can only be set).
    func upDownGauge(
        _ name: String, _ labels: [(String, String)], help: String = "Open client connections per listener"
    ) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    /// `gateway_config_reloads_total{result}`.
    public func reloaded(result: String) {
        counter("gateway_config_reloads_total", [("result", result)]).increment()
    }

    private let info = NIOLockedValueBox<Prometheus.Gauge?>(nil)

    /// `gateway_config_info{version} 1` for the version serving now (the previous one's series is removed).
    public func configVersion(_ version: String) {
        info.withLockedValue { current in
            if let current { registry.unregisterGauge(current) }
            let g = registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    metricName: "gateway_config_info", unitName: "", helpText: "The config version serving now"),
                labels: [("version", version)])
            g.set(to: 1)
            current = g
        }
    }
}

/// One event loop's cache of metric objects, keyed by what the labels come from. Loop-confined.
final class LoopMetrics {
    private let metrics: GatewayMetrics
    /// Hashed on every request: no `String` in it (the method is its label's index).
    private struct RequestKey: Hashable {
        var route: ObjectIdentifier?
        var method: UInt8
        var code: Int
    }
    private struct UpstreamKey: Hashable {
        var pool: ObjectIdentifier
        var code: Int
    }
    /// The objects a key stands for are kept alive by the entries (`route`, `pool`), so an
    /// identifier is never reused while its entry exists; the caches are emptied on reload.
    private var requests: [RequestKey: (CompiledRoute?, CoreMetrics.Counter)] = [:]
    private var durations: [ObjectIdentifier?: (CompiledRoute?, CoreMetrics.Timer)] = [:]
    private var upstreamRequests: [UpstreamKey: (TargetPool, CoreMetrics.Counter)] = [:]
    /// By target pool (several pools of one upstream share its timer): hashing an
    /// identifier, not the upstream's name, on every request.
    private var upstreamDurations: [ObjectIdentifier: (TargetPool, CoreMetrics.Timer)] = [:]
    private var connections: [String: Prometheus.Gauge] = [:]
    /// Counters with two labels whose values come from the file or small fixed sets, by
    /// metric name and label values.
    private var labeledCounters: [String: CoreMetrics.Counter] = [:]

    private func increment(_ name: String, _ a: (String, String), _ b: (String, String)) {
        let key = name + "\u{0}" + a.1 + "\u{0}" + b.1
        if let c = labeledCounters[key] { return c.increment() }
        let c = metrics.counter(name, [a, b])
        labeledCounters[key] = c
        c.increment()
    }

    /// The `decision` label of `gateway_ratelimit_decisions_total`.
    enum RateLimitDecision: UInt8 {
        case allowed, rejected, shadowRejected

        var label: String {
            switch self {
            case .allowed: return "allowed"
            case .rejected: return "rejected"
            case .shadowRejected: return "shadow_rejected"
            }
        }
    }

    /// Made on every limited request: keyed without building a `String`.
    private struct DecisionKey: Hashable {
        var tier: String
        var decision: RateLimitDecision
    }
    private var decisions: [DecisionKey: CoreMetrics.Counter] = [:]

    /// `gateway_ratelimit_decisions_total{tier,decision}`: `allowed`, `rejected`, or
    /// `shadow_rejected` (would have been refused; `shadow` let it through).
    func rateLimitDecision(tier: String, decision: RateLimitDecision) {
        let key = DecisionKey(tier: tier, decision: decision)
        if let c = decisions[key] { return c.increment() }
        let c = metrics.counter("gateway_ratelimit_decisions_total", [("tier", tier), ("decision", decision.label)])
        decisions[key] = c
        c.increment()
    }

    /// `gateway_auth_failures_total{provider,reason}`: one per refused request.
    func authFailure(provider: String, reason: String) {
        increment("gateway_auth_failures_total", ("provider", provider), ("reason", reason))
    }

    /// `gateway_retries_total{route,reason}`: one per retry started; `reason` is the
    /// condition that caused it (`connect-failure`, `reset`, `per-try-timeout`, `status:503`…).
    func retry(route: String, reason: String) {
        increment("gateway_retries_total", ("route", route), ("reason", reason))
    }

    /// `gateway_mirror_requests_total{route,outcome}`: `sent`, `failed` (no connection),
    /// `skipped_body_too_large`, `skipped_in_flight_limit`.
    func mirror(route: String, outcome: String) {
        increment("gateway_mirror_requests_total", ("route", route), ("outcome", outcome))
    }

    /// `gateway_shape_total{route,outcome}`: `shaped`, or why a body passed unshaped
    /// (`too_large`, `not_json`, `bad_encoding`).
    func shape(route: String, outcome: String) {
        increment("gateway_shape_total", ("route", route), ("outcome", outcome))
    }

    /// `gateway_aggregate_backend_total{route,backend,outcome}`: `ok`, `error`, `timeout`, `skipped`.
    func aggregateBackend(route: String, backend: String, outcome: String) {
        let key = "gateway_aggregate_backend_total\u{0}" + route + "\u{0}" + backend + "\u{0}" + outcome
        if let c = labeledCounters[key] { return c.increment() }
        let c = metrics.counter("gateway_aggregate_backend_total", [("route", route), ("backend", backend), ("outcome", outcome)])
        labeledCounters[key] = c
        c.increment()
    }

    init(_ metrics: GatewayMetrics) { self.metrics = metrics }

    /// A new snapshot: routes and pools may be gone; their entries go too.
    func snapshotChanged() {
        requests.removeAll()
        durations.removeAll()
        upstreamRequests.removeAll()
        upstreamDurations.removeAll()
    }

    /// `gateway_requests_total{route,method,code}` and `gateway_request_duration_seconds{route}`.
    /// Requests answered before a route was chosen (400, 404, 405, 408, 431) have `route=""`.
    func request(route: CompiledRoute?, method: HTTPMethod, code: Int, nanos: Int64) {
        let id = route.map { ObjectIdentifier($0) }
        let key = RequestKey(route: id, method: HTTPMethodName.index(method), code: code)
        if let entry = requests[key] {
            entry.1.increment()
        } else {
            let c = metrics.counter(
                "gateway_requests_total",
                [("route", route?.name ?? ""), ("method", HTTPMethodName.label(method)), ("code", String(code))])
            requests[key] = (route, c)
            c.increment()
        }
        if let entry = durations[id] {
            entry.1.recordNanoseconds(nanos)
        } else {
            let t = metrics.timer("gateway_request_duration_seconds", [("route", route?.name ?? "")])
            durations[id] = (route, t)
            t.recordNanoseconds(nanos)
        }
    }

    /// `gateway_upstream_requests_total{upstream,target,code}` and `gateway_upstream_duration_seconds{upstream}`.
    func upstream(_ upstream: String, pool: TargetPool, code: Int, nanos: Int64) {
        let key = UpstreamKey(pool: ObjectIdentifier(pool), code: code)
        if let entry = upstreamRequests[key] {
            entry.1.increment()
        } else {
            let c = metrics.counter(
                "gateway_upstream_requests_total", [("upstream", upstream), ("target", pool.key), ("code", String(code))])
            upstreamRequests[key] = (pool, c)
            c.increment()
        }
        if let entry = upstreamDurations[ObjectIdentifier(pool)] {
            entry.1.recordNanoseconds(nanos)
        } else {
            let t = metrics.timer("gateway_upstream_duration_seconds", [("upstream", upstream)])
            upstreamDurations[ObjectIdentifier(pool)] = (pool, t)
            t.recordNanoseconds(nanos)
        }
    }

    /// `gateway_active_connections{listener}`.
    func connectionOpened(listener: String) { connectionGauge(listener).increment(by: 1) }
    func connectionClosed(listener: String) { connectionGauge(listener).decrement(by: 1) }

    private func connectionGauge(_ listener: String) -> Prometheus.Gauge {
        if let g = connections[listener] { return g }
        let g = metrics.upDownGauge("gateway_active_connections", [("listener", listener)])
        connections[listener] = g
        return g
    }
}

/// Method labels: the common methods by name, anything else as `OTHER` (a client must not be
/// able to create series at will).
enum HTTPMethodName {
    /// The label's index, for keys hashed on every request (`OTHER` is 0).
    static func index(_ m: HTTPMethod) -> UInt8 {
        switch m {
        case .GET: return 1
        case .HEAD: return 2
        case .POST: return 3
        case .PUT: return 4
        case .DELETE: return 5
        case .PATCH: return 6
        case .OPTIONS: return 7
        case .CONNECT: return 8
        case .TRACE: return 9
        default: return 0
        }
    }

    /// The labels, by index.
    private static let labels = ["OTHER", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"]

    static func label(_ m: HTTPMethod) -> String { labels[Int(index(m))] }
}
