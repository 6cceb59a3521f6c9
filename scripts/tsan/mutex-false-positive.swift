// ThreadSanitizer does not see Synchronization.Mutex on Linux (Swift 6.3): four threads
// that only touch the state inside `withLock` are reported as a "Swift access race".
// Every TSan report of the suite has this shape (scripts/README.md, "tsan.sh").
//
//   swiftc -sanitize=thread -g scripts/tsan/mutex-false-positive.swift -o /tmp/mx && /tmp/mx
import Synchronization
import Foundation
final class Box: Sendable { let m = Mutex((a: 0, s: Set<Int>())) }
let box = Box()
let g = DispatchGroup()
for t in 0..<4 {
    g.enter()
    Thread.detachNewThread {
        for i in 0..<10000 { box.m.withLock { $0.a += 1; $0.s.insert(i * t) } }
        g.leave()
    }
}
g.wait()
print(box.m.withLock { $0.a })
