import GRDB

/// SQL of `tidemark rebuild`: which archived files feed an hour, and the shadow-table swap.
enum RebuildStore {
    struct SourceFile {
        var fileID: Int64
        var name: String
        var location: String
        var sha256: String
        var batchID: Int64
        var watermarkBefore: Timestamp?
        var linesRead: Int
        var sourcePath: String
    }

    static func allHours(_ db: Database) throws -> [PartitionHour] {
        try String.fetchAll(db, sql: "SELECT hour FROM partitions ORDER BY hour").compactMap(PartitionHour.parse)
    }

    /// Applied files whose deliveries touched any of these hours (the file → hours index).
    static func files(touching hours: [PartitionHour], _ db: Database) throws -> [SourceFile] {
        guard !hours.isEmpty else { return [] }
        let list = hours.map { "'\($0.label)'" }.joined(separator: ",") // labels are built from integers
        return try Row.fetchAll(db, sql: """
            SELECT f.file_id, f.name, f.location, f.sha256, f.batch_id, f.watermark_before, f.lines_read, f.source_path FROM ingested_files f
            WHERE f.status = 'applied' AND f.file_id IN (SELECT file_id FROM file_hours WHERE hour IN (\(list)))
            ORDER BY f.file_id
            """).map {
                SourceFile(fileID: $0[0], name: $0[1], location: $0[2], sha256: $0[3], batchID: $0[4],
                           watermarkBefore: ($0[5] as String?).flatMap { try? Timestamp.parse($0).get() }, linesRead: $0[6],
                           sourcePath: $0[7])
            }
    }

