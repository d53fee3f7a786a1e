import Foundation
import Testing
@testable import TidemarkCore

/// The hand-off that rebuild and validate fold their passes on, and that formats rows ahead of
/// the writer (`EncodedRows`): values in order, never more than `ahead` waiting, a failure
/// rethrown by every later `next`, and a cancel that stops the producer.
@Suite struct PassesAheadTests {
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var produced = 0
        private var taken = 0
        private(set) var mostWaiting = 0
        func produce() { lock.lock(); produced += 1; mostWaiting = max(mostWaiting, produced - taken); lock.unlock() }
        func take() { lock.lock(); taken += 1; lock.unlock() }
        var producedCount: Int { lock.lock(); defer { lock.unlock() }; return produced }
        /// Waits (up to 10 s) until at least `count` values are produced; whether they were.
        func waitUntilProduced(_ count: Int) -> Bool {
            let deadline = Date().addingTimeInterval(10)
            while producedCount < count && Date() < deadline { usleep(1_000) }
            return producedCount >= count
        }
    }

    @Test func valuesComeInOrderWithAtMostAheadWaiting() throws {
        for ahead in [1, 4] {
            let counter = Counter()
            let passes = PassesAhead(count: 50, ahead: ahead) { pass, _ in
                counter.produce()
                return pass * pass
            }
            defer { passes.cancel() }
            for pass in 0..<50 {
                // Let the producer run as far ahead as it may (waiting for it, not for a time).
                if pass % 10 == 0 { #expect(counter.waitUntilProduced(min(50, pass + ahead))) }
                #expect(try passes.next() == pass * pass)
                counter.take()
            }
            // Produced but not taken yet, at most: `ahead` waiting, plus the one being produced
            // while the taker looks (it counts itself before returning).
            #expect(counter.mostWaiting <= ahead + 1, "ahead \(ahead): \(counter.mostWaiting) waited")
            #expect(counter.mostWaiting >= ahead, "ahead \(ahead): the producer never ran ahead")
        }
    }

    struct Broken: Error, Equatable {}

    @Test func aFailureIsRethrownByEveryLaterNext() throws {
        let passes = PassesAhead(count: 10, ahead: 3) { pass, _ in
            if pass == 2 { throw Broken() }
            return pass
        }
        defer { passes.cancel() }
        #expect(try passes.next() == 0)
        #expect(try passes.next() == 1)
        #expect(throws: Broken.self) { try passes.next() }
        #expect(throws: Broken.self) { try passes.next() }
    }

    /// The producer may run far ahead here (so it is cancel, not `ahead`, that stops it), and
    /// a long pass that looks at `isCancelled` ends early.
    @Test func cancelStopsTheProducer() throws {
        final class AfterCancel: @unchecked Sendable {
            private let lock = NSLock()
            private var cancelled = false
            private var started = 0
            func cancelReturned() { lock.lock(); cancelled = true; lock.unlock() }
            func passStarts() { lock.lock(); if cancelled { started += 1 }; lock.unlock() }
            var passesStarted: Int { lock.lock(); defer { lock.unlock() }; return started }
        }
        let counter = Counter(), after = AfterCancel()
        let passes = PassesAhead(count: 1_000, ahead: 1_000) { pass, _ in
            after.passStarts()
            counter.produce()
            usleep(1_000)
            return pass
        }
        #expect(try passes.next() == 0)
        #expect(counter.waitUntilProduced(5))
        passes.cancel()
        after.cancelReturned()
        usleep(50_000) // a producer that ignored the cancel would start about 50 more passes here
        // At most the pass that had passed its check when cancel came may start afterwards.
        #expect(after.passesStarted <= 1, "\(after.passesStarted) passes started after cancel")

        let started = DispatchSemaphore(value: 0)
        let long = PassesAhead(count: 1, ahead: 1) { _, isCancelled in
            started.signal()
            var waited = 0
            while waited < 10_000 && !isCancelled() {
                usleep(1_000)
                waited += 1
            }
            return waited
        }
        started.wait() // cancelled before it began, the pass would never be produced
        long.cancel()
        let waited = try long.next()
        #expect(waited < 10_000, "the pass ran to its end (\(waited) ms) instead of seeing the cancel")
    }
}
