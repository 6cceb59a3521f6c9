import FuzzSupport
import GatewayConfig
import GatewayProxy
import Glibc
import NIOHTTP1

/// Request-target normalization and the route matcher. Input lines: the request target,
/// the Host, the method, and a path pattern to compile and match on its own.
/// Properties: a normalized path starts with `/`, has no dot segment and normalizes to
/// itself; a route is chosen only when its path matcher holds (a prefix route's path is
/// the prefix or below it, `/files/*` captures the rest); a pattern that compiles matches
/// exactly when it captures.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRoute(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let target = lines[0]
    let host = lines.count > 1 ? Substring(lines[1]) : nil
    let method = lines.count > 2 && !lines[2].isEmpty ? lines[2] : "GET"

    if lines.count > 3, case .success(let pattern) = PathPattern.parse(lines[3]) {
        var probe = target
        let matches = probe.withUTF8 { pattern.matches(UnsafeRawBufferPointer($0)) }
        require(matches == (pattern.captures(target) != nil), "matches and captures disagree for \(lines[3]) on \(target)")
    }

    guard case .success(let normalized) = RequestPath.normalize(target) else { return 0 }
    let path = normalized.path
    require(path.utf8.first == UInt8(ascii: "/"), "normalized path \(path) does not start with /")
    for segment in path.split(separator: "/", omittingEmptySubsequences: false) {
        require(!segment.utf8.elementsEqual(".".utf8) && !segment.utf8.elementsEqual("..".utf8), "dot segment left in \(path)")
    }
    if case .success(let twice) = RequestPath.normalize(path) {
        require(twice.path.utf8.elementsEqual(path.utf8), "normalizing \(path) again gave \(twice.path)")
    } else {
        require(false, "normalized path \(path) does not normalize again")
    }

    guard let snapshot = routes else { return 0 }
    var headers = HTTPHeaders()
    if let host { headers.add(name: "host", value: String(host)) }
    let decision = Router.route(snapshot, method: method, path: path, query: normalized.query, headers: headers, host: host)
    guard case .matched(let route) = decision else { return 0 }
    switch route.name {
    case "api": require(path.utf8.elementsEqual("/api".utf8) || path.utf8.starts(with: "/api/".utf8), "\(path) routed to the /api prefix")
    case "exact": require(path.utf8.elementsEqual("/exact".utf8) && method == "GET", "\(method) \(path) routed to GET /exact")
    case "user": require(route.pathPattern?.captures(path)?.first?.0 == "id", "\(path) routed to /users/{id} without an id")
    case "files": require(path.utf8.elementsEqual("/files".utf8) || path.utf8.starts(with: "/files/".utf8), "\(path) routed to /files/*")
    case "by-host":
        require(host.map { $0.lowercased().hasPrefix("admin.example.com") } == true, "host \(host ?? "-") routed to admin.example.com")
    default: break
    }
    return 0
}

/// Routes of every matcher kind, compiled once.
let routes: Snapshot? = {
    let file = """
        {
          "listeners": [ { "name": "public", "address": "127.0.0.1:8080" } ],
          "upstreams": { "u": { "targets": [ "http://127.0.0.1:9101" ] } },
          "routes": [
            { "name": "by-host", "match": { "host": "admin.example.com", "path_prefix": "/" }, "upstream": "u" },
            { "name": "exact", "match": { "path": "/exact", "methods": ["GET"] }, "upstream": "u" },
            { "name": "user", "match": { "path": "/users/{id}" }, "upstream": "u" },
            { "name": "files", "match": { "path": "/files/*" }, "upstream": "u" },
            { "name": "query", "match": { "path_prefix": "/q", "query": { "v": "2 b" } }, "upstream": "u" },
            { "name": "api", "match": { "path_prefix": "/api/" }, "upstream": "u" }
          ]
        }
        """
    let result = ConfigLoader.load(bytes: Array(file.utf8), source: "fuzz-route")
    require(result.isValid, "the fuzzer's own routes do not load: \(result.errors.map(\.message))")
    return result.snapshot
}()

/// The entry point SwiftPM links as `main` (see CFuzzDriver.h).
@_cdecl("fuzz_route_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzRoute)
}
