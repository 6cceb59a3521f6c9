import FuzzSupport
@_spi(Fuzzing) import GatewayAdmin
import GatewayAuth
import GatewayConfig
@_spi(Fuzzing) import GatewayProxy
import Glibc

/// Header names and values from every side they come in by, through the code that turns
/// them into header lines. The first byte picks the source, the rest is its input:
///   0  an `/explain` query (`header=NAME:VALUE`, `method=`, `host=`…)
///   1  config values: lines NAME, VALUE, HOST for `request_headers.set`, `respond.headers`
///      and `rewrite.host`, validated as a file
///   2  bytes from a client: requests (pipelined, chunked with trailers), forwarded upstream
///   3  bytes from an upstream: a response head, written to an HTTP/1.1 and an HTTP/2 client
///   4  a login callback's `state`
///   5  NAME:VALUE straight to the head writer
/// Properties besides "no crash" (`HTTPHeaders` traps on a name that is not ASCII): every
/// line written is `NAME: VALUE` with a token name and no CR, LF or NUL in it; a config the
/// loader accepts holds only such names and values; a `state` that is accepted names a
/// cookie with a token name.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHeaders(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard count > 0, let start else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: start, count: count))
    let payload = Array(bytes.dropFirst())
    let text = String(decoding: payload, as: UTF8.self)
    switch bytes[0] % 6 {
    case 0:
        guard let snapshot = routes else { return 0 }
        let (ok, body) = AdminExplain.answer(snapshot, query: Substring(text))
        // Accepted or refused, the answer is a JSON object (a refusal is SPEC §4's error).
        require(body.first == UInt8(ascii: "{") && body.last == UInt8(ascii: "}"), "an /explain answer that is not an object")
        if !ok { require(String(decoding: body, as: UTF8.self).contains("\"bad_request\""), "a refusal that is not bad_request") }
    case 1:
        let lines = text.split(separator: "\n", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        let name = lines[0]
        let value = lines.count > 1 ? lines[1] : "v"
        let host = lines.count > 2 ? lines[2] : "h.example"
        let file = """
            { "listeners": [ { "name": "l", "address": "127.0.0.1:8080" } ],
              "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } },
              "routes": [ { "match": { "path_prefix": "/a" }, "upstream": "u", "rewrite": { "host": \(json(host)) },
                            "request_headers": { "set": { \(json(name)): \(json(value)) } } },
                          { "match": { "path_prefix": "/" }, "respond": { "status": 200, "headers": { \(json(name)): \(json(value)) } } } ] }
            """
        guard let snapshot = ConfigLoader.load(bytes: Array(file.utf8), source: "fuzz.json").snapshot else { return 0 }
        require(HeaderBytes.isToken(name), "config accepted header name \(name.debugDescription)")
        require(HeaderBytes.isFieldValue(value), "config accepted header value \(value.debugDescription)")
        require(!host.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }), "config accepted rewrite.host \(host.debugDescription)")
        let request = Array("GET /a HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        for head in HeaderPaths.forwardRequests(request, route: snapshot.routes[0], target: snapshot.upstreams[0].targets[0]) {
            checkHead(head, firstLineIsRequest: true)
        }
    case 2:
        guard let snapshot = routes else { return 0 }
        for head in HeaderPaths.forwardRequests(payload, route: snapshot.routes[0], target: snapshot.upstreams[0].targets[0]) {
            checkHead(head, firstLineIsRequest: head.starts(with: Array("GET".utf8)) || head.contains(32))
        }
    case 3:
        guard let snapshot = routes, let answer = HeaderPaths.answerHead(payload, route: snapshot.routes[0]) else { return 0 }
        checkHead(answer.head, firstLineIsRequest: true)
        for (name, value) in answer.h2 {
            require(name == ":status" || HeaderBytes.isToken(name), "h2 field name \(name.debugDescription)")
            require(!value.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }), "h2 field value \(value.debugDescription)")
        }
    case 4:
        if LoginFlow.isState(text) {
            let name = LoginFlow.loginCookieName(state: text)
            require(HeaderBytes.isToken(name), "state \(text.debugDescription) names cookie \(name.debugDescription)")
        }
    default:
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let name = String(parts[0])
        let value = parts.count > 1 ? String(parts[1]) : ""
        let line = HeaderPaths.headerLine(name, value)
        if !line.isEmpty {
            require(line == Array("\(name): \(value)\r\n".utf8), "the writer changed the line")
            require(!line.dropLast(2).contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }), "the writer wrote \(text.debugDescription)")
        }
    }
    return 0
}

/// Every line of a head (after the first, the request or status line) is `NAME: VALUE` with
/// a token name, and no line holds a CR, LF or NUL.
func checkHead(_ head: [UInt8], firstLineIsRequest: Bool) {
    var lines: [ArraySlice<UInt8>] = []
    var start = 0
    var i = 0
    while i + 1 < head.count {
        if head[i] == 13 && head[i + 1] == 10 {
            lines.append(head[start..<i])
            start = i + 2
            i += 2
        } else {
            i += 1
        }
    }
    let tail = head[start...]
    require(tail.isEmpty, "a head that does not end in CRLF: \(String(decoding: head, as: UTF8.self).debugDescription)")
    for (n, line) in lines.enumerated() {
        require(
            !line.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }),
            "CR, LF or NUL inside a line: \(String(decoding: line, as: UTF8.self).debugDescription)")
        if n == 0 && firstLineIsRequest { continue }
        if line.isEmpty { continue }  // the blank line that ends a head
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
            require(false, "a header line without a colon: \(String(decoding: line, as: UTF8.self).debugDescription)")
            continue
        }
        require(
            HeaderBytes.isToken(String(decoding: line[..<colon], as: UTF8.self)),
            "a header name that is not a token: \(String(decoding: line, as: UTF8.self).debugDescription)")
    }
}

/// A JSON string literal (the gateway's own escaper).
func json(_ s: String) -> String { jsonString(s) }

/// One route forwarding to one target, with header operations, compiled once.
let routes: Snapshot? = {
    let file = """
        { "listeners": [ { "name": "l", "address": "127.0.0.1:8080" } ],
          "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } },
          "routes": [ { "match": { "path_prefix": "/" }, "upstream": "u", "forward_request_trailers": true,
                        "request_headers": { "set": { "x-team": "a" }, "remove": ["x-drop"] },
                        "response_headers": { "set": { "x-served": "gw" } } } ] }
        """
    return ConfigLoader.load(bytes: Array(file.utf8), source: "fuzz.json").snapshot
}()

/// The entry point SwiftPM links as `main` (see CFuzzDriver.h).
@_cdecl("fuzz_headers_main")
public func fuzzHeadersMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzHeaders)
}
