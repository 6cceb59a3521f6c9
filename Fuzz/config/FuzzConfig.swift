import FuzzSupport
import GatewayConfig
import Glibc

/// The config decoder and validator (ConfigLoader.load: JSON syntax with locations,
/// duplicate keys, decoding, validation, compilation) on arbitrary bytes.
/// Properties: no crash or hang; a file is valid exactly when it has no error; loading is
/// deterministic (the same bytes give the same verdict and diagnostics).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    let environment = ["GATEWAY_SECRET": String(repeating: "ab", count: 32), "API_KEY": "k"]
    let first = ConfigLoader.load(bytes: bytes, source: "fuzz", environment: environment)
    require(first.isValid == first.errors.isEmpty, "valid \(first.isValid) with \(first.errors.count) errors")
    for d in first.diagnostics { require(!d.message.isEmpty, "a diagnostic without a message") }
    let second = ConfigLoader.load(bytes: bytes, source: "fuzz", environment: environment)
    require(second.isValid == first.isValid, "verdict changed between two loads")
    require(second.diagnostics.map(\.message) == first.diagnostics.map(\.message), "diagnostics changed between two loads")
    return 0
}

/// The entry point SwiftPM links as `main` (see CFuzzDriver.h).
@_cdecl("fuzz_config_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzConfig)
}
