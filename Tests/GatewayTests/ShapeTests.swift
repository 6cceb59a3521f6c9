import CompressNIO
import Foundation
import GatewayConfig
import GatewayPolicies
import NIOCore
import Testing

/// The JSON engine and the shaping steps, table-driven (issue 8).
@Suite struct ShapeEngineTests {
    static func json(_ text: String) -> JSON {
        (try? JSON.parse(Array(text.utf8))) ?? .string("<<not json: \(text)>>")
    }

    static func text(_ value: JSON) -> String { String(decoding: value.serialized(), as: UTF8.self) }

    static let user = #"""
        {"data":{"user":{"id":7,"name":"Ada","email":"ada@example.com","address":{"city":"London","zip":"N1","geo":{"lat":51.5,"lng":-0.1}},
        "orders":[{"id":1,"total":9.5,"items":[{"sku":"a","qty":1}]},{"id":2,"total":3,"items":[]}]}},"meta":{"v":1}}
        """#

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var shape: ShapeConfig
        var input: String
        var output: String
        var testDescription: String { name }
    }

    static func shape(
        target: String? = nil, collection: Bool = false, allow: [String]? = nil, deny: [String] = [], rename: [String: String] = [:],
        group: String? = nil
    ) -> ShapeConfig {
        var s = ShapeConfig(allow: allow)
        s.target = target
        s.collection = collection
        s.deny = deny
        s.rename = rename
        s.group = group
        return s
    }

    static let cases: [Case] = [
        Case(name: "nothing", shape: shape(), input: #"{"b":1,"a":[1,2]}"#, output: #"{"b":1,"a":[1,2]}"#),
        Case(
            name: "target alone", shape: shape(target: "data.user.address"), input: user,
            output: #"{"city":"London","zip":"N1","geo":{"lat":51.5,"lng":-0.1}}"#),
        Case(name: "target missing is null", shape: shape(target: "data.nobody"), input: user, output: "null"),
        Case(name: "target through a scalar is null", shape: shape(target: "meta.v.x"), input: user, output: "null"),
        Case(
            name: "allow alone, nested path", shape: shape(target: "data.user", allow: ["id", "address.city"]), input: user,
            output: #"{"id":7,"address":{"city":"London"}}"#),
        Case(
            name: "allow through arrays", shape: shape(target: "data.user", allow: ["orders.id", "orders.items.sku"]), input: user,
            output: #"{"orders":[{"id":1,"items":[{"sku":"a"}]},{"id":2,"items":[]}]}"#),
        Case(name: "allow of a missing path", shape: shape(allow: ["nope.deeper"]), input: #"{"a":1}"#, output: "{}"),
        Case(name: "allow through a scalar keeps nothing of it", shape: shape(allow: ["a.b"]), input: #"{"a":1,"c":2}"#, output: "{}"),
        Case(
            name: "deny alone", shape: shape(target: "data.user", deny: ["email", "address.geo", "orders.items"]), input: user,
            output: #"{"id":7,"name":"Ada","address":{"city":"London","zip":"N1"},"orders":[{"id":1,"total":9.5},{"id":2,"total":3}]}"#),
        Case(name: "deny of a missing path", shape: shape(deny: ["x.y"]), input: #"{"a":{"b":1}}"#, output: #"{"a":{"b":1}}"#),
        Case(
            name: "rename alone keeps the order", shape: shape(rename: ["name": "full_name"]), input: #"{"id":1,"name":"Ada","x":0}"#,
            output: #"{"id":1,"full_name":"Ada","x":0}"#),
        Case(name: "group alone", shape: shape(group: "user"), input: #"{"id":1}"#, output: #"{"user":{"id":1}}"#),
        Case(
            name: "root array applies to each element", shape: shape(allow: ["id"], rename: ["id": "key"]),
            input: #"[{"id":1,"x":2},{"id":3},"scalar",[1]]"#, output: #"[{"key":1},{"key":3},"scalar",[1]]"#),
        Case(
            name: "collection after target", shape: shape(target: "data.user.orders", collection: true, deny: ["items"], group: "orders"),
            input: user, output: #"{"orders":[{"id":1,"total":9.5},{"id":2,"total":3}]}"#),
        Case(
            name: "all steps together",
            shape: shape(
                target: "data.user", allow: ["id", "name", "email", "address"], deny: ["address.geo", "email"],
                rename: ["name": "full_name"],
                group: "user"), input: user, output: #"{"user":{"id":7,"full_name":"Ada","address":{"city":"London","zip":"N1"}}}"#),
        Case(name: "scalar root passes", shape: shape(allow: ["a"], group: "g"), input: "42", output: #"{"g":42}"#),
        Case(name: "null root passes", shape: shape(deny: ["a"]), input: "null", output: "null"),
        Case(name: "string root passes", shape: shape(rename: ["a": "b"]), input: #""text""#, output: #""text""#),
    ]

    @Test(arguments: cases) func shapes(_ c: Case) {
        let spec = ShapePolicy(c.shape).spec
        #expect(Self.text(spec.apply(Self.json(c.input))) == c.output)
    }

    @Test func jsonRoundTripsAndKeepsNumbersAndOrder() throws {
        for text in [
            #"{"z":1,"a":[true,false,null],"n":-0.5e+10,"big":12345678901234567890,"s":"é\"\\\n\u0001"}"#, "[]", "{}", #""""#, "0",
        ] {
            let v = try JSON.parse(Array(text.utf8))
            let again = try JSON.parse(v.serialized())
            #expect(v == again, "\(text)")
        }
        #expect(Self.text(try JSON.parse(Array(#"{ "b" : 1 , "a" : "\u00e9\ud83d\ude00" }"#.utf8))) == #"{"b":1,"a":"é😀"}"#)
        #expect(Self.text(try JSON.parse(Array("12345678901234567890.5".utf8))) == "12345678901234567890.5")
    }

    @Test func badJSONIsRefusedWithAnOffset() {
        for bad in [
            "", "{", #"{"a"}"#, "[1,]", "01", "1.", "-", "tru", #""\ud800""#, #""a"#, "{} x", "[\"\u{1}\"]", #"{"a":1,}"#,
            String(repeating: "[", count: 300) + String(repeating: "]", count: 300),
        ] {
            #expect(throws: JSONParseError.self, "\(bad.prefix(20))") { try JSON.parse(Array(bad.utf8)) }
        }
    }

    @Test func pathsThatCanNeverMatchAreWarnings() {
        let text = """
            { "listeners": [ { "name": "l", "address": "127.0.0.1:0" } ],
              "upstreams": { "a": { "targets": ["http://127.0.0.1:1"] } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "a",
                "shape": { "allow": ["id", "address.city"], "deny": ["email", "address.geo", "address.city.x"],
                           "rename": { "name": "full_name", "id": "key" } } },
                { "match": { "path_prefix": "/b" }, "upstream": "a",
                  "shape": { "target": "a..b", "allow": ["x."], "deny": ["id"], "rename": { "id": "key" }, "group": "" } } ] }
            """
        let r = ConfigLoader.load(bytes: Array(text.utf8), source: "t.json")
        let warnings = r.diagnostics.filter { !r.errors.contains($0) }
        #expect(warnings.contains { $0.path == "routes[0].shape.deny[0]" })  // email: not allowed
        #expect(warnings.contains { $0.path == "routes[0].shape.deny[1]" })  // address.geo: only address.city is kept
        #expect(!warnings.contains { $0.path == "routes[0].shape.deny[2]" })  // inside an allowed path
        #expect(warnings.contains { $0.path == "routes[0].shape.rename" && $0.message.contains("\"name\"") })
        #expect(warnings.contains { $0.path == "routes[1].shape.rename" && $0.message.contains("deny") })
        let errors = Set(r.errors.map(\.path))
        for p in ["routes[1].shape.target", "routes[1].shape.allow[0]", "routes[1].shape.group"] {
            #expect(errors.contains(p), "\(p) in \(errors)")
        }
    }
}

