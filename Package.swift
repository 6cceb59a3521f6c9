// swift-tools-version: 6.2
import PackageDescription

// Warnings that hide real data races under NIO's @preconcurrency APIs are errors here.
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .treatWarning("SendableClosureCaptures", as: .error),
]
// The data path is hot: exclusivity checks cost ~13% of instructions (DESIGN.md notes)
// and every access in these modules is already confined to one event loop.
let hot: [SwiftSetting] =
    strict + [
        .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
    ]

/// SwiftNIO's HTTP/1 server and client stack, used by every networked module.
let nioHTTP: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"),
]
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let crypto: Target.Dependency = .product(name: "Crypto", package: "swift-crypto")
let webSocket: Target.Dependency = .product(name: "NIOWebSocket", package: "swift-nio")

let package = Package(
    name: "gateway",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gateway", targets: ["gateway"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        // Tests only: child processes (Foundation's Process.run can crash on Linux:
        // swift-corelibs-foundation#5472).
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
    ],
    targets: [
        .target(
            name: "GatewayConfig",
            dependencies: ["GatewayPolicies", crypto],
            swiftSettings: strict),
        .target(
            name: "GatewayPolicies",
            dependencies: [],
            swiftSettings: hot),
        .target(
            name: "GatewayAuth",
            dependencies: [
                "GatewayConfig", logging, crypto, .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Atomics", package: "swift-atomics"),
            ] + nioHTTP,
            swiftSettings: strict),
        .target(
            name: "GatewayProxy",
            dependencies: [
                "GatewayConfig", "GatewayPolicies", "GatewayAuth", logging, .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "CoreMetrics", package: "swift-metrics"), .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ] + nioHTTP,
            swiftSettings: hot),
        .target(
            name: "GatewayReload",
            dependencies: [
                "GatewayConfig", "GatewayProxy", logging, .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .target(
            name: "GatewayAdmin",
            dependencies: [
                "GatewayConfig", "GatewayPolicies", "GatewayAuth", "GatewayProxy", "GatewayReload", logging,
                .product(name: "Atomics", package: "swift-atomics"),
            ] + nioHTTP,
            swiftSettings: strict),
        .target(
            name: "GatewayDemo",
            dependencies: [webSocket, crypto, .product(name: "NIOHTTP2", package: "swift-nio-http2")] + nioHTTP,
            swiftSettings: strict),
        .executableTarget(
            name: "gateway",
            dependencies: [
                "GatewayConfig", "GatewayProxy", "GatewayAdmin", "GatewayReload", "GatewayDemo", logging,
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ] + nioHTTP,
            swiftSettings: strict),
        .executableTarget(
            name: "auth-bench",
            dependencies: ["GatewayAuth", "GatewayConfig", crypto, .product(name: "_CryptoExtras", package: "swift-crypto")],
            path: "Benchmarks/AuthBench",
            swiftSettings: strict),
        .executableTarget(
            name: "proxy-harness",
            dependencies: ["GatewayConfig", "GatewayProxy"],
            path: "Benchmarks/ProxyHarness",
            swiftSettings: strict),
        .executableTarget(
            name: "shape-bench",
            dependencies: ["GatewayPolicies"],
            path: "Benchmarks/ShapeBench",
            swiftSettings: strict),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "GatewayConfig", "GatewayPolicies", "GatewayAuth", "GatewayProxy", "GatewayAdmin", "GatewayReload", "GatewayDemo",
                "gateway", webSocket,
                crypto,
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ] + nioHTTP,
            // The gRPC tests' Python server and client, run as processes.
            exclude: ["Support/grpc"],
            swiftSettings: strict),
    ]
)

// libFuzzer targets (Fuzz/README.md), only when GATEWAY_FUZZ=1: a normal build has no
// use for them and could not link them (libFuzzer supplies their `main`). The gateway's own
// modules get coverage instrumentation and AddressSanitizer; dependencies are built as usual.
if Context.environment["GATEWAY_FUZZ"] == "1" {
    let sanitizers = ["-sanitize=fuzzer,address"]
    for target in package.targets where target.type == .regular {
        target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(sanitizers)]
    }
    let fuzzers: [(String, [Target.Dependency])] = [
        ("fuzz-config", ["GatewayConfig"]),
        ("fuzz-shape", ["GatewayPolicies"]),
        ("fuzz-route", ["GatewayConfig", "GatewayProxy", .product(name: "NIOHTTP1", package: "swift-nio")]),
        ("fuzz-cookie", ["GatewayAuth"]),
        ("fuzz-resp", ["GatewayProxy", .product(name: "NIOCore", package: "swift-nio")]),
        ("fuzz-headers", ["GatewayConfig", "GatewayAuth", "GatewayProxy", "GatewayAdmin", "GatewayReload"]),
    ]
    package.targets.append(.target(name: "CFuzzDriver", path: "Fuzz/CFuzzDriver"))
    package.targets.append(
        .target(
            name: "FuzzSupport", dependencies: ["CFuzzDriver"], path: "Fuzz/FuzzSupport",
            swiftSettings: strict + [.unsafeFlags(sanitizers)]))
    for (name, dependencies) in fuzzers {
        package.targets.append(
            .executableTarget(
                name: name, dependencies: dependencies + ["FuzzSupport"], path: "Fuzz/\(name.dropFirst(5))",
                swiftSettings: strict + [.unsafeFlags(sanitizers + ["-parse-as-library"])],
                linkerSettings: [.unsafeFlags(sanitizers)]))
    }
}
