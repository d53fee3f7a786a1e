import Foundation

/// Works out the passes of a job ahead of the thread that uses them: while the caller works
/// on pass `n`, passes `n + 1 ... n + ahead` are produced on a thread of its own, so at most
/// `ahead + 1` passes are in memory. Rebuild and validate fold their passes this way (one
/// ahead); ingest and rebuild format their rows in chunks this way (`EncodedRows`).
final class PassesAhead<Value>: @unchecked Sendable {
    /// Passes to produce.
    let count: Int
    /// Passes that may wait, produced and not taken yet.
    let ahead: Int
    private let produce: (_ pass: Int, _ isCancelled: @escaping () -> Bool) throws -> Value
    private let condition = NSCondition()
    /// Produced and not taken yet, in order (a failure stays, so that every later `next` rethrows it).
    private var ready: [Result<Value, Error>] = []
    private var cancelled = false

    /// Starts producing passes `0 ..< count` in order. `produce` runs on the new thread, so it
    /// must only read what nobody changes meanwhile; a long one should look at `isCancelled`
    /// now and then, and throw when it says so.
    init(count: Int, ahead: Int = 1, produce: @escaping (_ pass: Int, _ isCancelled: @escaping () -> Bool) throws -> Value) {
        self.count = count
        self.ahead = max(1, ahead)
        self.produce = produce
        let thread = Thread { [self] in
            for pass in 0..<count {
                // A pass is started once fewer than `ahead` wait.
                condition.lock()
                while ready.count >= self.ahead && !cancelled { condition.wait() }
                let stop = cancelled
                condition.unlock()
                if stop { return }
                let value = Result { try self.produce(pass) { self.isCancelled } }
                let failed = if case .failure = value { true } else { false }
                condition.lock()
                // Handed over, not kept: the taker is then the only owner of what the pass
                // holds, and can change it in place without a copy.
                ready.append(consume value)
                condition.broadcast()
                condition.unlock()
                if failed { return }
            }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// The next pass, in order; rethrows what producing it threw.
    func next() throws -> Value {
        condition.lock()
        defer { condition.unlock() }
        while ready.isEmpty { condition.wait() }
        let value = ready[0]
        if case .success = value { ready.removeFirst() }
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