/// Shaping on the data path, over real sockets.
@Suite struct ShapeTests {
    static let doc = #"{"data":{"user":{"id":7,"name":"Ada","email":"ada@example.com","address":{"city":"London","geo":[51.5,-0.1]}}}}"#

    static func template(_ u: [String]) -> String {
        """
        { "listeners": [ { "name": "test", "address": "127.0.0.1:0" } ],
          "server": { "workers": 1 }, "access_log": { "enabled": false },
          "upstreams": { "api": { "targets": ["\(u[0])"] } },
          "routes": [
            { "name": "mobile", "match": { "path_prefix": "/me", "headers": { "x-client": "mobile" } }, "upstream": "api",
              "shape": { "target": "data.user", "allow": ["id", "name"], "group": "user" } },
            { "name": "web", "match": { "path_prefix": "/me" }, "upstream": "api",
              "shape": { "target": "data.user", "deny": ["email", "address.geo"], "rename": { "name": "full_name" }, "max_bytes": 4096 } } ] }
        """
    }

    @Test func perClientShapesAndFixedLength() async throws {
        let rig = try await ResilienceRig.start(1, Self.template)
        defer { Task { await rig.stop() } }
        rig.upstreams[0].set { $0.body = Array(Self.doc.utf8) }
        let mobile = try await rig.request("GET", "/me", headers: [("x-client", "mobile")])
        #expect(mobile.status == 200)
        #expect(mobile.text == #"{"user":{"id":7,"name":"Ada"}}"#)
        #expect(mobile.header("content-length") == String(mobile.body.count))
        let web = try await rig.request("GET", "/me")
        #expect(web.text == #"{"id":7,"full_name":"Ada","address":{"city":"London"}}"#)
        #expect(web.header("content-length") == String(web.body.count))
        #expect(rig.metric("gateway_shape_total", ["route": "mobile", "outcome": "shaped"]) == 1)
    }

