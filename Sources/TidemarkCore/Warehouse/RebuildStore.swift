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
    }

    static func allHours(_ db: Database) throws -> [PartitionHour] {
        try String.fetchAll(db, sql: "SELECT hour FROM partitions ORDER BY hour").compactMap(PartitionHour.parse)
    }

    /// Applied files whose deliveries touched any of these hours (the file → hours index).
    static func files(touching hours: [PartitionHour], _ db: Database) throws -> [SourceFile] {
        guard !hours.isEmpty else { return [] }
        let list = hours.map { "'\($0.label)'" }.joined(separator: ",") // labels are built from integers
        return try Row.fetchAll(db, sql: """
            SELECT f.file_id, f.name, f.location, f.sha256, f.batch_id, f.watermark_before FROM ingested_files f
            WHERE f.status = 'applied' AND f.file_id IN (SELECT file_id FROM file_hours WHERE hour IN (\(list)))
            ORDER BY f.file_id
            """).map {
                SourceFile(fileID: $0[0], name: $0[1], location: $0[2], sha256: $0[3], batchID: $0[4],
                           watermarkBefore: ($0[5] as String?).flatMap { try? Timestamp.parse($0).get() })
            }
    }

    /// Hours these events lived in before they moved into `hours`.
    static func earlierHours(of events: Set<String>, movedInto hours: [PartitionHour], _ db: Database) throws -> [String: Set<Int>] {
        guard !hours.isEmpty else { return [:] }
        let list = hours.map { String($0.hoursSinceEpoch) }.joined(separator: ",")
        var out: [String: Set<Int>] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT event_id, from_hour FROM event_moves WHERE to_hour IN (\(list))") {
            let id: String = row[0]
            if events.contains(id) { out[id, default: []].insert(row[1]) }
        }
        // Follow chains: a move into an earlier hour from yet another hour.
        var frontier = Set(out.values.flatMap { $0 })
        var seen = Set(hours.map(\.hoursSinceEpoch))
        while !frontier.isEmpty {
            let next = frontier.subtracting(seen)
            seen.formUnion(next)
            guard !next.isEmpty else { break }
            frontier = []
            let nextList = next.map(String.init).joined(separator: ",")
            for row in try Row.fetchAll(db, sql: "SELECT event_id, from_hour FROM event_moves WHERE to_hour IN (\(nextList))") {
                let id: String = row[0]
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

    /// Current rows of an hour (empty when the table is missing).
    static func currentRows(_ hour: PartitionHour, _ db: Database) throws -> [String: PartitionRow] {
        guard try db.tableExistsFast(hour.tableName) else { return [:] }
        var rows: [String: PartitionRow] = [:]
        try ValidationQueries.forEachRow(hour.tableName, db) { row, id in
            if let row { rows[id] = row }
        }
        return rows
    }

    /// Builds the hour's rows in a shadow table, checks them, swaps the shadow in for the old
    /// table, and recomputes the hour's counts, checksum and summary: one transaction, so
    /// readers see the old partition or the new one, and a crash leaves the old one.
    static func swap(_ hour: PartitionHour, rows: [PartitionRow], batchID: Int64, _ db: Database) throws -> (checksum: String, rows: Int, valid: Int) {
        let shadow = hour.tableName + "__rebuild"
        var result = (checksum: "", rows: 0, valid: 0)
        try db.inTransaction(.immediate) {
            try db.execute(sql: "DROP TABLE IF EXISTS \(shadow)")
            try db.execute(sql: PartitionTable.createSQL(hour).replacingOccurrences(of: hour.tableName, with: shadow))
            let insert = try db.makeStatement(sql: "INSERT INTO \(shadow) (\(PartitionTable.columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            var checksum: UInt64 = 0
            var valid = 0
            for row in rows {
                guard row.record.eventTime.hour == hour else {
                    throw TidemarkError("rebuild", hour.label, cause: "internal check failed: event \(row.record.eventID) belongs to \(row.record.eventTime.hour)", exit: .ioError)
                }
                try insert.execute(arguments: row.arguments)
                checksum = checksum &+ row.contentHash
                if row.state.isValid { valid += 1 }
            }
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(shadow)") ?? -1
            guard count == rows.count else {
                throw TidemarkError("rebuild", hour.label, cause: "shadow table has \(count) rows, expected \(rows.count)", exit: .ioError)
            }
            FaultPoint.hit("rebuild-swap")
            try db.execute(sql: "DROP TABLE IF EXISTS \(hour.tableName)")
            try db.execute(sql: "ALTER TABLE \(shadow) RENAME TO \(hour.tableName)")
            let upsert = try db.makeStatement(sql: "INSERT INTO event_index (event_id, hour) VALUES (?, ?) ON CONFLICT (event_id) DO UPDATE SET hour = excluded.hour")
            for row in rows { try upsert.execute(arguments: [row.record.eventID, hour.hoursSinceEpoch]) }
            result = (checksumText(checksum), rows.count, valid)
            try db.execute(sql: """
                INSERT INTO partitions (hour, table_name, row_count, valid_count, checksum, created_batch, last_batch, rebuilt_batch)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (hour) DO UPDATE SET row_count = excluded.row_count, valid_count = excluded.valid_count,
                    checksum = excluded.checksum, rebuilt_batch = excluded.rebuilt_batch
                """, arguments: [hour.label, hour.tableName, rows.count, valid, result.checksum, batchID, batchID, batchID])
            try Summaries.recompute(hour, batchID: batchID, db)
            return .commit
        }
        return result
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
        try db.inTransaction(.immediate) {
            try BatchLog.finish(summary, db)
            return .commit
        }
    }
}
