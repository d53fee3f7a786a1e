import GRDB

/// Read-only SQL used by `tidemark validate`.
enum ValidationQueries {
    struct PartitionEntry {
        var hour: PartitionHour
        var table: String
        var rowCount: Int64
        var validCount: Int64
        var checksum: String
    }

    static func partitions(_ db: Database) throws -> [PartitionEntry] {
        try Row.fetchAll(db, sql: "SELECT hour, table_name, row_count, valid_count, checksum FROM partitions ORDER BY hour").compactMap { row in
            guard let hour = PartitionHour.parse(row[0]) else { return nil }
            return PartitionEntry(hour: hour, table: hour.tableName, rowCount: row[2], validCount: row[3], checksum: row[4])
        }
    }

    /// A landing line by file name and line number.
    struct LineKey: Hashable, Sendable {
        var file: String
        var line: Int
    }

    /// The lines ingest rejected, by landing file name and line number, with the text kept of
    /// each (`rejected_lines.raw_text`; nil for a line too long to keep): those of applied
    /// files, and the same lines of files that were duplicates of them. A name can be used
    /// again for another file: the text tells which line was rejected.
    static func rejectedLines(_ db: Database) throws -> [LineKey: [String?]] {
        var lines: [LineKey: [String?]] = [:]
        let rows = try Row.fetchCursor(db, sql: """
            SELECT file_name, line_number, raw_text FROM rejected_lines
            UNION ALL SELECT d.name, r.line_number, r.raw_text FROM ingested_files d JOIN rejected_lines r ON r.file_id = d.duplicate_of
            WHERE d.status = 'duplicate_content'
            """)
        while let row = try rows.next() { lines[LineKey(file: row[0], line: row[1]), default: []].append(row[2]) }
        return lines
    }

    /// One hour's `partitions` row, if any.
    static func partitionEntry(_ hour: PartitionHour, _ db: Database) throws -> PartitionEntry? {
        try Row.fetchOne(db, sql: "SELECT row_count, valid_count, checksum FROM partitions WHERE hour = ?", arguments: [hour.label]).map {
            PartitionEntry(hour: hour, table: hour.tableName, rowCount: $0[0], validCount: $0[1], checksum: $0[2])
        }
    }

    static func tableExists(_ table: String, _ db: Database) throws -> Bool { try db.tableExistsFast(table) }

