import GRDB

/// The warehouse schema: ordered, named migrations. Users query these tables; the README
/// documents them. Partition tables (`events_YYYYMMDDHH`) are created on demand by
/// `PartitionTable.createSQL`.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-ledger-partitions-summary") { db in
            try db.execute(sql: """
                CREATE TABLE batches (
                    batch_id INTEGER PRIMARY KEY,
                    kind TEXT NOT NULL,                 -- ingest, backfill, rebuild
                    status TEXT NOT NULL,               -- running, succeeded, failed, dry-run
                    started_at TEXT NOT NULL,
                    finished_at TEXT,
                    duration_seconds REAL,
                    files_applied INTEGER NOT NULL DEFAULT 0,
                    files_duplicate INTEGER NOT NULL DEFAULT 0,
                    files_quarantined INTEGER NOT NULL DEFAULT 0,
                    lines_read INTEGER NOT NULL DEFAULT 0,
                    events_new INTEGER NOT NULL DEFAULT 0,
                    events_updated INTEGER NOT NULL DEFAULT 0,
                    events_duplicate INTEGER NOT NULL DEFAULT 0,
                    events_stale INTEGER NOT NULL DEFAULT 0,
                    deleted_by_flag INTEGER NOT NULL DEFAULT 0,
                    deleted_by_tombstone INTEGER NOT NULL DEFAULT 0,
                    tombstones_pending INTEGER NOT NULL DEFAULT 0,
                    late_events INTEGER NOT NULL DEFAULT 0,
                    rejected_lines INTEGER NOT NULL DEFAULT 0,
                    partitions_touched INTEGER NOT NULL DEFAULT 0,
                    lag_p50_seconds REAL, lag_p95_seconds REAL, lag_max_seconds REAL,
                    delay_p50_seconds REAL, delay_p95_seconds REAL, delay_max_seconds REAL,
                    backlog_files INTEGER, backlog_bytes INTEGER,
                    watermark TEXT,
                    error TEXT
                );
                CREATE TABLE ingested_files (
                    file_id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    sha256 TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('applied', 'duplicate_content', 'quarantined')),
                    reason TEXT,
                    duplicate_of INTEGER,
                    batch_id INTEGER NOT NULL,
                    lines_read INTEGER NOT NULL DEFAULT 0,
                    lines_new INTEGER NOT NULL DEFAULT 0,
                    lines_updated INTEGER NOT NULL DEFAULT 0,
                    lines_duplicate INTEGER NOT NULL DEFAULT 0,
                    lines_stale INTEGER NOT NULL DEFAULT 0,
                    lines_deleted INTEGER NOT NULL DEFAULT 0,
                    lines_rejected INTEGER NOT NULL DEFAULT 0,
                    late_events INTEGER NOT NULL DEFAULT 0,
                    watermark_before TEXT,
                    ingested_at TEXT NOT NULL,
                    source_path TEXT NOT NULL,
                    location TEXT NOT NULL
                );
                CREATE UNIQUE INDEX ingested_files_applied_content ON ingested_files(sha256) WHERE status = 'applied';
                CREATE INDEX ingested_files_name ON ingested_files(name, size);
                CREATE TABLE file_hours (
                    file_id INTEGER NOT NULL,
                    hour TEXT NOT NULL,
                    PRIMARY KEY (hour, file_id)
                ) WITHOUT ROWID;
                CREATE TABLE event_index (
                    event_id TEXT PRIMARY KEY,
                    hour INTEGER NOT NULL
                ) WITHOUT ROWID;
                -- Rows that changed hour (a newer delivery moved event_time): rebuild follows
                -- them to find every delivery of an event.
                CREATE TABLE event_moves (
                    event_id TEXT NOT NULL,
                    from_hour INTEGER NOT NULL,
                    to_hour INTEGER NOT NULL,
                    batch_id INTEGER NOT NULL
                );
                CREATE INDEX event_moves_event ON event_moves(event_id);
                CREATE INDEX event_moves_to ON event_moves(to_hour);
                CREATE TABLE pending_tombstones (
                    event_id TEXT NOT NULL,
                    file_id INTEGER NOT NULL,
                    deleted_at TEXT,
                    PRIMARY KEY (event_id, file_id)
                ) WITHOUT ROWID;
                CREATE TABLE partitions (
                    hour TEXT PRIMARY KEY,
                    table_name TEXT NOT NULL UNIQUE,
                    row_count INTEGER NOT NULL DEFAULT 0,
                    valid_count INTEGER NOT NULL DEFAULT 0,
                    checksum TEXT NOT NULL DEFAULT '0000000000000000',
                    created_batch INTEGER,
                    last_batch INTEGER,
                    rebuilt_batch INTEGER
                );
                CREATE TABLE hourly_summary (
                    hour TEXT NOT NULL,
                    event_type TEXT NOT NULL,
                    valid_events INTEGER NOT NULL,
                    distinct_users INTEGER NOT NULL,
                    deleted_events INTEGER NOT NULL,
                    late_events INTEGER NOT NULL,
                    computed_batch INTEGER NOT NULL,
                    PRIMARY KEY (hour, event_type)
                );
                CREATE TABLE dirty_hours (hour TEXT PRIMARY KEY, batch_id INTEGER NOT NULL);
                CREATE TABLE rejected_lines (
                    file_id INTEGER NOT NULL,
                    file_name TEXT NOT NULL,
                    line_number INTEGER NOT NULL,
                    reason TEXT NOT NULL,
                    raw_text TEXT,
                    batch_id INTEGER NOT NULL,
                    PRIMARY KEY (file_id, line_number)
                );
                CREATE TABLE pipeline_state (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v2-incremental-summaries") { db in
            // Summaries now move with each transaction's rows instead of being recomputed at
            // the end of a batch, so `dirty_hours` goes; every hour is recomputed once here.
            try db.execute(sql: """
                CREATE TABLE summary_users (
                    hour TEXT NOT NULL,
                    event_type TEXT NOT NULL,
                    user_id TEXT NOT NULL,
                    valid_events INTEGER NOT NULL,
                    PRIMARY KEY (hour, event_type, user_id)
                ) WITHOUT ROWID;
                DROP TABLE dirty_hours;
                """)
            // A migration's SQL is written out as it was at its version, so later changes to
            // the code cannot change what upgrading an old database does.
            let batchID = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(batch_id), 0) FROM batches") ?? 0
            for label in try String.fetchAll(db, sql: "SELECT hour FROM partitions ORDER BY hour") {
                guard let hour = PartitionHour.parse(label) else { continue }
                try db.execute(sql: "DELETE FROM hourly_summary WHERE hour = ?", arguments: [label])
                guard try db.tableExists(hour.tableName) else { continue }
                try db.execute(sql: """
                    INSERT INTO summary_users (hour, event_type, user_id, valid_events)
                    SELECT ?, event_type, user_id, COUNT(*) FROM \(hour.tableName) WHERE is_valid = 1 GROUP BY event_type, user_id
                    """, arguments: [label])
                try db.execute(sql: """
                    INSERT INTO hourly_summary (hour, event_type, valid_events, distinct_users, deleted_events, late_events, computed_batch)
                    SELECT ?, event_type, SUM(is_valid), COUNT(DISTINCT CASE WHEN is_valid = 1 THEN user_id END),
                           SUM(1 - is_valid), SUM(is_late * is_valid), \(batchID)
                    FROM \(hour.tableName) GROUP BY event_type
                    """, arguments: [label])
            }
        }
        migrator.registerMigration("v3-rowid-partitions") { db in
            // Partition rows are appended under an integer key and `event_index` names each
            // event's row: one random-key B-tree per new event instead of two.
            try db.execute(sql: Schema.v3LookupTree("event_index_v3"))
            let columns = Schema.v3PartitionColumns
            var hours: [PartitionHour] = []
            for label in try String.fetchAll(db, sql: "SELECT hour FROM partitions ORDER BY hour") {
                guard let hour = PartitionHour.parse(label), try db.tableExists(hour.tableName) else { continue }
                let old = hour.tableName + "__v2"
                try db.execute(sql: "ALTER TABLE \(hour.tableName) RENAME TO \(old)")
                try db.execute(sql: Schema.v3PartitionTable(hour.tableName))
                try db.execute(sql: "INSERT INTO \(hour.tableName) (\(columns)) SELECT \(columns) FROM \(old) ORDER BY event_id")
                try db.execute(sql: "DROP TABLE \(old)")
                // The row the old lookup named first; an event that (against the rules) had
                // rows in two hours keeps the one the old lookup chose.
                try db.execute(sql: """
                    INSERT INTO event_index_v3 (event_id, hour, row_id)
                    SELECT p.event_id, \(hour.hoursSinceEpoch), p.row_id FROM \(hour.tableName) p
                    JOIN event_index i ON i.event_id = p.event_id AND i.hour = \(hour.hoursSinceEpoch)
                    ON CONFLICT (event_id) DO NOTHING
                    """)
                hours.append(hour)
            }
            // Then rows the old lookup did not name (validate reports them as before).
            for hour in hours {
                try db.execute(sql: """
                    INSERT INTO event_index_v3 (event_id, hour, row_id) SELECT event_id, \(hour.hoursSinceEpoch), row_id FROM \(hour.tableName) WHERE true
                    ON CONFLICT (event_id) DO NOTHING
                    """)
            }
            try db.execute(sql: """
                DROP TABLE event_index;
                ALTER TABLE event_index_v3 RENAME TO event_index;
                """)
        }
        migrator.registerMigration("v4-recent-index") { db in
            try db.execute(sql: Schema.v3LookupTree("event_index_recent"))
        }
        migrator.registerMigration("v5-ledger-content-index") { db in
            // Backfill looks every source file up by content whatever its status; the partial
            // index of applied files does not serve that, and a long backfill scanned the ledger.
            try db.execute(sql: "CREATE INDEX ingested_files_content ON ingested_files(sha256)")
        }
        migrator.registerMigration("v6-ledger-location-index") { db in
            // A new file's archive name must be one no ledger row names, even when that row's
            // file is not there yet (committed, then killed before its move).
            try db.execute(sql: "CREATE INDEX ingested_files_location ON ingested_files(location)")
        }
        return migrator
    }
}

/// One hourly partition table. Its name comes only from the hour's integers. Rows are
/// appended under `row_id` (an explicit INTEGER PRIMARY KEY, so VACUUM keeps it); `event_index`
/// maps each event_id to its hour and row, and is what keeps one row per event.
enum PartitionTable {
    /// Today's partitions have the layout migration v3 introduced.
    static func createSQL(_ hour: PartitionHour) -> String { Schema.v3PartitionTable(hour.tableName, ifNotExists: true) }

    static let columns = Schema.v3PartitionColumns
    /// `columns` one by one: event_id, then the data columns (what a rebuild reports as changed:
    /// everything the merge rule decides, and is_late), then first_batch and last_batch.
    static let columnNames = columns.components(separatedBy: ", ")
    /// Where the data columns are in `columnNames`.
    static let dataColumns = 1..<(columnNames.count - 2)
    /// Where first_batch is in `columnNames`.
    static let firstBatchColumn = columnNames.count - 2
    /// `?1, ?2, …`, one parameter per column of `columns`, in order: statements bind a row by
    /// `PartitionRow.encode`'s column numbers.
    static let parameters = columnNames.indices.map { "?\($0 + 1)" }.joined(separator: ", ")
    /// The parameter that follows them (a row_id).
    static let nextParameter = "?\(columnNames.count + 1)"
    /// `name = ?n` for each column an update in place changes, numbered as in `parameters`:
    /// all but event_id (which names the row with its row_id) and first_batch (which stays).
    static let updatedInPlace = columnNames.enumerated()
        .filter { $0.offset != 0 && $0.offset != firstBatchColumn }
        .map { "\($0.element) = ?\($0.offset + 1)" }.joined(separator: ", ")

    /// The largest row_id in the hour's table, 0 when it is empty: SQLite gives the next row
    /// appended this plus one.
    static func maxRowID(_ hour: PartitionHour, _ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(row_id), 0) FROM \(hour.tableName)") ?? 0
    }
}

/// Table layouts as the migration that introduced them wrote them. A migration uses its own
/// version's layout, so later code cannot change what upgrading an old database does; a new
/// layout is a new function beside these (and a new migration), never an edit of one.
extension Schema {
    static func v3PartitionTable(_ name: String, ifNotExists: Bool = false) -> String {
        """
        CREATE TABLE \(ifNotExists ? "IF NOT EXISTS " : "")\(name) (
            row_id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            event_time TEXT NOT NULL,
            received_time TEXT,
            is_valid INTEGER NOT NULL CHECK (is_valid IN (0, 1)),
            deleted_by TEXT,
            deleted_at TEXT,
            is_late INTEGER NOT NULL DEFAULT 0,
            extra TEXT,
            first_batch INTEGER NOT NULL,
            last_batch INTEGER NOT NULL
        )
        """
    }

    static let v3PartitionColumns =
        "event_id, user_id, event_type, event_time, received_time, is_valid, deleted_by, deleted_at, is_late, extra, first_batch, last_batch"

    /// Both lookup trees (`event_index` since v3, `event_index_recent` since v4) have this shape,
    /// so that a fold moves entries as they are.
    static func v3LookupTree(_ name: String) -> String {
        "CREATE TABLE \(name) (event_id TEXT PRIMARY KEY, hour INTEGER NOT NULL, row_id INTEGER NOT NULL) WITHOUT ROWID"
    }
}
