import GRDB

/// Rebuild's writes to one hourly table, inside the caller's transaction.
///
/// Each rebuilt row is compared with the stored row its lookup entry names and written only
/// where it differs; a rebuilt event with no such row gets a new row. `finish` then deals with
/// the stored rows no rebuilt row met. An hour that was right is only read, and a repair writes
/// only what it repairs; the transaction still makes the hour change all at once or not at all.
///
/// What is counted matches a comparison of the whole rebuilt hour with the stored one by
/// event_id: `added` rows of events the table did not hold, `changed` rows whose data columns
/// differ (a duplicate row of an event counts when it differs), and `removed` events the table
/// held that no longer belong to the hour.
final class PartitionPatch {
    let hour: PartitionHour
    let tableExisted: Bool
    /// The largest row_id before the rebuild: rows above it are the ones this patch added.
    let lastOldRowID: Int64
    private(set) var added = 0
    private(set) var changed = 0
    /// Rows rewritten or deleted that no count above shows (a different `first_batch`, or a
    /// duplicate row equal to the one kept).
    private(set) var quietFixes = 0
    private let storedRows: Int
    private var nextRowID: Int64
    /// The old row_ids a rebuilt row met.
    private var met: MetRows
    private let select: FastStatement
    private let update: FastStatement
    private let insert: FastStatement
    private let db: Database

    /// Whether a data column of rows `a` and `b` differs (`first_batch`, `last_batch` are
    /// bookkeeping).
    private static func differs(_ a: String, _ b: String) -> String {
        PartitionTable.columnNames[PartitionTable.dataColumns].map { "\(a).\($0) IS NOT \(b).\($0)" }.joined(separator: " OR ")
    }

    /// Opens the hour's table, creating it (empty) when it is missing.
    init(_ hour: PartitionHour, _ db: Database) throws {
        self.hour = hour
        self.db = db
        let table = hour.tableName
        tableExisted = try db.tableExistsFast(table)
        if !tableExisted { try db.execute(sql: PartitionTable.createSQL(hour)) }
        lastOldRowID = try PartitionTable.maxRowID(hour, db)
        storedRows = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") ?? 0
        nextRowID = lastOldRowID
        // Row ids are dense from 1 unless someone wrote rows by hand: those go to a set.
        met = MetRows(denseUpTo: min(lastOldRowID, Int64(max(storedRows * 4, 1 << 20))))
        let compared = PartitionTable.columnNames[...PartitionTable.firstBatchColumn].joined(separator: ", ")
        select = try FastStatement(db, sql: "SELECT \(compared) FROM \(table) WHERE row_id = ?")
        update = try FastStatement(db, sql: "UPDATE \(table) SET (\(PartitionTable.columns)) = (\(PartitionTable.parameters)) WHERE row_id = \(PartitionTable.nextParameter)")
        insert = try FastStatement(db, sql: "INSERT INTO \(table) (\(PartitionTable.columns), row_id) VALUES (\(PartitionTable.parameters), \(PartitionTable.nextParameter))")
    }

    /// Brings row `index` of `rows` (taken in order) into the table: compared with the stored
    /// row `rowID` (an old row_id its lookup entry names, or nil) and rewritten when it differs,
    /// or written as a new row when that row holds another event or there is none.
    func apply(_ index: Int, of rows: EncodedRows, storedAt rowID: Int64?) throws {
        if let rowID, rowID <= lastOldRowID {
            select.reset()
            try select.bind(1, rowID)
            let match: EncodedRows.StoredMatch? = try select.step() ? rows.compare(index, withStored: select) : nil
            select.reset()
            switch match {
            case .same?:
                markMet(rowID)
                return
            case .dataDiffers?, .firstBatchDiffers?:
                if match == .dataDiffers { changed += 1 } else { quietFixes += 1 }
                try rows.write(index, rowID: rowID, with: update)
                markMet(rowID)
                return
            case .otherEvent?, nil:
                break
            }
        }
        guard nextRowID < Int64.max else {
            throw TidemarkError("rebuild", hour.label, cause: "table \(hour.tableName) holds rows under row ids so high that none is left for the hour's new rows; nothing was changed (rolled back)",
                                hint: "tidemark did not write those rows: see them with SELECT row_id, event_id FROM \(hour.tableName) ORDER BY row_id DESC LIMIT 5, delete them, then rerun the rebuild",
                                exit: .dataError)
        }
        nextRowID += 1
        added += 1
        try rows.write(index, rowID: nextRowID, with: insert)
    }

