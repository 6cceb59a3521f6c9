import Atomics
import NIOConcurrencyHelpers

/// A counter that one event loop writes and any thread reads: the loop adds with a plain
/// load and store (no atomic read-modify-write: it is the only writer); the scrape reads it.
final class LoopCounter: Sendable {
    private let value = ManagedAtomic<UInt64>(0)

    @inline(__always) func add(_ n: UInt64 = 1) {
        value.store(value.load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }

    var total: UInt64 { value.load(ordering: .relaxed) }
}

/// A duration histogram that one event loop writes (as `LoopCounter`): a count per bucket
/// (not cumulative: the scrape sums them) and the sum of the durations.
final class LoopHistogram: Sendable {
    /// Upper bounds in nanoseconds; one more bucket holds what is above the last.
    let bounds: [Int64]
    private let counts: [ManagedAtomic<UInt64>]
    private let sumNanos = ManagedAtomic<UInt64>(0)

    init(bounds: [Int64]) {
        self.bounds = bounds
        counts = (0...bounds.count).map { _ in ManagedAtomic<UInt64>(0) }
    }

    @inline(__always) func record(_ nanos: Int64) {
        let n = max(0, nanos)
        var i = 0
        while i < bounds.count && n > bounds[i] { i += 1 }
        counts[i].store(counts[i].load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        sumNanos.store(sumNanos.load(ordering: .relaxed) &+ UInt64(n), ordering: .relaxed)
    }

    /// Bucket counts (not cumulative) and the sum, as they are now.
    var snapshot: (counts: [UInt64], sumNanos: UInt64) {
        (counts.map { $0.load(ordering: .relaxed) }, sumNanos.load(ordering: .relaxed))
    }
}

/// The series of the metrics counted on every request (requests, their durations, upstream
/// tries, rate-limit decisions): each event loop counts in cells of its own, and a scrape
/// merges them. Counting costs a load and a store; no lock, no atomic add, no label lookup.
/// The families here are written out in the Prometheus text format beside the registry's.
final class LoopSeries: Sendable {
    struct Family: Sendable {
        var name: String
        var type: String
        var counters: [String: [LoopCounter]] = [:]
        var histograms: [String: [LoopHistogram]] = [:]
    }
    private let families = NIOLockedValueBox<[String: Family]>([:])
    /// Histogram buckets, nanoseconds.
    let bounds: [Int64]

    init(boundsNanos: [Int64]) { bounds = boundsNanos }

    /// A new cell of a counter series for one loop (its loop keeps it; a scrape sums the
    /// cells of all loops). `labels` are rendered once, here.
    func counter(_ family: String, _ labels: [(String, String)]) -> LoopCounter {
        let cell = LoopCounter()
        let key = Self.render(labels)
        families.withLockedValue { all in
            all[family, default: Family(name: family, type: "counter")].counters[key, default: []].append(cell)
        }
        return cell
    }

    /// A new cell of a histogram series for one loop.
    func histogram(_ family: String, _ labels: [(String, String)]) -> LoopHistogram {
        let cell = LoopHistogram(bounds: bounds)
        let key = Self.render(labels)
        families.withLockedValue { all in
            all[family, default: Family(name: family, type: "histogram")].histograms[key, default: []].append(cell)
        }
        return cell
    }

    /// `name="value",…` with the value escaped as the text format asks (`\`, `"`, newline).
    static func render(_ labels: [(String, String)]) -> String {
        var out = ""
        for (i, (name, value)) in labels.enumerated() {
            if i > 0 { out += "," }
            out += name + "=\""
            for c in value.unicodeScalars {
                switch c {
                case "\\": out += "\\\\"
                case "\"": out += "\\\""
                case "\n": out += "\\n"
                default: out.unicodeScalars.append(c)
                }
            }
            out += "\""
        }
        return out
    }

    /// The families in the text format, each series the sum of its loops' cells.
    func exposition() -> String {
        let all = families.withLockedValue { $0 }
        var out = ""
        for family in all.values.sorted(by: { $0.name < $1.name }) {
            out += "# TYPE \(family.name) \(family.type)\n"
            for (labels, cells) in family.counters.sorted(by: { $0.key < $1.key }) {
                let total = cells.reduce(UInt64(0)) { $0 &+ $1.total }
                out += "\(family.name){\(labels)} \(total)\n"
            }
            for (labels, cells) in family.histograms.sorted(by: { $0.key < $1.key }) {
                var counts = [UInt64](repeating: 0, count: bounds.count + 1)
                var sum: UInt64 = 0
                for cell in cells {
                    let s = cell.snapshot
                    for i in counts.indices { counts[i] &+= s.counts[i] }
                    sum &+= s.sumNanos
                }
                let sep = labels.isEmpty ? "" : ","
                var cumulative: UInt64 = 0
                for (i, bound) in bounds.enumerated() {
                    cumulative &+= counts[i]
                    out += "\(family.name)_bucket{\(labels)\(sep)le=\"\(Self.seconds(bound))\"} \(cumulative)\n"
                }
                cumulative &+= counts[bounds.count]
                out += "\(family.name)_bucket{\(labels)\(sep)le=\"+Inf\"} \(cumulative)\n"
                out += "\(family.name)_sum{\(labels)} \(Double(sum) / 1e9)\n"
                out += "\(family.name)_count{\(labels)} \(cumulative)\n"
            }
        }
        return out
    }

    /// Seconds as the bucket label shows them: `0.001`, `2.5`, `60.0`.
    static func seconds(_ nanos: Int64) -> String { "\(Double(nanos) / 1e9)" }
}
