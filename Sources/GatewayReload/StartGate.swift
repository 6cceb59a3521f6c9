/// Opens once, when the proxy's listeners are bound; the parts that change a running
/// gateway (reloads from SIGHUP, the file watcher and the admin API) wait for it, so that a
/// reload never runs while the listeners of the first snapshot are still being bound.
public actor StartGate {
    private var isOpen = false
    private var nextID = 0
    private var waiters: [Int: CheckedContinuation<Void, Never>] = [:]

    public init() {}

    public func open() {
        isOpen = true
        let waiting = waiters
        waiters = [:]
        for c in waiting.values { c.resume() }
    }

    /// Returns once the gate is open: true; or when the waiting task is cancelled: false
    /// (the start failed and the group is stopping).
    public func wait() async -> Bool {
        if isOpen { return true }
        let id = nextID
        nextID += 1
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                if isOpen || Task.isCancelled { c.resume() } else { waiters[id] = c }
            }
        } onCancel: {
            Task { await self.cancel(id) }
        }
        return isOpen
    }

    private func cancel(_ id: Int) { waiters.removeValue(forKey: id)?.resume() }
}
