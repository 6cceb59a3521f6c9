import Atomics
import Foundation
import Glibc

/// Watches the config file's directory with inotify (SPEC §6) and calls `onChange` once
/// things have been quiet for `debounce`.
///
/// The directory is watched, not the file: an editor's rename-save replaces the file's
/// inode, `cp` writes it in place, and a Kubernetes ConfigMap update swaps a symlink next to
/// it. Only events that name the file, or the directory entry its symlink goes through
/// (`..data` in a ConfigMap mount), count: an access log written in the same directory does
/// not trigger reloads. The reload that follows compares the file's bytes with what is
/// applied, so an event that changes nothing costs a read and a hash. The loop runs on a
/// thread of its own (inotify is a blocking file descriptor) and never on an event loop.
public final class ConfigWatcher: Sendable {
    private let fd: Int32
    private let stopFlag = ManagedAtomic<Bool>(false)
    private let finished = ManagedAtomic<Bool>(false)

    /// Starts watching the directory of `path`. Throws when inotify is not available.
    public init(path: String, debounce: Double = 0.1, onChange: @escaping @Sendable () -> Void) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw WatchError(what: "inotify_init1", code: errno) }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB)
        guard inotify_add_watch(fd, dir, mask) >= 0 else {
            let code = errno
            close(fd)
            throw WatchError(what: "inotify_add_watch \(dir)", code: code)
        }
        self.fd = fd
        let stop = stopFlag
        let finished = finished
        let names = Self.namesOfInterest(path)
        Thread.detachNewThread {
            Self.run(fd: fd, names: names, debounce: debounce, stop: stop, onChange: onChange)
            finished.store(true, ordering: .releasing)
        }
    }

    /// Stops the watch thread (within half a second) and closes the descriptor.
    public func stop() {
        guard !stopFlag.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for _ in 0..<100 where !finished.load(ordering: .acquiring) { usleep(10_000) }
        close(fd)
    }

    /// The file's own name, and when it is a relative symlink, the first entry of its target
    /// (`gateway.json -> ..data/gateway.json` gives `..data`).
    static func namesOfInterest(_ path: String) -> Set<String> {
        let url = URL(fileURLWithPath: path)
        var names: Set<String> = [url.lastPathComponent]
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path), !target.hasPrefix("/"),
            let first = target.split(separator: "/").first
        {
            names.insert(String(first))
        }
        return names
    }

    /// Whether the events in `bytes` (as read from inotify) name any of `names`.
    static func mentions(_ bytes: UnsafeRawBufferPointer, _ names: Set<String>) -> Bool {
        // struct inotify_event: wd (4), mask (4), cookie (4), len (4), then `len` bytes of name.
        let header = 16
        var offset = 0
        while offset + header <= bytes.count {
            let len = Int(bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let nameStart = offset + header
            let nameEnd = min(bytes.count, nameStart + len)
            if len > 0, nameEnd > nameStart {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[nameStart..<nameEnd])
                let name = String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                if names.contains(name) { return true }
            }
            offset = nameStart + len
        }
        return false
    }

    private static func run(
        fd: Int32, names: Set<String>, debounce: Double, stop: ManagedAtomic<Bool>, onChange: @Sendable () -> Void
    ) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var dueAt: Double?  // when the pending change is reported, once quiet
        while !stop.load(ordering: .acquiring) {
            let now = Date().timeIntervalSince1970
            let wait = dueAt.map { max(0, $0 - now) } ?? 0.5
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(wait, 0.5) * 1000))
            if ready > 0 {
                // Drain every queued event; a change to the file (or its symlink) starts the debounce.
                var relevant = false
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    guard n > 0 else { break }
                    if !relevant { relevant = buffer.withUnsafeBytes { mentions(UnsafeRawBufferPointer(rebasing: $0[0..<n]), names) } }
                }
                if relevant { dueAt = Date().timeIntervalSince1970 + debounce }
            } else if ready < 0 && errno != EINTR {
                return
            }
            if let due = dueAt, Date().timeIntervalSince1970 >= due {
                dueAt = nil
                onChange()
            }
        }
    }

    struct WatchError: Error, CustomStringConvertible {
        var what: String
        var code: Int32
        var description: String { "\(what) failed: \(String(cString: strerror(code)))" }
    }
}
