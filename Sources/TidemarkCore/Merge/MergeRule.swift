/// How an event was deleted. Both can be true when both kinds of deletion arrived.
public struct Deletion: Hashable, Sendable {
    public var byFlag: Bool
    public var byTombstone: Bool
    /// The earliest `received_time` among the deleting deliveries that carried one.
    public var deletedAt: Timestamp?

    public init(byFlag: Bool, byTombstone: Bool, deletedAt: Timestamp?) {
        self.byFlag = byFlag
        self.byTombstone = byTombstone
        self.deletedAt = deletedAt
    }

    /// The text stored in `deleted_by`: `flag`, `tombstone` or `flag+tombstone`.
    public var kind: String {
        switch (byFlag, byTombstone) {
        case (true, true): return "flag+tombstone"
        case (true, false): return "flag"
        default: return "tombstone"
        }
    }

    public init?(kind: String?, deletedAt: Timestamp?) {
        switch kind {
        case "flag": self.init(byFlag: true, byTombstone: false, deletedAt: deletedAt)
        case "tombstone": self.init(byFlag: false, byTombstone: true, deletedAt: deletedAt)
        case "flag+tombstone": self.init(byFlag: true, byTombstone: true, deletedAt: deletedAt)
        default: return nil
        }
    }

    func joined(with other: Deletion) -> Deletion {
        Deletion(
            byFlag: byFlag || other.byFlag,
            byTombstone: byTombstone || other.byTombstone,
            deletedAt: minOptional(deletedAt, other.deletedAt))
    }
}

/// Everything Tidemark knows about one `event_id` after any set of deliveries.
///
/// The state is a join-semilattice: `MergeRule.merge` is commutative, associative and
/// idempotent on it, which is exactly what makes the tables independent of file order,
/// batch boundaries and redeliveries.
public struct EventState: Hashable, Sendable {
    /// The winning full record (greatest `received_time`, then greatest canonical record);
    /// `nil` while only tombstones have arrived. Its `isValid` is always true: validity is
    /// `deletion`'s business.
    public var record: EventRecord?
    /// Set once any deletion arrived; never unset.
    public var deletion: Deletion?
    /// True when the event's first record arrived behind the watermark.
    /// Arrival metadata: it depends on the order of arrival, unlike the rest.
    public var late: Bool

    public init(record: EventRecord? = nil, deletion: Deletion? = nil, late: Bool = false) {
        self.record = record
        self.deletion = deletion
        self.late = late
    }

    public var isValid: Bool { deletion == nil }
    /// A tombstone whose event has not been seen yet.
    public var isPendingTombstone: Bool { record == nil && deletion != nil }
}

/// What one delivery did, for the per-file and per-batch counts (lines read =
/// new + updated + duplicates + stale + deletions + rejected).
public enum MergeOutcome: String, Hashable, Sendable, CaseIterable {
    /// First record of this event.
    case new
    /// A newer record that changed the winning attributes.
    case updated
    /// Changed nothing and equals what is already known (a redelivery).
    case duplicate
    /// Changed nothing: an older record than the winner, arriving after it.
    case stale
    /// Deleted the event (or added to its deletion) with `is_valid: false`.
    case deletedByFlag
    /// Deleted the event (or will, when it arrives) with a tombstone.
    case deletedByTombstone
}

/// The merge contract, in one pure function used by ingest, backfill, rebuild and validate.
///
/// 1. Deletion is final: any tombstone or `is_valid: false` delivery deletes the event for good.
/// 2. Otherwise the newest delivery wins: greatest `received_time` (a missing one is the oldest),
///    ties broken by the greater canonical record.
/// 3. The event lives in the hour of its winning `event_time`.
public enum MergeRule {
    public static func merge(
        _ state: EventState?, _ delivery: Delivery, late: Bool = false
    ) -> (state: EventState, outcome: MergeOutcome) {
        var after = state
        let outcome = apply(delivery, to: &after, late: late)
        return (after!, outcome)
    }

