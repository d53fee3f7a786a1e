import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// Per-hour changes accumulated inside one transaction, applied to `partitions` and the
/// summaries at commit.
struct HourDelta {
    var rows: Int64 = 0
    var valid: Int64 = 0
    var checksum: UInt64 = 0
    /// `hourly_summary` counts per event type.
    var types: [ExactText: SummaryCounts] = [:]
    /// Valid events per (event type, user): `summary_users`, from which distinct users come.
    var users: [SummaryUser: Int64] = [:]
}

struct SummaryCounts {
    var valid: Int64 = 0
    var deleted: Int64 = 0
    var late: Int64 = 0
}

/// A (event type, user) pair, compared byte for byte like `ExactText`.
struct SummaryUser: Hashable {
    var eventType: String
    var userID: String

    static func == (a: SummaryUser, b: SummaryUser) -> Bool { sameBytes(a.eventType, b.eventType) && sameBytes(a.userID, b.userID) }

    func hash(into hasher: inout Hasher) {
        hasher.combine(ExactText(eventType))
        hasher.combine(ExactText(userID))
    }
}

/// Applies deliveries to the partition tables inside an open transaction, through
/// `MergeRule.apply`. It keeps the lookup trees (`event_index` and the small
/// `event_index_recent`: event_id → hour and row_id) in step, holds
/// tombstones whose event has not arrived in `pending_tombstones`, and records which hours
/// each file touched (`file_hours`) so that rebuild knows which files to read.
final class MergeWriter {
    let db: Database
    let batchID: Int64
    /// Hours whose table exists.
    private var knownHours: Set<Int>
    /// Pending tombstones: event_id → (deletion so far, files that carried them).
    private var pending: [ExactText: (deletion: Deletion, files: [Int64])]
    /// Changes per hour in this transaction.
    private(set) var deltas: [Int: HourDelta] = [:]
    /// Hours whose table this writer created (to register in `partitions`).
    private(set) var createdHours: Set<Int> = []
    /// Hours each file touched; flushed to `file_hours` with the file's ledger row.
    private(set) var hoursByFile: [Int64: Set<Int>] = [:]
    /// Earlier files that gain an hour because their pending tombstone met its event now.
    private var lateFileHours: [(Int64, Int)] = []
    /// Upper bound on partitions created in one batch (hostile input guard).
    let maxNewPartitions: Int
    /// Entries in `event_index_recent`.
    private(set) var recentEntries = 0

