import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking HTTP/1.1 client over a plain socket, so tests can send exactly the bytes they
/// mean (malformed ones included) and read exactly what came back. Every read has a timeout.
final class RawHTTPClient {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
        func headers(_ name: String) -> [String] {
            headers.filter { $0.0.lowercased() == name.lowercased() }.map(\.1)
        }
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        }
    }

    let fd: Int32
    private var buffer: [UInt8] = []
    private var offset = 0

    init(port: Int, host: String = "127.0.0.1", timeout: Double = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() failed") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        // No close here: a class whose init throws after its properties are set still runs
        // deinit, which closes the descriptor (closing it twice could close someone else's).
        guard rc == 0 else { throw Failure(description: "connect to \(port) failed: errno \(errno)") }
    }

    deinit { Glibc.close(fd) }

    func close() { shutdown(fd, Int32(SHUT_RDWR)) }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "send failed: errno \(errno)")
            }
            sent += n
        }
    }

    /// Reads more bytes; false at end of stream.
    private func fill() throws -> Bool {
        if offset > 0 && offset == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            offset = 0
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65536, 0) }
            if n > 0 {
                buffer += chunk[0..<n]
                return true
            }
            if n == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw Failure(description: "read timed out") }
            if errno == ECONNRESET { return false }
            throw Failure(description: "recv failed: errno \(errno)")
        }
    }

    private func readLine() throws -> String {
        while true {
            if let i = buffer[offset...].firstIndex(of: 10) {
                var line = buffer[offset..<i]
                if line.last == 13 { line = line.dropLast() }
                offset = i + 1
                return String(decoding: line, as: UTF8.self)
            }
            guard try fill() else { throw Failure(description: "connection closed") }
        }
    }

    private func readExactly(_ n: Int, into sink: ([UInt8]) -> Void) throws {
        var left = n
        while left > 0 {
            if offset == buffer.count {
                guard try fill() else { throw Failure(description: "connection closed with \(left) bytes missing") }
            }
            let take = min(left, buffer.count - offset)
            sink(Array(buffer[offset..<offset + take]))
            offset += take
            left -= take
        }
    }

    /// Reads one response head only (status line and headers), interim responses included.
    func readHeadOnly() throws -> Int {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let code = Int(parts[1]) else { throw Failure(description: "bad status line: \(statusLine)") }
        while try !readLine().isEmpty {}
        return code
    }

    /// Reads raw bytes until `marker` has arrived; returns everything up to and including it.
    func readUntil(_ marker: String) throws -> String {
        let m = Array(marker.utf8)
        while true {
            if let r = buffer[offset...].firstRange(of: m) {
                let text = String(decoding: buffer[offset..<r.upperBound], as: UTF8.self)
                offset = r.upperBound
                return text
            }
            guard try fill() else { throw Failure(description: "connection closed before \(marker.debugDescription)") }
        }
    }

    /// Reads exactly `n` raw bytes (for WebSocket frames).
    func readBytes(_ n: Int, into out: inout [UInt8]) throws -> Int {
        var collected: [UInt8] = []
        try readExactly(n) { collected += $0 }
        out += collected
        return n
    }

    /// True when the server closed the connection (reads end of stream) within the timeout.
    func isClosedByPeer() -> Bool {
        if offset < buffer.count { return false }
        return (try? fill()) == false
    }

    /// Reads one response. `bodySink`, when given, receives the body instead of `Response.body`.
    func readResponse(head requestWasHead: Bool = false, bodySink: (([UInt8]) -> Void)? = nil) throws -> Response {
        var statusLine = try readLine()
        var status = 0
        var headers: [(String, String)] = []
        while true {
            let parts = statusLine.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]) else {
                throw Failure(description: "bad status line: \(statusLine)")
            }
            status = code
            headers = []
            while true {
                let line = try readLine()
                if line.isEmpty { break }
                guard let colon = line.firstIndex(of: ":") else { throw Failure(description: "bad header line: \(line)") }
                headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
            if status >= 100 && status < 200 && status != 101 { statusLine = try readLine(); continue }
            break
        }
        var response = Response(status: status, headers: headers, body: [])
        var body: [UInt8] = []
        let sink: ([UInt8]) -> Void = bodySink ?? { body += $0 }
        if requestWasHead || status == 204 || status == 304 || status == 101 {
            return response
        }
        if let te = response.header("transfer-encoding"), te.lowercased().contains("chunked") {
            while true {
                let sizeLine = try readLine()
                guard let size = Int(sizeLine.split(separator: ";").first.map(String.init) ?? "", radix: 16) else {
                    throw Failure(description: "bad chunk size: \(sizeLine)")
                }
                if size == 0 {
                    while try !readLine().isEmpty {}
                    break
                }
                try readExactly(size, into: sink)
                _ = try readLine()
            }
        } else if let cl = response.header("content-length").flatMap({ Int($0) }) {
            try readExactly(cl, into: sink)
        } else {
            while true {
                if offset < buffer.count {
                    sink(Array(buffer[offset...]))
                    offset = buffer.count
                }
                guard try fill() else { break }
            }
        }
        response.body = body
        return response
    }

    /// Sends a request and reads its response.
    func request(
        _ method: String = "GET", _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil, host: String = "test.local"
    ) throws -> Response {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\n"
        for (n, v) in headers { text += "\(n): \(v)\r\n" }
        if let body { text += "Content-Length: \(body.count)\r\n" }
        text += "\r\n"
        try send(Array(text.utf8) + (body ?? []))
        return try readResponse(head: method == "HEAD")
    }
}

/// One request on a fresh connection.
func httpRequest(
    port: Int, _ method: String = "GET", _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil, host: String = "test.local"
) throws -> RawHTTPClient.Response {
    let c = try RawHTTPClient(port: port)
    return try c.request(method, path, headers: headers, body: body, host: host)
}

/// Polls `condition` until it holds or `timeout` passes (no fixed sleeps).
func waitUntil(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// A TCP port nobody listens on right now, for a server the test starts on that port. It is
/// drawn below Linux's ephemeral range (32768 and up), where every `bind` to port 0 of the
/// other tests' servers lands, so none of them can take it before the test binds it.
func freePort() -> Int {
    for _ in 0..<200 {
        let port = Int.random(in: 20_000..<32_000)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc == 0 { return port }
    }
    return 0
}

/// A loopback port held bound but not listening for as long as this object lives: a
/// connection to it is refused, and no other test can start listening on it meanwhile (a
/// port from `freePort()` may be taken by the next server any test starts).
final class DeadPort: Sendable {
    let port: Int
    private let fd: Int32

    init() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit { Glibc.close(fd) }

    var url: String { "http://127.0.0.1:\(port)" }
}

/// `httpRequest` on a thread of its own: for async tests whose server side needs Swift
/// concurrency (a blocking socket read on the cooperative pool could starve it).
/// `Host` is `localhost` by default: a loopback name, which the admin API answers to.
func httpRequestOffPool(
    port: Int, _ method: String = "GET", _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
    host: String = "localhost"
) async throws -> RawHTTPClient.Response {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            // A generous timeout: the server side runs on Swift's cooperative pool, which other
            // tests' blocking socket calls can hold up for seconds on a 2-core machine.
            continuation.resume(
                with: Result {
                    try RawHTTPClient(port: port, timeout: 30).request(method, path, headers: headers, body: body, host: host)
                })
        }
    }
}
