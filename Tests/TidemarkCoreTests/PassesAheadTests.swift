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
                if pass % 10 == 0 { usleep(20_000) } // let the producer run as far ahead as it may
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
        let counter = Counter()
        let passes = PassesAhead(count: 1_000, ahead: 1_000) { pass, _ in
            counter.produce()
            usleep(1_000)
            return pass
        }
        #expect(try passes.next() == 0)
        usleep(20_000)
        passes.cancel()
        usleep(20_000)
        let after = counter.producedCount
        usleep(50_000)
        #expect(counter.producedCount == after && after < 200, "produced \(after) after cancel")

        let stoppedEarly = Counter()
        let long = PassesAhead(count: 1, ahead: 1) { _, isCancelled in
            for _ in 0..<10_000 where !isCancelled() { usleep(1_000) }
            stoppedEarly.produce()
            return isCancelled()
        }
        usleep(20_000)
        long.cancel()
        #expect(try long.next() == true) // it returned on seeing the cancel, long before 10 s
    }
}