    // Hot-path statements, prepared once per batch.
    private let insertIndex: FastStatement
    private let insertRecent: FastStatement
    /// Look an event_id up in each tree (the recent one is skipped while empty).
    private let selectLarge: FastStatement
    private let selectRecent: FastStatement
    /// Inserts an entry into `event_index` unless the event_id is there (see `readStoredStates`).
    private let claimIndex: FastStatement
    private var insertByHour: [Int: FastStatement] = [:]
    private var selectByHour: [Int: FastStatement] = [:]
    private var updateByHour: [Int: FastStatement] = [:]
    /// The (file, hour) pair recorded last: consecutive deliveries mostly repeat it.
    private var lastTouched: (file: Int64, hour: Int) = (-1, -1)
    /// Bytes a row is formatted into before it is bound (`PartitionRow.encode`).
    private let scratch = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: PartitionRow.scratchCapacity)

    struct Snapshot {
        var knownHours: Set<Int>
        var pending: [ExactText: (deletion: Deletion, files: [Int64])]
        var deltas: [Int: HourDelta]
        var createdHours: Set<Int>
        var lateFileHours: [(Int64, Int)]
        var recentEntries: Int
    }

    init(db: Database, batchID: Int64, maxNewPartitions: Int = 1000) throws {
        self.db = db
        self.batchID = batchID
        self.maxNewPartitions = maxNewPartitions
        insertIndex = try FastStatement(db, sql: "INSERT INTO event_index (event_id, hour, row_id) VALUES (?, ?, ?)")
        insertRecent = try FastStatement(db, sql: "INSERT INTO event_index_recent (event_id, hour, row_id) VALUES (?, ?, ?)")
        selectLarge = try FastStatement(db, sql: "SELECT hour, row_id FROM event_index WHERE event_id = ?1")
        selectRecent = try FastStatement(db, sql: "SELECT hour, row_id FROM event_index_recent WHERE event_id = ?1")
        claimIndex = try FastStatement(db, sql: "INSERT INTO event_index (event_id, hour, row_id) VALUES (?, ?, ?) ON CONFLICT (event_id) DO NOTHING")
        recentEntries = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event_index_recent") ?? 0
        knownHours = []
        for label in try String.fetchAll(db, sql: "SELECT hour FROM partitions") {
            if let hour = PartitionHour.parse(label) { knownHours.insert(hour.hoursSinceEpoch) }
        }
        pending = try MergeWriter.waitingTombstones(db)
    }

    /// The tombstones waiting for their event (`pending_tombstones`): per event, their deletion
    /// joined (the earliest deleted_at) and the files that carried them, in file order.
    static func waitingTombstones(_ db: Database) throws -> [ExactText: (deletion: Deletion, files: [Int64])] {
        var pending: [ExactText: (deletion: Deletion, files: [Int64])] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT event_id, deleted_at, file_id FROM pending_tombstones ORDER BY file_id") {
            let id = ExactText(row[0] as String)
            let at = (row[1] as String?).flatMap { try? Timestamp.parse($0).get() }
            let tombstone = Deletion(byFlag: false, byTombstone: true, deletedAt: at)
            var entry = pending[id] ?? (tombstone, [])
            entry.deletion = entry.deletion.joined(with: tombstone)
            entry.files.append(row[2])
            pending[id] = entry
        }
        return pending
    }

    deinit { scratch.deallocate() }

    var pendingTombstoneCount: Int { pending.count }

    func snapshot() -> Snapshot {
        Snapshot(knownHours: knownHours, pending: pending, deltas: deltas, createdHours: createdHours, lateFileHours: lateFileHours,
                 recentEntries: recentEntries)
    }

    /// Restores in-memory state after `ROLLBACK TO` a file's savepoint.
    func restore(_ s: Snapshot, droppingFile fileID: Int64) {
        for hour in createdHours.subtracting(s.createdHours) {
            insertByHour[hour] = nil
            selectByHour[hour] = nil
            updateByHour[hour] = nil
        }
        knownHours = s.knownHours
        lastTouched = (-1, -1)
        pending = s.pending
        deltas = s.deltas
        createdHours = s.createdHours
        lateFileHours = s.lateFileHours
        recentEntries = s.recentEntries
        hoursByFile[fileID] = nil
    }

    /// Where the lookup (`event_index_recent`, then `event_index`) says the event's row is.
    private func location(ofBytes id: UnsafeBufferPointer<UInt8>) throws -> (hour: Int, rowID: Int64)? {
        try (recentEntries > 0 ? location(ofBytes: id, using: selectRecent) : nil) ?? location(ofBytes: id, using: selectLarge)
    }

    /// Where one lookup tree says the event's row is (nil: not there).
    private func location(ofBytes id: UnsafeBufferPointer<UInt8>, using select: FastStatement) throws -> (hour: Int, rowID: Int64)? {
        try select.withBytes(id, at: 1) {
            defer { select.reset() } // before the text is unbound: a statement holding a row cannot be rebound
            return try select.step() ? (Int(select.int64(0)), select.int64(1)) : nil
        }
    }

    private func touch(_ fileID: Int64, _ hour: Int?) {
        if let hour, lastTouched.file == fileID && lastTouched.hour == hour { return }
        if let hour {
            lastTouched = (fileID, hour)
            hoursByFile[fileID, default: []].insert(hour)
        } else if hoursByFile[fileID] == nil {
            hoursByFile[fileID] = []
        }
    }

    private func add(_ row: PartitionRow, hash: UInt64, hour: Int, sign: Int64) {
        // Mutated in place through the subscript: a copy would copy its dictionaries per row.
        deltas[hour, default: HourDelta()].count(row, hash: hash, sign: sign)
    }

    /// Claims the lookup entry of an event not stored yet, naming the row it will get in
    /// `hour`: the reserved row_id when the entry was inserted (the event is new), nil when
    /// `event_index` already holds the event_id (nothing changed). `nextRowIDs` holds, per
    /// hour, the row_id the group's next new row there gets: SQLite's max(row_id) + 1, read
    /// at the hour's first claim (all claims come before the group writes a row).
    private func claim(_ id: UnsafeBufferPointer<UInt8>, hour: Int, nextRowIDs: inout [Int: Int64]) throws -> Int64? {
        let rowID = try nextRowIDs[hour] ?? (knownHours.contains(hour)
            ? PartitionTable.maxRowID(PartitionHour(hoursSinceEpoch: hour), db) + 1
            : 1)
        claimIndex.reset()
        try claimIndex.bind(2, Int64(hour))
        try claimIndex.bind(3, rowID)
        try claimIndex.withBytes(id, at: 1) { try claimIndex.run() }
        guard claimIndex.changes == 1 else { return nil }
        nextRowIDs[hour] = rowID + 1
        return rowID
    }

    func ensureTable(_ hour: Int) throws {
        guard !knownHours.contains(hour) else { return }
        guard createdHours.count < maxNewPartitions else {
            throw PartitionLimitExceeded(limit: maxNewPartitions, newHours: [hour])
        }
        let partition = PartitionHour(hoursSinceEpoch: hour)
        try db.execute(sql: PartitionTable.createSQL(partition))
        try db.execute(sql: """
            INSERT INTO partitions (hour, table_name, created_batch, last_batch) VALUES (?, ?, ?, ?)
            ON CONFLICT (hour) DO NOTHING
            """, arguments: [partition.label, partition.tableName, batchID, batchID])
        knownHours.insert(hour)
        createdHours.insert(hour)
    }

    /// The row the lookup names, if it is there and holds this event.
    func load(id: String, hour: Int, rowID: Int64) throws -> PartitionRow? {
        let statement = try statementFor(hour, &selectByHour,
            "SELECT \(PartitionRow.selectColumns) FROM \(PartitionHour(hoursSinceEpoch: hour).tableName) WHERE row_id = ?")
        statement.reset()
        defer { statement.reset() }
        try statement.bind(1, rowID)
        guard try statement.step(), let stored = statement.text(11), sameBytes(stored, id) else { return nil }
        return PartitionRow.decode(id: id, statement)
    }

    private func statementFor(_ hour: Int, _ cache: inout [Int: FastStatement], _ sql: @autoclosure () -> String) throws -> FastStatement {
        if let statement = cache[hour] { return statement }
        let statement = try FastStatement(db, sql: sql())
        cache[hour] = statement
        return statement
    }

    /// Appends a row (SQLite gives it max(row_id) + 1): the columns in `PartitionRow.encode`'s order.
    private func insertStatement(_ hour: Int) throws -> FastStatement {
        try statementFor(hour, &insertByHour,
            "INSERT INTO \(PartitionHour(hoursSinceEpoch: hour).tableName) (\(PartitionTable.columns)) VALUES (\(PartitionTable.parameters))")
    }

    /// Appends a row; returns its content hash and row_id.
    private func insert(_ row: PartitionRow, hour: Int) throws -> (hash: UInt64, rowID: Int64) {
        let statement = try insertStatement(hour)
        statement.reset()
        let hash = try row.encode(into: scratch) { index, value in try statement.bind(index, value) }
        try statement.run()
        return (hash, statement.lastInsertRowID)
    }

    /// Updates a row in place (same hour); returns its content hash.
    private func update(_ row: PartitionRow, hour: Int, rowID: Int64) throws -> UInt64 {
        // Parameters are numbered as the insert's columns (`PartitionTable.parameters`); the
        // row_id follows them.
        let statement = try statementFor(hour, &updateByHour, """
            UPDATE \(PartitionHour(hoursSinceEpoch: hour).tableName) SET \(PartitionTable.updatedInPlace)
            WHERE row_id = \(PartitionTable.nextParameter) AND event_id = ?1
            """)
        statement.reset()
        let hash = try row.encode(into: scratch) { index, value in try statement.bind(index, value) }
        try statement.bind(Int32(PartitionTable.columnNames.count + 1), rowID)
        try statement.run()
        return hash
    }

    /// Writes accumulated per-file hours (including hours gained by earlier tombstone files).
    func flushFileHours(fileID: Int64) throws {
        let statement = try db.cachedStatement(sql: "INSERT INTO file_hours (file_id, hour) VALUES (?, ?) ON CONFLICT DO NOTHING")
        for hour in hoursByFile[fileID] ?? [] {
            try statement.execute(arguments: [fileID, PartitionHour(hoursSinceEpoch: hour).label])
        }
        for (file, hour) in lateFileHours {
            try statement.execute(arguments: [file, PartitionHour(hoursSinceEpoch: hour).label])
        }
        lateFileHours.removeAll()
        hoursByFile[fileID] = nil
    }

    /// Entries the recent index holds before it is folded into `event_index`: small enough to
    /// stay in the page cache (about 3.6 MB), large enough that a fold is rare. Tests shrink it
    /// (`TIDEMARK_RECENT_INDEX_CAPACITY`) to fold often.
    static let recentIndexCapacity: Int = getenv("TIDEMARK_RECENT_INDEX_CAPACITY")
        .flatMap { Int(String(cString: $0)) }.map { max(0, $0) } ?? defaultRecentIndexCapacity
    static let defaultRecentIndexCapacity = 65_536

    /// Groups with records of more events than this claim lookup entries before looking
    /// events up (`readStoredStates`): a quarter of the recent tree's default capacity, the size
    /// from which a group's new events go to `event_index` anyway. Tests set it
    /// (`TIDEMARK_CLAIM_THRESHOLD`) apart from the capacity, to take either path.
    static let claimThreshold: Int = getenv("TIDEMARK_CLAIM_THRESHOLD")
        .flatMap { Int(String(cString: $0)) }.map { max(0, $0) } ?? defaultRecentIndexCapacity / 4

    /// Moves every entry of `event_index_recent` into `event_index`, in key order.
    func foldRecentIndex() throws {
        guard recentEntries > 0 else { return }
        try EventLookup.foldRecent(db)
        recentEntries = 0
    }

    /// Applies the per-hour deltas to `partitions`, `hourly_summary` and `summary_users`, in
    /// the transaction that wrote the rows: a committed hour's summary is always current, and
    /// its cost follows the rows that changed, not the size of the hour.
    func flushPartitions() throws -> Set<Int> {
        let touched = Set(deltas.keys)
        for (hour, delta) in deltas {
            let label = PartitionHour(hoursSinceEpoch: hour).label
            let current = try String.fetchOne(db, sql: "SELECT checksum FROM partitions WHERE hour = ?", arguments: [label]) ?? "0"
            let checksum = checksumValue(current) &+ delta.checksum
            try db.cachedStatement(sql: """
                UPDATE partitions SET row_count = row_count + ?, valid_count = valid_count + ?, checksum = ?, last_batch = ?
                WHERE hour = ?
                """).execute(arguments: [delta.rows, delta.valid, checksumText(checksum), batchID, label])
            try Summaries.apply(delta, hour: label, batchID: batchID, db)
        }
        deltas.removeAll()
        return touched
    }
}