    /// Events that moved into `hour` from other hours, with every hour they came from
    /// (following chains of moves).
    static func eventsMovedInto(_ hour: PartitionHour, _ db: Database) throws -> [ExactText: Set<Int>] {
        var out: [ExactText: Set<Int>] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT event_id, from_hour FROM event_moves WHERE to_hour = ?", arguments: [hour.hoursSinceEpoch]) {
            out[ExactText(row[0]), default: []].insert(row[1])
        }
        var frontier = Set(out.values.flatMap { $0 })
        var seen: Set<Int> = [hour.hoursSinceEpoch]
        while !frontier.isEmpty {
            let next = frontier.subtracting(seen)
            seen.formUnion(next)
            guard !next.isEmpty else { break }
            frontier = []
            let list = next.map(String.init).joined(separator: ",")
            for row in try Row.fetchAll(db, sql: "SELECT event_id, from_hour FROM event_moves WHERE to_hour IN (\(list))") {
                let id = ExactText(row[0])
                guard out[id] != nil else { continue }
                let from: Int = row[1]
                if out[id]!.insert(from).inserted { frontier.insert(from) }
            }
        }
        return out
    }

    static func rejectedLines(fileID: Int64, _ db: Database) throws -> Set<Int> {
        try ValidationQueries.rejectedLineNumbers(fileID: fileID, db)
    }

    static func partition(_ hour: PartitionHour, _ db: Database) throws -> ValidationQueries.PartitionEntry? {
        try ValidationQueries.partitions(db).first { $0.hour == hour }
    }

    /// Where `event_index` places these events (those it knows). Pass them in byte order:
    /// the lookups then walk the index once.
    static func indexLocations(of ids: [ExactText], _ db: Database) throws -> [ExactText: (hour: Int, rowID: Int64)] {
        let select = try FastStatement(db, sql: "SELECT hour, row_id FROM event_index WHERE event_id = ?")
        var out: [ExactText: (hour: Int, rowID: Int64)] = [:]
        out.reserveCapacity(ids.count)
        for id in ids {
            select.reset()
            try select.bind(1, id.text)
            if try select.step() { out[id] = (Int(select.int64(0)), select.int64(1)) }
        }
        select.reset()
        return out
    }

    /// The largest row_id of the hour's live table (0 when it has none or is missing).
    static func maxRowID(_ hour: PartitionHour, _ db: Database) throws -> Int64 {
        guard try db.tableExistsFast(hour.tableName) else { return 0 }
        return try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(row_id), 0) FROM \(hour.tableName)") ?? 0
    }

    /// After a swap, points the lookup of events that left `hour` at the row they have in the
    /// hour the fold placed them in, or drops it when they have no row anywhere yet. Each
    /// such hour's table is scanned once.
    static func relocate(_ ids: [String], from hour: PartitionHour, to target: [ExactText: Int], _ db: Database) throws {
        var byHour: [Int: Set<ExactText>] = [:]
        for id in ids {
            if let other = target[ExactText(id)], other != hour.hoursSinceEpoch { byHour[other, default: []].insert(ExactText(id)) }
        }
        var found: [ExactText: (hour: Int, rowID: Int64)] = [:]
        for (other, wanted) in byHour {
            let table = PartitionHour(hoursSinceEpoch: other).tableName
            guard try db.tableExistsFast(table) else { continue }
            let rows = try Row.fetchCursor(db, sql: "SELECT event_id, row_id FROM \(table)")
            while let row = try rows.next() {
                let id = ExactText(row[0])
                if wanted.contains(id) { found[id] = (other, row[1]) }
            }
        }
        let point = try db.cachedStatement(sql: "UPDATE event_index SET hour = ?, row_id = ? WHERE event_id = ?")
        let drop = try db.cachedStatement(sql: "DELETE FROM event_index WHERE event_id = ? AND hour = ?")
        for id in ids {
            if let at = found[ExactText(id)] {
                try point.execute(arguments: [at.hour, at.rowID, id])
            } else {
                try drop.execute(arguments: [id, hour.hoursSinceEpoch])
            }
        }
    }

    static func shadowName(_ hour: PartitionHour) -> String { hour.tableName + "__rebuild" }

    /// Creates the empty shadow table for an hour (inside the caller's transaction).
    static func createShadow(_ hour: PartitionHour, _ db: Database) throws -> FastStatement {
        let shadow = shadowName(hour)
        try db.execute(sql: "DROP TABLE IF EXISTS \(shadow)")
        try db.execute(sql: PartitionTable.createSQL(hour).replacingOccurrences(of: hour.tableName, with: shadow))
        return try FastStatement(db, sql: "INSERT INTO \(shadow) (\(PartitionTable.columns), row_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    }

    /// How a filled shadow differs from the live table of its hour.
    struct ShadowDiff {
        var added: Int
        var changed: Int
        /// Event ids of live rows the shadow no longer has.
        var removed: [String]
        var tableExisted: Bool
    }

    /// Rows the shadow adds, changes (any data column) and removes compared with the live
    /// table. An event that stays in its hour keeps its row_id, so most live rows meet their
    /// shadow row by row_id, in key order on both sides; only the others are looked up by
    /// event_id, through an index built for them when there are any.
    static func diff(_ hour: PartitionHour, _ db: Database) throws -> ShadowDiff {
        let shadow = shadowName(hour), live = hour.tableName
        let shadowRows = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(shadow)") ?? 0
        guard try db.tableExistsFast(live) else { return ShadowDiff(added: shadowRows, changed: 0, removed: [], tableExisted: false) }
        let differs = """
            (s.user_id IS NOT l.user_id OR s.event_type IS NOT l.event_type OR s.event_time IS NOT l.event_time
             OR s.received_time IS NOT l.received_time OR s.is_valid IS NOT l.is_valid OR s.deleted_by IS NOT l.deleted_by
             OR s.deleted_at IS NOT l.deleted_at OR s.extra IS NOT l.extra OR s.is_late IS NOT l.is_late)
            """
        let byRow = try Row.fetchOne(db, sql: """
            SELECT COUNT(*), COUNT(s.row_id), COALESCE(SUM(s.row_id IS NOT NULL AND \(differs)), 0)
            FROM \(live) l LEFT JOIN \(shadow) s ON s.row_id = l.row_id AND s.event_id = l.event_id
            """)
        let liveRows: Int = byRow?[0] ?? 0
        var matched: Int = byRow?[1] ?? 0
        var changed: Int = byRow?[2] ?? 0
        let others = liveRows == matched ? [] : try Row.fetchAll(db, sql: """
            SELECT row_id, event_id FROM \(live) l
            WHERE NOT EXISTS (SELECT 1 FROM \(shadow) s WHERE s.row_id = l.row_id AND s.event_id = l.event_id)
            """)
        var removed: [String] = []
        if !others.isEmpty {
            try db.execute(sql: "CREATE INDEX \(shadow)_event_id ON \(shadow) (event_id)")
            // Per live row: its shadow row by event_id, whether it differs, and whether that
            // shadow row already met a live row by row_id (counted above).
            let lookup = try db.makeStatement(sql: """
                SELECT s.row_id, \(differs), EXISTS (SELECT 1 FROM \(live) m WHERE m.row_id = s.row_id AND m.event_id = s.event_id)
                FROM \(live) l JOIN \(shadow) s ON s.event_id = l.event_id WHERE l.row_id = ?
                """)
            var metByID = Set<Int64>()
            for row in others {
                let rowID: Int64 = row[0]
                if let found = try Row.fetchOne(lookup, arguments: [rowID]) {
                    if (found[1] as Bool) { changed += 1 }
                    if !(found[2] as Bool) { metByID.insert(found[0]) }
                } else {
                    removed.append(row[1])
                }
            }
            matched += metByID.count
        }
        return ShadowDiff(added: shadowRows - matched, changed: changed, removed: removed, tableExisted: true)
    }

    /// Swaps the checked shadow in for the live table and sets the hour's counts, checksum and
    /// lookup entries, inside the caller's transaction (which also rewrote the hour's summary):
    /// readers see the old partition or the new one, and a crash leaves the old one. Rows with
    /// a row_id above `newRowIDsAbove` are the ones whose lookup entry changes; the others kept
    /// the row_id `event_index` already names.
    static func swapIn(_ hour: PartitionHour, rows: Int, valid: Int, checksum: UInt64,
                       newRowIDsAbove: Int64, batchID: Int64, _ db: Database) throws {
        let shadow = shadowName(hour)
        let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(shadow)") ?? -1
        guard count == rows else {
            throw TidemarkError("rebuild", hour.label, cause: "the rebuilt copy of the hour has \(count) rows where \(rows) were written; nothing was changed (rolled back)",
                                hint: "run 'tidemark validate --hour \(hour.label)' and report this as a bug with its output", exit: .ioError)
        }
        FaultPoint.hit("rebuild-swap")
        try db.execute(sql: "DROP INDEX IF EXISTS \(shadow)_event_id")
        try db.execute(sql: "DROP TABLE IF EXISTS \(hour.tableName)")
        try db.execute(sql: "ALTER TABLE \(shadow) RENAME TO \(hour.tableName)")
        try db.execute(sql: """
            INSERT INTO event_index (event_id, hour, row_id)
            SELECT event_id, \(hour.hoursSinceEpoch), row_id FROM \(hour.tableName) WHERE row_id > \(newRowIDsAbove)
            ON CONFLICT (event_id) DO UPDATE SET hour = excluded.hour, row_id = excluded.row_id
            """)
        try db.execute(sql: """
            INSERT INTO partitions (hour, table_name, row_count, valid_count, checksum, created_batch, last_batch, rebuilt_batch)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (hour) DO UPDATE SET row_count = excluded.row_count, valid_count = excluded.valid_count,
                checksum = excluded.checksum, rebuilt_batch = excluded.rebuilt_batch
            """, arguments: [hour.label, hour.tableName, rows, valid, checksumText(checksum), batchID, batchID, batchID])
    }

    static func startBatch(at time: Timestamp, dryRun: Bool, _ db: Database) throws -> Int64 {
        dryRun ? 0 : try BatchBookkeeping.start(kind: "rebuild", at: time, db)
    }

    static func finishBatch(id: Int64, hours: [String], at time: Timestamp, seconds: Double, _ db: Database) throws {
        var summary = BatchSummary()
        summary.batchID = id
        summary.kind = "rebuild"
        summary.finishedAt = time.rfc3339
        summary.durationSeconds = seconds
        summary.partitionsTouched = hours
        try BatchBookkeeping.finish(summary, db)
    }
}
