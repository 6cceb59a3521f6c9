import CFuzzDriver
import Glibc

/// What every fuzz target shares: its properties' check and libFuzzer's driver.

/// Checks one of a target's properties. A violation is reported like a crash: the message
/// goes to stderr, the process aborts, and libFuzzer saves the input.
public func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        let line = "property violated: \(message())\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        abort()
    }
}

/// Runs libFuzzer on `callback` with the process's arguments (`-max_total_time=…`, corpus
/// folders). Each target's `<module>_main` calls it (see CFuzzDriver.h).
public func runFuzzer(
    _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, callback)
}