extension HourDelta {
    /// Counts a row into (sign +1) or out of (sign -1) its hour: partition counts, checksum
    /// and summary counts, so that summaries follow the data in the same transaction.
    mutating func count(_ row: PartitionRow, hash: UInt64, sign: Int64) {
        let valid = row.state.isValid
        let record = row.record
        rows += sign
        if valid { self.valid += sign }
        checksum = sign > 0 ? checksum &+ hash : checksum &- hash
        types[ExactText(record.eventType), default: SummaryCounts()].add(valid: valid, late: row.state.late, sign: sign)
        if valid { users[SummaryUser(eventType: record.eventType, userID: record.userID), default: 0] += sign }
    }
}

extension SummaryCounts {
    mutating func add(valid isValid: Bool, late: Bool, sign: Int64) {
        if isValid {
            valid += sign
            if late { self.late += sign }
        } else {
            deleted += sign
        }
    }
}

/// Thrown when one batch would create more partitions than allowed; the file is quarantined.
struct PartitionLimitExceeded: Error, CustomStringConvertible {
    var limit: Int
    /// The new hours the file would create on its own.
    var newHours: Set<Int>
    var description: String {
        let first = PartitionHour(hoursSinceEpoch: newHours.min() ?? 0), last = PartitionHour(hoursSinceEpoch: newHours.max() ?? 0)
        let span = first == last ? "hour \(first)" : "hours \(first) to \(last)"
        return "would create \(newHours.count) new partitions (\(span)), more than \(limit) new partitions in one batch; see --max-new-partitions"
    }
}

