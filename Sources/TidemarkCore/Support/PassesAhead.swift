import Foundation

/// Works out the passes of a job one ahead of the thread that uses them: pass `n + 1` is
/// produced on a thread of its own while the caller works on pass `n`, so at most two passes
/// are in memory. Rebuild and validate fold their passes this way.
final class PassesAhead<Value>: @unchecked Sendable {
    /// Passes to produce.
    let count: Int
    private let produce: (_ pass: Int, _ isCancelled: @escaping () -> Bool) throws -> Value
    private let condition = NSCondition()
    private var ready: Result<Value, Error>?
    private var cancelled = false

    /// Starts producing passes `0 ..< count` in order. `produce` runs on the new thread, so it
    /// must only read what nobody changes meanwhile; a long one should look at `isCancelled`
    /// now and then, and throw when it says so.
    init(count: Int, produce: @escaping (_ pass: Int, _ isCancelled: @escaping () -> Bool) throws -> Value) {
        self.count = count
        self.produce = produce
        let thread = Thread { [self] in
            for pass in 0..<count {
                // The next pass is started once the one before has been taken.
                condition.lock()
                while ready != nil && !cancelled { condition.wait() }
                let stop = cancelled
                condition.unlock()
                if stop { return }
                let value = Result { try self.produce(pass) { self.isCancelled } }
                condition.lock()
                ready = value
                condition.broadcast()
                condition.unlock()
                if case .failure = value { return }
            }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// The next pass, in order; rethrows what producing it threw.
    func next() throws -> Value {
        condition.lock()
        defer { condition.unlock() }
        while ready == nil { condition.wait() }
        let value = ready!
        if case .success = value { ready = nil }
        condition.broadcast()
        return try value.get()
    }

    var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    /// Stops producing (the caller is done or failed). Callers cancel when done, whatever
    /// happened: the thread holds this object until it ends.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }
}
