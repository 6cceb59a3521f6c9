import Foundation
import GatewayAuth
import GatewayConfig
import GatewayProxy
import Logging
import Synchronization
import Testing

@testable import GatewayAdmin
@testable import GatewayReload

/// The config endpoints of the admin API (SPEC §5, §6) over real sockets: a gateway, its
/// reloader and its admin server in this process, on a config file in a temp directory.
@Suite struct AdminConfigTests {
    /// A config of version `v`: two routes, each answering with its version in the body and
    /// in a response header, so a response that mixed two versions would show it.
    static func versioned(_ v: String) -> String {
        """
        { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
          "admin": { "address": "127.0.0.1:0" },
          "routes": [
            { "match": { "path_prefix": "/a" }, "respond": { "status": 200, "body": "\(v)-a" }, "response_headers": { "set": { "x-version": "\(v)" } } },
            { "match": { "path_prefix": "/" }, "respond": { "status": 200, "body": "\(v)-root" }, "response_headers": { "set": { "x-version": "\(v)" } } } ],
          "access_log": { "enabled": false } }
        """
    }

    /// A config whose one route answers `text` itself: which config served a request is
    /// visible in the answer.
    static func file(_ text: String, extra: String = "") -> String {
        """
        { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
          "admin": { "address": "127.0.0.1:0" },
          "routes": [ { "match": { "path_prefix": "/" }, "respond": { "status": 200, "body": "\(text)" } }\(extra) ],
          "access_log": { "enabled": false } }
        """
    }

    final class Running: Sendable {
        let server: GatewayServer
        let admin: AdminServer
        let reloader: ConfigReloader
        let path: String
        let dir: URL
        init(server: GatewayServer, admin: AdminServer, reloader: ConfigReloader, path: String, dir: URL) {
            self.server = server
            self.admin = admin
            self.reloader = reloader
            self.path = path
            self.dir = dir
        }
        var port: Int { server.boundAddresses.values.first?.port ?? 0 }
    }

    /// `configMap`: lay the file out as Kubernetes mounts a ConfigMap — `gateway.json` is a
    /// symlink to `..data/gateway.json`, and `..data` a symlink to a versioned directory.
    func withAdmin(token: String? = nil, configMap: Bool = false, _ body: (Running) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("admin-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("gateway.json").path
        let bytes = Array(Self.file("one").utf8)
        if configMap {
            let v1 = dir.appendingPathComponent("..2026_v1")
            try FileManager.default.createDirectory(at: v1, withIntermediateDirectories: true)
            try Data(bytes).write(to: v1.appendingPathComponent("gateway.json"))
            try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("..data").path, withDestinationPath: "..2026_v1")
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "..data/gateway.json")
        } else {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        let loaded = ConfigLoader.load(bytes: bytes, source: path)
        let snapshot = try #require(loaded.snapshot)
        let server = GatewayServer(snapshot: snapshot)
        try await server.start()
        let reloader = ConfigReloader(
            path: path, initialBytes: bytes, version: loaded.version, server: server, logger: Logger(label: "test"),
            environment: [:])
        let admin = try await AdminServer.start(
            address: HostPort(host: "127.0.0.1", port: 0), group: server.group, token: token, reloader: reloader,
            snapshot: { [shared = server.shared] in shared.snapshots.snapshot }, metrics: server.shared.metrics, server: server,
            isReady: { true })
        let running = Running(server: server, admin: admin, reloader: reloader, path: path, dir: dir)
        do {
            try await body(running)
        } catch {
            await admin.stop()
            await server.shutdown()
            throw error
        }
        await admin.stop()
        await server.shutdown()
        try? FileManager.default.removeItem(at: dir)
    }

    func served(_ r: Running) throws -> String {
        String(decoding: try httpRequest(port: r.port, "GET", "/").body, as: UTF8.self)
    }

    @Test func getConfigShowsVersionSourceAndTheConfig() async throws {
        try await withAdmin { r in
            let c = try await httpRequestOffPool(port: r.admin.port, "GET", "/config")
            #expect(c.status == 200)
            let json = try #require(c.json)
            #expect((json["version"] as? String)?.hasPrefix("sha256:") == true)
            #expect(json["source"] as? String == "gateway.json")
            #expect(json["loaded_at"] is String)
            #expect(json["last_error"] is NSNull)
            let routes = (json["config"] as? [String: Any])?["routes"] as? [Any]
            #expect(routes?.count == 1)
        }
    }

