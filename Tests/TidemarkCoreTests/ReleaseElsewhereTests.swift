import Foundation
import Synchronization
import Testing
@testable import TidemarkCore

/// `ReleaseElsewhere` destroys values on its own queue, and holds at most `waitingLimit` of
/// them: a caller handing over one more waits until one is destroyed. (A fresh one: the shared
/// one serves the ingests other tests run in this process.)
@Suite struct ReleaseElsewhereTests {
    final class Tally: Sendable {
        let count = Atomic<Int>(0)
    }

    /// Destroyed only once the gate opens; counts its destruction.
    final class Blocker: Sendable {
        let gate: DispatchSemaphore
        let destroyed: Tally
        init(_ gate: DispatchSemaphore, _ destroyed: Tally) { self.gate = gate; self.destroyed = destroyed }
        deinit {
            _ = gate.wait(timeout: .now() + 30) // a failing test ends rather than hangs
            destroyed.count.add(1, ordering: .relaxed)
        }
    }

    @Test func aCallerWaitsWhileTheLimitIsReachedAndGoesOnOnceOneIsDestroyed() {
        let elsewhere = ReleaseElsewhere(waitingLimit: 2)
        let gate = DispatchSemaphore(value: 0)
        let destroyed = Tally()
        for _ in 0..<elsewhere.waitingLimit { elsewhere.release(Blocker(gate, destroyed)) }
        let handedOver = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            elsewhere.release(Blocker(gate, destroyed))
            handedOver.signal()
        }
        #expect(handedOver.wait(timeout: .now() + 0.3) == .timedOut, "one more than the limit was taken while none was destroyed")
        for _ in 0...elsewhere.waitingLimit { gate.signal() }
        #expect(handedOver.wait(timeout: .now() + 10) == .success)
        var waited = 0
        while destroyed.count.load(ordering: .relaxed) < elsewhere.waitingLimit + 1 && waited < 1000 { usleep(10_000); waited += 1 }
        #expect(destroyed.count.load(ordering: .relaxed) == elsewhere.waitingLimit + 1)
    }
}
