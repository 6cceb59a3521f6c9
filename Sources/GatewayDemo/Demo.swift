import NIOCore
import NIOPosix

/// The services `gateway demo` starts next to the gateway, on the ports the repository's
/// `gateway.json` points to.
public enum Demo {
    public struct Services: Sendable {
        public var services: [DemoService]
        public var idp: DemoIdP?
        public var grpc: DemoGRPC?
        /// Their own event loop: they run before the gateway exists, so that its first JWKS
        /// fetch finds the identity provider up.
        var group: MultiThreadedEventLoopGroup?
        public func stop() async {
            for s in services { await s.stop() }
            await idp?.stop()
            await grpc?.stop()
            try? await group?.shutdownGracefully()
        }
    }

    /// users-1 on 9001, users-2 on 9002, echo on 9003, users-v2 (the canary) on 9005; the
    /// stand-in identity provider on 9004; the gRPC service (h2c) on 9006.
    public static let layout: [(name: String, port: Int)] = [
        ("users-1", 9001), ("users-2", 9002), ("echo", 9003), ("users-v2", 9005),
    ]
    public static let idpPort = 9004
    public static let grpcPort = 9006
    /// The API key `gateway.json` lists (as its sha256) for the demo partner.
    public static let demoAPIKey = "demo-key-123"

    public static func start() async throws -> Services {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var started = Services(services: [], idp: nil, group: group)
        do {
            for (name, port) in layout {
                started.services.append(try await DemoService.start(name: name, port: port, group: group))
            }
            started.idp = try await DemoIdP.start(port: idpPort, group: group)
            started.grpc = try await DemoGRPC.start(port: grpcPort, group: group)
        } catch {
            await started.stop()
            throw error
        }
        return started
    }

