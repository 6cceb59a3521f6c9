// Shaping throughput (issue 8): parse + shape + serialize of a 100 KiB and a 1 MiB JSON
// document, in MB/s of input, with the steps a BFF route typically uses. Run it in release:
//   swift run -c release shape-bench
import Foundation
import GatewayPolicies

/// A document like an API's list response: `{"data":{"users":[...]},"meta":{...}}`, each
/// user with nested objects and an array, grown until it reaches `size` bytes.
func document(size: Int) -> [UInt8] {
    var users: [String] = []
    var total = 64
    var i = 0
    while total < size {
        let user = """
            {"id":\(i),"name":"User \(i)","email":"user\(i)@example.com","active":\(i % 3 != 0),"score":\(Double(i) * 1.5),\
            "address":{"street":"\(i) Long Street","city":"City \(i % 50)","zip":"\(10000 + i)","geo":{"lat":51.5,"lng":-0.12}},\
            "tags":["a","b","c"],"orders":[{"id":\(i * 10),"total":12.5,"items":[{"sku":"x\(i)","qty":2}]}]}
            """
        users.append(user)
        total += user.utf8.count + 1
        i += 1
    }
    return Array("{\"data\":{\"users\":[\(users.joined(separator: ","))]},\"meta\":{\"count\":\(users.count)}}".utf8)
}

let spec = ShapeSpec(
    target: ["data", "users"], collection: true, allow: [["id"], ["name"], ["email"], ["address", "city"], ["orders", "id"]],
    deny: [["email"]], rename: ["name": "full_name"], group: "users")

func measure(_ label: String, _ doc: [UInt8], seconds: Double = 3) {
    // Warm up, then as many rounds as fit in `seconds`.
    var sink = 0
    for _ in 0..<3 { sink &+= (try? JSON.parse(doc)).map { spec.apply($0).serialized().count } ?? 0 }
    var rounds = 0
    var parseOnly = 0
    let start = Date()
    while Date().timeIntervalSince(start) < seconds {
        guard let value = try? JSON.parse(doc) else { fatalError("the benchmark document is not JSON") }
        sink &+= spec.apply(value).serialized().count
        rounds += 1
    }
    let elapsed = Date().timeIntervalSince(start)
    let parseStart = Date()
    while Date().timeIntervalSince(parseStart) < seconds / 2 {
        if case .object(let m)? = try? JSON.parse(doc) { sink &+= m.count }
        parseOnly += 1
    }
    let parseElapsed = Date().timeIntervalSince(parseStart)
    let mb = Double(doc.count) / 1_000_000
    let out = (try? JSON.parse(doc)).map { spec.apply($0).serialized().count } ?? 0
    print(
        String(
            format: "| %@ | %d | %d | %.1f | %.2f | %.1f |", label, doc.count, out, Double(rounds) * mb / elapsed,
            elapsed / Double(rounds) * 1000, Double(parseOnly) * mb / parseElapsed))
    if sink == 42 { print("") }  // keeps the work observable
}

print("| document | bytes in | bytes out | parse + shape + serialize MB/s | ms per document | parse only MB/s |")
print("|---|---:|---:|---:|---:|---:|")
measure("100 KiB", document(size: 100 * 1024))
measure("1 MiB", document(size: 1024 * 1024))