    private func markMet(_ rowID: Int64) { met.insert(rowID) }

    private func wasMet(_ rowID: Int64) -> Bool { rowID <= lastOldRowID && met.contains(rowID) }

    /// Deals with the old rows no rebuilt row met, after every row was applied:
    /// - a row of an event that was written anew (its lookup entry named another row) is
    ///   dropped, and the pair counts as a change when the data differs, not as an addition;
    /// - a second row of an event met elsewhere is dropped (a change when it differs);
    /// - a row of an event the rebuild does not place in this hour is dropped, and its event_id
    ///   returned (the caller points its lookup entry where the event now is).
    func finish() throws -> [String] {
        guard tableExisted, met.count < storedRows else { return [] }
        let table = hour.tableName
        var unmet: [(rowID: Int64, eventID: String)] = []
        let scan = try FastStatement(db, sql: "SELECT row_id, event_id FROM \(table) WHERE row_id <= \(lastOldRowID)")
        while try scan.step() {
            let rowID = scan.int64(0)
            if !wasMet(rowID) { unmet.append((rowID, scan.text(1) ?? "")) }
        }
        scan.reset()
        let newIndex = "\(table)__rebuild_new"
        let anyNew = added > 0
        if anyNew {
            try db.execute(sql: "CREATE INDEX \(newIndex) ON \(table) (event_id) WHERE row_id > \(lastOldRowID)")
        }
        let written = try FastStatement(db, sql: "SELECT row_id FROM \(table) WHERE event_id = ?1 AND row_id > \(lastOldRowID)")
        let kept = try FastStatement(db, sql: """
            SELECT m.row_id FROM event_index e JOIN \(table) m ON m.row_id = e.row_id AND m.event_id = e.event_id
            WHERE e.event_id = ?1 AND e.hour = \(hour.hoursSinceEpoch)
            """)
        let compare = try FastStatement(db, sql: "SELECT \(Self.differs("k", "d")) FROM \(table) k, \(table) d WHERE k.row_id = ?1 AND d.row_id = ?2")
        let drop = try FastStatement(db, sql: "DELETE FROM \(table) WHERE row_id = ?1")
        /// The first column of the first row `statement` gives with these parameters, if any.
        func first(_ statement: FastStatement, _ bind: () throws -> Void) throws -> Int64? {
            statement.reset()
            defer { statement.reset() }
            try bind()
            return try statement.step() ? statement.int64(0) : nil
        }
        var paired = Set<Int64>()
        var removed: [String] = [] // once per event, however many rows it had
        var removedIDs = Set<ExactText>()
        for (rowID, eventID) in unmet {
            var keeper: Int64?
            if anyNew, let newRow = try first(written, { try written.bind(1, eventID) }) {
                keeper = newRow
                if paired.insert(newRow).inserted { added -= 1 }
            } else if let other = try first(kept, { try kept.bind(1, eventID) }), other != rowID, wasMet(other) {
                keeper = other
            }
            if let keeper {
                let differs = try first(compare) {
                    try compare.bind(1, keeper)
                    try compare.bind(2, rowID)
                }
                if differs == 1 { changed += 1 } else { quietFixes += 1 }
            } else if removedIDs.insert(ExactText(eventID)).inserted {
                removed.append(eventID)
            }
            drop.reset()
            try drop.bind(1, rowID)
            try drop.run()
        }
        if anyNew { try db.execute(sql: "DROP INDEX \(newIndex)") }
        return removed
    }
}

/// A set of row ids: a bitset over `0...denseUpTo`, where SQLite's own row ids are, and a hash
/// set for any other.
private struct MetRows {
    private var bits: [UInt64]
    private var others = Set<Int64>()
    private(set) var count = 0

    init(denseUpTo limit: Int64) {
        bits = Array(repeating: 0, count: Int(max(0, limit) / 64) + 1)
    }

    private func place(_ id: Int64) -> (word: Int, bit: UInt64)? {
        guard id >= 0, Int(id / 64) < bits.count else { return nil }
        return (Int(id / 64), UInt64(1) << UInt64(id % 64))
    }

    mutating func insert(_ id: Int64) {
        if let (word, bit) = place(id) {
            guard bits[word] & bit == 0 else { return }
            bits[word] |= bit
            count += 1
        } else if others.insert(id).inserted {
            count += 1
        }
    }

    func contains(_ id: Int64) -> Bool {
        if let (word, bit) = place(id) { return bits[word] & bit != 0 }
        return others.contains(id)
    }
}