    /// `merge` in place: the rule itself, which `merge` calls. `state` is never nil afterwards.
    /// Ingest's hot loop uses it to change a state without copying it, and learns from the
    /// outcome whether anything changed (everything but `.duplicate` and `.stale` does).
    public static func apply(_ delivery: Delivery, to state: inout EventState?, late: Bool = false) -> MergeOutcome {
        switch delivery {
        case .tombstone(_, let receivedTime):
            let tombstone = Deletion(byFlag: false, byTombstone: true, deletedAt: receivedTime)
            guard state != nil else {
                state = EventState(deletion: tombstone)
                return .deletedByTombstone
            }
            let deletion = state!.deletion.map { $0.joined(with: tombstone) } ?? tombstone
            if deletion == state!.deletion { return .duplicate }
            state!.deletion = deletion
            return .deletedByTombstone
        case .record(let delivered):
            if state == nil { state = EventState() }
            let hadRecord = state!.record != nil
            let deletionBefore = state!.deletion
            // The winner keeps attributes only; what `is_valid: false` says goes to `deletion`.
            // (`outranks` does not look at validity.)
            let replaces = state!.record.map { outranks(delivered, $0) } ?? true
            if replaces {
                var record = delivered
                record.isValid = true
                state!.record = record
            }
            if !delivered.isValid {
                let flag = Deletion(byFlag: true, byTombstone: false, deletedAt: delivered.receivedTime)
                state!.deletion = deletionBefore.map { $0.joined(with: flag) } ?? flag
            }
            // Lateness is a property of the event's first arrival, so redeliveries do not change it.
            if late && !hadRecord { state!.late = true }
            let deletionChanged = state!.deletion != deletionBefore
            if !replaces && !deletionChanged {
                // Nothing changed: an older record than the winner, or the winner again.
                var record = delivered
                record.isValid = true
                if let current = state!.record, current != record, outranks(current, record) { return .stale }
                return .duplicate
            }
            if deletionChanged { return .deletedByFlag }
            return hadRecord ? .updated : .new
        }
    }

    /// Folds any sequence of deliveries into the final state of one event.
    public static func fold<S: Sequence>(_ deliveries: S) -> EventState? where S.Element == Delivery {
        var state: EventState?
        for delivery in deliveries { state = merge(state, delivery).state }
        return state
    }

    /// Whether `a` wins over `b`: newer `received_time`, then the greater canonical record.
    public static func outranks(_ a: EventRecord, _ b: EventRecord) -> Bool {
        outranks(receivedRank(a), receivedRank(b), onTie: { canonicalOrder(a, b) > 0 })
    }

    /// `outranks` for records known by their `receivedRank`s, asking `onTie` (whether the first
    /// record is the greater canonical record) only when those are equal. Ingest's merge group
    /// decides most winners from these ranks alone, without reading the records.
    @inline(__always)
    static func outranks(_ rankA: Int64, _ rankB: Int64, onTie: () -> Bool) -> Bool {
        rankA != rankB ? rankA > rankB : onTie()
    }

    /// The first key of `outranks`: `received_time` in nanoseconds, lowest when there is none.
    @inline(__always)
    static func receivedRank(_ record: EventRecord) -> Int64 {
        receivedRank(receivedTime: record.receivedTime)
    }

    static func receivedRank(receivedTime: Timestamp?) -> Int64 {
        receivedTime?.nanosecondsSinceEpoch ?? Int64.min
    }

    /// Total order on records with equal `received_time`: event_time, user_id, event_type, extra. Returns a negative, zero or positive number.
    static func canonicalOrder(_ a: EventRecord, _ b: EventRecord) -> Int {
        if a.eventTime != b.eventTime { return a.eventTime < b.eventTime ? -1 : 1 }
        let byUser = compareBytes(a.userID, b.userID)
        if byUser != 0 { return byUser }
        let byType = compareBytes(a.eventType, b.eventType)
        if byType != 0 { return byType }
        switch (a.extra, b.extra) {
        case (nil, nil): return 0
        case (nil, _): return -1
        case (_, nil): return 1
        case let (x?, y?): return compareBytes(x, y)
        }
    }
}

@inline(__always)
func minOptional(_ a: Timestamp?, _ b: Timestamp?) -> Timestamp? {
    switch (a, b) {
    case let (x?, y?): return min(x, y)
    case let (x?, nil): return x
    case let (nil, y?): return y
    default: return nil
    }
}
