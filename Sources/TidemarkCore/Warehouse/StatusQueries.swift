import GRDB

/// Read-only queries for status, freshness and metrics.
enum StatusQueries {
    static func counters(_ db: Database) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT key, value FROM pipeline_state WHERE key LIKE 'counter.%'") {
            let key: String = row[0]
            out[String(key.dropFirst("counter.".count))] = row[1]
        }
        return out
    }

    /// The lag and delay of the newest ingest batch that read events (nil: none has).
    static func latestTimings(_ db: Database) throws -> MetricsExporter.StoredTimings? {
        // Ingest's: a backfill of old files has a lag of days that says nothing of the pipeline.
        guard let row = try Row.fetchOne(db, sql: """
            SELECT lag_p50_seconds, lag_p95_seconds, lag_max_seconds, delay_p50_seconds, delay_p95_seconds, delay_max_seconds
            FROM batches WHERE lag_max_seconds IS NOT NULL AND kind = 'ingest' ORDER BY batch_id DESC LIMIT 1
            """) else { return nil }
        func percentiles(_ first: Int) -> BatchSummary.Percentiles {
            var p = BatchSummary.Percentiles()
            (p.p50, p.p95, p.max) = (row[first], row[first + 1], row[first + 2])
            return p
        }
        return MetricsExporter.StoredTimings(lag: percentiles(0), eventDelay: percentiles(3))
    }

    /// The landing backlog the last ingest left (files, bytes), for a metrics file a backfill writes.
    static func lastIngestBacklog(_ db: Database) throws -> (files: Int, bytes: Int64)? {
        try Row.fetchOne(db, sql: """
            SELECT backlog_files, backlog_bytes FROM batches WHERE kind = 'ingest' AND backlog_files IS NOT NULL ORDER BY batch_id DESC LIMIT 1
            """).map { ($0[0], $0[1] ?? 0) }
    }

    static func lastSuccess(_ db: Database) throws -> Timestamp? {
        guard let value = try BatchLog.state("last_success_at", db), let text = String.fromDatabaseValue(value) else { return nil }
        return try? Timestamp.parse(text).get()
    }
}

/// Data behind `tidemark report` and `tidemark status`.
enum ReportQueries {
    struct HourRow { var hour: String; var valid: Int; var deleted: Int; var late: Int }
    struct BatchRow {
        var batchID: Int64; var kind: String; var status: String; var startedAt: String; var duration: Double?
        var files: Int; var duplicateFiles: Int; var quarantined: Int; var lines: Int; var new: Int; var updated: Int
        var duplicate: Int; var stale: Int; var deletedFlag: Int; var deletedTombstone: Int; var late: Int; var rejected: Int
        var partitions: Int; var lagP50: Double?; var lagP95: Double?; var lagMax: Double?; var pending: Int
        var backlogFiles: Int?; var backlogBytes: Int64?; var error: String?
    }

    static func hours(_ db: Database) throws -> [HourRow] {
        try Row.fetchAll(db, sql: """
            SELECT hour, SUM(valid_events), SUM(deleted_events), SUM(late_events) FROM hourly_summary GROUP BY hour ORDER BY hour
            """).map { HourRow(hour: $0[0], valid: $0[1], deleted: $0[2], late: $0[3]) }
    }

    /// The most recent batches, oldest first. `skippingIdle`: leave out runs that found
    /// nothing to do (a cron minute with an empty landing folder), which would push the
    /// batches that did something out of view.
    static func batches(limit: Int?, skippingIdle: Bool = false, _ db: Database) throws -> [BatchRow] {
        let rows = try Row.fetchAll(db, sql: """
            SELECT batch_id, kind, status, started_at, duration_seconds, files_applied, files_duplicate, files_quarantined,
                   lines_read, events_new, events_updated, events_duplicate, events_stale, deleted_by_flag, deleted_by_tombstone,
                   late_events, rejected_lines, partitions_touched, lag_p50_seconds, lag_p95_seconds, lag_max_seconds,
                   tombstones_pending, backlog_files, backlog_bytes, error
            FROM batches
            \(skippingIdle ? "WHERE NOT (status = 'succeeded' AND files_applied + files_duplicate + files_quarantined + lines_read + partitions_touched = 0 AND COALESCE(backlog_files, 0) = 0)" : "")
            ORDER BY batch_id DESC \(limit.map { "LIMIT \($0)" } ?? "")
            """)
        return rows.reversed().map {
            BatchRow(batchID: $0[0], kind: $0[1], status: $0[2], startedAt: $0[3], duration: $0[4], files: $0[5], duplicateFiles: $0[6],
                     quarantined: $0[7], lines: $0[8], new: $0[9], updated: $0[10], duplicate: $0[11], stale: $0[12],
                     deletedFlag: $0[13], deletedTombstone: $0[14], late: $0[15], rejected: $0[16], partitions: $0[17],
                     lagP50: $0[18], lagP95: $0[19], lagMax: $0[20], pending: $0[21], backlogFiles: $0[22], backlogBytes: $0[23], error: $0[24])
        }
    }