/// What merging a group did, per file.
struct GroupResult {
    /// Each file's outcomes, in delivery order.
    var outcomes: [[MergeOutcome]]
    /// Per file: events whose first record arrived in it behind the watermark.
    var lateFirstArrivals: [Int]
}

/// One delivery ready to merge, with its arrival facts.
struct PreparedDelivery: Sendable {
    var delivery: Delivery
    var late: Bool
}

/// What the store holds for a merge group's events, per slot (`MergeWriter.readStoredStates`).
private struct StoredStates {
    /// The hour, row_id and row of the event's stored row; -1, 0 and nil when not stored.
    var hour: [Int]
    var rowID: [Int64]
    var row: [PartitionRow?]
    /// When the group claims lookup entries first (`GroupSlots.claimsFirst`), per slot the
    /// row_id reserved for an event found new (nil for the others); else empty.
    var claimedRowID: [Int64?] = []

    init(slots: Int) {
        hour = [Int](repeating: -1, count: slots)
        rowID = [Int64](repeating: 0, count: slots)
        row = [PartitionRow?](repeating: nil, count: slots)
    }
}

/// A merge group after the merge (`MergeWriter.merge`): each event's state, and what the
/// deliveries did.
private struct MergedGroup {
    /// Per slot: the merged state (nil: tombstones only, waiting for their event).
    var states: [EventState?]
    /// Every hour change of an event, in arrival order (`event_moves`).
    var moves: [(id: String, from: Int, to: Int)] = []
    var result: GroupResult
}

