import Foundation
import GRDB
import Logging
import Testing
@testable import TidemarkCore

/// Databases written by earlier versions open and upgrade in place, keeping every row.
@Suite struct MigrationTests {
    /// Partition statements number their parameters from the layout: an update in place sets
    /// every column but event_id and first_batch, each at its insert position.
    @Test func anUpdateInPlaceSetsEveryColumnButEventIDAndFirstBatch() {
        #expect(PartitionTable.updatedInPlace == "user_id = ?2, event_type = ?3, event_time = ?4, received_time = ?5, is_valid = ?6, "
            + "deleted_by = ?7, deleted_at = ?8, is_late = ?9, extra = ?10, last_batch = ?12")
        #expect(PartitionTable.nextParameter == "?13")
    }

    @Test func readersOfANotYetUpgradedDatabaseSayHowToUpgrade() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        try f.ingest()
        let queue = try DatabaseQueue(path: f.database)
        // What v3 wrote: one lookup tree, no v4 migration.
        try queue.write { try $0.execute(sql: """
            INSERT INTO event_index SELECT * FROM event_index_recent;
            DROP TABLE event_index_recent;
            DELETE FROM grdb_migrations WHERE identifier = 'v4-recent-index';
            """) }
        try queue.close()
        let validate = try Binary.run(["validate", "--data", f.data])
        #expect(validate.status == 74)
        #expect(validate.stderr.contains("not upgraded yet") && validate.stderr.contains("tidemark ingest"), "\(validate.stderr)")
        try f.ingest()
        let again = try Binary.run(["validate", "--data", f.data])
        #expect(again.status == 0, "\(again.stdout)")
    }

    @Test func v2PartitionsKeyedByEventIDUpgradeToRowIDPartitions() throws {
        let f = try Self.ingested()
        let before = try f.eventRows()
        let queue = try DatabaseQueue(path: f.database)
        try queue.write(Self.rewriteAsV2)
        try queue.close()
        f.land("2.ndjson.gz", [
            recordLine("a", user: "u9", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:30:00Z"),
            recordLine("d", user: "u4", time: "2025-07-30T11:05:00Z", received: "2025-07-30T11:05:00Z"),
        ])
        let s = try f.ingest()
        #expect(s.lines.updated == 1 && s.lines.new == 1)
        let after = try f.eventRows()
        #expect(after.count == before.count + 1)
        #expect(try f.row("a")?.userID == "u9")
        #expect(try f.row("b")?.isValid == 0)
        let columns = try f.query { try $0.columns(in: "events_2025073010").map(\.name) }
        #expect(columns.first == "row_id")
        let indexColumns = try f.query { try $0.columns(in: "event_index").map(\.name) }
        #expect(indexColumns == ["event_id", "hour", "row_id"])
        let lookupEntries = try f.integer("SELECT (SELECT COUNT(*) FROM event_index) + (SELECT COUNT(*) FROM event_index_recent)")
        #expect(lookupEntries == 4)
        var options = ValidateOptions(dataFolder: f.data)
        options.replay = true
        let report = try ValidateJob.run(options, logger: quietLogger)
        #expect(report.checks.filter { $0.status == .failed }.isEmpty, "\(report.checks.filter { $0.status == .failed })")
        #expect(report.checks.count > 10)
    }

    /// A folder with one ingested file: events in two hours, one deleted by tombstone.
    static func ingested(also more: [String] = []) throws -> TestFolder {
        let f = TestFolder()
        f.land("1.ndjson.gz", [
            recordLine("a", user: "u1", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
            recordLine("b", user: "u2", time: "2025-07-30T10:10:00Z", received: "2025-07-30T10:10:00Z"),
            recordLine("c", user: "u3", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z"),
            tombstoneLine("b"),
        ] + more)
        try f.ingest()
        return f
    }

    /// Rewrites the tables as v2 had them: partitions WITHOUT ROWID keyed by event_id, one
    /// event_index without row ids, no recent index.
    static func rewriteAsV2(_ db: Database) throws {
        for table in try String.fetchAll(db, sql: "SELECT table_name FROM partitions") {
            try db.execute(sql: """
                CREATE TABLE v2 (
                    event_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, event_type TEXT NOT NULL, event_time TEXT NOT NULL,
                    received_time TEXT, is_valid INTEGER NOT NULL CHECK (is_valid IN (0, 1)), deleted_by TEXT, deleted_at TEXT,
                    is_late INTEGER NOT NULL DEFAULT 0, extra TEXT, first_batch INTEGER NOT NULL, last_batch INTEGER NOT NULL
                ) WITHOUT ROWID;
                INSERT INTO v2 SELECT \(PartitionTable.columns) FROM \(table);
                DROP TABLE \(table);
                ALTER TABLE v2 RENAME TO \(table);
                """)
        }
        try db.execute(sql: """
            CREATE TABLE v2_index (event_id TEXT PRIMARY KEY, hour INTEGER NOT NULL) WITHOUT ROWID;
            INSERT INTO v2_index SELECT event_id, hour FROM event_index UNION ALL SELECT event_id, hour FROM event_index_recent;
            DROP TABLE event_index;
            DROP TABLE event_index_recent;
            ALTER TABLE v2_index RENAME TO event_index;
            DELETE FROM grdb_migrations WHERE identifier IN ('v3-rowid-partitions', 'v4-recent-index');
            """)
    }

    /// A v1 database (v2's layout, summaries recomputed at the end of each batch from
    /// `dirty_hours`, no `summary_users`) upgrades with every hour's summary recomputed once.
    @Test func v1SummariesAreRecomputedOnUpgrade() throws {
        let f = try Self.ingested(also: [recordLine("e", user: "u2", time: "2025-07-30T10:20:00Z", received: "2025-07-30T10:20:00Z")])
        let before = try f.eventRows()
        let summaries = "SELECT hour, event_type, valid_events, distinct_users, deleted_events, late_events FROM hourly_summary ORDER BY 1, 2"
        let expected = try f.query { try Row.fetchAll($0, sql: summaries).map(\.description) }
        let queue = try DatabaseQueue(path: f.database)
        try queue.write { db in
            try Self.rewriteAsV2(db)
            try db.execute(sql: """
                DROP TABLE summary_users;
                UPDATE hourly_summary SET valid_events = valid_events + 100;
                INSERT INTO hourly_summary VALUES ('2025-07-30T10', 'stale-type', 5, 1, 0, 0, 1);
                CREATE TABLE dirty_hours (hour TEXT PRIMARY KEY, batch_id INTEGER NOT NULL);
                DELETE FROM grdb_migrations WHERE identifier = 'v2-incremental-summaries';
                """)
        }
        try queue.close()
        let s = try f.ingest() // nothing new: only the upgrade
        #expect(s.filesApplied == 0)
        #expect(try f.eventRows() == before)
        #expect(try f.query { try Row.fetchAll($0, sql: summaries).map(\.description) } == expected)
        #expect(try f.query { try $0.tableExists("dirty_hours") } == false)
        let report = try ValidateJob.run(ValidateOptions(dataFolder: f.data), logger: quietLogger)
        #expect(report.failedChecks == [], "\(report.failedChecks)")
    }
}
