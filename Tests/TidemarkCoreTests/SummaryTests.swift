import Foundation
import GRDB
import Logging
import Testing
@testable import TidemarkCore

/// `hourly_summary` moves with each transaction's rows (no rescans of the hour); these tests
/// hold it to a fresh recomputation through deletions, moves and user changes, and through the
/// upgrade of a database written before `summary_users` existed.
@Suite struct SummaryTests {
    typealias SummaryRow = [String]

    func text(_ value: DatabaseValue) -> String {
        String.fromDatabaseValue(value) ?? Int64.fromDatabaseValue(value).map(String.init) ?? "NULL"
    }

    func stored(_ f: TestFolder) throws -> [SummaryRow] {
        try f.query { db in
            try Row.fetchAll(db, sql: """
                SELECT hour, event_type, valid_events, distinct_users, deleted_events, late_events FROM hourly_summary ORDER BY hour, event_type
                """).map { row in (0..<6).map { text(row[$0]) } }
        }
    }

    func fresh(_ f: TestFolder) throws -> [SummaryRow] {
        try f.query { db in
            var rows: [SummaryRow] = []
            for label in try String.fetchAll(db, sql: "SELECT hour FROM partitions ORDER BY hour") {
                let hour = PartitionHour.parse(label)!
                rows += try Row.fetchAll(db, sql: Summaries.freshSummarySQL(hour) + " ORDER BY event_type",
                                         arguments: [label]).map { row in (0..<6).map { text(row[$0]) } }
            }
            return rows
        }
    }