extension MergeWriter {
    /// Merges the deliveries of whole files (in file order, then line order) in memory with
    /// `MergeRule.apply`, then writes each changed event once, sorted by hour and event_id.
    /// Reading and writing in key order turns SQLite's random B-tree accesses into nearly
    /// sequential ones; an event delivered several times in the group is written once.
    func applyGroup(_ files: [(fileID: Int64, deliveries: [PreparedDelivery])]) throws -> GroupResult {
        let group = GroupSlots(files)
        // A large group's own fold (`GroupFold`), on a second thread while this one claims and looks up.
        let fold: PassesAhead<GroupFold>? = group.isLarge
            ? PassesAhead(count: 1) { [slotOfDelivery = group.slotOfDelivery, slots = group.ids.count] _, isCancelled in
                try GroupFold(files, slotOfDelivery: slotOfDelivery, slots: slots, isCancelled: isCancelled)
            }
            : nil
        defer { fold?.cancel() }
        let stored = try readStoredStates(group)
        let merged = try merge(group, stored, fold: fold)
        // Every hour an event passed through has a table, even when it left that hour within
        // this group: the same files in one batch or in several give the same tables (in
        // several, the row was written there, then moved out, leaving the table).
        for move in merged.moves { try ensureTable(move.from) }
        let (appended, newCount) = try writeChanges(group, stored, merged.states)
        for move in merged.moves {
            try db.cachedStatement(sql: "INSERT INTO event_moves (event_id, from_hour, to_hour, batch_id) VALUES (?, ?, ?, ?)")
                .execute(arguments: [move.id, move.from, move.to, batchID])
        }
        try addLookupEntries(group, stored, appended: appended, newCount: newCount)
        let result = merged.result
        // The group's arrays are freed on another thread while this one goes on.
        ReleaseElsewhere.shared.release((consume group, consume stored, consume merged, consume appended))
        return result
    }

    /// 1. The stored state of every event the group mentions: the lookup read in key order,
    /// then the rows in row order.
    ///
    /// A large group first claims the `event_index` entry of each event it has a record of,
    /// naming the hour and row the event gets if it is new: one B-tree step that inserts a
    /// new event's entry, or finds that the event is stored (and changes nothing). Only
    /// those events, and events with tombstones only here, are then looked up. Small groups
    /// look every event up and add new ones to the recent tree instead.
    private func readStoredStates(_ group: GroupSlots) throws -> StoredStates {
        let ids = group.ids, groupHour = group.groupHour
        var stored = StoredStates(slots: ids.count)
        let claimFirst = group.claimsFirst
        var claimedRowID = [Int64?](repeating: nil, count: claimFirst ? ids.count : 0)
        var byHour: [Int: [(rowID: Int64, slot: Int)]] = [:]
        var nextRowIDs: [Int: Int64] = [:]
        for slot in ids.indices {
            var at: (hour: Int, rowID: Int64)?
            if claimFirst, let hour = groupHour[slot] {
                // Stored already (the recent tree, or a claim that met an entry), or claimed now (nil).
                at = try group.withIDBytes(of: slot) { id -> (hour: Int, rowID: Int64)? in
                    if recentEntries > 0, let stored = try location(ofBytes: id, using: selectRecent) { return stored }
                    if let rowID = try claim(id, hour: hour, nextRowIDs: &nextRowIDs) {
                        claimedRowID[slot] = rowID
                        return nil
                    }
                    return try location(ofBytes: id, using: selectLarge)
                }
            } else {
                at = try group.withIDBytes(of: slot) { try location(ofBytes: $0) }
            }
            if let at { byHour[at.hour, default: []].append((at.rowID, slot)) }
        }
        stored.claimedRowID = claimedRowID
        for hour in byHour.keys.sorted() {
            for (rowID, slot) in byHour[hour]!.sorted(by: { $0.rowID < $1.rowID }) {
                guard let row = try load(id: ids[slot], hour: hour, rowID: rowID) else {
                    throw TidemarkError("merge", "event \(ids[slot])", cause: "the lookup names row \(rowID) of hour \(PartitionHour(hoursSinceEpoch: hour)), which is missing, holds another event or has an unreadable event_time",
                                        hint: "run 'tidemark validate', then 'tidemark rebuild --hour \(PartitionHour(hoursSinceEpoch: hour))'", exit: .ioError)
                }
                stored.hour[slot] = hour
                stored.rowID[slot] = rowID
                stored.row[slot] = row
            }
        }
        return stored
    }

