import AsyncHTTPClient
import GatewayConfig
import GatewayPolicies
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Prometheus
import ServiceLifecycle

/// The upstreams' background work, as one Service: active health checks of every target of
/// an upstream with `health_check` (each probe on its own schedule, with jitter), the outlier
/// detectors' interval ends, and the `gateway_upstream_available` gauges. It follows reloads:
/// each pass reads the current snapshot, so targets added to the file are probed and removed
/// ones are not.
public final class HealthService: Service, Sendable {
    private let shared: SharedState
    private let client: HTTPClient
    private let group: any EventLoopGroup
    private let logger = Logger(label: "gateway.health")
    /// Probes running now, by upstream and target (a slow target is never probed twice at once).
    private let inFlight = NIOLockedValueBox<Set<String>>([])
    /// How often the schedule is looked at: the resolution of probe times.
    static let step: Int64 = 50_000_000
    /// The `gateway_upstream_available` series, by upstream and target.
    private let gauges = NIOLockedValueBox<[String: Prometheus.Gauge]>([:])

    public init(shared: SharedState, group: any EventLoopGroup) {
        self.shared = shared
        self.group = group
        var config = HTTPClient.Configuration()
        config.redirectConfiguration = .disallow
        config.decompression = .disabled
        config.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 2)
        client = HTTPClient(eventLoopGroup: group, configuration: config)
        // Read at every scrape, so the gauge says what `/upstreams` says at that moment.
        shared.metrics.onScrape { [weak self] in self?.refreshGauges() }
    }

    public func run() async throws {
        var next: [String: Int64] = [:]
        var rng = SplitMix64()
        var pass = 0
        var lastSnapshot: ObjectIdentifier?
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let snapshot = shared.snapshots.snapshot
                if ObjectIdentifier(snapshot) != lastSnapshot {
                    // Upstreams gone from the file take their health state with them.
                    lastSnapshot = ObjectIdentifier(snapshot)
                    shared.health.retain(names: Set(snapshot.upstreams.map(\.name)))
                }
                let now = Self.now()
                var seen = Set<String>()
                for spec in snapshot.upstreams {
                    guard let health = shared.health.health(for: spec) else { continue }
                    health.tick(now: now)
                    guard let check = health.healthCheck else { continue }
                    for (i, target) in spec.targets.enumerated() where i < health.targets.count {
                        let key = spec.name + "\u{0}" + target.url
                        seen.insert(key)
                        let jitter = Int64(rng.next() % UInt64(max(1, check.intervalNanos / 10)))
                        guard let due = next[key] else {
                            // A new target: first probe soon, spread so targets are not probed in step.
                            next[key] = now + jitter
                            continue
                        }
                        guard now >= due, inFlight.withLockedValue({ $0.insert(key).inserted }) else { continue }
                        next[key] = now + check.intervalNanos + jitter
                        let th = health.targets[i]
                        let name = spec.name
                        group.addTask {
                            let passed = await self.probe(target, check, spec)
                            self.recordProbe(th, upstream: name, passed: passed, check: check)
                            _ = self.inFlight.withLockedValue { $0.remove(key) }
                        }
                    }
                }
                next = next.filter { seen.contains($0.key) }
                // Gauges twice a second: an ejection's end is a time, not an event.
                if pass % 10 == 0 { refreshGauges() }
                pass += 1
                try? await Task.sleep(nanoseconds: UInt64(Self.step))
            }
        }
        try? await client.shutdown()
    }

    static func now() -> Int64 { Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds) }

    /// One GET of the check's path; passes when the status is in the expected range within the timeout.
    private func probe(_ target: UpstreamSpec.TargetSpec, _ check: HealthCheckSpec, _ spec: UpstreamSpec) async -> Bool {
        if spec.protocol.isHTTP2 {
            // On HTTP/2, as the requests go (h2c has no upgrade from HTTP/1.1 here).
            let tls =
                target.tls
                ? LoopContext.tlsContext(spec).map { ($0, spec.tls.serverName ?? (IPAddressBytes(target.host) == nil ? target.host : nil)) }
                : nil
            if target.tls && tls == nil { return false }
            return await HTTP2Probe.run(target, check, tls: tls, group: group)
        }
        var request = HTTPClientRequest(url: target.url + check.path)
        request.headers.add(name: "user-agent", value: "gateway-health-check")
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(check.timeoutNanos))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return check.expected.contains(Int(response.status.code))
        } catch {
            return false
        }
    }

    private func recordProbe(_ th: TargetHealth, upstream: String, passed: Bool, check: HealthCheckSpec) {
        let (changed, status) = th.check.withLockedValue { s in
            (s.record(passed: passed, healthyThreshold: check.healthyThreshold, unhealthyThreshold: check.unhealthyThreshold), s.status)
        }
        guard changed else { return }
        th.healthy.store(status != .unhealthy, ordering: .relaxed)
        refreshGauges()
        if status == .unhealthy {
            logger.warning(
                "target failed its health checks; out of rotation", metadata: ["upstream": "\(upstream)", "target": "\(th.url)"])
        } else if status == .healthy {
            logger.info("target passes its health checks", metadata: ["upstream": "\(upstream)", "target": "\(th.url)"])
        }
    }

    /// `gateway_upstream_available{upstream,target}`: 1 when the target takes traffic
    /// (healthy and not ejected), 0 otherwise; series of targets gone from the file are removed.
    func refreshGauges() {
        let snapshot = shared.snapshots.snapshot
        let now = Self.now()
        gauges.withLockedValue { refreshGauges(snapshot, now: now, gauges: &$0) }
    }

    private func refreshGauges(_ snapshot: Snapshot, now: Int64, gauges: inout [String: Prometheus.Gauge]) {
        var seen = Set<String>()
        for spec in snapshot.upstreams {
            let health = shared.health.health(for: spec)
            for (i, t) in spec.targets.enumerated() {
                let key = spec.name + "\u{0}" + t.url
                seen.insert(key)
                let gauge =
                    gauges[key]
                    ?? shared.metrics.upDownGauge(
                        "gateway_upstream_available", [("upstream", spec.name), ("target", t.url)],
                        help: "1 when the target is healthy and not ejected")
                gauges[key] = gauge
                gauge.set(to: (health?.isAvailable(i, now: now) ?? true) ? 1 : 0)
            }
        }
        for (key, gauge) in gauges where !seen.contains(key) {
            shared.metrics.registry.unregisterGauge(gauge)
            gauges[key] = nil
        }
    }
}