    /// Lines a newcomer can paste, for a gateway listening on `base` (cleartext) and `tlsBase`
    /// (TLS with the demo certificate) with its admin API on `admin`.
    public static func curlLines(base: String, tlsBase: String, admin: String) -> [String] {
        [
            "# round robin across two user services (watch served_by alternate)",
            "curl -s \(base)/api/users/42",
            "# what the upstream receives: forwarding headers, X-Request-Id, traceparent",
            "curl -s \(base)/echo/hello -H 'x-client: demo'",
            "# an answer straight from the gateway",
            "curl -s \(base)/hello",
            "# errors are JSON: 404, 405 with Allow, 504 after the route timeout",
            "curl -si \(base)/nowhere",
            "curl -si -X DELETE \(base)/api/users/42",
            "curl -si \(base)/slow",
            "# stream a 50 MiB download and upload through the gateway",
            "curl -s \(base)/files/bytes?n=52428800 | wc -c",
            "head -c 10485760 /dev/urandom | curl -s --data-binary @- \(base)/files/upload",
            "# JWT auth: a token from the stand-in identity provider, then a protected route",
            "TOKEN=$(curl -s 'http://127.0.0.1:\(idpPort)/token?sub=alice&tier=pro&scope=reports:read')",
            "curl -s \(base)/api/me -H \"Authorization: Bearer $TOKEN\"",
            "# no token: 401; a token without the scope the route asks for: 403",
            "curl -si \(base)/api/me",
            "curl -si \(base)/api/reports -H \"Authorization: Bearer $(curl -s 'http://127.0.0.1:\(idpPort)/token?sub=bob')\"",
            "# browser login (OAuth2 code + PKCE): open \(base)/account in a browser; the demo provider signs",
            "# you in as Demo User and the page shows what the upstream got (Authorization: Bearer …); log out at /oauth2/logout",
            "curl -si \(base)/account -H 'accept: text/html' | grep -iE '^(HTTP|location)'",
            "# an API key instead of a token; a browser's CORS preflight, answered before auth",
            "curl -s \(base)/partner/orders -H 'x-api-key: \(demoAPIKey)'",
            "curl -si -X OPTIONS \(base)/api/me -H 'Origin: http://localhost:3000' -H 'Access-Control-Request-Method: GET'",
            "# rate limits per tier: 3 a minute on /limited for anonymous callers, then 429 with Retry-After",
            "for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code} ' \(base)/limited; done; echo",
            "curl -si \(base)/limited | grep -iE '^(HTTP|ratelimit|retry-after)'",
            "# retries, health checks, ejection: /resilient has three targets, one of them down (nothing on 9099);",
            "# its health check takes it out of rotation, and a 503 is tried on the others (X-Upstream-Attempts)",
            "curl -si \(base)/resilient/users/7 | grep -iE '^(HTTP|x-upstream-attempts|x-served-by)'",
            "curl -si \(base)/resilient/status/503 | grep -iE '^(HTTP|x-upstream-attempts)'",
            "curl -s \(admin)/upstreams",
            "# fault injection for chaos drills: /chaos fails half its requests with 503 and delays a quarter",
            "for i in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null -w '%{http_code} ' \(base)/chaos; done; echo",
            "# a canary release: /canary sends 10% to users-v2, sticky on x-user (a key keeps its side",
            "# as the weight grows), x-canary picks a side; and the sticky key's side, explained",
            "for i in $(seq 20); do curl -s \(base)/canary/users/1 | grep -o '\"served_by\":\"[^\"]*\"'; done | sort | uniq -c",
            "curl -s \(base)/canary/users/1 -H 'x-user: alice'; echo",
            "curl -s \(base)/canary/users/1 -H 'x-canary: users-v2'; echo",
            "curl -s '\(admin)/explain?path=/canary/users/1&sticky=alice'",
            "# mirroring: /mirrored answers from users and sends a copy to users-v2 (its answer dropped)",
            "curl -s \(base)/mirrored/users/1; echo; curl -s \(admin)/metrics | grep ^gateway_mirror",
            "# BFF: the same user shaped per client (x-client: mobile), and one call aggregating three",
            "curl -s \(base)/bff/users/7 -H 'x-client: mobile'; echo; curl -s \(base)/bff/users/7; echo",
            "curl -si \(base)/bff/home/7 | grep -iE '^(HTTP|x-gateway-)'; curl -s \(base)/bff/home/7; echo",
            "# TLS and HTTP/2: the TLS listener has a self-signed localhost certificate (examples/certs) and ALPN",
            "# offers h2 (h2load: 30 requests, 15 streams at a time on one connection, within the demo rate limit);",
            "# the cleartext listener speaks h2c to clients with prior knowledge; gzip for clients that accept it",
            "curl -s --cacert examples/certs/demo-localhost.pem \(tlsBase)/api/users/42 -o /dev/null -w '%{http_version}\\n'",
            "h2load -n 30 -c 1 -m 15 \(tlsBase)/hello | grep -E '^(requests|status codes|Application)'",
            "curl -s --http2-prior-knowledge \(base)/echo/h2 -o /dev/null -w '%{http_version}\\n'",
            "curl -s -D - -o /dev/null -H 'accept-encoding: gzip' \"\(base)/echo/gz?pad=$(head -c 2000 /dev/zero | tr '\\0' a)\" | grep -i '^content-encoding'",
            "# gRPC over h2c to an h2c upstream (the demo's gRPC service): a unary call, a server stream, the health",
            "# service; curl sends gRPC's framing (a zero byte, a 4-byte length, the message) and prints the trailers",
            "printf '\\0\\0\\0\\0\\5world' | curl -s --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- \(base)/demo.Echo/Unary -o - -D - | tr -c '[:print:]\\n' .",
            "printf '\\0\\0\\0\\0\\0013' | curl -sN --http2-prior-knowledge -H 'content-type: application/grpc' --data-binary @- \(base)/demo.Echo/ServerStream | tr -c '[:print:]' ' '; echo",
            "# the same with a real gRPC client (pip install grpcio grpcio-health-checking):",
            "python3 Tests/GatewayTests/Support/grpc/echo_client.py 127.0.0.1:8080 server-stream 3",
            "python3 Tests/GatewayTests/Support/grpc/echo_client.py 127.0.0.1:8080 health",
            "# gRPC-Web, as a browser sends it over HTTP/1.1: the trailers come as the body's last frame",
            "printf '\\0\\0\\0\\0\\3web' | curl -s -H 'content-type: application/grpc-web+proto' --data-binary @- \(base)/demo.Echo/Unary | tr -c '[:print:]' ' '; echo",
            "# server-sent events outlive the route timeout (2 s here: 6 events 1 s apart), flushed one by one",
            "curl -sN '\(base)/events?n=6'",
            "# which tier and key a request would be counted under",
            "curl -s '\(admin)/explain?path=/partner/x&header=x-api-key:\(demoAPIKey)'",
            "# the keys the gateway holds, and why a route would refuse a request",
            "curl -s \(admin)/jwks",
            "# health of the gateway itself",
            "curl -s \(admin)/healthz; curl -s \(admin)/readyz",
            "# the running config, and a reload after editing gateway.json (SIGHUP works too)",
            "curl -s \(admin)/config | head -c 300; echo",
            "curl -s -X POST \(admin)/reload",
            "# Prometheus metrics: requests per route, method and code, durations, reloads",
            "curl -s \(admin)/metrics | grep -E '^gateway_(requests_total|config)'",
            "# which route a request would take, and why the routes before it did not match",
            "curl -s '\(admin)/explain?method=DELETE&path=/api/users/42'",
            "# check a file without applying it; PUT /config validates, writes and applies",
            "curl -s -X POST --data-binary @gateway.json \(admin)/config/validate",
        ]
    }
}
