import Testing
@testable import TidemarkCore

@Suite struct MergeRuleTests {
    static func t(_ s: String) -> Timestamp { try! Timestamp.parse(s).get() }

    static func rec(_ id: String, user: String = "u1", time: String = "2025-07-30T10:00:00Z", received: String?, valid: Bool = true) -> Delivery {
        .record(EventRecord(eventID: id, userID: user, eventType: "view", eventTime: t(time),
                            receivedTime: received.map(t), isValid: valid))
    }

    @Test func newestDeliveryWinsAndStaleArrivalChangesNothing() {
        let old = Self.rec("e", user: "old", received: "2025-07-30T10:00:01Z")
        let new = Self.rec("e", user: "new", received: "2025-07-30T10:00:05Z")
        let (s1, o1) = MergeRule.merge(nil, old)
        #expect(o1 == .new)
        let (s2, o2) = MergeRule.merge(s1, new)
        #expect(o2 == .updated)
        let (s3, o3) = MergeRule.merge(s2, old)
        #expect(o3 == .stale)
        #expect(s3 == s2)
        #expect(s3.record?.userID == "new")
        let (_, o4) = MergeRule.merge(s3, new)
        #expect(o4 == .duplicate)
    }

    @Test func aMissingReceivedTimeIsOldest() {
        let unknown = Self.rec("e", user: "unknown", received: nil)
        let known = Self.rec("e", user: "known", received: "2025-07-30T10:00:00Z")
        for order in [[unknown, known], [known, unknown]] {
            #expect(MergeRule.fold(order)?.record?.userID == "known")
        }
    }