    @Test func putConfigValidatesWritesAndApplies() async throws {
        try await withAdmin { r in
            #expect(try served(r) == "one")
            // invalid: a route to an upstream that does not exist → 422 with the path, nothing changes
            let bad = Array(Self.file("two", extra: #", { "match": { "path": "/x" }, "upstream": "nowhere" }"#).utf8)
            let refused = try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: bad)
            #expect(refused.status == 422)
            let errors = refused.json?["errors"] as? [[String: Any]]
            #expect(errors?.contains { ($0["path"] as? String) == "routes[1].upstream" } == true)
            #expect(errors?.first?["line"] is Int)
            #expect(try served(r) == "one")
            #expect(try String(contentsOfFile: r.path, encoding: .utf8) == Self.file("one"))
            // valid: written to the file, applied, new version
            let good = Self.file("two")
            let accepted = try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: Array(good.utf8))
            #expect(accepted.status == 200)
            #expect(accepted.json?["changed"] as? Bool == true)
            #expect((accepted.json?["took_ms"] as? Double ?? -1) >= 0)
            #expect(try served(r) == "two")
            #expect(try String(contentsOfFile: r.path, encoding: .utf8) == good)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: r.dir.path).filter { $0 != "gateway.json" }
            #expect(leftovers.isEmpty)
            let version = (try await httpRequestOffPool(port: r.admin.port, "GET", "/config")).json?["version"] as? String
            #expect(version == accepted.json?["version"] as? String)
        }
    }