    /// 2. Merges the deliveries in arrival order, in memory, from the stored states. An event
    /// the group's fold covers (not stored, no tombstone waiting, a record first) takes the
    /// fold's results; the rest are merged here. Records which hours each file touched.
    private func merge(_ group: GroupSlots, _ stored: StoredStates, fold: PassesAhead<GroupFold>?) throws -> MergedGroup {
        let ids = group.ids, files = group.files
        var current: [EventState?]
        var folded: GroupFold?
        var takesFold: [Bool] = []
        // Only events not stored can take the fold's results: with none, it is not waited for.
        if let fold, stored.hour.contains(-1) {
            var result = try fold.next()
            takesFold = ids.indices.map { slot in
                stored.hour[slot] == -1 && result.startsWithRecord[slot]
                    && (pending.isEmpty || pending[ExactText(ids[slot])] == nil)
            }
            current = result.states
            result.states = [] // `current` is then the only owner: changed in place, not copied
            for slot in ids.indices where !takesFold[slot] { current[slot] = stored.row[slot]?.state }
            folded = result
            FaultPoint.traceGroup(events: ids.count, fromFold: takesFold.reduce(0) { $0 + ($1 ? 1 : 0) })
        } else {
            fold?.cancel()
            current = stored.row.map { $0?.state }
        }
        var moves: [(id: String, from: Int, to: Int)] = []
        var outcomes: [[MergeOutcome]] = []
        var lateFirstArrivals: [Int] = []
        outcomes.reserveCapacity(files.count)
        for (fileIndex, file) in files.enumerated() {
            var lateFirst = 0
            var fileOutcomes: [MergeOutcome] = []
            fileOutcomes.reserveCapacity(file.deliveries.count)
            let first = group.firstDelivery[fileIndex]
            // By index: a delivery the fold covers is not read at all, and the others are read
            // in place, not copied out of the array.
            for n in file.deliveries.indices {
                let slot = group.slotOfDelivery[first + n]
                if n == file.deliveries.count / 2 { FaultPoint.hit("mid-file") }
                // What the delivery did, and the hour of the event's record before and after
                // it (nil: no record yet), from the group's fold or merged here.
                let outcome: MergeOutcome, before: Int?, after: Int?
                if let folded, takesFold[slot] {
                    let delivery = first + n
                    outcome = folded.outcomes[delivery]
                    before = folded.hourBefore[delivery] == GroupFold.noHour ? nil : Int(folded.hourBefore[delivery])
                    after = folded.hourAfter[delivery] == GroupFold.noHour ? nil : Int(folded.hourAfter[delivery])
                } else {
                    if current[slot] == nil {
                        guard let times = file.deliveries[n].delivery.recordTimes else {
                            // A tombstone for an event not seen yet: it waits in `pending`.
                            fileOutcomes.append(try holdTombstone(file.deliveries[n].delivery, fileID: file.fileID))
                            continue
                        }
                        // First record of this event; a waiting tombstone deletes it on arrival.
                        if !pending.isEmpty, let waiting = pending.removeValue(forKey: ExactText(ids[slot])) {
                            current[slot] = EventState(deletion: waiting.deletion)
                            try db.cachedStatement(sql: "DELETE FROM pending_tombstones WHERE event_id = ?").execute(arguments: [ids[slot]])
                            for earlier in waiting.files { lateFileHours.append((earlier, times.eventTime.hour.hoursSinceEpoch)) }
                        }
                    }
                    before = current[slot]?.record?.eventTime.hour.hoursSinceEpoch
                    outcome = MergeRule.apply(file.deliveries[n].delivery, to: &current[slot], late: file.deliveries[n].late)
                    after = current[slot]?.record?.eventTime.hour.hoursSinceEpoch
                }
                if let before {
                    touch(file.fileID, before)
                    if outcome != .duplicate && outcome != .stale, let after { // the state changed
                        touch(file.fileID, after)
                        // Every hour an event passes through is recorded, even within one group,
                        // so that rebuild can find all of its deliveries.
                        if after != before { moves.append((ids[slot], before, after)) }
                    }
                } else if let after { // the event's first record
                    if file.deliveries[n].late { lateFirst += 1 }
                    touch(file.fileID, after)
                }
                fileOutcomes.append(outcome)
            }
            outcomes.append(fileOutcomes)
            lateFirstArrivals.append(lateFirst)
        }
        return MergedGroup(states: current, moves: moves, result: GroupResult(outcomes: outcomes, lateFirstArrivals: lateFirstArrivals))
    }

