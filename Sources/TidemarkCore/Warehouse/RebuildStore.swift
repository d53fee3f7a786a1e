import GRDB

/// SQL of `tidemark rebuild`: which archived files feed an hour, and the hour's bookkeeping once
/// its table is patched (`PartitionPatch` writes the rows).
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

    /// Waiting tombstones that met their event in `hour`: no longer waiting, and their files
    /// now touch the hour (as ingest records when a tombstone's event arrives).
    static func settlePendingTombstones(_ settled: [(id: ExactText, files: [Int64])], hour: PartitionHour, _ db: Database) throws {
        let delete = try db.cachedStatement(sql: "DELETE FROM pending_tombstones WHERE event_id = ?")
        let touch = try db.cachedStatement(sql: "INSERT INTO file_hours (file_id, hour) VALUES (?, ?) ON CONFLICT DO NOTHING")
        for (id, files) in settled {
            try delete.execute(arguments: [id.text])
            for file in files { try touch.execute(arguments: [file, hour.label]) }
        }
    }

    /// Lookup entries (both trees) naming an hour that has no table: they point at nothing.
    /// Removed unless `dryRun`; returns how many there were.
    static func dropLookupEntries(naming hour: PartitionHour, dryRun: Bool, _ db: Database) throws -> Int {
        let count = try Int.fetchOne(db, sql: """
            SELECT (SELECT COUNT(*) FROM event_index WHERE hour = ?1) + (SELECT COUNT(*) FROM event_index_recent WHERE hour = ?1)
            """, arguments: [hour.hoursSinceEpoch]) ?? 0
        if count > 0 && !dryRun {
            try db.execute(sql: "DELETE FROM event_index WHERE hour = ?", arguments: [hour.hoursSinceEpoch])
            try db.execute(sql: "DELETE FROM event_index_recent WHERE hour = ?", arguments: [hour.hoursSinceEpoch])
        }
        return count
    }

    /// Every hour with anything to rebuild: registered partitions, and hours that the ledger's
    /// file index or the lookup trees name (a partition's row may have been lost with its table).
    static func allHours(_ db: Database) throws -> [PartitionHour] {
        var hours = Set(try String.fetchAll(db, sql: "SELECT hour FROM partitions UNION SELECT DISTINCT hour FROM file_hours").compactMap(PartitionHour.parse))
        for hour in try Int.fetchAll(db, sql: "SELECT DISTINCT hour FROM event_index UNION SELECT DISTINCT hour FROM event_index_recent") {
            hours.insert(PartitionHour(hoursSinceEpoch: hour))
        }
        return hours.sorted()
    }

    /// Hours that hold anything a rebuild could act on: a partition row, an applied file in the
    /// file index, a lookup entry or a table. An hour outside this set has nothing to rebuild.
    static func hoursHoldingAnything(_ db: Database) throws -> Set<Int> {
        var hours = Set(try allHours(db).map(\.hoursSinceEpoch))
        for table in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'events\\_%' ESCAPE '\\'") {
            if let hour = PartitionHour.fromTableName(table) { hours.insert(hour.hoursSinceEpoch) }
        }
        return hours
    }

    /// Applied files whose deliveries touched any of these hours (the file → hours index).
    static func files(touching hours: [PartitionHour], dataFolder: String, _ db: Database) throws -> [SourceFile] {
        guard !hours.isEmpty else { return [] }
        let list = hours.map { "'\($0.label)'" }.joined(separator: ",") // labels are built from integers
        return try Row.fetchAll(db, sql: """
            SELECT f.file_id, f.name, f.location, f.sha256, f.batch_id, f.watermark_before, f.lines_read, f.source_path FROM ingested_files f
            WHERE f.status = 'applied' AND f.file_id IN (SELECT file_id FROM file_hours WHERE hour IN (\(list)))
            ORDER BY f.file_id
            """).map {
                SourceFile(fileID: $0[0], name: $0[1], location: Ledger.currentPath(of: $0[2], dataFolder: dataFolder), sha256: $0[3], batchID: $0[4],
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

    /// The deletions of the rows of `hour`'s table that are deleted (`is_valid` 0). Under the
    /// merge rule a deletion only grows, so a rebuild that folds one of those events as valid,
    /// or deleted otherwise, may not have read its whole history (the files of an hour it moved
    /// through, when `event_moves` lost the row).
    static func deletions(in hour: PartitionHour, _ db: Database) throws -> StoredDeletions {
        var out = StoredDeletions()
        guard try db.tableExistsFast(hour.tableName) else { return out }
        let rows = try Row.fetchCursor(db, sql: "SELECT event_id, deleted_by, deleted_at FROM \(hour.tableName) WHERE is_valid = 0")
        while let row = try rows.next() {
            out.add(row[0], Deletion(kind: row[1], deletedAt: (row[2] as String?).flatMap { try? Timestamp.parse($0).get() }))
        }
        return out
    }

    /// The hours these files touched (`file_hours`), in hours since the epoch. A file that
    /// moved an event touched both hours, so following files and hours in turn reaches every
    /// file that holds a delivery of the event.
    static func hoursTouched(byFiles fileIDs: Set<Int64>, _ db: Database) throws -> Set<Int> {
        guard !fileIDs.isEmpty else { return [] }
        let list = fileIDs.map(String.init).joined(separator: ",")
        return Set(try String.fetchAll(db, sql: "SELECT DISTINCT hour FROM file_hours WHERE file_id IN (\(list))")
            .compactMap { PartitionHour.parse($0)?.hoursSinceEpoch })
    }

    static func rejectedLines(in fileIDs: [Int64], _ db: Database) throws -> [Int64: Set<Int>] {
        try ValidationQueries.rejectedLineNumbers(in: fileIDs, db)
    }

    /// Where `event_index` places each of these events (nil where it has no entry). Pass them
    /// in byte order: the lookups then walk the index once.
    static func indexLocations(of ids: [ExactText], _ db: Database) throws -> [(hour: Int, rowID: Int64)?] {
        let select = try FastStatement(db, sql: "SELECT hour, row_id FROM event_index WHERE event_id = ?")
        var out: [(hour: Int, rowID: Int64)?] = []
        out.reserveCapacity(ids.count)
        for id in ids {
            select.reset()
            try select.bind(1, id.text)
            out.append(try select.step() ? (Int(select.int64(0)), select.int64(1)) : nil)
        }
        select.reset()
        return out
    }

    /// The hours other than `hour` whose tables hold a row of any of `ids`, found by event_id:
    /// each hourly table is scanned once, joined with the ids put in a temporary table. Only
    /// for events whose lookup entry was lost (in a sound database every row has one).
    static func otherHoursHolding(_ ids: [ExactText], except hour: PartitionHour, _ db: Database) throws -> [ExactText: Set<Int>] {
        let others = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'events_[0-9]*'")
            .compactMap(PartitionHour.fromTableName).filter { $0 != hour }
        guard !ids.isEmpty, !others.isEmpty else { return [:] }
        try db.execute(sql: "CREATE TEMP TABLE IF NOT EXISTS rebuild_unindexed (event_id TEXT PRIMARY KEY) WITHOUT ROWID")
        try db.execute(sql: "DELETE FROM temp.rebuild_unindexed")
        let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO temp.rebuild_unindexed (event_id) VALUES (?)")
        for id in ids { try insert.execute(arguments: [id.text]) }
        // An event with a row in this hour's own table (its entry lost, its row where it was):
        // not looked for elsewhere. One scan of this hour spares one of every other hour when
        // a whole hour's entries were lost.
        if try db.tableExistsFast(hour.tableName) {
            let here = try String.fetchAll(db, sql: "SELECT p.event_id FROM \(hour.tableName) p JOIN temp.rebuild_unindexed u ON u.event_id = p.event_id")
            let remove = try db.cachedStatement(sql: "DELETE FROM temp.rebuild_unindexed WHERE event_id = ?")
            for id in here { try remove.execute(arguments: [id]) }
            if try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM temp.rebuild_unindexed") == 0 { return [:] }
        }
        var found: [ExactText: Set<Int>] = [:]
        for other in others {
            let rows = try String.fetchCursor(db, sql: "SELECT p.event_id FROM \(other.tableName) p JOIN temp.rebuild_unindexed u ON u.event_id = p.event_id")
            while let id = try rows.next() { found[ExactText(id), default: []].insert(other.hoursSinceEpoch) }
        }
        try db.execute(sql: "DELETE FROM temp.rebuild_unindexed")
        return found
    }

    /// After a rebuild, points the lookup of events that left `hour` at the row they have in the
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

    /// Sets the hour's counts, checksum and new rows' lookup entries once its table has been
    /// patched, inside the caller's transaction (which also rewrote the hour's summary): readers
    /// see the old partition or the new one, and a crash leaves the old one. Rows with a row_id
    /// above `newRowIDsAbove` are the ones the patch added; the others kept the row_id
    /// `event_index` already names.
    static func finishPatch(_ hour: PartitionHour, rows: Int, valid: Int, checksum: UInt64,
                            newRowIDsAbove: Int64, batchID: Int64, _ db: Database) throws {
        let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(hour.tableName)") ?? -1
        guard count == rows else {
            throw TidemarkError("rebuild", hour.label, cause: "the rebuilt hour has \(count) rows where \(rows) were rebuilt; nothing was changed (rolled back)",
                                hint: "run 'tidemark validate --hour \(hour.label)' and report this as a bug with its output", exit: .ioError)
        }
        FaultPoint.hit("rebuild-before-commit")
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

/// An hour's stored deletions, compactly (an hour may hold a million rows): by a hash of the
/// event_id (this process's: the set lives in one run). Two deleted events with one hash make
/// their entry ambiguous (nil), and so does a deletion stored in a form no fold gives
/// (damaged): an event meeting such an entry, or a valid event sharing a deleted one's hash,
/// is only folded again, which costs time and changes nothing.
struct StoredDeletions {
    private var byHash: [Int: Deletion?] = [:]

    var isEmpty: Bool { byHash.isEmpty }

    mutating func add(_ eventID: String, _ deletion: Deletion?) {
        let key = ExactText(eventID).hashValue
        // A second entry under one hash (two rows of one event, or two events alike): ambiguous.
        byHash.updateValue(byHash.index(forKey: key) == nil ? deletion : nil, forKey: key)
    }

    /// Whether the hour may hold `eventID` deleted by a kind `folded` lacks, or earlier than
    /// `folded` (or at all, when it is nil): the fold then missed part of the event's history,
    /// since joining the stored deletion would change it. (A fold that shows more than the row
    /// read more history: the row is what is wrong.)
    func lacks(_ eventID: ExactText, in folded: Deletion?) -> Bool {
        guard let entry = byHash[eventID.hashValue] else { return false }
        guard let stored = entry, let folded else { return true }
        return folded.joined(with: stored) != folded
    }
}