    /// How many rows `from` (a FROM … WHERE … clause) finds, and up to `limit` of them as
    /// `select` picks them, each told by `describe`. When there are none, the query for samples
    /// is not run: it would repeat the whole scan or join only to find nothing.
    private static func countAndSamples(from: String, select: String, arguments: StatementArguments = [], limit: Int,
                                        _ db: Database, describe: (Row) -> String) throws -> (Int, [String]) {
        let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) \(from)", arguments: arguments) ?? 0
        guard count > 0 else { return (0, []) }
        return (count, try Row.fetchAll(db, sql: "SELECT \(select) \(from) LIMIT \(limit)", arguments: arguments).map(describe))
    }

    /// Rows whose event_time is not in the partition's hour (the canonical text starts with the hour label).
    static func rowsOutsideHour(_ p: PartitionEntry, limit: Int, _ db: Database) throws -> (Int, [String]) {
        try countAndSamples(from: "FROM \(p.table) WHERE substr(event_time, 1, 13) != ?", select: "event_id, event_time",
                            arguments: [p.hour.label], limit: limit, db) {
            "event \($0[0] as String) has event_time \($0[1] as String) but lies in \(p.table)"
        }
    }

    /// Rows whose lookup entry (in `event_index` or `event_index_recent`) is missing or names
    /// another hour or another row (a second row of the same event).
    static func indexDisagreements(_ p: PartitionEntry, limit: Int, _ db: Database) throws -> (Int, [String]) {
        let sql = """
            FROM \(p.table) r LEFT JOIN event_index i ON i.event_id = r.event_id LEFT JOIN event_index_recent j ON j.event_id = r.event_id
            WHERE COALESCE(i.hour, j.hour) IS NULL OR COALESCE(i.hour, j.hour) != \(p.hour.hoursSinceEpoch)
               OR COALESCE(i.row_id, j.row_id) != r.row_id
            """
        return try countAndSamples(from: sql, select: "r.event_id, COALESCE(i.hour, j.hour), r.row_id", limit: limit, db) { row in
            let id: String = row[0]
            guard let other = row[1] as Int? else { return "event \(id) is in \(p.table) but in neither lookup tree (event_index, event_index_recent)" }
            if other == p.hour.hoursSinceEpoch {
                return "event \(id) has a second row in \(p.table) (row_id \(row[2] as Int64); its lookup entry names another)"
            }
            return "event \(id) is in \(p.table) and also in \(PartitionHour(hoursSinceEpoch: other).tableName) (its lookup entry points there)"
        }
    }

    /// How many lookup entries (both trees) name each hour.
    static func lookupEntriesPerHour(_ db: Database) throws -> [Int: Int] {
        var out: [Int: Int] = [:]
        for row in try Row.fetchAll(db, sql: """
            SELECT hour, COUNT(*) FROM (SELECT hour FROM event_index UNION ALL SELECT hour FROM event_index_recent) GROUP BY hour
            """) {
            out[row[0]] = row[1]
        }
        return out
    }

    /// Lookup entries pointing at this hour with no row there.
    static func indexOrphans(_ p: PartitionEntry, limit: Int, _ db: Database) throws -> (Int, [String]) {
        let sql = """
            FROM (SELECT event_id, row_id FROM event_index WHERE hour = \(p.hour.hoursSinceEpoch)
                  UNION ALL SELECT event_id, row_id FROM event_index_recent WHERE hour = \(p.hour.hoursSinceEpoch)) i
            WHERE NOT EXISTS (SELECT 1 FROM \(p.table) r WHERE r.row_id = i.row_id AND r.event_id = i.event_id)
            """
        return try countAndSamples(from: sql, select: "i.event_id", limit: limit, db) {
            "event \($0[0] as String): its lookup entry says \(p.table) but the row is missing"
        }
    }

    /// Lookup entries whose hour has no partition at all (`entriesPerHour`: the entries of each
    /// hour, of the hours in `scope` when given; `known`: the hours with a partition, at least
    /// those in scope, as validate read them already).
    static func indexEntriesWithoutPartition(_ entriesPerHour: [Int: Int], partitions known: Set<Int>, in scope: ClosedRange<PartitionHour>? = nil,
                                             limit: Int, _ db: Database) throws -> (Int, [String]) {
        let hours = entriesPerHour.keys.filter { hour in
            !known.contains(hour) && (scope.map { $0.contains(PartitionHour(hoursSinceEpoch: hour)) } ?? true)
        }.sorted()
        var count = 0
        var samples: [String] = []
        for hour in hours {
            let ids = try String.fetchAll(db, sql: "SELECT event_id FROM event_index WHERE hour = ?1 UNION ALL SELECT event_id FROM event_index_recent WHERE hour = ?1",
                                          arguments: [hour])
            count += ids.count
            for id in ids.prefix(max(0, limit - samples.count)) {
                samples.append("event \(id): its lookup entry says hour \(PartitionHour(hoursSinceEpoch: hour)), which has no partition")
            }
        }
        return (count, samples)
    }

    /// Event ids with an entry in both lookup trees (each must have exactly one entry).
    static func lookupEntriesInBothTrees(limit: Int, _ db: Database) throws -> (Int, [String]) {
        let sql = "FROM event_index_recent j JOIN event_index i ON i.event_id = j.event_id"
        return try countAndSamples(from: sql, select: "j.event_id, i.hour, j.hour", limit: limit, db) { row in
            let (main, recent) = (PartitionHour(hoursSinceEpoch: row[1]), PartitionHour(hoursSinceEpoch: row[2]))
            return "event \(row[0] as String) has entries in both event_index (hour \(main)) and event_index_recent (hour \(recent)): rebuild "
                + (main == recent ? "--hour \(main)" : "--hour \(main), then rebuild --hour \(recent)")
        }
    }

    static func deletionInconsistencies(_ p: PartitionEntry, _ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: """
            SELECT event_id FROM \(p.table)
            WHERE (is_valid = 0) != (deleted_by IS NOT NULL) OR deleted_by NOT IN ('flag', 'tombstone', 'flag+tombstone')
            LIMIT 20
            """).map { "event \($0) in \(p.table): is_valid and deleted_by disagree" }
    }

    /// Scans one partition's rows. A row whose `is_valid` column disagrees with `deleted_by`
    /// is reported as the column says, so that tampering with either shows up as a difference.
    /// `wanted` picks rows by event_id before the rest of the row is decoded.
    static func forEachRow(_ table: String, _ db: Database, where wanted: (String) -> Bool = { _ in true },
                           _ body: (PartitionRow?, String) throws -> Void) throws {
        // Through the C API: GRDB's row decoding costs more than the scan on a million rows.
        let statement = try FastStatement(db, sql: "SELECT \(PartitionRow.selectColumns) FROM \(table)")
        defer { statement.reset() }
        while try statement.step() {
            let id = statement.text(11) ?? ""
            guard wanted(id) else { continue }
            var decoded = PartitionRow.decode(id: id, statement)
            let validColumn = statement.int64(4)
            if let current = decoded, (validColumn == 1) != current.state.isValid {
                decoded!.state.deletion = validColumn == 1 ? nil : Deletion(byFlag: false, byTombstone: false, deletedAt: nil)
            }
            try body(decoded, id)
        }
    }

    static func storedSummary(_ hour: PartitionHour, _ db: Database) throws -> [String] {
        try Row.fetchAll(db, sql: """
            SELECT event_type, valid_events, distinct_users, deleted_events, late_events FROM hourly_summary
            WHERE hour = ? ORDER BY event_type
            """, arguments: [hour.label]).map { Summaries.line(type: $0[0], valid: $0[1], users: $0[2], deleted: $0[3], late: $0[4]) }
    }

    static func freshSummary(_ hour: PartitionHour, _ db: Database) throws -> [String] {
        try Row.fetchAll(db, sql: "SELECT * FROM (\(Summaries.freshSummarySQL(hour))) ORDER BY event_type",
                         arguments: [hour.label]).map { Summaries.line(type: $0[1], valid: $0[2], users: $0[3], deleted: $0[4], late: $0[5]) }
    }

    /// An hour's `summary_users` rows.
    static func summaryUsers(_ hour: PartitionHour, _ db: Database) throws -> [SummaryUser: Int64] {
        var out: [SummaryUser: Int64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT event_type, user_id, valid_events FROM summary_users WHERE hour = ?", arguments: [hour.label]) {
            out[SummaryUser(eventType: row[0], userID: row[1])] = row[2]
        }
        return out
    }

    static func summaryHoursWithoutPartition(_ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT DISTINCT hour FROM hourly_summary WHERE hour NOT IN (SELECT hour FROM partitions)")
    }


    /// Ledger rows whose line counts do not add up, or whose rejected count disagrees with `rejected_lines`.
    static func ledgerAccounting(limit: Int, _ db: Database) throws -> (files: Int, problems: [String]) {
        let files = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ingested_files WHERE status = 'applied'") ?? 0
        let rows = try Row.fetchAll(db, sql: """
            SELECT f.name, f.lines_read, f.lines_new + f.lines_updated + f.lines_duplicate + f.lines_stale + f.lines_deleted + f.lines_rejected,
                   f.lines_rejected, (SELECT COUNT(*) FROM rejected_lines r WHERE r.file_id = f.file_id)
            FROM ingested_files f
            WHERE f.status = 'applied' AND (
                f.lines_read != f.lines_new + f.lines_updated + f.lines_duplicate + f.lines_stale + f.lines_deleted + f.lines_rejected
                OR f.lines_rejected != (SELECT COUNT(*) FROM rejected_lines r WHERE r.file_id = f.file_id))
            LIMIT \(limit)
            """)
        return (files, rows.map { "file \($0[0] as String): read \($0[1] as Int64), accounted \($0[2] as Int64), rejected \($0[3] as Int64) vs \($0[4] as Int64) in rejected_lines" })
    }

    struct LedgerFile {
        var fileID: Int64
        var name: String
        var status: String
        var sha256: String
        var location: String
        var sourcePath: String
        /// Recorded by a backfill, whose source is not emptied: its archive copy is not a move
        /// in progress when missing, but one the backfill must finish.
        var byBackfill: Bool
    }

    static func ledgerFiles(dataFolder: String, _ db: Database) throws -> [LedgerFile] {
        try Row.fetchAll(db, sql: """
            SELECT f.file_id, f.name, f.status, f.sha256, f.location, f.source_path, COALESCE(b.kind = 'backfill', 0)
            FROM ingested_files f LEFT JOIN batches b ON b.batch_id = f.batch_id ORDER BY f.file_id
            """).map {
            LedgerFile(fileID: $0[0], name: $0[1], status: $0[2], sha256: $0[3], location: Ledger.currentPath(of: $0[4], dataFolder: dataFolder), sourcePath: $0[5],
                       byBackfill: $0[6])
        }
    }

    static func duplicateContentFiles(_ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ingested_files WHERE status = 'duplicate_content'") ?? 0
    }

    static func duplicateLines(_ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(lines_duplicate), 0) FROM ingested_files WHERE status = 'applied'") ?? 0
    }

    static func pendingTombstoneIDs(_ db: Database) throws -> Set<ExactText> {
        Set(try String.fetchAll(db, sql: "SELECT DISTINCT event_id FROM pending_tombstones").map(ExactText.init))
    }

    static func integrityCheck(_ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: "PRAGMA integrity_check").filter { $0 != "ok" }
    }

    /// The line numbers ingest rejected in these ledger files, by file (files with none are absent).
    static func rejectedLineNumbers(in fileIDs: [Int64], _ db: Database) throws -> [Int64: Set<Int>] {
        var out: [Int64: Set<Int>] = [:]
        var start = 0
        while start < fileIDs.count {
            let chunk = fileIDs[start..<min(fileIDs.count, start + 500)]
            start += chunk.count
            let list = chunk.map(String.init).joined(separator: ",") // integers
            for row in try Row.fetchAll(db, sql: "SELECT file_id, line_number FROM rejected_lines WHERE file_id IN (\(list))") {
                out[row[0], default: []].insert(row[1])
            }
        }
        return out
    }

    static func totalLinesRead(_ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(lines_read), 0) FROM ingested_files") ?? 0
    }
}
