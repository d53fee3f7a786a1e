import Foundation
import GRDB

/// SQL of the `batches` table and the cumulative counters in `pipeline_state`.
enum BatchLog {
    static func start(kind: String, startedAt: Timestamp, _ db: Database) throws -> Int64 {
        try db.execute(sql: "INSERT INTO batches (kind, status, started_at) VALUES (?, 'running', ?)",
                       arguments: [kind, startedAt.rfc3339])
        return db.lastInsertedRowID
    }

    /// Batches left `running` by a process that died are marked failed.
    static func markAbandoned(_ db: Database) throws {
        try db.execute(sql: "UPDATE batches SET status = 'failed', error = 'process ended before the batch finished' WHERE status = 'running'")
    }

    /// The cumulative counters one batch adds, as of `s` (`partitions`: hours touched so far).
    static func counterValues(_ s: BatchSummary, partitions: Int) -> [String: Int] {
        [
            "files_applied_total": s.filesApplied, "files_duplicate_content_total": s.filesDuplicate,
            "files_quarantined_total": s.filesQuarantined, "lines_read_total": s.lines.read,
            "events_new_total": s.lines.new, "events_updated_total": s.lines.updated,
            "events_duplicate_total": s.lines.duplicate, "events_stale_total": s.lines.stale,
            "deletions_flag_total": s.lines.deletedByFlag, "deletions_tombstone_total": s.lines.deletedByTombstone,
            "late_events_total": s.lateEvents, "rejected_lines_total": s.lines.rejected,
            "partitions_reprocessed_total": partitions,
        ]
    }

    /// A running batch's counts so far, written in the transaction that commits them: a batch
    /// killed later keeps on its row (then marked failed) and in the counters what it committed.
    /// Returns the counter values now counted, for the next call (or `finish`).
    static func recordProgress(_ s: BatchSummary, partitions: Int, counted: [String: Int], _ db: Database) throws -> [String: Int] {
        try writeCounts(s, partitions: partitions, db)
        let now = counterValues(s, partitions: partitions)
        try addCounters(now, minus: counted, db)
        return now
    }

    /// The batch row's counts of files, lines and hours.
    private static func writeCounts(_ s: BatchSummary, partitions: Int, _ db: Database) throws {
        try db.execute(sql: """
            UPDATE batches SET files_applied = ?, files_duplicate = ?, files_quarantined = ?, lines_read = ?, events_new = ?,
                events_updated = ?, events_duplicate = ?, events_stale = ?, deleted_by_flag = ?, deleted_by_tombstone = ?,
                late_events = ?, rejected_lines = ?, partitions_touched = ?
            WHERE batch_id = ?
            """, arguments: [
                s.filesApplied, s.filesDuplicate, s.filesQuarantined, s.lines.read, s.lines.new, s.lines.updated,
                s.lines.duplicate, s.lines.stale, s.lines.deletedByFlag, s.lines.deletedByTombstone, s.lateEvents,
                s.lines.rejected, partitions, s.batchID,
            ])
    }

    private static func addCounters(_ values: [String: Int], minus counted: [String: Int], _ db: Database) throws {
        // Every key, even with nothing to add: a counter exists from the first batch on.
        for (key, value) in values.sorted(by: { $0.key < $1.key }) {
            try db.execute(sql: """
                INSERT INTO pipeline_state (key, value) VALUES (?, ?)
                ON CONFLICT (key) DO UPDATE SET value = value + excluded.value
                """, arguments: ["counter." + key, value - counted[key, default: 0]])
        }
    }

    /// Closes a batch's row and adds to the counters what `recordProgress` has not (`counted`).
    static func finish(_ s: BatchSummary, counted: [String: Int] = [:], _ db: Database) throws {
        try writeCounts(s, partitions: s.partitionsTouched.count, db)
        try db.execute(sql: """
            UPDATE batches SET status = ?, finished_at = ?, duration_seconds = ?, tombstones_pending = ?,
                lag_p50_seconds = ?, lag_p95_seconds = ?, lag_max_seconds = ?,
                delay_p50_seconds = ?, delay_p95_seconds = ?, delay_max_seconds = ?, backlog_files = ?, backlog_bytes = ?,
                watermark = ?
            WHERE batch_id = ?
            """, arguments: [
                s.status, s.finishedAt, s.durationSeconds, s.tombstonesPending,
                s.lag.p50, s.lag.p95, s.lag.max, s.eventDelay.p50, s.eventDelay.p95, s.eventDelay.max,
                s.backlogFiles, s.backlogBytes, s.watermark, s.batchID,
            ])
        var values = counterValues(s, partitions: s.partitionsTouched.count)
        values["batches_total"] = 1
        try addCounters(values, minus: counted, db)
        // The pipeline's last success (freshness): a run that brought data in, not a rebuild,
        // which must not make a failing ingest look alive.
        if s.status == "succeeded" && s.kind != "rebuild" {
            try setState("last_success_at", s.finishedAt, db)
        }
    }

    static func fail(batchID: Int64, error: String, _ db: Database) throws {
        try db.execute(sql: "UPDATE batches SET status = 'failed', error = ? WHERE batch_id = ?", arguments: [error, batchID])
    }

    /// The data folder's id as its database keeps it (`DataFolderIdentity`), nil before the
    /// first ingest recorded it.
    static func dataFolderID(_ db: Database) throws -> String? {
        try state("data_folder_id", db).flatMap(String.fromDatabaseValue)
    }

    static func setDataFolderID(_ id: String, _ db: Database) throws {
        try db.inTransaction {
            try setState("data_folder_id", id, db)
            return .commit
        }
    }

    static func state(_ key: String, _ db: Database) throws -> DatabaseValue? {
        try DatabaseValue.fetchOne(db, sql: "SELECT value FROM pipeline_state WHERE key = ?", arguments: [key])
    }

    static func setState(_ key: String, _ value: DatabaseValueConvertible?, _ db: Database) throws {
        try db.execute(sql: "INSERT INTO pipeline_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       arguments: [key, value])
    }
}
