import CoreMetrics
import GatewayConfig
import GatewayPolicies
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
    /// The series counted on every request, per event loop, merged at scrape time.
    let series: LoopSeries

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Request durations: 1 ms to 60 s.
        let buckets: [Duration] = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
            .seconds(10), .seconds(30), .seconds(60),
        ]
        factory.defaultDurationHistogramBuckets = buckets
        self.registry = registry
        self.factory = factory
        series = LoopSeries(
            boundsNanos: buckets.map { Int64($0.components.seconds) * 1_000_000_000 + $0.components.attoseconds / 1_000_000_000 })
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
        ("gateway_grpc_responses_total", "counter", "gRPC calls answered, by route and grpc-status"),
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
        return Self.withEveryFamily(registry.emitToBuffer() + Array(series.exposition().utf8))
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

/// One event loop's metric cells and objects. The series counted on every request are cells of
/// this loop's own (`LoopSeries`), found without hashing: by the route's index (checked to be
/// the same route), on the target pool, or the tier last used. Loop-confined.
final class LoopMetrics {
    private let metrics: GatewayMetrics

    /// A route's cells on this loop: one counter per method and status code, the duration
    /// histogram. Kept by route name across reloads (the series go on counting).
    final class RouteCells {
        let label: String
        let duration: LoopHistogram
        var byCode: [(key: UInt32, cell: LoopCounter)] = []
        init(label: String, duration: LoopHistogram) {
            self.label = label
            self.duration = duration
        }
    }
    /// A target's cells on this loop (per status code), and its upstream's duration histogram.
    final class UpstreamCells {
        let upstream: String
        let target: String
        let duration: LoopHistogram
        var byCode: [(code: Int, cell: LoopCounter)] = []
        init(upstream: String, target: String, duration: LoopHistogram) {
            self.upstream = upstream
            self.target = target
            self.duration = duration
        }
    }
    /// By `CompiledRoute.index` of the current snapshot, with the route it was made for.
    private var routeSlots: [(route: CompiledRoute, cells: RouteCells)?] = []
    private var routesByName: [String: RouteCells] = [:]
    private var upstreamsByKey: [String: UpstreamCells] = [:]
    private var upstreamDurations: [String: LoopHistogram] = [:]
    private var decisionsByTier: [String: [LoopCounter?]] = [:]
    private var lastTier = ""
    private var lastTierCells: [LoopCounter?] = []
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

    /// `gateway_ratelimit_decisions_total{tier,decision}`: `allowed`, `rejected`, or
    /// `shadow_rejected` (would have been refused; `shadow` let it through).
    func rateLimitDecision(tier: String, decision: RateLimitDecision) {
        if tier != lastTier {
            lastTierCells = decisionsByTier[tier] ?? [nil, nil, nil]
            lastTier = tier
        }
        let i = Int(decision.rawValue)
        if let cell = lastTierCells[i] { return cell.add() }
        let cell = metrics.series.counter("gateway_ratelimit_decisions_total", [("tier", tier), ("decision", decision.label)])
        lastTierCells[i] = cell
        decisionsByTier[tier] = lastTierCells
        cell.add()
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

    /// `gateway_grpc_responses_total{route,grpc_status}`: one per gRPC call, its
    /// `grpc-status` by name (`OK`, `UNAVAILABLE`, ...), whoever answered it.
    func grpc(route: String, status: Int) {
        increment("gateway_grpc_responses_total", ("route", route), ("grpc_status", GRPC.name(status)))
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
    func snapshotChanged() { routeSlots.removeAll() }

    /// `gateway_requests_total{route,method,code}` and `gateway_request_duration_seconds{route}`.
    /// Requests answered before a route was chosen (400, 404, 405, 408, 431) have `route=""`.
    func request(route: CompiledRoute?, method: HTTPMethod, code: Int, nanos: Int64) {
        let cells = routeCells(route)
        let key = UInt32(HTTPMethodName.index(method)) << 16 | UInt32(truncatingIfNeeded: min(max(code, 0), 0xFFFF))
        for entry in cells.byCode where entry.key == key {
            entry.cell.add()
            return cells.duration.record(nanos)
        }
        let cell = metrics.series.counter(
            "gateway_requests_total", [("route", cells.label), ("method", HTTPMethodName.label(method)), ("code", String(code))])
        cells.byCode.append((key, cell))
        cell.add()
        cells.duration.record(nanos)
    }

    private func routeCells(_ route: CompiledRoute?) -> RouteCells {
        let i = route.map { $0.index + 1 } ?? 0
        if i < routeSlots.count, let slot = routeSlots[i], slot.route === route { return slot.cells }
        let label = route?.name ?? ""
        let cells: RouteCells
        if let known = routesByName[label] {
            cells = known
        } else {
            cells = RouteCells(label: label, duration: metrics.series.histogram("gateway_request_duration_seconds", [("route", label)]))
            routesByName[label] = cells
        }
        if let route {
            while routeSlots.count <= i { routeSlots.append(nil) }
            routeSlots[i] = (route, cells)
        }
        return cells
    }

    /// `gateway_upstream_requests_total{upstream,target,code}` and `gateway_upstream_duration_seconds{upstream}`.
    func upstream(_ upstream: String, pool: TargetPool, code: Int, nanos: Int64) {
        let cells = pool.metricCells ?? upstreamCells(upstream, pool)
        for entry in cells.byCode where entry.code == code {
            entry.cell.add()
            return cells.duration.record(nanos)
        }
        let cell = metrics.series.counter(
            "gateway_upstream_requests_total", [("upstream", upstream), ("target", pool.key), ("code", String(code))])
        cells.byCode.append((code, cell))
        cell.add()
        cells.duration.record(nanos)
    }

    private func upstreamCells(_ upstream: String, _ pool: TargetPool) -> UpstreamCells {
        let key = upstream + "\u{0}" + pool.key
        let cells: UpstreamCells
        if let known = upstreamsByKey[key] {
            cells = known
        } else {
            let duration: LoopHistogram
            if let d = upstreamDurations[upstream] {
                duration = d
            } else {
                duration = metrics.series.histogram("gateway_upstream_duration_seconds", [("upstream", upstream)])
                upstreamDurations[upstream] = duration
            }
            cells = UpstreamCells(upstream: upstream, target: pool.key, duration: duration)
            upstreamsByKey[key] = cells
        }
        pool.metricCells = cells
        return cells
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