    @Test func summaryFollowsDeletionsMovesAndUserChanges() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [
            recordLine("a", user: "u1", type: "view", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
            recordLine("b", user: "u1", type: "view", time: "2025-07-30T10:01:00Z", received: "2025-07-30T10:01:00Z"),
            recordLine("c", user: "u2", type: "click", time: "2025-07-30T10:02:00Z", received: "2025-07-30T10:02:00Z"),
            recordLine("d", user: "u3", type: "scroll", time: "2025-07-30T10:03:00Z", received: "2025-07-30T10:03:00Z"),
        ])
        try f.ingest()
        #expect(try stored(f) == [
            ["2025-07-30T10", "click", "1", "1", "0", "0"],
            ["2025-07-30T10", "scroll", "1", "1", "0", "0"],
            ["2025-07-30T10", "view", "2", "1", "0", "0"],
        ])
        // a: tombstone; b: flag (u1 has no valid view left); c: moved to 12:00 (no click left
        // at 10:00); d: newer delivery from another user.
        f.land("2.ndjson.gz", [
            tombstoneLine("a"),
            recordLine("b", user: "u1", type: "view", time: "2025-07-30T10:01:00Z", received: "2025-07-30T10:05:00Z", valid: false),
            recordLine("c", user: "u2", type: "click", time: "2025-07-30T12:00:00Z", received: "2025-07-30T10:06:00Z"),
            recordLine("d", user: "u4", type: "scroll", time: "2025-07-30T10:03:00Z", received: "2025-07-30T10:07:00Z"),
        ])
        try f.ingest()
        let expected: [SummaryRow] = [
            ["2025-07-30T10", "scroll", "1", "1", "0", "0"],
            ["2025-07-30T10", "view", "0", "0", "2", "0"],
            ["2025-07-30T12", "click", "1", "1", "0", "0"],
        ]
        #expect(try stored(f) == expected)
        #expect(try fresh(f) == expected)
        let zeroUsers = try f.integer("SELECT COUNT(*) FROM summary_users WHERE valid_events <= 0")
        #expect(zeroUsers == 0)
        let users = try f.query { try String.fetchAll($0, sql: "SELECT hour || ' ' || event_type || ' ' || user_id FROM summary_users ORDER BY 1") }
        #expect(users == ["2025-07-30T10 scroll u4", "2025-07-30T12 click u2"])
    }

    @Test func producedDataSummariesEqualARecomputationAfterEveryBatch() throws {
        let f = TestFolder()
        let run = try Binary.run(["produce", "--fast", "--count", "6000", "--rate", "2", "--file-seconds", "30", "--seed", "11", "--start", "2025-07-30T09:40:00Z",
                                  "--landing", f.root + "/source", "--sent-log", f.sent])
        #expect(run.status == 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: f.root + "/source").sorted()
        // Several batches of uneven size, so that corrections meet rows committed earlier.
        var start = 0
        for size in [3, 1, 7, 2, 40, files.count] where start < files.count {
            for name in files[start..<min(files.count, start + size)] {
                try FileManager.default.moveItem(atPath: f.root + "/source/" + name, toPath: f.landing + "/" + name)
            }
            start += size
            try f.ingest()
            #expect(try stored(f) == fresh(f))
        }
        #expect(try stored(f).count > 10)
    }

    @Test func aTypeThatComesAndGoesWithinOneTransactionLeavesNoRow() throws {
        // A file over 100,000 lines is applied in slices of about 100,000 lines inside one
        // transaction: the only "rare" event of 10:00 is created in the first slice and moved
        // to 12:00 in the last, so the hour's net change for "rare" is zero.
        let f = TestFolder()
        var lines = [recordLine("x", type: "rare", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")]
        for n in 0..<210_000 {
            lines.append(recordLine("v\(n)", user: "u\(n % 50)", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z"))
        }
        lines.append(recordLine("x", type: "rare", time: "2025-07-30T12:00:00Z", received: "2025-07-30T12:00:00Z"))
        f.land("big.ndjson.gz", lines)
        let s = try f.ingest()
        #expect(s.lines.new == 210_001 && s.lines.updated == 1)
        #expect(try stored(f) == fresh(f))
        #expect(try stored(f).map { "\($0[0]) \($0[1])" } == ["2025-07-30T11 view", "2025-07-30T12 rare"])
    }

    @Test func validateChecksThePerUserCounts() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [
            recordLine("a", user: "u1", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
            recordLine("b", user: "u1", time: "2025-07-30T10:01:00Z", received: "2025-07-30T10:01:00Z"),
        ])
        try f.ingest()
        let queue = try DatabaseQueue(path: f.database)
        try queue.write { try $0.execute(sql: "UPDATE summary_users SET valid_events = 1") }
        try queue.close()
        let report = try ValidateJob.run(ValidateOptions(dataFolder: f.data), logger: quietLogger)
        let failed = report.checks.filter { $0.status == .failed }
        #expect(failed.map(\.name) == ["hourly_summary"])
        #expect(failed.first?.findings.joined().contains("view/u1: summary_users has 1") == true)
    }

    @Test func upgradeFromV1RecomputesEveryHour() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [
            recordLine("a", user: "u1", type: "view", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
            recordLine("b", user: "u2", type: "view", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z"),
        ])
        try f.ingest()
        let expected = try stored(f)
        // Turn the database back into what v1 wrote: no summary_users, dirty_hours present,
        // and a summary that the old end-of-batch step had not written yet.
        let queue = try DatabaseQueue(path: f.database)
        try queue.write { db in
            try db.execute(sql: """
                DROP TABLE summary_users;
                CREATE TABLE dirty_hours (hour TEXT PRIMARY KEY, batch_id INTEGER NOT NULL);
                INSERT INTO dirty_hours VALUES ('2025-07-30T11', 1);
                DELETE FROM hourly_summary WHERE hour = '2025-07-30T11';
                DELETE FROM grdb_migrations WHERE identifier = 'v2-incremental-summaries';
                """)
        }
        try queue.close()
        f.land("2.ndjson.gz", [recordLine("c", user: "u3", type: "view", time: "2025-07-30T11:30:00Z", received: "2025-07-30T11:30:00Z")])
        try f.ingest()
        #expect(try stored(f) == fresh(f))
        #expect(try stored(f) == [expected[0], ["2025-07-30T11", "view", "2", "2", "0", "0"]])
        let dirtyGone = try f.query { try !$0.tableExists("dirty_hours") }
        #expect(dirtyGone)
    }
}