    @Test func equalReceivedTimesBreakTiesByTheCanonicalRecord() {
        // Same received_time: the later event_time wins, then the greater user_id bytes.
        let a = Self.rec("e", user: "a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:05:00Z")
        let b = Self.rec("e", user: "b", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:05:00Z")
        let later = Self.rec("e", user: "a", time: "2025-07-30T10:00:01Z", received: "2025-07-30T10:05:00Z")
        for order in [[a, b], [b, a]] { #expect(MergeRule.fold(order)?.record?.userID == "b") }
        for order in [[b, later], [later, b]] { #expect(MergeRule.fold(order)?.record?.eventTime == Self.t("2025-07-30T10:00:01Z")) }
    }

    @Test func bothKindsOfDeletionAreRecorded() {
        let flag = Self.rec("e", received: "2025-07-30T10:00:01Z", valid: false)
        let tombstone = Delivery.tombstone(eventID: "e", receivedTime: Self.t("2025-07-30T10:00:02Z"))
        for order in [[flag, tombstone], [tombstone, flag]] {
            #expect(MergeRule.fold(order)?.deletion?.kind == "flag+tombstone")
        }
    }

    @Test func deletionIsFinal() {
        let original = Self.rec("e", received: "2025-07-30T10:00:01Z")
        let (s1, _) = MergeRule.merge(nil, .tombstone(eventID: "e", receivedTime: nil))
        #expect(s1.isPendingTombstone)
        let (s2, o2) = MergeRule.merge(s1, original)
        #expect(o2 == .new)
        #expect(!s2.isValid)
        let newer = Self.rec("e", user: "x", received: "2025-07-30T11:00:00Z")
        let (s3, _) = MergeRule.merge(s2, newer)
        #expect(!s3.isValid)
        #expect(s3.record?.userID == "x")
        let flag = Self.rec("e", received: "2025-07-30T10:00:02Z", valid: false)
        let (s4, o4) = MergeRule.merge(nil, flag)
        #expect(o4 == .deletedByFlag)
        #expect(s4.deletion?.kind == "flag")
        #expect(MergeRule.merge(s4, original).state.isValid == false)
    }

    @Test func eventTimeMovesWithTheWinner() {
        let a = Self.rec("e", time: "2025-07-30T10:59:00Z", received: "2025-07-30T11:00:00Z")
        let b = Self.rec("e", time: "2025-07-30T11:01:00Z", received: "2025-07-30T11:05:00Z")
        #expect(MergeRule.fold([a, b])?.record?.eventTime.hour.label == "2025-07-30T11")
        #expect(MergeRule.fold([b, a])?.record?.eventTime.hour.label == "2025-07-30T11")
    }

    /// The law behind "same inputs give the same tables": any permutation and duplication of a
    /// set of deliveries folds to the same state (ignoring `late`, which is arrival metadata).
    @Test func foldIsOrderAndDuplicationIndependent() {
        var random = SeededRandom(seed: 11)
        let users = ["a", "b", "c"]
        let times = ["2025-07-30T10:00:00Z", "2025-07-30T10:30:00Z", "2025-07-30T11:10:00Z"]
        let received = [nil, "2025-07-30T10:00:00Z", "2025-07-30T10:00:00Z", "2025-07-30T12:00:00Z"]
        for _ in 0..<2000 {
            var deliveries: [Delivery] = []
            for _ in 0..<Int.random(in: 1...6, using: &random) {
                switch Int.random(in: 0..<10, using: &random) {
                case 0: deliveries.append(.tombstone(eventID: "e", receivedTime: received.randomElement(using: &random)!.map(Self.t)))
                default:
                    deliveries.append(Self.rec("e", user: users.randomElement(using: &random)!, time: times.randomElement(using: &random)!,
                                               received: received.randomElement(using: &random)!, valid: Int.random(in: 0..<6, using: &random) != 0))
                }
            }
            var expected = MergeRule.fold(deliveries)
            expected?.late = false
            for _ in 0..<5 {
                var shuffled = deliveries.shuffled(using: &random)
                if Bool.random(using: &random) { shuffled.insert(shuffled.randomElement(using: &random)!, at: Int.random(in: 0...shuffled.count, using: &random)) }
                var got = MergeRule.fold(shuffled)
                got?.late = false
                #expect(got == expected, "\(deliveries) vs \(shuffled)")
            }
        }
    }
}

/// `MergeRule.apply` (the rule in place, as ingest runs it) against the rule as it was first
/// written, value in and value out, over random sequences: same states and same outcomes.
@Suite struct MergeRuleInPlaceTests {
    /// The merge rule before it was rewritten in place, kept as the oracle.
    static func reference(_ state: EventState?, _ delivery: Delivery, late: Bool) -> (state: EventState, outcome: MergeOutcome) {
        let before = state ?? EventState()
        var after = before
        switch delivery {
        case .tombstone(_, let receivedTime):
            let tombstone = Deletion(byFlag: false, byTombstone: true, deletedAt: receivedTime)
            after.deletion = before.deletion.map { $0.joined(with: tombstone) } ?? tombstone
            return (after, after == before ? .duplicate : .deletedByTombstone)
        case .record(let delivered):
            var record = delivered
            record.isValid = true
            if let current = before.record {
                if MergeRule.outranks(record, current) { after.record = record }
            } else {
                after.record = record
            }
            if !delivered.isValid {
                let flag = Deletion(byFlag: true, byTombstone: false, deletedAt: delivered.receivedTime)
                after.deletion = before.deletion.map { $0.joined(with: flag) } ?? flag
            }
            if late && before.record == nil { after.late = true }
            if after.record == before.record && after.deletion == before.deletion {
                if let current = before.record, current != record, MergeRule.outranks(current, record) {
                    return (after, .stale)
                }
                return (after, .duplicate)
            }
            if after.deletion != before.deletion { return (after, .deletedByFlag) }
            return (after, before.record == nil ? .new : .updated)
        }
    }

    @Test func applyInPlaceMatchesTheReferenceRule() {
        var random = SeededRandom(seed: 23)
        let users = ["a", "b"]
        let times = ["2025-07-30T10:00:00Z", "2025-07-30T11:10:00Z"]
        let received = [nil, "2025-07-30T10:00:00Z", "2025-07-30T10:00:00Z", "2025-07-30T12:00:00Z"]
        var seen = Set<MergeOutcome>()
        for _ in 0..<5000 {
            var expected: EventState?
            var got: EventState?
            for _ in 0..<Int.random(in: 1...6, using: &random) {
                let delivery: Delivery = Int.random(in: 0..<6, using: &random) == 0
                    ? .tombstone(eventID: "e", receivedTime: received.randomElement(using: &random)!.map(MergeRuleTests.t))
                    : MergeRuleTests.rec("e", user: users.randomElement(using: &random)!, time: times.randomElement(using: &random)!,
                                         received: received.randomElement(using: &random)!, valid: Int.random(in: 0..<5, using: &random) != 0)
                let late = Bool.random(using: &random)
                let (state, outcome) = Self.reference(expected, delivery, late: late)
                let applied = MergeRule.apply(delivery, to: &got, late: late)
                #expect(applied == outcome && got == state, "\(delivery) after \(String(describing: expected))")
                #expect(MergeRule.merge(expected, delivery, late: late) == (state, outcome))
                seen.insert(outcome)
                expected = state
            }
        }
        #expect(seen == Set(MergeOutcome.allCases), "every outcome was compared")
    }
}

/// `GroupFold` (a merge group's deliveries folded per event on a second thread, which ingest
/// takes for events new to the group) against applying the rule one delivery at a time in
/// arrival order, over random groups of files: the same final state per event, the same
/// outcome and the same hours before and after each delivery.
@Suite struct GroupFoldTests {
    @Test func groupFoldMatchesApplyingEachDeliveryInArrivalOrder() throws {
        var random = SeededRandom(seed: 31)
        let ids = ["e0", "e1", "e2", "e3", "e4"]
        let times = ["2025-07-30T10:00:00Z", "2025-07-30T11:10:00Z", "2025-07-30T09:59:59Z"]
        let received = [nil, "2025-07-30T10:00:00Z", "2025-07-30T10:00:00Z", "2025-07-30T12:00:00Z"]
        var seen = Set<MergeOutcome>()
        for _ in 0..<500 {
            var files: [(fileID: Int64, deliveries: [PreparedDelivery])] = []
            var slotOfDelivery: [Int] = []
            for file in 0..<Int.random(in: 1...4, using: &random) {
                var deliveries: [PreparedDelivery] = []
                for _ in 0..<Int.random(in: 0...6, using: &random) {
                    let slot = Int.random(in: 0..<ids.count, using: &random)
                    let delivery: Delivery = Int.random(in: 0..<5, using: &random) == 0
                        ? .tombstone(eventID: ids[slot], receivedTime: received.randomElement(using: &random)!.map(MergeRuleTests.t))
                        : MergeRuleTests.rec(ids[slot], user: ["a", "b"].randomElement(using: &random)!, time: times.randomElement(using: &random)!,
                                             received: received.randomElement(using: &random)!, valid: Int.random(in: 0..<5, using: &random) != 0)
                    deliveries.append(PreparedDelivery(delivery: delivery, late: Bool.random(using: &random)))
                    slotOfDelivery.append(slot)
                }
                files.append((Int64(file + 1), deliveries))
            }
            let fold = try GroupFold(files, slotOfDelivery: slotOfDelivery, slots: ids.count)
            var states = [EventState?](repeating: nil, count: ids.count)
            var startsWithRecord = [Bool](repeating: false, count: ids.count)
            var delivery = 0
            func hour(_ state: EventState?) -> Int32 {
                state?.record.map { Int32($0.eventTime.hour.hoursSinceEpoch) } ?? GroupFold.noHour
            }
            for file in files {
                for item in file.deliveries {
                    let slot = slotOfDelivery[delivery]
                    if states[slot] == nil, case .record = item.delivery { startsWithRecord[slot] = true }
                    let before = hour(states[slot])
                    let outcome = MergeRule.apply(item.delivery, to: &states[slot], late: item.late)
                    #expect(fold.outcomes[delivery] == outcome && fold.hourBefore[delivery] == before
                            && fold.hourAfter[delivery] == hour(states[slot]), "delivery \(delivery) of \(files)")
                    seen.insert(outcome)
                    delivery += 1
                }
            }
            #expect(fold.states == states && fold.startsWithRecord == startsWithRecord)
            #expect(fold.outcomes.count == slotOfDelivery.count)
        }
        #expect(seen == Set(MergeOutcome.allCases), "every outcome was compared")
    }
}

@Suite struct DurationHistogramTests {
    @Test func quantilesAreWithinTwoPercentAndMaxIsExact() {
        var random = SeededRandom(seed: 12)
        var histogram = DurationHistogram()
        var values: [Double] = []
        for _ in 0..<20_000 {
            let v = Double.random(in: 0.01...500, using: &random) * (Bool.random(using: &random) ? 1 : 0.01)
            values.append(v)
            histogram.add(v)
        }
        values.sort()
        for q in [0.5, 0.95] {
            let exact = values[Int((Double(values.count - 1) * q).rounded())]
            let approx = histogram.quantile(q)!
            #expect(abs(approx - exact) / exact < 0.02, "q\(q): \(approx) vs \(exact)")
        }
        #expect(histogram.maximum == values.last!)
        var merged = DurationHistogram()
        merged.merge(histogram)
        #expect(merged.quantile(0.5) == histogram.quantile(0.5) && merged.count == 20_000)
        #expect(DurationHistogram().quantile(0.5) == nil)
    }
}