    /// 3. Writes what changed, once per event, hour by hour: rows updated in place in row
    /// order, then rows appended (new events and events that moved in); then deletes the old
    /// rows of events that moved. Returns, per slot, where a new event's row went, and how
    /// many new rows there are.
    private func writeChanges(_ group: GroupSlots, _ stored: StoredStates, _ current: [EventState?])
        throws -> (appended: [(hour: Int, rowID: Int64)?], newCount: Int) {
        let ids = group.ids
        var updatesByHour: [Int: [Int]] = [:]
        var newByHour: [Int: [Int]] = [:]     // events not stored before
        var movedInByHour: [Int: [Int]] = [:] // stored events whose row moves to another hour
        for slot in ids.indices {
            guard let state = current[slot] else { continue } // tombstones only: pending
            let hour = state.record!.eventTime.hour.hoursSinceEpoch
            if let old = stored.row[slot] {
                if old.state == state { continue }
                if stored.hour[slot] == hour {
                    updatesByHour[hour, default: []].append(slot)
                } else {
                    movedInByHour[hour, default: []].append(slot)
                }
            } else {
                newByHour[hour, default: []].append(slot)
            }
        }
        // Per slot, where a new event's row went (its lookup entry, if not claimed, comes last).
        var appended = [(hour: Int, rowID: Int64)?](repeating: nil, count: ids.count)
        let hoursToWrite = Set(updatesByHour.keys).union(newByHour.keys).union(movedInByHour.keys).sorted()
        // The new rows, in the order they are written below, are formatted ahead (on a second
        // thread for a large group).
        var newRows: [(hour: Int, slot: Int)] = []
        for hour in hoursToWrite {
            for slot in newByHour[hour] ?? [] { newRows.append((hour, slot)) }
        }
        let batch = batchID, rows = newRows
        let encoded = EncodedRows(count: rows.count) { i in
            (rows[i].hour, PartitionRow(state: current[rows[i].slot]!, firstBatch: batch, lastBatch: batch))
        }
        defer { encoded.cancel() }
        var nextNew = 0
        // Rows of events that moved to another hour, deleted once every row is appended: had
        // an hour's last row gone first, SQLite would give its row_id again, not the one claimed.
        var movedOut: [(hour: Int, rowID: Int64)] = []
        for hour in hoursToWrite {
            for slot in (updatesByHour[hour] ?? []).sorted(by: { stored.rowID[$0] < stored.rowID[$1] }) {
                let old = stored.row[slot]!
                let row = PartitionRow(state: current[slot]!, firstBatch: old.firstBatch, lastBatch: batchID)
                add(old, hash: old.contentHash, hour: hour, sign: -1)
                add(row, hash: try update(row, hour: hour, rowID: stored.rowID[slot]), hour: hour, sign: 1)
            }
            try ensureTable(hour)
            // New events first, in the order they were formatted (and claimed), then events
            // that moved in: SQLite appends each row under max(row_id) + 1, which is what the
            // claims reserved.
            let statement = try insertStatement(hour)
            for slot in newByHour[hour] ?? [] {
                // Counted into `deltas` after the last new row, as the encoder formatted it.
                try encoded.write(nextNew, with: statement)
                nextNew += 1
                let rowID = statement.lastInsertRowID
                if group.claimsFirst, let claimed = stored.claimedRowID[slot], claimed != rowID || group.groupHour[slot] != hour {
                    // Not expected: the claim named the merge's own winner's hour, and its next
                    // row. Should they ever differ, the entry follows the row in a release
                    // build; a debug build (the tests') stops here.
                    assertionFailure("claimed row \(claimed) of hour \(group.groupHour[slot]!) for \(ids[slot]), written as row \(rowID) of hour \(hour)")
                    try db.cachedStatement(sql: "UPDATE event_index SET hour = ?, row_id = ? WHERE event_id = ?").execute(arguments: [hour, rowID, ids[slot]])
                }
                appended[slot] = (hour, rowID)
            }
            for slot in movedInByHour[hour] ?? [] {
                let old = stored.row[slot]!
                // The event moved here from another hour; its old row is deleted below.
                let oldHour = stored.hour[slot]
                let row = PartitionRow(state: current[slot]!, firstBatch: old.firstBatch, lastBatch: batchID)
                add(old, hash: old.contentHash, hour: oldHour, sign: -1)
                movedOut.append((oldHour, stored.rowID[slot]))
                let (hash, rowID) = try insert(row, hour: hour)
                try db.cachedStatement(sql: "UPDATE event_index SET hour = ?, row_id = ? WHERE event_id = ?").execute(arguments: [hour, rowID, ids[slot]])
                try db.cachedStatement(sql: "UPDATE event_index_recent SET hour = ?, row_id = ? WHERE event_id = ?").execute(arguments: [hour, rowID, ids[slot]])
                add(row, hash: hash, hour: hour, sign: 1)
            }
        }
        encoded.addDeltas(to: &deltas) // every new row was written
        for (hour, rowID) in movedOut {
            try db.cachedStatement(sql: "DELETE FROM \(PartitionHour(hoursSinceEpoch: hour).tableName) WHERE row_id = ?").execute(arguments: [rowID])
        }
        return (appended, newRows.count)
    }

