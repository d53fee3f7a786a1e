import Dispatch

/// Frees large values on another thread. Destroying a merge group's arrays (a reference count
/// dropped for every string of every delivery and event state) took about 3 % of the writing
/// thread in a large ingest; the writer hands them over here and goes on. Only plain values go
/// here: nothing whose end has an effect (a file descriptor, a lock, a statement).
final class ReleaseElsewhere: @unchecked Sendable {
    /// The one the writers use.
    static let shared = ReleaseElsewhere(waitingLimit: 2)

    /// The value, emptied on the queue: it is destroyed there, whoever drops the box last.
    private final class Held<Value>: @unchecked Sendable {
        var value: Value?
        init(_ value: consuming Value) { self.value = value }
    }

    private let queue = DispatchQueue(label: "tidemark.release-elsewhere")
    /// Values handed over and not destroyed yet, at most: should the queue fall behind (its
    /// core busy elsewhere), the caller waits rather than memory growing with every group.
    /// A merge group hands over two (its arrays, then its files' deliveries).
    let waitingLimit: Int
    private let room: DispatchSemaphore

    init(waitingLimit: Int) {
        self.waitingLimit = waitingLimit
        room = DispatchSemaphore(value: waitingLimit)
    }

    /// Destroys `value` on the queue. The caller passes its last reference (`consume`), or
    /// the value's storage is freed wherever the last one goes. Sendable values only: nothing
    /// that belongs to this thread (a statement, a connection) can be handed over.
    func release<Value: Sendable>(_ value: consuming Value) {
        let held = Held(consume value)
        room.wait()
        queue.async { [room] in
            held.value = nil
            room.signal()
        }
    }
}
