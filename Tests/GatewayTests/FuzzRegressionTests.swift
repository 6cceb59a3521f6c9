import NIOCore
import Testing

@testable import GatewayAdmin
@testable import GatewayAuth
@testable import GatewayConfig
@testable import GatewayProxy

/// One test per finding of the libFuzzer targets in `Fuzz/` (see Fuzz/README.md): each
/// input here crashed a target or broke one of its properties before the fix.
@Suite struct FuzzRegressionTests {
    /// fuzz-cookie: a `;` right after a prepended mark (U+0605) or before a combining one
    /// (U+0367) is one `Character` with it, so splitting the `Cookie` line on characters left
    /// it inside a value (and a value could carry the next cookie's pair). Split on bytes now.
    @Test(arguments: ["a=1\u{0605};b=2", "a=1;\u{0367}b=2", "s=x\u{0605};__gw_session=forged"])
    func aSemicolonNextToAMarkStillEndsACookie(_ line: String) {
        let cookies = CookieChunks.parse([line])
        for (name, value) in cookies { #expect(!name.unicodeScalars.contains(";") && !value.unicodeScalars.contains(";")) }
        #expect(cookies.count == 2)
        #expect(CookieChunks.value(named: "a", in: [line]) != nil || CookieChunks.value(named: "s", in: [line]) != nil)
    }

    /// fuzz-cookie: U+037E (GREEK QUESTION MARK) is canonically a `;` as a `Character`, but
    /// not the byte that separates cookies: it stays inside its value.
    @Test func aGreekQuestionMarkIsNoSeparator() {
        #expect(CookieChunks.parse(["a=1\u{037E}b=2"]) == ["a": "1\u{037E}b=2"])
    }

    /// fuzz-headers: an `/explain` query with a pair that is only `=` (`?==&%`, `?=`) split
    /// into no parts and indexed the first: one admin request trapped the process. Now it is
    /// an empty key, ignored.
    @Test(arguments: ["==&%", "=", "=x&path=/a", "&&=&"])
    func anExplainPairWithoutAKeyIsIgnored(_ query: String) throws {
        let snapshot = try #require(
            ConfigLoader.load(
                bytes: Array(#"{ "listeners": [ { "name": "t", "address": "127.0.0.1:0" } ], "routes": [] }"#.utf8), source: "t.json"
            ).snapshot)
        guard case .success = AdminViews.ExplainQuery.parse(Substring(query)) else {
            Issue.record("refused \(query)")
            return
        }
        #expect(AdminViews.explain(snapshot, query: Substring(query)).first == UInt8(ascii: "{"))
    }

    /// fuzz-resp: a RESP3 map header with a count near Int.max overflowed when the count was
    /// doubled (keys and values), which traps. Now it is a protocol error like any huge array.
    @Test(arguments: ["%4611686018427387904\r\n", "%9223372036854775807\r\n", "*9223372036854775807\r\n", "%1000001\r\n"])
    func aHugeAggregateCountIsAProtocolError(_ header: String) {
        var buffer = ByteBuffer(string: header)
        #expect(throws: RESPError.self) { _ = try RESPParser.parse(&buffer) }
    }

    /// fuzz-config: the "did you mean" hint picked the first of two equally close names in
    /// dictionary order, which differs from one load to the next, so the same file gave
    /// different diagnostics. The tie now goes to the name that sorts first.
    @Test func theDidYouMeanHintIsTheSameOnEveryLoad() {
        let file = """
            { "listeners": [ { "address": "127.0.0.1:1" } ],
              "upstreams": { "products7-v1": { "targets": ["http://127.0.0.1:2"] },
                             "products-v2": { "targets": ["http://127.0.0.1:3"] },
                             "a": { "targets": ["http://127.0.0.1:4"] }, "b": { "targets": ["http://127.0.0.1:5"] },
                             "c": { "targets": ["http://127.0.0.1:6"] }, "d": { "targets": ["http://127.0.0.1:7"] } },
              "routes": [ { "match": { "path_prefix": "/" }, "upstream": "products-v1" } ] }
            """
        var hints: Set<String> = []
        for _ in 0..<40 {
            let result = ConfigLoader.load(bytes: Array(file.utf8), source: "t")
            hints.formUnion(result.errors.map(\.message))
        }
        #expect(hints == [#"no upstream named "products-v1"; did you mean "products-v2"?"#])
    }

    /// fuzz-config, second run: a dictionary of entries (`rate_limits.tiers`, header maps,
    /// ...) was decoded whole, which stops at its first bad entry in hash order, so which of
    /// two bad tiers was reported changed from one load to the next. Every bad entry is
    /// reported now, in file order.
    @Test func everyBadEntryOfAMapIsReportedOnEveryLoad() {
        let file = """
            { "listeners": [ { "address": "127.0.0.1:1" } ],
              "rate_limits": { "key": "ip", "default_tier": "a",
                "tiers": { "a": "lots", "b": [ { "limit": 1, "per": "1s" }, { "ilmit": 1, "per": "1s" } ],
                           "c": [ { "limit": 1, "per": "1s" } ], "d": 7, "e": "unlimited", "f": [ { "limit": "x", "per": "1s" } ] } },
              "routes": [ { "match": { "path_prefix": "/" }, "respond": { "status": 200 },
                            "response_headers": { "set": { "x-a": 1, "x-b": "ok", "x-c": true, "x-d": "ok" } } } ] }
            """
        var seen: Set<[String]> = []
        for _ in 0..<40 {
            let result = ConfigLoader.load(bytes: Array(file.utf8), source: "t")
            seen.insert(result.errors.map { "\($0.path): \($0.message)" })
        }
        #expect(seen.count == 1, "\(seen)")
        let errors = seen.first ?? []
        for path in [
            "rate_limits.tiers.a", "rate_limits.tiers.b[1].limit", "rate_limits.tiers.b[1].ilmit", "rate_limits.tiers.d",
            "rate_limits.tiers.f[0].limit", "routes[0].response_headers.set.x-a", "routes[0].response_headers.set.x-c",
        ] {
            #expect(errors.contains { $0.hasPrefix(path + ":") }, "no error at \(path) in \(errors)")
        }
    }

    /// fuzz-route: the absolute-form parser searched for "/" by Character, and a combining
    /// mark after the "/" makes one grapheme of the two, so the parser skipped that "/". The
    /// path lost its first segments and the authority ran on to a later "@": the gateway
    /// read another host than the one the bytes name. Both searches are byte searches now.
    @Test func aCombiningMarkDoesNotHideTheSlashOfAnAbsoluteFormTarget() throws {
        guard case .success(let r) = RequestPath.normalize("http://h/\u{35A}x/../y") else {
            Issue.record("a target with a combining mark was refused")
            return
        }
        #expect(r.path == "/y")
        guard case .success(let kept) = RequestPath.normalize("http://h/\u{35A}secret") else {
            Issue.record("a target with a combining mark was refused")
            return
        }
        #expect(Array(kept.path.utf8) == Array("/\u{35A}secret".utf8))
        #expect(RequestPath.authority(of: "http://evil.example/\u{35A}@admin.example.com/").map(String.init) == "evil.example")
        #expect(RequestPath.authority(of: "http://h\u{35A}:8080/x").map { Array($0.utf8) } == Array("h\u{35A}:8080".utf8))
    }

    /// fuzz-route, second run: `/users/{id}` matched `/users/\u{35A}` (byte by byte) but
    /// its captures, split by Character, had no `id`, so an aggregate route filled its
    /// backend calls without it. Captures are split on the "/" byte like the matcher.
    @Test func capturesSplitOnTheSlashByteLikeTheMatcher() throws {
        guard case .success(let user) = PathPattern.parse("/users/{id}"),
            case .success(let files) = PathPattern.parse("/files/{dir}/*")
        else {
            Issue.record("the patterns do not parse")
            return
        }
        let captured = try #require(user.captures("/users/\u{35A}"))
        #expect(captured.count == 1 && captured.first?.0 == "id")
        #expect(captured.first.map { Array($0.1.utf8) } == Array("\u{35A}".utf8))
        let rest = try #require(files.captures("/files/a\u{301}/\u{35A}b/c"))
        #expect(rest.map(\.0) == ["dir", "*"])
        #expect(rest.map { Array($0.1.utf8) } == [Array("a\u{301}".utf8), Array("\u{35A}b/c".utf8)])
    }

    /// Found while fixing the absolute-form parser (the same Character-versus-byte mistake): `match.host`
    /// compared a lowercased String, and Unicode lowercasing turns KELVIN SIGN (U+212A) into
    /// `k`, so `Host: \u{212A}ong.example.com` matched a route for `kong.example.com`.
    @Test func hostMatchingIsByteForByteIgnoringASCIICase() throws {
        let result = ConfigLoader.load(
            bytes: Array(
                """
                { "listeners": [ { "address": "127.0.0.1:1" } ], "upstreams": { "u": { "targets": ["http://127.0.0.1:2"] } },
                  "routes": [ { "match": { "host": "kong.example.com", "path_prefix": "/" }, "upstream": "u" },
                              { "match": { "host": "*.kong.example.com", "path_prefix": "/" }, "upstream": "u" } ] }
                """.utf8), source: "t")
        let routes = try #require(result.snapshot?.routes, "\(result.errors)")
        let exact = routes[0]
        let wildcard = routes[1]
        #expect(exact.matchesHost("kong.example.com"))
        #expect(exact.matchesHost("KONG.Example.COM:8080"))
        #expect(!exact.matchesHost("\u{212A}ong.example.com"))
        #expect(!exact.matchesHost("kong.example.co\u{301}m"))
        #expect(!exact.matchesHost("kong.example.com\u{35A}:80"))
        #expect(wildcard.matchesHost("a.KONG.example.com:443"))
        #expect(!wildcard.matchesHost("a.\u{212A}ong.example.com"))
        #expect(!wildcard.matchesHost(".kong.example.com"))
    }
}