    /// 4. Adds the lookup entries of the new events a claim did not add already. The new
    /// events of a small group go to the small recent index (dirtying a few pages there rather
    /// than one leaf of the large index per event), which is folded into the large one when
    /// full. A large group sweeps the large index anyway: it goes there directly.
    private func addLookupEntries(_ group: GroupSlots, _ stored: StoredStates, appended: [(hour: Int, rowID: Int64)?], newCount: Int) throws {
        let intoRecent = !group.claimsFirst && newCount > 0 && newCount <= MergeWriter.recentIndexCapacity / 4
        if intoRecent && recentEntries + newCount > MergeWriter.recentIndexCapacity { try foldRecentIndex() }
        let insert = intoRecent ? insertRecent : insertIndex
        for slot in group.ids.indices where !(group.claimsFirst && stored.claimedRowID[slot] != nil) {
            guard let at = appended[slot] else { continue }
            insert.reset()
            try insert.bind(2, Int64(at.hour))
            try insert.bind(3, at.rowID)
            try group.withIDBytes(of: slot) { id in try insert.withBytes(id, at: 1) { try insert.run() } }
        }
        if intoRecent { recentEntries += newCount }
    }

    /// A tombstone for an event not seen yet: remembered until the event arrives.
    private func holdTombstone(_ delivery: Delivery, fileID: Int64) throws -> MergeOutcome {
        let id = delivery.eventID
        let key = ExactText(id)
        let before = pending[key]
        let (state, outcome) = MergeRule.merge(before.map { EventState(deletion: $0.deletion) }, delivery)
        touch(fileID, nil)
        var files = before?.files ?? []
        if !files.contains(fileID) { files.append(fileID) }
        // Every tombstone is written, keeping the earliest known time per (event, file), so
        // that a later batch reloads exactly what memory holds now.
        try db.cachedStatement(sql: """
            INSERT INTO pending_tombstones (event_id, deleted_at, file_id) VALUES (?, ?, ?)
            ON CONFLICT (event_id, file_id) DO UPDATE SET deleted_at = CASE
                WHEN excluded.deleted_at IS NULL THEN deleted_at
                WHEN deleted_at IS NULL OR excluded.deleted_at < deleted_at THEN excluded.deleted_at
                ELSE deleted_at END
            """).execute(arguments: [id, delivery.receivedTime?.rfc3339, fileID])
        pending[key] = (state.deletion!, files)
        return outcome
    }

    /// Hours that records of these deliveries would add to the partitions this batch created.
    func newHours(in deliveries: [PreparedDelivery]) -> Set<Int> {
        var hours = Set<Int>()
        for index in deliveries.indices {
            if let times = deliveries[index].delivery.recordTimes {
                let hour = times.eventTime.hour.hoursSinceEpoch
                if !knownHours.contains(hour) { hours.insert(hour) }
            }
        }
        return hours
    }

}
