import Testing

@testable import GatewayProxy

/// The per-loop series: each loop counts in its own cells, a scrape sums them into one
/// sample per series, in text the strict Prometheus parser accepts.
@Suite struct LoopSeriesTests {
    static let ms: Int64 = 1_000_000

    @Test func cellsOfTwoLoopsAreOneSeriesAtScrape() throws {
        let series = LoopSeries(boundsNanos: [1 * Self.ms, 10 * Self.ms])
        let loop1 = series.counter("gateway_requests_total", [("route", "a"), ("code", "200")])
        let loop2 = series.counter("gateway_requests_total", [("route", "a"), ("code", "200")])
        let other = series.counter("gateway_requests_total", [("route", "b"), ("code", "200")])
        loop1.add()
        loop1.add()
        loop2.add(3)
        other.add()
        let m = try PrometheusText(series.exposition())
        #expect(m.types["gateway_requests_total"] == "counter")
        #expect(m.value("gateway_requests_total", ["route": "a", "code": "200"]) == 5)
        #expect(m.value("gateway_requests_total", ["route": "b", "code": "200"]) == 1)
    }

    @Test func histogramBucketsAreCumulativeAcrossLoops() throws {
        let series = LoopSeries(boundsNanos: [1 * Self.ms, 10 * Self.ms])
        let loop1 = series.histogram("gateway_request_duration_seconds", [("route", "a")])
        let loop2 = series.histogram("gateway_request_duration_seconds", [("route", "a")])
        loop1.record(500_000)  // 0.5 ms
        loop1.record(1 * Self.ms)  // on the bound: in its bucket
        loop2.record(5 * Self.ms)
        loop2.record(2_000 * Self.ms)
        let m = try PrometheusText(series.exposition())
        #expect(m.types["gateway_request_duration_seconds"] == "histogram")
        #expect(m.value("gateway_request_duration_seconds_bucket", ["route": "a", "le": "0.001"]) == 2)
        #expect(m.value("gateway_request_duration_seconds_bucket", ["route": "a", "le": "0.01"]) == 3)
        #expect(m.value("gateway_request_duration_seconds_bucket", ["route": "a", "le": "+Inf"]) == 4)
        #expect(m.value("gateway_request_duration_seconds_count", ["route": "a"]) == 4)
        let sum = try #require(m.value("gateway_request_duration_seconds_sum", ["route": "a"]))
        #expect(abs(sum - 2.0065) < 1e-9)
    }

    @Test func labelValuesAreEscaped() throws {
        let series = LoopSeries(boundsNanos: [])
        series.counter("gateway_requests_total", [("route", "a\"b\\c\nd")]).add()
        let m = try PrometheusText(series.exposition())
        #expect(m.value("gateway_requests_total", ["route": "a\"b\\c\nd"]) == 1)
    }
}
