import GRDB

/// Derived data: `hourly_summary`, kept current by every batch in the transaction that
/// changes the rows. Counts move by the changed rows' deltas; distinct users come from
/// `summary_users` (valid events per hour, event type and user), so a small batch into a
/// large hour never rescans the hour. Rebuild clears an hour's rows and adds the rows it
/// writes, pass by pass; the upgrade from v1 recomputes every hour once.
enum Summaries {
    /// Adds changes of one hour to its summary rows. Distinct users move by ±1 as a user's
    /// valid-event count in `summary_users` leaves or returns to zero, so the cost follows the
    /// users that changed, never the number of users in the hour.
    static func apply(_ delta: HourDelta, hour: String, batchID: Int64, _ db: Database) throws {
        if delta.types.isEmpty && delta.users.isEmpty { return }
        // Through the C API (`FastStatement`): a large batch changes thousands of (type, user)
        // counts per hour and commit, and boxing each one's arguments cost more than SQLite.
        let addUser = try FastStatement(db, sql: """
            INSERT INTO summary_users (hour, event_type, user_id, valid_events) VALUES (?1, ?2, ?3, ?4)
            ON CONFLICT (hour, event_type, user_id) DO UPDATE SET valid_events = valid_events + excluded.valid_events
            RETURNING valid_events
            """)
        let dropUser = try FastStatement(db, sql: "DELETE FROM summary_users WHERE hour = ?1 AND event_type = ?2 AND user_id = ?3")
        // In the table's key order, so that the changes walk its B-tree once from one end.
        let changed = delta.users.filter { $0.value != 0 }.sorted { a, b in
            let byType = compareBytes(a.key.eventType, b.key.eventType)
            return byType != 0 ? byType < 0 : utf8Less(a.key.userID, b.key.userID)
        }
        var distinct: [ExactText: Int64] = [:]
        for (key, change) in changed {
            addUser.reset()
            try addUser.bind(1, hour)
            try addUser.bind(2, key.eventType)
            try addUser.bind(3, key.userID)
            try addUser.bind(4, change)
            // The upsert is done at the first step, which returns the count it left.
            let after = try addUser.step() ? addUser.int64(0) : change
            addUser.reset()
            let before = after - change
            if after <= 0 {
                dropUser.reset()
                try dropUser.bind(1, hour)
                try dropUser.bind(2, key.eventType)
                try dropUser.bind(3, key.userID)
                try dropUser.run()
            }
            if before <= 0 && after > 0 { distinct[ExactText(key.eventType), default: 0] += 1 }
            if before > 0 && after <= 0 { distinct[ExactText(key.eventType), default: 0] -= 1 }
        }
        let addCounts = try db.cachedStatement(sql: """
            INSERT INTO hourly_summary (hour, event_type, valid_events, distinct_users, deleted_events, late_events, computed_batch)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (hour, event_type) DO UPDATE SET valid_events = valid_events + excluded.valid_events,
                distinct_users = distinct_users + excluded.distinct_users, deleted_events = deleted_events + excluded.deleted_events,
                late_events = late_events + excluded.late_events, computed_batch = excluded.computed_batch
            """)
        // A type with no rows left in the hour has no summary row (as GROUP BY gives none). The
        // net change of a transaction can be zero for a type that came and went within it.
        let dropEmpty = try db.cachedStatement(sql: """
            DELETE FROM hourly_summary WHERE hour = ? AND event_type = ? AND valid_events = 0 AND deleted_events = 0
            """)
        for type in Set(delta.types.keys).union(distinct.keys).sorted(by: { utf8Less($0.text, $1.text) }) {
            let counts = delta.types[type] ?? SummaryCounts()
            try addCounts.execute(arguments: [hour, type.text, counts.valid, distinct[type] ?? 0, counts.deleted, counts.late, batchID])
            if counts.valid <= 0 && counts.deleted <= 0 { try dropEmpty.execute(arguments: [hour, type.text]) }
        }
    }

    /// Empties one hour's summary rows (rebuild then adds the rows it writes, pass by pass).
    static func clear(_ hour: PartitionHour, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM hourly_summary WHERE hour = ?", arguments: [hour.label])
        try db.execute(sql: "DELETE FROM summary_users WHERE hour = ?", arguments: [hour.label])
    }

    /// One summary row as validate reports it (`ValidationQueries.storedSummary`,
    /// `freshSummary`, `HourDelta.summaryLines`).
    static func line(type: String, valid: Int64, users: Int64, deleted: Int64, late: Int64) -> String {
        "\(type): valid \(valid), users \(users), deleted \(deleted), late \(late)"
    }

    /// The summary of one hour computed from its partition; validate compares with it.
    static func freshSummarySQL(_ hour: PartitionHour) -> String {
        """
        SELECT ? AS hour, event_type, SUM(is_valid) AS valid_events,
               COUNT(DISTINCT CASE WHEN is_valid = 1 THEN user_id END) AS distinct_users,
               SUM(1 - is_valid) AS deleted_events, SUM(is_late * is_valid) AS late_events
        FROM \(hour.tableName) GROUP BY event_type
        """
    }
}

extension HourDelta {
    /// The summary rows these counts make, in event-type byte order (SQLite's BINARY
    /// collation), as `Summaries.line` writes them: for the rows of a whole hour, counted with
    /// sign +1, exactly what `ValidationQueries.freshSummary` computes in SQL. Distinct users
    /// per type are the (type, user) pairs with valid events.
    func summaryLines() -> [String] {
        var distinct: [ExactText: Int64] = [:]
        for (key, events) in users where events > 0 { distinct[ExactText(key.eventType), default: 0] += 1 }
        return types.keys.sorted { utf8Less($0.text, $1.text) }.map { type in
            let counts = types[type]!
            return Summaries.line(type: type.text, valid: counts.valid, users: distinct[type] ?? 0, deleted: counts.deleted, late: counts.late)
        }
    }
}
