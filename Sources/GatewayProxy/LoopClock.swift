import Foundation
import NIOCore

/// The one clock of an event loop's data path: uptime nanoseconds for deadlines and
/// durations, wall-clock seconds for token, session and cookie expiry. It reads the system
/// clocks unless a test sets it by hand (`set`, `advance`): then every phase, deadline and
/// limit of that loop sees the test's time. Loop-confined.
final class LoopClock {
    private var manualUptime: UInt64?
    private var manualWall: Double?

    /// Uptime nanoseconds now.
    @inline(__always) func uptime() -> UInt64 { manualUptime ?? NIODeadline.now().uptimeNanoseconds }

    /// `uptime()` as a deadline.
    @inline(__always) func deadline() -> NIODeadline { .uptimeNanoseconds(uptime()) }

    /// Seconds since 1970 now.
    func wall() -> Double { manualWall ?? Date().timeIntervalSince1970 }

    /// From now on the clock says what the test says.
    func set(uptime: UInt64, wall: Double) {
        manualUptime = uptime
        manualWall = wall
    }

    /// Moves a clock set by hand forward.
    func advance(byNanos n: UInt64) {
        manualUptime = (manualUptime ?? NIODeadline.now().uptimeNanoseconds) &+ n
        manualWall = (manualWall ?? Date().timeIntervalSince1970) + Double(n) / 1e9
    }
}
