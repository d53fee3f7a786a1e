import GRDB

/// Derived data: `hourly_summary` and the per-partition counts. Recomputed only for the
/// hours a batch touched (`dirty_hours`), never for the others.
enum Summaries {
    /// Recomputes `hourly_summary` for every dirty hour and clears them. Runs at the end of
    /// each batch, and at the start of the next one if a crash came in between.
    @discardableResult
    static func recomputeDirtyHours(batchID: Int64, _ db: Database) throws -> [PartitionHour] {
        let labels = try String.fetchAll(db, sql: "SELECT hour FROM dirty_hours ORDER BY hour")
        var hours: [PartitionHour] = []
        for label in labels {
            guard let hour = PartitionHour.parse(label) else { continue }
            try recompute(hour, batchID: batchID, db)
            hours.append(hour)
        }
        try db.execute(sql: "DELETE FROM dirty_hours")
        return hours
    }

    static func recompute(_ hour: PartitionHour, batchID: Int64, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM hourly_summary WHERE hour = ?", arguments: [hour.label])
        guard try db.tableExistsFast(hour.tableName) else { return }
        try db.execute(sql: freshSummarySQL(hour, batchID: batchID, insert: true), arguments: [hour.label])
    }

    /// The summary of one hour computed from its partition; validate compares with it.
    static func freshSummarySQL(_ hour: PartitionHour, batchID: Int64?, insert: Bool) -> String {
        let select = """
            SELECT ? AS hour, event_type, SUM(is_valid) AS valid_events,
                   COUNT(DISTINCT CASE WHEN is_valid = 1 THEN user_id END) AS distinct_users,
                   SUM(1 - is_valid) AS deleted_events, SUM(is_late * is_valid) AS late_events\(batchID.map { ", \($0)" } ?? "")
            FROM \(hour.tableName) GROUP BY event_type
            """
        return insert
            ? "INSERT INTO hourly_summary (hour, event_type, valid_events, distinct_users, deleted_events, late_events, computed_batch) \(select)"
            : select
    }
}
