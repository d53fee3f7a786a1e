/// A merge group's deliveries folded per event from nothing, in arrival order, with
/// `MergeRule.apply`: what the group alone makes of each event, and what each delivery did.
///
/// Ingest computes it on a second thread while the writer claims and looks up the group's
/// events. For an event that turns out not to be stored, with no tombstone waiting for it and
/// a record as its first delivery in the group, the writer's own merge would start from
/// nothing too and meet the same deliveries in the same order, so it takes these results
/// instead of applying the rule again. Every other event is merged by the writer as before.
struct GroupFold: Sendable {
    /// Per slot: the state after all of the slot's deliveries.
    var states: [EventState?]
    /// Per slot: whether its first delivery in arrival order is a record (not a tombstone).
    var startsWithRecord: [Bool]
    /// Per delivery (in arrival order, all files): what it did.
    var outcomes: [MergeOutcome]
    /// Per delivery: the hour (since the epoch) of the slot's record before and after it;
    /// `GroupFold.noHour` when there was none.
    var hourBefore: [Int32]
    var hourAfter: [Int32]

    static let noHour = Int32.min

    /// Folds `files`' deliveries (in file order, then line order), where delivery `d` of that
    /// order belongs to slot `slotOfDelivery[d]` of `slots`. Between files it asks
    /// `isCancelled`, and throws `CancellationError` when the fold is no longer wanted.
    init(_ files: [(fileID: Int64, deliveries: [PreparedDelivery])], slotOfDelivery: [Int], slots: Int,
         isCancelled: () -> Bool = { false }) throws {
        states = [EventState?](repeating: nil, count: slots)
        startsWithRecord = [Bool](repeating: false, count: slots)
        outcomes = []
        outcomes.reserveCapacity(slotOfDelivery.count)
        hourBefore = []
        hourBefore.reserveCapacity(slotOfDelivery.count)
        hourAfter = []
        hourAfter.reserveCapacity(slotOfDelivery.count)
        var delivery = 0
        for file in files {
            if isCancelled() { throw CancellationError() }
            for item in file.deliveries {
                let slot = slotOfDelivery[delivery]
                delivery += 1
                if states[slot] == nil, case .record = item.delivery { startsWithRecord[slot] = true }
                hourBefore.append(Self.hour(of: states[slot]))
                outcomes.append(MergeRule.apply(item.delivery, to: &states[slot], late: item.late))
                hourAfter.append(Self.hour(of: states[slot]))
            }
        }
    }

    @inline(__always)
    private static func hour(of state: EventState?) -> Int32 {
        guard let record = state?.record else { return noHour }
        return Int32(truncatingIfNeeded: record.eventTime.hour.hoursSinceEpoch)
    }
}