    @Test func gzipUpstreamJSONIsShaped() async throws {
        let rig = try await ResilienceRig.start(1, Self.template)
        defer { Task { await rig.stop() } }
        var plain = ByteBufferAllocator().buffer(string: Self.doc)
        let gz = try plain.compress(with: .gzip())
        rig.upstreams[0].set {
            $0.body = Array(buffer: gz)
            $0.headers = [("content-encoding", "gzip")]
        }
        let r = try await rig.request("GET", "/me", headers: [("x-client", "mobile"), ("accept-encoding", "gzip")])
        #expect(r.status == 200)
        #expect(r.text == #"{"user":{"id":7,"name":"Ada"}}"#)
        #expect(r.header("content-encoding") == nil)
        #expect(r.header("content-length") == String(r.body.count))
    }

    @Test func everythingElsePassesUnchanged() async throws {
        let rig = try await ResilienceRig.start(1, Self.template)
        defer { Task { await rig.stop() } }
        let up = rig.upstreams[0]
        // Not 2xx.
        up.set {
            $0.status = 404
            $0.body = Array(Self.doc.utf8)
        }
        #expect(try await rig.request("GET", "/me").text == Self.doc)
        // Not JSON.
        up.set {
            $0.status = 200
            $0.headers = [("content-type", "text/plain")]
        }
        #expect(try await rig.request("GET", "/me").text == Self.doc)
        // JSON by its type, but not parseable.
        up.set {
            $0.headers = []
            $0.body = Array("{not json".utf8)
        }
        #expect(try await rig.request("GET", "/me").text == "{not json")
        #expect(rig.metric("gateway_shape_total", ["route": "web", "outcome": "not_json"]) == 1)
        // Over the route's max_bytes (4 KiB): passes unshaped, counted.
        let big = #"{"data":{"user":{"id":1,"pad":""# + String(repeating: "x", count: 10_000) + #""}}}"#
        up.set { $0.body = Array(big.utf8) }
        let r = try await rig.request("GET", "/me")
        #expect(r.text == big)
        #expect(r.header("content-length") == String(big.utf8.count))
        #expect(rig.metric("gateway_shape_total", ["route": "web", "outcome": "too_large"]) == 1)
        // A HEAD passes as it is.
        up.set { $0.body = Array(Self.doc.utf8) }
        let head = try await rig.request("HEAD", "/me")
        #expect(head.status == 200 && head.body.isEmpty)
    }
}