    @Test func validateAppliesNothing() async throws {
        try await withAdmin { r in
            let ok = try await httpRequestOffPool(port: r.admin.port, "POST", "/config/validate", body: Array(Self.file("two").utf8))
            #expect(ok.status == 200 && ok.json?["valid"] as? Bool == true)
            let bad = try await httpRequestOffPool(
                port: r.admin.port, "POST", "/config/validate", body: Array(#"{ "routes": [ { "bogus": 1 } ] }"#.utf8))
            #expect(bad.status == 422)
            #expect((bad.json?["errors"] as? [[String: Any]])?.isEmpty == false)
            #expect(try served(r) == "one")
        }
    }

    @Test func reloadReadsTheFileAndKeepsServingOnAnInvalidOne() async throws {
        try await withAdmin { r in
            // unchanged file: nothing to apply
            let same = try await httpRequestOffPool(port: r.admin.port, "POST", "/reload")
            #expect(same.status == 200 && same.json?["changed"] as? Bool == false)
            // invalid JSON: 422, old config serves, last_error has line and column
            try Data("{ \"routes\": [ ".utf8).write(to: URL(fileURLWithPath: r.path))
            let broken = try await httpRequestOffPool(port: r.admin.port, "POST", "/reload")
            #expect(broken.status == 422)
            #expect(try served(r) == "one")
            let lastError = (try await httpRequestOffPool(port: r.admin.port, "GET", "/config")).json?["last_error"] as? [String: Any]
            let first = (lastError?["errors"] as? [[String: Any]])?.first
            #expect(first?["line"] as? Int == 1)
            #expect(first?["column"] is Int)
            // fixed: applied, last_error cleared
            try Data(Self.file("three").utf8).write(to: URL(fileURLWithPath: r.path))
            let fixed = try await httpRequestOffPool(port: r.admin.port, "POST", "/reload")
            #expect(fixed.status == 200 && fixed.json?["changed"] as? Bool == true)
            #expect(try served(r) == "three")
            #expect((try await httpRequestOffPool(port: r.admin.port, "GET", "/config")).json?["last_error"] is NSNull)
        }
    }

    @Test func tokenGuardsEverythingButHealth() async throws {
        try await withAdmin(token: "s3cret-token") { r in
            #expect(try await httpRequestOffPool(port: r.admin.port, "GET", "/healthz").status == 200)
            #expect(try await httpRequestOffPool(port: r.admin.port, "GET", "/readyz").status == 200)
            let none = try await httpRequestOffPool(port: r.admin.port, "GET", "/config")
            #expect(none.status == 401)
            #expect(none.json?["error"] as? String == "unauthorized")
            #expect(none.header("www-authenticate") == #"Bearer error="invalid_token""#)
            for wrong in ["Bearer s3cret-toke", "Bearer s3cret-token2", "Basic s3cret-token", "Bearer "] {
                #expect(
                    try await httpRequestOffPool(port: r.admin.port, "GET", "/config", headers: [("Authorization", wrong)]).status == 401)
            }
            let ok = try await httpRequestOffPool(port: r.admin.port, "GET", "/config", headers: [("Authorization", "Bearer s3cret-token")])
            #expect(ok.status == 200)
            let put = try await httpRequestOffPool(
                port: r.admin.port, "PUT", "/config", headers: [("Authorization", "Bearer s3cret-token")],
                body: Array(Self.file("four").utf8))
            #expect(put.status == 200)
            #expect(try served(r) == "four")
        }
    }

    @Test func putAnswersExpectContinueBeforeTheBody() async throws {
        try await withAdmin { r in
            let body = Array(Self.file("continued").utf8)
            let port = r.admin.port
            let status: Int = try await withCheckedThrowingContinuation { cont in
                Thread.detachNewThread {
                    cont.resume(
                        with: Result {
                            // generous: the admin API answers from Swift's cooperative pool, which
                            // other tests' blocking socket calls can hold up for seconds
                            let c = try RawHTTPClient(port: port, timeout: 30)
                            try c.send(
                                "PUT /config HTTP/1.1\r\nHost: localhost\r\nContent-Length: \(body.count)\r\nExpect: 100-continue\r\n\r\n")
                            guard try c.readHeadOnly() == 100 else { return -1 }
                            try c.send(body)
                            return try c.readResponse().status
                        })
                }
            }
            #expect(status == 200)
            #expect(try served(r) == "continued")
        }
    }

    @Test func listenersAreOpenedAndClosedByAReload() async throws {
        try await withAdmin { r in
            let port = freePort()
            let two = Self.file("two").replacingOccurrences(
                of: #"{ "name": "test", "address": "127.0.0.1:0" } ]"#,
                with: #"{ "name": "test", "address": "127.0.0.1:0" }, { "name": "extra", "address": "127.0.0.1:\#(port)" } ]"#)
            #expect(two.contains("extra"))
            #expect(try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: Array(two.utf8)).status == 200)
            // the new listener serves the new config
            #expect(try httpRequest(port: port, "GET", "/").body == Array("two".utf8))
            let kept = try RawHTTPClient(port: port)
            #expect(try kept.request("GET", "/").status == 200)
            // removed again: the idle keep-alive connection is closed, new connections are refused
            #expect(try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: Array(Self.file("three").utf8)).status == 200)
            #expect(kept.isClosedByPeer())
            #expect(throws: (any Error).self) { _ = try httpRequest(port: port, "GET", "/") }
            #expect(try served(r) == "three")
        }
    }

    @Test func routesAndExplainShowTheRoutingDecision() async throws {
        let text = """
            { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
              "routes": [
                { "name": "only-post", "match": { "path": "/x", "methods": ["POST"] }, "respond": { "status": 201, "body": "p" } },
                { "name": "mobile", "match": { "path_prefix": "/api", "headers": { "x-client": "mobile" } }, "respond": { "status": 200, "body": "m" } },
                { "name": "api", "match": { "path_prefix": "/api" }, "respond": { "status": 200, "body": "a" } } ] }
            """
        try await withAdmin { r in
            #expect(try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: Array(text.utf8)).status == 200)
            let routes = (try await httpRequestOffPool(port: r.admin.port, "GET", "/routes")).json?["routes"] as? [[String: Any]]
            let targets = (try await httpRequestOffPool(port: r.admin.port, "GET", "/upstreams")).json?["targets"] as? [[String: Any]]
            #expect(targets?.isEmpty == true)  // this config has no upstreams
            #expect(routes?.map { $0["name"] as? String } == ["only-post", "mobile", "api"])
            #expect(routes?.first?["respond"] as? Int == 201)
            #expect((routes?.first?["match"] as? [String: Any])?["methods"] as? [String] == ["POST"])

            func explain(_ q: String) async throws -> [String: Any] {
                try #require(try await httpRequestOffPool(port: r.admin.port, "GET", "/explain?" + q).json)
            }
            let mobile = try await explain("method=GET&path=/api/x&header=x-client:mobile")
            #expect(mobile["decision"] as? String == "matched")
            #expect((mobile["route"] as? [String: Any])?["name"] as? String == "mobile")
            let tried = (mobile["tried"] as? [[String: Any]])?.map { $0["result"] as? String }
            #expect(tried == ["no match: path", "matched"])
            let plain = try await explain("path=%2Fapi%2Fx")
            #expect((plain["route"] as? [String: Any])?["name"] as? String == "api")
            #expect((plain["tried"] as? [[String: Any]])?[1]["result"] as? String == "no match: headers")
            let wrongMethod = try await explain("method=GET&path=/x")
            #expect(wrongMethod["decision"] as? String == "method_not_allowed")
            #expect(wrongMethod["allow"] as? [String] == ["POST"])
            #expect(try await explain("path=/nothing")["decision"] as? String == "no_route")
            #expect(try await explain("path=/../../etc")["decision"] as? String == "bad_request")
        }
    }

    @Test func metricsParseAndCountWhatWasSent() async throws {
        try await withAdmin { r in
            for _ in 0..<5 { #expect(try httpRequest(port: r.port, "GET", "/x").status == 200) }
            for _ in 0..<2 { #expect(try httpRequest(port: r.port, "POST", "/y", body: [1]).status == 200) }
            #expect(try httpRequest(port: r.port, "BREW", "/pot").status == 200)
            #expect(try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: Array(Self.file("two").utf8)).status == 200)
            _ = try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: Array("{".utf8))
            // an exchange is counted when it ends, just after its last byte was written
            var scrape = try await httpRequestOffPool(port: r.admin.port, "GET", "/metrics")
            for _ in 0..<100 where !String(decoding: scrape.body, as: UTF8.self).contains(#"method="OTHER""#) {
                try await Task.sleep(for: .milliseconds(20))
                scrape = try await httpRequestOffPool(port: r.admin.port, "GET", "/metrics")
            }
            #expect(scrape.status == 200)
            #expect(scrape.header("content-type")?.hasPrefix("text/plain") == true)
            let m = try PrometheusText(String(decoding: scrape.body, as: UTF8.self))
            #expect(m.value("gateway_requests_total", ["route": "route-0", "method": "GET", "code": "200"]) == 5)
            #expect(m.value("gateway_requests_total", ["route": "route-0", "method": "POST", "code": "200"]) == 2)
            #expect(m.value("gateway_requests_total", ["route": "route-0", "method": "OTHER", "code": "200"]) == 1)
            #expect(m.value("gateway_request_duration_seconds_count", ["route": "route-0"]) == 8)
            #expect(m.types["gateway_request_duration_seconds"] == "histogram")
            #expect(m.value("gateway_config_reloads_total", ["result": "applied"]) == 1)
            #expect(m.value("gateway_config_reloads_total", ["result": "invalid"]) == nil)  // PUT refusals are not reloads
            let version = (try await httpRequestOffPool(port: r.admin.port, "GET", "/config")).json?["version"] as? String
            #expect(m.value("gateway_config_info", ["version": version ?? "?"]) == 1)
            #expect(m.samples.filter { $0.name == "gateway_config_info" }.count == 1)
            #expect(m.value("gateway_active_connections", ["listener": "test"]) != nil)
            // label values come from the file, never from request paths
            #expect(!m.samples.contains { $0.labels.values.contains { $0.contains("/x") || $0.contains("/pot") } })
        }
    }

    @Test func wrongMethodsAndUnknownPaths() async throws {
        try await withAdmin { r in
            let m = try await httpRequestOffPool(port: r.admin.port, "DELETE", "/config")
            #expect(m.status == 405 && m.header("allow") == "GET, HEAD, PUT")
            #expect(try await httpRequestOffPool(port: r.admin.port, "GET", "/reload").status == 405)
            #expect(try await httpRequestOffPool(port: r.admin.port, "GET", "/nope").status == 404)
            // a body over 8 MiB is refused, and the config stays
            let huge = [UInt8](repeating: 32, count: 8 * 1024 * 1024 + 1)
            #expect(try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: huge).status == 413)
            #expect(try served(r) == "one")
        }
    }

    /// Runs `body` with a watcher on the config file that reloads through the reloader.
    func watching(_ r: Running, _ body: () async throws -> Void) async throws {
        let reloader = r.reloader
        let watcher = try ConfigWatcher(path: r.path, debounce: 0.05) { Task { _ = await reloader.reloadFromFile(trigger: "file change") } }
        defer { watcher.stop() }
        try await body()
    }

    /// Waits (bounded) until the gateway answers `text`.
    func eventuallyServes(_ r: Running, _ text: String) async throws -> Bool {
        for _ in 0..<250 {
            if try served(r) == text { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    @Test func fileChangesAreSeenWhateverTheWayTheFileIsWritten() async throws {
        try await withAdmin { r in
            try await watching(r) {
                // an editor's rename-save: a new file renamed over the old one
                let temp = r.dir.appendingPathComponent(".gateway.json.swp")
                try Data(Self.file("renamed").utf8).write(to: temp)
                #expect(rename(temp.path, r.path) == 0)
                #expect(try await eventuallyServes(r, "renamed"))
                // `cp` or `>`: the same inode written in place
                let handle = try #require(FileHandle(forWritingAtPath: r.path))
                try handle.truncate(atOffset: 0)
                try handle.write(contentsOf: Data(Self.file("in-place").utf8))
                try handle.close()
                #expect(try await eventuallyServes(r, "in-place"))
                // an invalid save keeps the old config serving, and shows as last_error
                try Data("{ not json".utf8).write(to: URL(fileURLWithPath: r.path))
                var sawError = false
                for _ in 0..<250 where !sawError {
                    sawError = (try await httpRequestOffPool(port: r.admin.port, "GET", "/config")).json?["last_error"] is [String: Any]
                    if !sawError { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(sawError)
                #expect(try served(r) == "in-place")
            }
        }
    }

    @Test func otherFilesInTheDirectoryDoNotTriggerReloads() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("gateway.json")
        try Data("{}".utf8).write(to: config)
        let calls = Atomic<Int>(0)
        let watcher = try ConfigWatcher(path: config.path, debounce: 0.05) { calls.add(1, ordering: .relaxed) }
        defer { watcher.stop() }
        // a log file next to the config, written over and over: no reload is asked for
        let log = dir.appendingPathComponent("access.log")
        for i in 0..<20 {
            try Data("line \(i)\n".utf8).write(to: log)
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(calls.load(ordering: .relaxed) == 0)
        // the config file itself is seen
        try Data("{ }".utf8).write(to: config)
        for _ in 0..<250 where calls.load(ordering: .relaxed) == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(calls.load(ordering: .relaxed) >= 1)
        #expect(ConfigWatcher.namesOfInterest(config.path) == ["gateway.json"])
    }

    @Test func configMapSymlinkSwapIsSeen() async throws {
        try await withAdmin(configMap: true) { r in
            #expect(try served(r) == "one")
            try await watching(r) {
                // what the kubelet does: a new versioned directory, then `..data` swapped by rename
                let v2 = r.dir.appendingPathComponent("..2026_v2")
                try FileManager.default.createDirectory(at: v2, withIntermediateDirectories: true)
                try Data(Self.file("swapped").utf8).write(to: v2.appendingPathComponent("gateway.json"))
                let tmp = r.dir.appendingPathComponent("..data_tmp").path
                try FileManager.default.createSymbolicLink(atPath: tmp, withDestinationPath: "..2026_v2")
                #expect(rename(tmp, r.dir.appendingPathComponent("..data").path) == 0)
                #expect(try await eventuallyServes(r, "swapped"))
            }
        }
    }

    /// Issue 3's acceptance: 8 clients send requests without pause while the config is
    /// reloaded 50 times, alternating two files by rename-save and by `PUT /config`. No
    /// request may fail, and every answer belongs wholly to one version.
    @Test func fiftyReloadsUnderLoadFailNothingAndMixNothing() async throws {
        try await withAdmin { r in
            // start from version A
            #expect(try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: Array(Self.versioned("A").utf8)).status == 200)
            let stop = Atomic<Bool>(false)
            let tally = Mutex((ok: 0, failed: 0, mixed: 0, seen: Set<String>()))
            let port = r.port
            let done = Atomic<Int>(0)
            for client in 0..<8 {
                Thread.detachNewThread {
                    var connection: RawHTTPClient?
                    var i = 0
                    while !stop.load(ordering: .relaxed) {
                        i += 1
                        let path = (client + i) % 2 == 0 ? "/a/x" : "/b"
                        do {
                            let c = try connection ?? RawHTTPClient(port: port)
                            connection = c
                            let resp = try c.request("GET", path)
                            let body = String(decoding: resp.body, as: UTF8.self)
                            let version = resp.header("x-version") ?? "?"
                            let expected = version + (path == "/b" ? "-root" : "-a")
                            tally.withLock { t in
                                if resp.status != 200 {
                                    t.failed += 1
                                } else if body != expected {
                                    t.mixed += 1
                                } else {
                                    t.ok += 1
                                    t.seen.insert(version)
                                }
                            }
                        } catch {
                            connection = nil
                            tally.withLock { $0.failed += 1 }
                        }
                    }
                    done.add(1, ordering: .relaxed)
                }
            }
            try await watching(r) {
                for n in 0..<50 {
                    let v = n % 2 == 0 ? "B" : "A"
                    let text = Self.versioned(v)
                    if n % 4 < 2 {
                        let temp = r.dir.appendingPathComponent(".gateway.json.new")
                        try Data(text.utf8).write(to: temp)
                        #expect(rename(temp.path, r.path) == 0)
                    } else {
                        #expect(try await httpRequestOffPool(port: r.admin.port, "PUT", "/config", body: Array(text.utf8)).status == 200)
                    }
                    // the reload has happened once the admin API reports this file's version
                    let want = ConfigLoader.load(bytes: Array(text.utf8), source: "x").version
                    var applied = false
                    for _ in 0..<250 where !applied {
                        applied = (try await httpRequestOffPool(port: r.admin.port, "GET", "/config")).json?["version"] as? String == want
                        if !applied { try await Task.sleep(for: .milliseconds(10)) }
                    }
                    #expect(applied, "reload \(n) was not applied")
                }
            }
            stop.store(true, ordering: .relaxed)
            for _ in 0..<500 where done.load(ordering: .relaxed) < 8 { try await Task.sleep(for: .milliseconds(10)) }
            let t = tally.withLock { $0 }
            #expect(t.failed == 0)
            #expect(t.mixed == 0)
            #expect(t.ok > 100)
            #expect(t.seen == ["A", "B"])
        }
    }

    @Test func redisPasswordsAreMaskedInGetConfig() {
        let text = #"{"rate_limits": {"store": {"kind": "redis", "url": "redis://:s3cret@cache:6379/0"}}, "x": "redis://u:p@h"}"#
        let masked = String(decoding: ConfigReloader.redacted(Array(text.utf8)), as: UTF8.self)
        #expect(!masked.contains("s3cret") && masked.contains("redis://:***@cache:6379/0") && masked.contains("redis://u:***@h"))
        #expect(ConfigReloader.redacted(Array("redis://cache:6379".utf8)) == Array("redis://cache:6379".utf8))
    }

    @Test func secretsCompareInConstantTimeShape() {
        // Same answers as ==, including prefixes and different lengths.
        let pairs: [(String, String)] = [
            ("a", "a"), ("a", "b"), ("abc", "ab"), ("", ""), ("", "x"), ("token", "token"),
            (String(repeating: "a", count: 256), ""), ("x" + String(repeating: "a", count: 256), "x"),
        ]
        for (a, b) in pairs {
            #expect(constantTimeEquals(Array(a.utf8), Array(b.utf8)) == (a == b))
        }
    }
}