    static func recentlyReprocessed(limit: Int, _ db: Database) throws -> [(hour: String, batch: Int64)] {
        try Row.fetchAll(db, sql: "SELECT hour, MAX(computed_batch) AS b FROM hourly_summary GROUP BY hour ORDER BY b DESC, hour DESC LIMIT \(limit)")
            .map { ($0[0], $0[1]) }
    }

    /// Quarantined files whose quarantine is not settled (`Ledger.quarantineIsSettled`), newest first.
    static func quarantined(limit: Int, dataFolder: String, _ db: Database) throws -> [(name: String, reason: String, location: String)] {
        let retried = try Ledger.retriedQuarantines(db)
        var found: [(name: String, reason: String, location: String)] = []
        let rows = try Row.fetchCursor(db, sql: "SELECT file_id, name, reason, location FROM ingested_files WHERE status = 'quarantined' ORDER BY file_id DESC")
        while found.count < limit, let row = try rows.next() {
            let location = Ledger.currentPath(of: row[3], dataFolder: dataFolder)
            guard !Ledger.quarantineIsSettled(fileID: row[0], location: location, retried: retried) else { continue }
            found.append((row[1], (row[2] as String?) ?? "", location))
        }
        return found
    }

    /// The most recent rejected lines, newest first.
    static func rejectedLines(limit: Int, _ db: Database) throws -> [(batch: Int64, file: String, line: Int, reason: String, raw: String?)] {
        try Row.fetchAll(db, sql: """
            SELECT batch_id, file_name, line_number, reason, raw_text FROM rejected_lines
            ORDER BY batch_id DESC, file_id DESC, line_number DESC LIMIT ?
            """, arguments: [limit]).map { ($0[0], $0[1], $0[2], $0[3], $0[4]) }
    }

    /// The newest data ingested: the newest received_time, or for rows without one (a source
    /// may send none) their event_time, so that such a source is not reported stalled forever.
    /// Rows dated after `notAfter` (a producer clock running ahead, up to the 24 h the parser
    /// allows) are left out, so that they cannot hold the data age at "fresh" through a stall.
    static func newestReceivedTime(notAfter: Timestamp? = nil, _ db: Database) throws -> Timestamp? {
        var newest: Timestamp?
        // The newest partitions whose table exists (one lost is reported, not fatal), none of
        // them for an hour after `notAfter`.
        for table in try String.fetchAll(db, sql: """
            SELECT p.table_name FROM partitions p JOIN sqlite_master m ON m.type = 'table' AND m.name = p.table_name
            WHERE p.hour <= ? ORDER BY p.hour DESC LIMIT 3
            """, arguments: [notAfter.map { $0.hour.label } ?? "9999"]) {
            if let text = try String.fetchOne(db, sql: "SELECT MAX(t) FROM (SELECT COALESCE(received_time, event_time) AS t FROM \(table)) WHERE t <= ?",
                                              arguments: [(notAfter ?? Timestamp(nanosecondsSinceEpoch: .max)).rfc3339]),
               let t = try? Timestamp.parse(text).get() {
                newest = max(newest ?? t, t)
            }
        }
        return newest
    }

    /// Hours registered in `partitions` whose table is missing.
    static func hoursWithoutTable(_ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: """
            SELECT hour FROM partitions WHERE table_name NOT IN (SELECT name FROM sqlite_master WHERE type = 'table') ORDER BY hour
            """)
    }

    static func lastSuccessfulBatchEnd(_ db: Database) throws -> Timestamp? {
        guard let text = try String.fetchOne(db, sql: "SELECT MAX(finished_at) FROM batches WHERE status = 'succeeded' AND kind != 'rebuild'") else { return nil }
        return try? Timestamp.parse(text).get()
    }

    static func totals(_ db: Database) throws -> (events: Int, valid: Int, partitions: Int, pending: Int, files: Int) {
        let row = try Row.fetchOne(db, sql: """
            SELECT (SELECT COALESCE(SUM(row_count), 0) FROM partitions), (SELECT COALESCE(SUM(valid_count), 0) FROM partitions),
                   (SELECT COUNT(*) FROM partitions), (SELECT COUNT(DISTINCT event_id) FROM pending_tombstones),
                   (SELECT COUNT(*) FROM ingested_files)
            """)!
        return (row[0], row[1], row[2], row[3], row[4])
    }
}
