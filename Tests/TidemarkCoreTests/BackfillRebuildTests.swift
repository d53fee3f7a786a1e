import Foundation
import GRDB
import Logging
import Testing
@testable import TidemarkCore

@Suite struct RebuildTests {
    let quiet = quietLogger

    func rebuild(_ f: TestFolder, _ hours: ClosedRange<PartitionHour>? = nil, dryRun: Bool = false, eventsPerPass: Int = 250_000) throws -> RebuildReport {
        var o = RebuildOptions(dataFolder: f.data)
        o.eventsPerPass = eventsPerPass
        o.hours = hours
        o.dryRun = dryRun
        return try RebuildJob.run(o, logger: quiet)
    }


    func checksums(_ f: TestFolder) throws -> [String] {
        try f.query { try Row.fetchAll($0, sql: "SELECT hour, row_count, valid_count, checksum FROM partitions ORDER BY hour").map { "\($0)" } }
    }

    @Test func rebuildAllLeavesEveryChecksumUnchanged() throws {
        let f = try ProducedPipeline(events: 2000, seed: 21).copy()
        let before = try checksums(f)
        let rowsBefore = try f.eventRows()
        let report = try rebuild(f)
        #expect(report.hours.count >= 2)
        #expect(report.hours.allSatisfy { $0.outcome == "unchanged" && $0.checksumBefore == $0.checksumAfter }, "\(report.text)")
        #expect(try checksums(f) == before)
        #expect(try f.eventRows() == rowsBefore)
        // In bounded memory: many passes over a hash split of event ids give the same partitions.
        try f.write { db in
            for table in try String.fetchAll(db, sql: "SELECT table_name FROM partitions") { try db.execute(sql: "DELETE FROM \(table)") }
        }
        let passes = try rebuild(f, eventsPerPass: 150)
        #expect(passes.hours.contains { $0.outcome == "repaired" })
        #expect(try checksums(f) == before)
        #expect(try f.eventRows() == rowsBefore)
    }

    @Test func eventsThatMovedHoursAndWereDeletedElsewhereRebuildExactly() throws {
        let f = TestFolder()
        // e1: created in hour 10, deleted by flag there, then moved to hour 11 by a newer delivery.
        f.land("1.ndjson.gz", [recordLine("e1", user: "a", time: "2025-07-30T10:10:00Z", received: "2025-07-30T10:10:00Z"),
                               recordLine("e2", time: "2025-07-30T10:20:00Z", received: "2025-07-30T10:20:00Z")])
        f.land("2.ndjson.gz", [recordLine("e1", user: "a", time: "2025-07-30T10:10:00Z", received: "2025-07-30T10:11:00Z", valid: false)])
        f.land("3.ndjson.gz", [recordLine("e1", user: "b", time: "2025-07-30T11:05:00Z", received: "2025-07-30T11:06:00Z"),
                               tombstoneLine("pending-only")])
        // e3: tombstone first, event later in hour 11.
        f.land("4.ndjson.gz", [tombstoneLine("e3", received: "2025-07-30T11:00:00Z")])
        f.land("5.ndjson.gz", [recordLine("e3", time: "2025-07-30T11:30:00Z", received: "2025-07-30T11:01:00Z")])
        try f.ingest()
        #expect(try f.row("e1")?.table == "events_2025073011")
        #expect(try f.row("e1")?.isValid == 0)
        let before = try checksums(f)
        let rows = try f.eventRows()
        let h11 = PartitionHour.parse("2025-07-30T11")!
        try f.execute("DELETE FROM events_2025073011")
        let report = try rebuild(f, h11...h11)
        #expect(report.hours.first?.outcome == "repaired")
        #expect(report.hours.first?.added == 2)
        #expect(try checksums(f) == before)
        #expect(try f.eventRows() == rows)
        // The hour is right now, the event that moved into it included: only read.
        let again = try rebuild(f, h11...h11).hours.first
        #expect(again?.outcome == "unchanged" && again?.added == 0 && again?.changed == 0, "\(String(describing: again))")
    }

    @Test func droppedTableIsRestoredAndEditedRowRepaired() throws {
        let f = try ProducedPipeline(events: 1500, seed: 4).copy()
        let before = try checksums(f)
        let rows = try f.eventRows()
        let (_, table, hour) = try f.largestHour()
        #expect(hour.tableName == table)
        try f.execute("DROP TABLE \(table)")
        let dry = try rebuild(f, hour...hour, dryRun: true)
        #expect(dry.hours.first?.outcome == "would be restored")
        #expect(try f.query { try $0.tableExists(table) } == false)
        let restored = try rebuild(f, hour...hour)
        #expect(restored.hours.first?.outcome == "restored")
        #expect(try checksums(f) == before)
        #expect(try f.eventRows() == rows)

        try f.write { db in
            try db.execute(sql: "UPDATE \(table) SET user_id = 'tampered', is_valid = 1 - is_valid WHERE event_id IN (SELECT event_id FROM \(table) ORDER BY event_id LIMIT 3)")
        }
        let preview = try rebuild(f, hour...hour, dryRun: true)
        #expect(preview.hours.first?.changed == 3)
        let repaired = try rebuild(f, hour...hour)
        #expect(repaired.hours.first?.outcome == "repaired")
        #expect(try f.eventRows() == rows)
        var options = ValidateOptions(dataFolder: f.data)
        options.sentLogFolder = f.sent
        #expect(try ValidateJob.run(options, logger: quiet).ok)
    }

    /// `rebuild --all` covers an hour whose table and `partitions` row are both gone: the file
    /// index and the lookup still name it.
    @Test func rebuildAllRestoresAnHourWhosePartitionRowIsGone() throws {
        let f = try ProducedPipeline(events: 1500, seed: 4).copy()
        let before = try checksums(f)
        let rows = try f.eventRows()
        let (_, table, hour) = try f.largestHour()
        try f.write { db in
            try db.execute(sql: "DROP TABLE \(table)")
            try db.execute(sql: "DELETE FROM partitions WHERE hour = ?", arguments: [hour.label])
        }
        let report = try rebuild(f)
        #expect(report.hours.first { $0.hour == hour.label }?.outcome == "restored", "\(report.hours.map { ($0.hour, $0.outcome) })")
        #expect(try checksums(f) == before)
        #expect(try f.eventRows() == rows)
    }

    /// What rebuild calls a repair: a `partitions` row lost with its table intact, or a wrong
    /// `summary_users` row, is repaired (no row written); an hour only a damaged lookup entry
    /// names (no partition, no file) gets no empty table, and the report says there was nothing.
    @Test func rebuildNamesEveryRepairAndMakesNoEmptyPartition() throws {
        let f = try ProducedPipeline(events: 600, seed: 6).copy()
        let (_, table, hour) = try f.largestHour()
        try f.execute("DELETE FROM partitions WHERE hour = ?", [hour.label])
        #expect(try rebuild(f, hour...hour).hours.first?.outcome == "repaired")
        try f.execute("UPDATE summary_users SET valid_events = valid_events + 1 WHERE hour = ? AND user_id = (SELECT MIN(user_id) FROM summary_users WHERE hour = ?)", [hour.label, hour.label])
        #expect(try rebuild(f, hour...hour).hours.first?.outcome == "repaired")
        #expect(try rebuild(f, hour...hour).hours.first?.outcome == "unchanged")
        #expect(try f.query { try $0.tableExists(table) })
        try f.execute("INSERT INTO event_index (event_id, hour, row_id) VALUES ('stray', 0, 1)")
        let preview = try rebuild(f, dryRun: true)
        #expect(preview.hours.first { $0.hour == "1970-01-01T00" }?.outcome == "would be repaired")
        let all = try rebuild(f)
        let stray = all.hours.first { $0.hour == "1970-01-01T00" }
        #expect(stray?.outcome == "repaired" && stray?.removed == 1 && all.hoursWithoutData.isEmpty, "\(all.hours.map { ($0.hour, $0.outcome) })")
        #expect(try f.query { try $0.tableExists("events_1970010100") } == false)
        var check = ValidateOptions(dataFolder: f.data)
        check.sentLogFolder = f.sent
        #expect(try ValidateJob.run(check, logger: quiet).ok)
        // An hour asked for that nothing names is reported as such.
        #expect(try rebuild(f, PartitionHour(hoursSinceEpoch: 1)...PartitionHour(hoursSinceEpoch: 1)).hoursWithoutData == ["1970-01-01T01"])
        // A range of two years: the hours holding data are rebuilt, the other 17,000-odd are
        // reported without data (known from one look at what the database holds, not a query
        // per hour: a range of decades took seconds before), and the data hours' tables stay.
        let dataHours = try f.query { try String.fetchAll($0, sql: "SELECT hour FROM partitions ORDER BY hour") }
        let from = PartitionHour.parse("2025-01-01T00")!, to = PartitionHour.parse("2026-12-31T23")!
        let range = try rebuild(f, from...to)
        #expect(range.hours.map(\.hour) == dataHours && range.hours.allSatisfy { $0.outcome == "unchanged" }, "\(range.hours.map { ($0.hour, $0.outcome) })")
        #expect(range.hoursWithoutData.count == (to.hoursSinceEpoch - from.hoursSinceEpoch + 1) - dataHours.count)
        #expect(range.hoursWithoutData.first == "2025-01-01T00" && !range.hoursWithoutData.contains(dataHours[0]))
    }

    /// An event deleted in hour 09, then an older record of it dated hour 08 (stale: it
    /// changes nothing, but its file now names hour 08). With the event's lookup entries lost
    /// by hand, hour 08's files alone would place it there, valid: rebuild finds its row in
    /// another hour, folds that hour's files too, and leaves it deleted where it is.
    @Test func rebuildDoesNotResurrectAnEventWhoseLookupEntryWasLost() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e1", time: "2025-07-30T09:10:00Z", received: "2025-07-30T15:00:10Z")])
        f.land("2.ndjson.gz", [tombstoneLine("e1", received: "2025-07-30T15:00:20Z")])
        f.land("3.ndjson.gz", [recordLine("e1", time: "2025-07-30T08:10:00Z", received: "2025-07-30T15:00:00Z"),
                               recordLine("e2", time: "2025-07-30T08:20:00Z", received: "2025-07-30T15:00:30Z")])
        try f.ingest()
        #expect(try f.row("e1")?.table == "events_2025073009" && f.row("e1")?.isValid == 0)
        #expect(try Binary.run(["validate", "--data", f.data, "--replay"]).status == 0)
        try f.execute("DELETE FROM event_index WHERE event_id = 'e1'; DELETE FROM event_index_recent WHERE event_id = 'e1'")
        let report = try rebuild(f)
        #expect(!report.hours.contains { $0.hour == "2025-07-30T08" && $0.outcome != "unchanged" }, "\(report.hours.map { ($0.hour, $0.outcome) })")
        let copies = try f.query { db in
            try ["events_2025073008", "events_2025073009"].map { try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \($0) WHERE event_id = 'e1'") ?? 0 }
        }
        #expect(copies == [0, 1])
        #expect(try f.row("e1")?.isValid == 0 && f.row("e1")?.deletedBy == "tombstone")
        #expect(try f.integer("SELECT valid_events FROM hourly_summary WHERE hour = '2025-07-30T08'") == 1) // e2 only
        let after = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(after.status == 0, "\(after.stdout)")
        // Hour 08 alone, the entry lost again: the same.
        try f.execute("DELETE FROM event_index WHERE event_id = 'e1'; DELETE FROM event_index_recent WHERE event_id = 'e1'")
        let hour = PartitionHour.parse("2025-07-30T08").map { $0...$0 }
        #expect(try rebuild(f, hour).hours.first?.outcome == "unchanged")
        #expect(try f.integer("SELECT COUNT(*) FROM events_2025073008 WHERE event_id = 'e1'") == 0)
    }

    /// An event deleted in hour 10 (by a tombstone, or a record with is_valid false), then
    /// moved by newer records to hour 11 and on to 12, each file ingested in a run of its own;
    /// then its `event_moves` rows are lost by hand. Hour 12's files hold nothing that deletes
    /// it, so they alone would make it valid again. Its stored row is deleted, and a deletion
    /// never ends: rebuild follows the files that carry it through `file_hours` (a file that
    /// moved it touched both hours) back to the deleting file, and it stays deleted.
    @Test(arguments: [false, true]) func rebuildDoesNotResurrectAnEventWhoseMovesWereLost(byRecord: Bool) throws {
        let f = TestFolder()
        let deleting = byRecord ? recordLine("e1", time: "2025-07-30T10:15:00Z", received: "2025-07-30T10:20:00Z", valid: false)
            : tombstoneLine("e1", received: "2025-07-30T10:20:00Z")
        let lines = [recordLine("e1", time: "2025-07-30T10:15:00Z", received: "2025-07-30T10:15:01Z"), deleting,
                     recordLine("e1", time: "2025-07-30T11:05:00Z", received: "2025-07-30T10:30:00Z"),
                     recordLine("e1", time: "2025-07-30T12:05:00Z", received: "2025-07-30T10:40:00Z")]
        for (n, line) in lines.enumerated() {
            f.land("\(n).ndjson.gz", [line])
            try f.ingest()
        }
        #expect(try f.row("e1")?.table == "events_2025073012" && f.row("e1")?.isValid == 0)
        #expect(try f.integer("SELECT COUNT(*) FROM event_moves WHERE event_id = 'e1'") == 2)
        try f.execute("DELETE FROM event_moves")
        let hour = PartitionHour.parse("2025-07-30T12").map { $0...$0 }
        #expect(try rebuild(f, hour).hours.first?.outcome == "unchanged")
        #expect(try f.row("e1")?.isValid == 0 && f.row("e1")?.deletedBy == (byRecord ? "flag" : "tombstone"))
        let all = try rebuild(f)
        #expect(all.hours.allSatisfy { $0.outcome == "unchanged" }, "\(all.hours.map { ($0.hour, $0.outcome) })")
        #expect(try f.row("e1")?.table == "events_2025073012" && f.row("e1")?.isValid == 0)
        let check = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(check.status == 0, "\(check.stdout)")
        // A valid event's row made deleted by hand: folded again through its files, it is
        // still valid, and rebuild repairs the row.
        f.land("4.ndjson.gz", [recordLine("e2", time: "2025-07-30T12:30:00Z")])
        try f.ingest()
        try f.execute("UPDATE events_2025073012 SET is_valid = 0, deleted_by = 'tombstone' WHERE event_id = 'e2'")
        #expect(try rebuild(f, hour).hours.first?.outcome == "repaired")
        #expect(try f.row("e2")?.isValid == 1 && f.row("e2")?.deletedBy == nil && f.row("e1")?.isValid == 0)
    }

    /// The same with a deletion in each hour: a tombstone in hour 10, then, after the move, a
    /// record with is_valid false in hour 11. Hour 11's files alone fold it deleted by flag
    /// only, at the later time; rebuild follows its files back and keeps both deletions, at
    /// the earlier time.
    @Test func rebuildKeepsEveryDeletionOfAnEventWhoseMovesWereLost() throws {
        let f = TestFolder()
        let lines = [recordLine("e1", time: "2025-07-30T10:15:00Z", received: "2025-07-30T10:15:01Z"),
                     tombstoneLine("e1", received: "2025-07-30T10:20:00Z"),
                     recordLine("e1", time: "2025-07-30T11:05:00Z", received: "2025-07-30T10:30:00Z"),
                     recordLine("e1", time: "2025-07-30T11:05:00Z", received: "2025-07-30T10:25:00Z", valid: false)]
        for (n, line) in lines.enumerated() {
            f.land("\(n).ndjson.gz", [line])
            try f.ingest()
        }
        let stored = try f.query { try Row.fetchOne($0, sql: "SELECT deleted_by, deleted_at FROM events_2025073011 WHERE event_id = 'e1'").map { "\($0)" } }
        #expect(stored?.contains("flag+tombstone") == true && stored?.contains("2025-07-30T10:20:00") == true, "\(stored ?? "nil")")
        try f.execute("DELETE FROM event_moves")
        let all = try rebuild(f)
        #expect(all.hours.allSatisfy { $0.outcome == "unchanged" }, "\(all.hours.map { ($0.hour, $0.outcome) })")
        #expect(try f.query { try Row.fetchOne($0, sql: "SELECT deleted_by, deleted_at FROM events_2025073011 WHERE event_id = 'e1'").map { "\($0)" } } == stored)
    }

    /// What rebuild takes for a fold that missed part of an event's stored deletion: a kind
    /// the row has and the fold lacks, an earlier time, or no deletion at all; not a fold that
    /// shows more than the row (that row is what is wrong). An entry stored in a form no fold
    /// gives is always looked at again, and an event the hour does not hold deleted never.
    @Test func storedDeletionsSayWhenAFoldMissedPartOfOne() throws {
        let t = { (s: String) in try! Timestamp.parse(s).get() }
        var stored = StoredDeletions()
        stored.add("flagged", Deletion(byFlag: true, byTombstone: false, deletedAt: t("2025-07-30T10:00:00Z")))
        stored.add("both", Deletion(byFlag: true, byTombstone: true, deletedAt: t("2025-07-30T10:00:00Z")))
        stored.add("untimed", Deletion(byFlag: false, byTombstone: true, deletedAt: nil))
        stored.add("damaged", nil)
        let flagAt10 = Deletion(byFlag: true, byTombstone: false, deletedAt: t("2025-07-30T10:00:00Z"))
        // Stored twice (two rows of one event): ambiguous, so always looked at again.
        stored.add("twice", flagAt10)
        stored.add("twice", flagAt10)
        #expect(stored.lacks(ExactText("twice"), in: flagAt10))
        #expect(!stored.lacks(ExactText("flagged"), in: flagAt10))
        #expect(stored.lacks(ExactText("flagged"), in: nil))
        #expect(stored.lacks(ExactText("flagged"), in: Deletion(byFlag: true, byTombstone: false, deletedAt: t("2025-07-30T11:00:00Z"))))
        #expect(stored.lacks(ExactText("flagged"), in: Deletion(byFlag: true, byTombstone: false, deletedAt: nil)))
        #expect(!stored.lacks(ExactText("flagged"), in: Deletion(byFlag: true, byTombstone: true, deletedAt: t("2025-07-30T09:00:00Z"))))
        #expect(stored.lacks(ExactText("both"), in: flagAt10))
        #expect(!stored.lacks(ExactText("untimed"), in: Deletion(byFlag: false, byTombstone: true, deletedAt: t("2025-07-30T09:00:00Z"))))
        #expect(stored.lacks(ExactText("untimed"), in: flagAt10))
        #expect(stored.lacks(ExactText("damaged"), in: flagAt10))
        #expect(!stored.lacks(ExactText("valid"), in: nil) && !stored.lacks(ExactText("valid"), in: flagAt10))
    }

    /// The same event, its whole hour 13 dropped too: hour 12's rebuild, first in the run,
    /// cannot see where the event belongs and places it in 12; hour 13's rebuild then finds
    /// that copy stale, and the run rebuilds hour 12 once more. Hour by hour, the report names
    /// the hour left holding the copy.
    @Test func aStaleCopyLeftByAnEarlierHourIsRemovedInTheSameRun() throws {
        func damaged() throws -> TestFolder {
            let f = TestFolder()
            f.land("1.ndjson.gz", [recordLine("e22", time: "2025-07-30T13:47:53Z", received: "2025-07-30T15:04:53Z")])
            f.land("2.ndjson.gz", [recordLine("e22", time: "2025-07-30T12:13:28Z", received: "2025-07-30T15:02:04Z"),
                                   recordLine("e2", time: "2025-07-30T12:20:00Z", received: "2025-07-30T15:00:30Z")])
            f.land("3.ndjson.gz", [tombstoneLine("e22", received: "2025-07-30T15:05:31Z")])
            try f.ingest()
            #expect(try f.row("e22")?.table == "events_2025073013")
            try f.execute("DROP TABLE events_2025073013; DELETE FROM event_index WHERE event_id = 'e22'; DELETE FROM event_index_recent WHERE event_id = 'e22'")
            return f
        }
        func copies(_ f: TestFolder) throws -> [Int] {
            try f.query { db in
                try ["events_2025073012", "events_2025073013"].map {
                    try db.tableExists($0) ? Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \($0) WHERE event_id = 'e22'") ?? 0 : 0
                }
            }
        }
        let f = try damaged()
        let report = try rebuild(f)
        #expect(try copies(f) == [0, 1])
        #expect(try f.row("e22")?.isValid == 0 && f.row("e22")?.table == "events_2025073013")
        #expect(report.hours.map(\.hour) == ["2025-07-30T12", "2025-07-30T13"], "\(report.hours)")
        #expect(report.hours.map(\.outcome) == ["repaired", "restored"], "\(report.hours.map(\.outcome))")
        #expect(report.staleCopiesIn.isEmpty)
        #expect(try Binary.run(["validate", "--data", f.data, "--replay"]).status == 0)

        let g = try damaged()
        let hour12 = PartitionHour.parse("2025-07-30T12").map { $0...$0 }, hour13 = PartitionHour.parse("2025-07-30T13").map { $0...$0 }
        _ = try rebuild(g, hour12) // with hour 13 gone, nothing tells it better
        #expect(try copies(g) == [1, 0])
        let thirteen = try rebuild(g, hour13)
        #expect(thirteen.hours.first?.outcome == "restored" && thirteen.staleCopiesIn == ["2025-07-30T12"])
        #expect(thirteen.text.contains("2025-07-30T12 still holds a stale copy of events this rebuild placed elsewhere: tidemark rebuild --hour H for it removes it"), "\(thirteen.text)")
        #expect(try copies(g) == [1, 1])
        #expect(try rebuild(g, hour12).hours.first?.outcome == "repaired")
        #expect(try copies(g) == [0, 1])
        #expect(try Binary.run(["validate", "--data", g.data, "--replay"]).status == 0)
    }

    /// An event that moved into its hour (08 → 12), then got a stale record dated 09, with its
    /// lookup entries and its hour 12 lost by hand (found by the tampering fuzzer): hour 09's
    /// rebuild, first in the run, places it in 09. Hour 12's rebuild folds the files of the hour
    /// it moved in from (08) anyway, but must still look at hour 09, where its lookup entry now
    /// points, so that the run rebuilds 09 once more and no second row is left.
    @Test func aStaleCopyOfAnEventThatMovedInIsRemovedInTheSameRun() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e16", user: "u4", type: "c", time: "2025-07-30T08:22:24Z", received: "2025-07-30T15:03:13Z")])
        f.land("2.ndjson.gz", [recordLine("e16", user: "u2", type: "c", time: "2025-07-30T12:57:02Z", received: "2025-07-30T15:05:06Z")])
        f.land("3.ndjson.gz", [recordLine("e16", user: "u2", type: "b", time: "2025-07-30T09:49:25Z", received: "2025-07-30T15:03:30Z"),
                               recordLine("e2", time: "2025-07-30T09:20:00Z", received: "2025-07-30T15:00:30Z")])
        try f.ingest()
        #expect(try f.row("e16")?.table == "events_2025073012")
        try f.execute("""
            DROP TABLE events_2025073012; DELETE FROM partitions WHERE hour = '2025-07-30T12';
            DELETE FROM event_index WHERE event_id = 'e16'; DELETE FROM event_index_recent WHERE event_id = 'e16'
            """)
        let report = try rebuild(f)
        let copies = try f.query { db in
            try ["events_2025073009", "events_2025073012"].map { try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \($0) WHERE event_id = 'e16'") ?? 0 }
        }
        #expect(copies == [0, 1])
        #expect(try f.row("e16")?.table == "events_2025073012" && f.row("e16")?.isValid == 1)
        #expect(report.staleCopiesIn.isEmpty, "\(report.text)")
        let after = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(after.status == 0, "\(after.stdout)")
    }

    /// SIGTERM during `rebuild --all`: the hour in hand is finished and committed, the others
    /// are named as not rebuilt, and the exit is 0 (before, the process died with 143 and no
    /// report). A rerun rebuilds everything.
    @Test func aStopRequestEndsTheRebuildAfterTheHourInHand() throws {
        let f = try TestFolder.producedByTheBinary(count: 20_000, seed: 23)
        let hours = try f.query { try String.fetchAll($0, sql: "SELECT hour FROM partitions ORDER BY hour") }
        try #require(hours.count >= 2)
        let out = Pipe()
        let process = try Binary.startPaused(at: "rebuild-hour-done", ["rebuild", "--data", f.data, "--all", "--json"],
                                             notice: f.root + "/paused", standardOutput: out)
        kill(process.processIdentifier, SIGTERM)
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(stdout)")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let report = try decoder.decode(RebuildReport.self, from: Data(stdout.utf8))
        #expect(report.hours.map(\.hour) == [hours[0]] && report.notRebuilt == Array(hours.dropFirst()), "\(stdout)")
        let again = try rebuild(f)
        #expect(again.notRebuilt.isEmpty && again.hours.map(\.hour) == hours)
    }

    /// Rows of the file index (`file_hours`) lost by hand: validate names the files it no
    /// longer indexes, and rebuild refuses (65) rather than take their rows for strays and undo
    /// their deletions. A file whose tombstones all wait for their events is rightly unindexed.
    @Test func rebuildRefusesAnIncompleteFileIndex() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
                               recordLine("b", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z")])
        f.land("2.ndjson.gz", [tombstoneLine("a", received: "2025-07-30T12:00:00Z")])
        f.land("3.ndjson.gz", [tombstoneLine("not-yet", received: "2025-07-30T12:00:00Z")])
        try f.ingest()
        #expect(try Binary.run(["validate", "--data", f.data]).status == 0)
        try f.execute("DELETE FROM file_hours WHERE file_id = 2")
        let caught = try Binary.run(["validate", "--data", f.data])
        #expect(caught.status == 1)
        #expect(caught.stdout.contains("file_hours") && caught.stdout.contains("file 2.ndjson.gz (ledger file 2) wrote rows, but file_hours names no hour for it"), "\(caught.stdout)")
        #expect(!caught.stdout.contains("3.ndjson.gz (ledger file 3)"), "\(caught.stdout)")
        let refused = try Binary.run(["rebuild", "--data", f.data, "--all"])
        #expect(refused.status == 65, "\(refused.stderr)")
        #expect(refused.stderr.contains("error: rebuild \(f.data): 1 applied file (first: 2.ndjson.gz, ledger file 2) is missing from the file-to-hour index (file_hours); rebuilding now would drop its rows"), "\(refused.stderr)")
        #expect(try f.row("a")?.isValid == 0)
    }

    /// An event's lookup entry lost by hand, then its tombstone arrives: ingest cannot find
    /// the event, so the tombstone waits as if the event had not come. Validate fails on it
    /// (naming the hour to rebuild); rebuild of that hour applies it and restores the entry.
    @Test func aTombstoneWaitingForAStoredEventIsCaughtAndAppliedByRebuild() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("x", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z"),
                               recordLine("y", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z")])
        try f.ingest()
        try f.write { db in
            try db.execute(sql: "DELETE FROM event_index WHERE event_id = 'x'; DELETE FROM event_index_recent WHERE event_id = 'x'")
        }
        f.land("2.ndjson.gz", [tombstoneLine("x", received: "2025-07-30T13:30:00Z")])
        try f.ingest()
        #expect(try f.integer("SELECT COUNT(*) FROM pending_tombstones") == 1)
        let caught = try Binary.run(["validate", "--data", f.data])
        #expect(caught.status == 1)
        #expect(caught.stdout.contains("tombstones_applied") && caught.stdout.contains("event x is in events_2025073011 but its tombstone still waits in pending_tombstones (run: tidemark rebuild --hour 2025-07-30T11)"), "\(caught.stdout)")
        #expect(caught.stdout.contains("hint: the tables disagree with what the archive gives: tidemark rebuild --hour H for the hours named above"), "\(caught.stdout)")
        let json = try Binary.run(["validate", "--data", f.data, "--json"])
        let steps = (try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])?["next_steps"] as? [String]
        #expect(steps?.count == 1)
        let hour = PartitionHour.parse("2025-07-30T11").map { $0...$0 }
        #expect(try rebuild(f, hour, dryRun: true).hours.first?.outcome == "would be repaired")
        #expect(try f.integer("SELECT COUNT(*) FROM pending_tombstones") == 1)
        #expect(try rebuild(f, hour).hours.first?.outcome == "repaired")
        #expect(try f.row("x")?.deletedBy == "tombstone" && f.row("x")?.isValid == 0)
        #expect(try f.integer("SELECT COUNT(*) FROM pending_tombstones") == 0)
        let after = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(after.status == 0, "\(after.stdout)")
        // The tombstone's file now names the hour: a second rebuild reads it and changes nothing.
        #expect(try rebuild(f, hour).hours.first?.outcome == "unchanged")
    }

    /// The diff meets most live rows by row_id and the rest by event_id: a deleted row, a
    /// row edited in place, rows moved to another row_id (one of them edited) and a row no
    /// source has are each counted once, on the path each takes.
    @Test func diffCountsRowsMetByRowIDAndByEventID() throws {
        let f = try ProducedPipeline(events: 1500, seed: 8).copy()
        let rows = try f.eventRows()
        let (label, table, hour) = try f.largestHour()
        try f.write { db in
            let ids = try String.fetchAll(db, sql: "SELECT event_id FROM \(table) ORDER BY event_id LIMIT 4")
            let top = try Int64.fetchOne(db, sql: "SELECT MAX(row_id) FROM \(table)")!
            try db.execute(sql: "DELETE FROM \(table) WHERE event_id = ?", arguments: [ids[0]])
            try db.execute(sql: "UPDATE \(table) SET user_id = 'edited' WHERE event_id = ?", arguments: [ids[1]])
            try db.execute(sql: "UPDATE \(table) SET row_id = ? WHERE event_id = ?", arguments: [top + 10, ids[2]])
            try db.execute(sql: "UPDATE \(table) SET row_id = ?, user_id = 'moved-and-edited' WHERE event_id = ?", arguments: [top + 20, ids[3]])
            for _ in 0..<2 { // two rows of one event no source has: one event removed
                try db.execute(sql: """
                    INSERT INTO \(table) (\(PartitionTable.columns)) VALUES ('no-source-has-me', 'u', 'view', ?, NULL, 1, NULL, NULL, 0, NULL, 1, 1)
                    """, arguments: [label + ":00:00.000000000Z"])
            }
        }
        let preview = try rebuild(f, hour...hour, dryRun: true).hours.first
        #expect(preview?.added == 1)
        #expect(preview?.changed == 2)
        #expect(preview?.removed == 1)
        let repaired = try rebuild(f, hour...hour)
        #expect(repaired.hours.first?.outcome == "repaired")
        #expect(try f.eventRows() == rows)
        let again = try rebuild(f, hour...hour).hours.first
        #expect(again?.outcome == "unchanged" && again?.added == 0 && again?.changed == 0 && again?.removed == 0)
        var options = ValidateOptions(dataFolder: f.data)
        options.sentLogFolder = f.sent
        #expect(try ValidateJob.run(options, logger: quiet).ok)
    }

    /// Rebuild in many passes over lines whose event_id is not at the start (or is escaped):
    /// the first read sets each line aside for its pass by parsing it, and the result equals
    /// what ingest wrote, corrections and a rejected line included.
    @Test func manyPassesOverLinesWithoutALeadingEventID() throws {
        let f = TestFolder()
        var lines: [String] = []
        for n in 0..<60 {
            let time = String(format: "2025-07-30T10:%02d:00Z", n % 60)
            lines.append("{\"user_id\":\"u\(n % 7)\",\"event_type\":\"view\",\"event_time\":\"\(time)\",\"received_time\":\"\(time)\",\"event_id\":\"late-key-\(n)\"}")
            if n % 3 == 0 { lines.append(recordLine("e\\u0030\(n)", time: time, received: time)) } // escaped: "e0…"
        }
        f.land("1.ndjson.gz", lines + ["{\"event_id\": broken"])
        f.land("2.ndjson.gz", [
            "{\"is_valid\":false,\"user_id\":\"u1\",\"event_type\":\"view\",\"event_time\":\"2025-07-30T10:05:00Z\",\"received_time\":\"2025-07-30T10:59:00Z\",\"event_id\":\"late-key-5\"}",
            "{\"received_time\":\"2025-07-30T10:59:00Z\",\"event_id\":\"late-key-6\"}",
        ])
        try f.ingest()
        let rows = try f.eventRows()
        #expect(rows.count == 80)
        try f.execute("DELETE FROM events_2025073010")
        let h = PartitionHour.parse("2025-07-30T10")!
        let report = try rebuild(f, h...h, eventsPerPass: 7)
        #expect(report.hours.first?.added == 80)
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.data).filter { $0.hasSuffix(".spill") } == [], "scratch files leave no name behind")
        #expect(try f.eventRows() == rows)
        var options = ValidateOptions(dataFolder: f.data)
        options.eventsPerPass = 7
        #expect(try ValidateJob.run(options, logger: quiet).ok)
    }

    /// Rebuild writes only what differs: a right hour is only read (no row takes the rebuild's
    /// batch), and a repair rewrites just the rows it repairs: an edited row, a second copy of
    /// a row, a lookup entry naming another event's row, a wrong first_batch.
    @Test func rebuildWritesOnlyWhatDiffers() throws {
        let f = try ProducedPipeline(events: 1500, seed: 12).copy()
        let rows = try f.eventRows()
        let before = try checksums(f)
        let (label, table, hour) = try f.largestHour()
        func rowsOfLastRebuild() throws -> [String] {
            try f.query { db in
                let batch = try Int64.fetchOne(db, sql: "SELECT MAX(batch_id) FROM batches WHERE kind = 'rebuild'")
                return try String.fetchAll(db, sql: "SELECT event_id FROM \(table) WHERE last_batch = ? ORDER BY event_id", arguments: [batch])
            }
        }
        // A wrong summary alone: the hour's rows are right, so none is written, but its summary
        // is counted again and its partition row stamped with the rebuild's batch.
        func summary() throws -> [String] {
            try f.query { db in
                try Row.fetchAll(db, sql: """
                    SELECT event_type, valid_events, distinct_users, deleted_events, late_events FROM hourly_summary
                    WHERE hour = ? ORDER BY event_type
                    """, arguments: [label]).map(\.description)
            }
        }
        let right = try summary()
        try f.execute("UPDATE hourly_summary SET valid_events = valid_events + 7 WHERE hour = ?", [label])
        // Reported as repaired (something was wrong), though no row was written.
        let untouched = try rebuild(f, hour...hour).hours.first
        #expect(untouched?.outcome == "repaired" && untouched?.added == 0 && untouched?.changed == 0 && untouched?.removed == 0)
        #expect(try rowsOfLastRebuild() == [])
        #expect(try summary() == right)
        let stamps = try f.query { db in
            try Row.fetchOne(db, sql: """
                SELECT p.rebuilt_batch, (SELECT MAX(batch_id) FROM batches WHERE kind = 'rebuild') FROM partitions p WHERE p.hour = ?
                """, arguments: [label])!
        }
        #expect(stamps[0] as Int64? != nil && stamps[0] as Int64? == stamps[1] as Int64?)
        // A wrong count on the partition row alone is repaired the same way.
        try f.execute("UPDATE partitions SET row_count = row_count + 1 WHERE hour = ?", [label])
        #expect(try rebuild(f, hour...hour).hours.first?.outcome == "repaired")
        #expect(try rebuild(f, hour...hour).hours.first?.outcome == "unchanged")

        let ids = try f.query { try String.fetchAll($0, sql: "SELECT event_id FROM \(table) WHERE is_valid = 1 ORDER BY event_id LIMIT 5") }
        try f.write { db in
            let top = try Int64.fetchOne(db, sql: "SELECT MAX(row_id) FROM \(table)")!
            try db.execute(sql: "UPDATE \(table) SET user_id = 'edited' WHERE event_id = ?", arguments: [ids[0]])
            // A second copy of a row, under a new row_id.
            try db.execute(sql: """
                INSERT INTO \(table) (row_id, \(PartitionTable.columns)) SELECT ?, \(PartitionTable.columns) FROM \(table) WHERE event_id = ?
                """, arguments: [top + 5, ids[1]])
            // The lookup entry of one event names another event's row.
            try db.execute(sql: """
                UPDATE event_index SET row_id = (SELECT row_id FROM \(table) WHERE event_id = ?) WHERE event_id = ?
                """, arguments: [ids[3], ids[2]])
            try db.execute(sql: "UPDATE \(table) SET first_batch = first_batch + 1000 WHERE event_id = ?", arguments: [ids[4]])
        }
        let repaired = try rebuild(f, hour...hour).hours.first
        #expect(repaired?.outcome == "repaired")
        #expect(repaired?.changed == 1 && repaired?.added == 0 && repaired?.removed == 0, "\(String(describing: repaired))")
        #expect(try f.eventRows() == rows)
        #expect(try checksums(f) == before)
        // The edited row, the event whose lookup entry named another event's row (written
        // anew; the row it named is left to the event it holds) and the wrong first_batch.
        #expect(try rowsOfLastRebuild() == [ids[0], ids[2], ids[4]].sorted())
        let copies = try f.query { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM \(table) WHERE event_id = ?", arguments: [ids[1]]) }
        #expect(copies == 1)
        var options = ValidateOptions(dataFolder: f.data)
        options.sentLogFolder = f.sent
        #expect(try ValidateJob.run(options, logger: quiet).ok)
        let again = try rebuild(f, hour...hour).hours.first
        #expect(again?.outcome == "unchanged")
        #expect(try rowsOfLastRebuild() == [])
    }

    /// Whatever mix of damage an hour's rows and lookup entries take (edited, deleted, copied
    /// and moved rows, rows of no event, lookup entries deleted or naming another row, the
    /// table dropped), a rebuild in several passes brings back exactly what ingest wrote,
    /// validate passes, and a second rebuild finds nothing to do.
    @Test func randomDamageIsRepairedExactly() throws {
        let pipeline = try ProducedPipeline(events: 1200, seed: 31)
        let reference = try pipeline.copy()
        let rows = try reference.eventRows()
        let sums = try checksums(reference)
        let (label, table, hour) = try reference.largestHour()
        var random = SeededRandom(seed: 77)
        // Each kind of damage alone first (two of it), then mixes of ten.
        for round in 0..<14 {
            let f = try pipeline.copy()
            var damage: [String] = []
            try f.write { db in
                let ids = try String.fetchAll(db, sql: "SELECT event_id FROM \(table) ORDER BY row_id")
                var spare = try Int64.fetchOne(db, sql: "SELECT MAX(row_id) FROM \(table)")! + 1
                func pick() -> String { ids[Int.random(in: 0..<ids.count, using: &random)] }
                for _ in 0..<(round < 9 ? 2 : 10) {
                    let id = pick()
                    let kind = round < 9 ? round : Int.random(in: 0..<9, using: &random)
                    damage.append("\(kind):\(id)")
                    spare += 1
                    switch kind {
                    case 0: try db.execute(sql: "UPDATE \(table) SET user_id = 'damaged', is_late = 1 - is_late WHERE event_id = ?", arguments: [id])
                    case 1: try db.execute(sql: "UPDATE \(table) SET is_valid = 1 - is_valid, received_time = NULL WHERE event_id = ?", arguments: [id])
                    case 2: try db.execute(sql: "DELETE FROM \(table) WHERE event_id = ?", arguments: [id])
                    case 3: try db.execute(sql: """
                        INSERT INTO \(table) (row_id, \(PartitionTable.columns)) SELECT ?, \(PartitionTable.columns) FROM \(table) WHERE event_id = ? LIMIT 1
                        """, arguments: [spare, id])
                    case 4: try db.execute(sql: "UPDATE \(table) SET row_id = ? WHERE event_id = ?", arguments: [spare, id])
                    case 5:
                        for tree in ["event_index", "event_index_recent"] {
                            try db.execute(sql: """
                                UPDATE \(tree) SET row_id = COALESCE((SELECT row_id FROM \(table) WHERE event_id = ?), 999999) WHERE event_id = ?
                                """, arguments: [pick(), id])
                        }
                    case 6:
                        for tree in ["event_index", "event_index_recent"] { try db.execute(sql: "DELETE FROM \(tree) WHERE event_id = ?", arguments: [id]) }
                    case 7: // a row of no event, under a row_id written by hand (huge or negative)
                        try db.execute(sql: """
                            INSERT INTO \(table) (row_id, \(PartitionTable.columns)) VALUES (?, ?, 'u', 'view', ?, NULL, 1, NULL, NULL, 0, NULL, 1, 1)
                            """, arguments: [spare % 2 == 0 ? (Int64(1) << 60) + spare : -spare, "stranger-\(spare)", label + ":00:00.000000000Z"])
                        // and a lookup entry naming a negative row
                        try db.execute(sql: "UPDATE event_index SET row_id = -1 WHERE event_id = ?", arguments: [pick()])
                    default: try db.execute(sql: "UPDATE \(table) SET first_batch = first_batch + 7, last_batch = 0 WHERE event_id = ?", arguments: [id])
                    }
                }
                if round == 12 {
                    damage.append("dropped")
                    try db.execute(sql: "DROP TABLE \(table)")
                }
            }
            let report = try rebuild(f, hour...hour, eventsPerPass: 250).hours.first
            #expect(report?.outcome == (round == 12 ? "restored" : "repaired"), "round \(round): \(damage)")
            #expect(try f.eventRows() == rows, "round \(round): \(damage)")
            #expect(try checksums(f) == sums, "round \(round): \(damage)")
            var options = ValidateOptions(dataFolder: f.data)
            options.sentLogFolder = f.sent
            let validation = try ValidateJob.run(options, logger: quiet)
            #expect(validation.ok, "round \(round): \(damage): \(validation.failedChecks)")
            let again = try rebuild(f, hour...hour, eventsPerPass: 250).hours.first
            #expect(again?.outcome == "unchanged", "round \(round): \(damage)")
        }
    }

    /// A row written by hand under the largest row_id leaves no id for new rows: rebuild stops
    /// with exit 65 naming the table, changes nothing, and repairs once that row is gone.
    @Test func aRowAtTheLargestRowIDStopsTheRebuildWithAHint() throws {
        let f = try ProducedPipeline(events: 600, seed: 14).copy()
        let rows = try f.eventRows()
        let (label, table, hour) = try f.largestHour()
        try f.write { db in
            try db.execute(sql: "DELETE FROM \(table) WHERE row_id = (SELECT MIN(row_id) FROM \(table))") // so a row must be written anew
            try db.execute(sql: """
                INSERT INTO \(table) (row_id, \(PartitionTable.columns)) VALUES (?, 'by-hand', 'u', 'view', ?, NULL, 1, NULL, NULL, 0, NULL, 1, 1)
                """, arguments: [Int64.max, label + ":00:00.000000000Z"])
        }
        let damaged = try f.eventRows()
        let run = try Binary.run(["rebuild", "--data", f.data, "--hour", label])
        #expect(run.status == 65)
        #expect(run.stderr.contains(table) && run.stderr.contains("none is left for the hour's new rows"), "\(run.stderr)")
        #expect(run.stderr.contains("hint: tidemark did not write those rows"), "\(run.stderr)")
        #expect(try f.eventRows() == damaged)
        try f.execute("DELETE FROM \(table) WHERE row_id = ?", [Int64.max])
        #expect(try rebuild(f, hour...hour).hours.first?.outcome == "repaired")
        #expect(try f.eventRows() == rows)
    }

    /// Rebuild keeps its scratch files in the data folder, beside the database: one that cannot
    /// be written (run under `ulimit -f`, so writes past 256 KiB fail with EFBIG as on a full
    /// disk) stops the rebuild with exit 74 naming that folder, and nothing changes, whether
    /// the write fails while the first pass reads the archive (two passes) or when a later pass
    /// writes out its buffer (eleven). With room, the same rebuild repairs the hour.
    @Test func aScratchFileThatCannotBeWrittenStopsTheRebuildAndChangesNothing() throws {
        let f = try TestFolder.producedByTheBinary(count: 20_000, seed: 22)
        let rows = try f.eventRows()
        let (label, table, _) = try f.largestHour()
        try f.write { db in
            try db.execute(sql: "UPDATE \(table) SET user_id = 'edited' WHERE row_id IN (SELECT row_id FROM \(table) ORDER BY row_id LIMIT 5)")
        }
        let damaged = try f.eventRows()
        #expect(damaged != rows)
        for perPass in ["12000", "2000"] {
            let run = try Binary.run(["rebuild", "--data", f.data, "--hour", label, "--events-per-pass", perPass], fileSizeLimitKiB: 256)
            #expect(run.status == 74, "\(perPass) per pass: \(run.stderr)")
            #expect(run.stderr.contains("scratch file") && run.stderr.contains(f.data) && run.stderr.contains("File too large"), "\(run.stderr)")
            #expect(try f.eventRows() == damaged)
        }
        // With --all, an hour committed before the failure stays rebuilt: at 9,000 events per
        // pass the small hour (its files hold about 8,000 lines) fits one pass, with no scratch
        // file, and is repaired; the large one (about 22,000) stops the run, unchanged, and the
        // rebuild's batch is recorded as failed. The limit is 512 KiB here: the small hour's
        // commit and the failed batch's row go through the write-ahead log in 32 KiB pages,
        // past 256 KiB, while the large hour's scratch file still outgrows 512 KiB.
        let (smallLabel, smallTable, _) = try f.smallestHour()
        let (smallID, user) = try f.query { db -> (String, String) in
            let event = try Row.fetchOne(db, sql: "SELECT event_id, user_id FROM \(smallTable) ORDER BY row_id LIMIT 1")!
            return (event[0], event[1])
        }
        try #require(smallLabel < label)
        try f.execute("UPDATE \(smallTable) SET user_id = 'edited' WHERE event_id = ?", [smallID])
        let all = try Binary.run(["rebuild", "--data", f.data, "--all", "--events-per-pass", "9000"], fileSizeLimitKiB: 512)
        #expect(all.status == 74, "\(all.stderr)")
        #expect(all.stderr.contains("hour \(label)") && all.stderr.contains("rebuilt earlier in this run stay rebuilt"), "\(all.stderr)")
        #expect(try f.query { try String.fetchOne($0, sql: "SELECT user_id FROM \(smallTable) WHERE event_id = ?", arguments: [smallID]) } == user)
        #expect(try f.eventRows() == damaged)
        #expect(try f.query { try String.fetchOne($0, sql: "SELECT status FROM batches ORDER BY batch_id DESC LIMIT 1") } == "failed")
        let repaired = try Binary.run(["rebuild", "--data", f.data, "--hour", label, "--events-per-pass", "2000"])
        #expect(repaired.status == 0, "\(repaired.stderr)")
        #expect(try f.eventRows() == rows)
    }

    @Test func rebuildOfAnHourRangeTouchesOnlyThoseHours() throws {
        let f = try ProducedPipeline(events: 3000, seed: 6).copy()
        let hours = try f.query { try String.fetchAll($0, sql: "SELECT hour FROM partitions ORDER BY hour") }
        #expect(hours.count >= 2)
        let run = try Binary.run(["rebuild", "--data", f.data, "--from", hours[0], "--to", hours[hours.count - 2], "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        let rebuilt = (report?["hours"] as? [[String: Any]])?.compactMap { $0["hour"] as? String }
        #expect(rebuilt == Array(hours.dropLast()))
        let untouched = try f.query { try Int64.fetchOne($0, sql: "SELECT rebuilt_batch FROM partitions WHERE hour = ?", arguments: [hours.last!]) }
        #expect(untouched == nil)
        #expect(try Binary.run(["rebuild", "--data", f.data, "--from", hours.last!, "--to", hours[0]]).status == 64)
    }

    @Test func refusesWhenAnArchivedFileIsMissingOrChanged() throws {
        let f = try ProducedPipeline(events: 600, seed: 8).copy()
        let (location, name) = try f.query { db in
            let row = try Row.fetchOne(db, sql: "SELECT location, name FROM ingested_files WHERE status = 'applied' LIMIT 1")!
            return (row[0] as String, row[1] as String)
        }
        var bytes = try FileSystem.readAll(location)
        bytes[bytes.count / 2] ^= 0x01
        createTestFile(atPath: location, contents: Data(bytes))
        let changed = try Binary.run(["rebuild", "--data", f.data, "--all"])
        #expect(changed.status == 65)
        #expect(changed.stderr.contains(name) && changed.stderr.contains("SHA-256"))
        try FileManager.default.removeItem(atPath: location)
        let missing = try Binary.run(["rebuild", "--data", f.data, "--all"])
        #expect(missing.status == 66)
        #expect(missing.stderr.contains(name) && missing.stderr.contains("missing"))
        // Both errors name the hour they stopped in (the file's first, in hour order), and
        // what the run did before it.
        let (firstHour, firstOfAll) = try f.query { db in
            (try String.fetchOne(db, sql: "SELECT MIN(h.hour) FROM file_hours h JOIN ingested_files f USING (file_id) WHERE f.name = ?", arguments: [name])!,
             try String.fetchOne(db, sql: "SELECT MIN(hour) FROM partitions")!)
        }
        let before = firstHour == firstOfAll ? "no hour was rebuilt earlier in this run" : "rebuilt earlier in this run stay rebuilt (all unchanged)"
        for run in [changed, missing] {
            #expect(run.stderr.hasPrefix("error: rebuild hour \(firstHour) ") && run.stderr.contains(before), "\(run.stderr)")
        }
        let dry = try Binary.run(["rebuild", "--data", f.data, "--all", "--dry-run"])
        #expect(dry.status == 66 && dry.stderr.hasPrefix("error: rebuild hour \(firstHour) ") && dry.stderr.contains("a dry run: nothing was changed"), "\(dry.stderr)")
        let usage = try Binary.run(["rebuild", "--data", f.data])
        #expect(usage.status == 64)
    }
}

@Suite struct BackfillTests {
    /// Producer output in a folder of its own, not ingested.
    static func produce(into folder: String, sent: String, events: Int, seed: UInt64) throws {
        var options = ProducerOptions(landingFolder: folder, sentLogFolder: sent, start: try Timestamp.parse("2025-07-30T10:58:00Z").get())
        options.rate = 10
        options.count = events
        options.seed = seed
        let producer = try Producer(options: options, logger: quietLogger)
        while try producer.advance(seconds: 600) {}
    }

    func ledger(_ f: TestFolder) throws -> [String] {
        try f.query { try Row.fetchAll($0, sql: "SELECT name, sha256, status, lines_read FROM ingested_files ORDER BY name").map { "\($0)" } }
    }

    func backfill(_ f: TestFolder, from: String, env: [String: String] = [:], extra: [String] = []) throws -> BinaryRun {
        try Binary.run(["backfill", "--from-dir", from, "--data", f.data] + extra, environment: env)
    }

    /// Backfill writes the metrics file too: the counters include its files, and it is the
    /// last batch; the lag, delay and backlog gauges stay the last ingest's (a backfill of old
    /// files has a lag of days that says nothing of the pipeline).
    @Test func backfillWritesTheMetricsFile() throws {
        let f = TestFolder()
        let source = f.root + "/old"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        f.land("a.ndjson.gz", [recordLine("a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:02Z")], folder: source)
        let run = try backfill(f, from: source, extra: ["--metrics-file", f.root + "/tidemark.prom"])
        #expect(run.status == 0, "\(run.stderr)")
        let metrics = try parsePrometheus(try String(contentsOfFile: f.root + "/tidemark.prom", encoding: .utf8))
        #expect(metrics["tidemark_files_applied_total"]?.value == 1 && metrics["tidemark_last_batch_files"]?.value == 1)
        #expect(metrics["tidemark_event_delay_max_seconds"] == nil && metrics["tidemark_backlog_files"] == nil)
        f.land("i.ndjson.gz", [recordLine("i", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:01Z")])
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        f.land("b.ndjson.gz", [recordLine("b", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:09Z")], folder: source)
        #expect(try backfill(f, from: source, extra: ["--metrics-file", f.root + "/tidemark.prom"]).status == 0)
        let after = try parsePrometheus(try String(contentsOfFile: f.root + "/tidemark.prom", encoding: .utf8))
        #expect(after["tidemark_event_delay_max_seconds"]?.value == 1 && after["tidemark_backlog_files"]?.value == 0, "\(after)")
        #expect(after["tidemark_files_applied_total"]?.value == 3)
        let dry = try backfill(f, from: source, extra: ["--dry-run", "--metrics-file", f.root + "/dry.prom"])
        #expect(dry.status == 0 && !FileManager.default.fileExists(atPath: f.root + "/dry.prom"))
    }

    /// A backfill whose archive copies failed (a full disk) leaves ledger rows whose copies
    /// are missing: validate says so (it does not read the backfill source in their place),
    /// and running the backfill again finishes the copies.
    @Test func aBackfillsFailedArchiveCopiesAreReportedUntilItRunsAgain() throws {
        let f = TestFolder()
        let source = f.root + "/old"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        for n in 0..<3 { f.land("\(n).ndjson.gz", [recordLine("b\(n)", time: "2025-07-30T10:00:00Z")], folder: source) }
        let full = try backfill(f, from: source, env: ["TIDEMARK_ARCHIVE_SPACE_FILES": "1"])
        #expect(full.status == 74, "\(full.stderr)")
        let validate = try Binary.run(["validate", "--data", f.data])
        #expect(validate.status == 1 && validate.stdout.contains("a backfill's copy that failed: run that backfill again"), "\(validate.stdout)")
        #expect(try backfill(f, from: source).status == 0)
        #expect(try Binary.run(["validate", "--data", f.data]).status == 0)
    }

    /// A subfolder of the backfill source that cannot be read: the rest is applied, the run
    /// ends with exit 74 naming the folder, and a rerun once it is readable takes its files.
    /// Run as the user nobody: root reads everything.
    @Test(.enabled(if: Binary.forNobody != nil, "needs root and setpriv, to run the binary as the user nobody"))
    func anUnreadableSubfolderOfABackfillSourceEndsWith74AndTheRestIsApplied() throws {
        let f = TestFolder()
        let source = f.root + "/source", locked = f.root + "/source/locked"
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: true)
        f.land("a.ndjson.gz", [recordLine("readable", time: "2025-07-30T10:00:00Z")], folder: source)
        f.land("b.ndjson.gz", [recordLine("behind", time: "2025-07-30T10:00:00Z")], folder: locked)
        try FileManager.default.createDirectory(atPath: f.data, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.ownerAccountID: 65534, .groupOwnerAccountID: 65534], ofItemAtPath: f.data)
        try FileManager.default.setAttributes([.posixPermissions: 0], ofItemAtPath: locked)
        let run = try Binary.run(["backfill", "--from-dir", source, "--data", f.data], asNobody: Binary.forNobody)
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stderr.contains("read \(locked): Permission denied") && run.stderr.contains("hint: "), "\(run.stderr)")
        #expect(try f.row("readable") != nil && f.row("behind") == nil)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: locked)
        let again = try Binary.run(["backfill", "--from-dir", source, "--data", f.data], asNobody: Binary.forNobody)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try f.row("behind") != nil)
    }

    /// A file of the backfill source that cannot be read is reported (exit 74) and the rest is
    /// applied, whether or not the ledger holds files already (before, with files in it, the
    /// check for content it knows stopped the whole run at that file). Run as the user nobody.
    @Test(.enabled(if: Binary.forNobody != nil, "needs root and setpriv, to run the binary as the user nobody"))
    func anUnreadableFileOfABackfillSourceEndsWith74AndTheRestIsApplied() throws {
        let f = TestFolder()
        let source = f.root + "/source"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        f.land("a.ndjson.gz", [recordLine("first", time: "2025-07-30T10:00:00Z")], folder: source)
        try FileManager.default.createDirectory(atPath: f.data, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.ownerAccountID: 65534, .groupOwnerAccountID: 65534], ofItemAtPath: f.data)
        #expect(try Binary.run(["backfill", "--from-dir", source, "--data", f.data], asNobody: Binary.forNobody).status == 0)
        f.land("b.ndjson.gz", [recordLine("readable", time: "2025-07-30T10:00:00Z")], folder: source)
        let locked = f.land("c.ndjson.gz", [recordLine("locked", time: "2025-07-30T10:00:00Z")], folder: source)
        try FileManager.default.setAttributes([.posixPermissions: 0], ofItemAtPath: locked)
        let run = try Binary.run(["backfill", "--from-dir", source, "--data", f.data, "--json"], asNobody: Binary.forNobody)
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stdout.contains("unreadable_files") && run.stdout.contains("c.ndjson.gz"), "\(run.stdout)")
        #expect(try f.row("readable") != nil && f.row("locked") == nil)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: locked)
        #expect(try Binary.run(["backfill", "--from-dir", source, "--data", f.data], asNobody: Binary.forNobody).status == 0)
        #expect(try f.row("locked") != nil)
    }

    /// An archive keeps a folder per day: backfilling `DATA/archive` finds the files in its
    /// subfolders and rebuilds the same tables; a dry run after it lists them as already
    /// ingested; an empty source says there was nothing to do.
    @Test func backfillOfAnArchiveFolderReadsItsDayFolders() throws {
        let f = try ProducedPipeline(events: 600, seed: 9).copy()
        let fresh = TestFolder()
        let run = try backfill(fresh, from: f.data + "/archive")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try fresh.eventRows() == f.eventRows())
        let again = try backfill(fresh, from: f.data + "/archive", extra: ["--dry-run"])
        let lines = again.stdout.split(separator: "\n")
        #expect(lines.count > 1 && lines.dropLast().allSatisfy { $0.contains("\talready ingested (same content in the ledger)\t") }, "\(again.stdout.prefix(300))")
        // A data folder as the source: its archive is read, its quarantine is not.
        let other = TestFolder()
        let dataLike = other.root + "/olddata"
        try FileManager.default.createDirectory(atPath: dataLike + "/archive/2025-07-30", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dataLike + "/quarantine", withIntermediateDirectories: true)
        createTestFile(atPath: dataLike + "/tidemark.sqlite", contents: Data())
        other.land("a.ndjson.gz", [recordLine("archived", time: "2025-07-30T10:00:00Z")], folder: dataLike + "/archive/2025-07-30")
        other.land("q.ndjson.gz", [recordLine("quarantined", time: "2025-07-30T10:00:00Z")], folder: dataLike + "/quarantine")
        // A second day's folder corrects the first day's event.
        try FileManager.default.createDirectory(atPath: dataLike + "/archive/2025-07-31", withIntermediateDirectories: true)
        other.land("b.ndjson.gz", [recordLine("archived", user: "corrected", time: "2025-07-30T10:00:00Z", received: "2025-07-31T00:00:00Z")],
                   folder: dataLike + "/archive/2025-07-31")
        // A symlinked day folder is not followed, and says so at the default level.
        try FileManager.default.createSymbolicLink(atPath: dataLike + "/archive/linked", withDestinationPath: dataLike + "/archive/2025-07-30")
        let fromData = try backfill(other, from: dataLike)
        #expect(fromData.status == 0, "\(fromData.stderr)")
        #expect(try other.row("archived")?.userID == "corrected" && other.row("quarantined") == nil)
        #expect(fromData.stderr.contains("not reading this folder of the backfill source") && fromData.stderr.contains("a data folder's quarantine"), "\(fromData.stderr)")
        #expect(fromData.stderr.contains("archive/linked") && fromData.stderr.contains("symlink to a folder (not followed)"), "\(fromData.stderr)")
        // A backfill the partition cap cuts short says to run it again.
        let source = fresh.root + "/hours"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        for h in 0..<3 { fresh.land("h\(h).ndjson.gz", [recordLine("h\(h)", time: "2025-07-30T1\(h):00:00Z")], folder: source) }
        let capped = try backfill(fresh, from: source, extra: ["--max-new-partitions", "1"])
        #expect(capped.status == 0 && capped.stderr.contains("run the backfill again to take them"), "\(capped.stderr)")
        try FileManager.default.createDirectory(atPath: fresh.root + "/empty/sub", withIntermediateDirectories: true)
        let empty = try backfill(fresh, from: fresh.root + "/empty")
        #expect(empty.status == 0 && empty.stderr.contains("nothing to do"), "\(empty.stderr)")
    }

    func listing(_ folder: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
            out[name] = try FileSystem.sha256(ofFile: folder + "/" + name)
        }
        return out
    }

    /// Content the ledger holds as quarantined is skipped by a rerun like any other: no second
    /// ledger row, no second copy in quarantine/.
    @Test func backfillRerunDoesNotQuarantineTheSameFileAgain() throws {
        let f = TestFolder()
        let source = f.root + "/backup"
        try FileSystem.makeFolder(source)
        f.land("1-good.ndjson.gz", [recordLine("g", time: "2025-07-30T10:00:00Z")], folder: source)
        f.landBytes("2-bad.ndjson.gz", Array("not gzip".utf8), folder: source)
        #expect(try backfill(f, from: source).status == 0)
        let once = try ledger(f)
        #expect(once.filter { $0.contains("quarantined") }.count == 1, "\(once)")
        let second = try backfill(f, from: source, extra: ["--json"])
        #expect(second.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(second.stdout.utf8)) as? [String: Any]
        #expect(object?["files_already_ingested"] as? Int == 2)
        #expect(object?["files_quarantined"] as? Int == 0)
        #expect(try ledger(f) == once)
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.data + "/quarantine").filter { !$0.hasPrefix(".") }.count == 1)
    }

    @Test func backfillTwiceEqualsOnceAndLeavesTheSourceAlone() throws {
        let f = TestFolder()
        let source = f.root + "/backup"
        try Self.produce(into: source, sent: f.sent, events: 1500, seed: 3)
        let sourceBefore = try listing(source)
        let sourceFiles = sourceBefore.keys.filter { !$0.hasPrefix(".") }.count // not the producer's lock file
        let dry = try backfill(f, from: source, extra: ["--dry-run"])
        #expect(dry.status == 0)
        #expect(dry.stdout.contains("would touch 2 hours: 2025-07-30T10, 2025-07-30T11"), "\(dry.stdout.suffix(300))")
        #expect(dry.stdout.split(separator: "\n").count == sourceFiles + 1)
        let ledgerAfterDryRun = FileManager.default.fileExists(atPath: f.database) ? try ledger(f) : []
        #expect(ledgerAfterDryRun.isEmpty)
        let first = try backfill(f, from: source)
        #expect(first.status == 0)
        #expect(first.stderr.isEmpty, "no progress bar or chatter when stderr is not a terminal: \(first.stderr)")
        let once = (try f.eventRows(), try ledger(f))
        let second = try backfill(f, from: source, extra: ["--json"])
        #expect(second.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(second.stdout.utf8)) as? [String: Any]
        #expect(object?["files_applied"] as? Int == 0)
        #expect(object?["files_already_ingested"] as? Int == sourceFiles)
        #expect(try f.eventRows() == once.0)
        #expect(try ledger(f) == once.1)
        #expect(try listing(source) == sourceBefore)
        var options = ValidateOptions(dataFolder: f.data)
        options.sentLogFolder = f.sent
        options.replay = true
        let report = try ValidateJob.run(options, logger: quietLogger)
        #expect(report.ok, "\(report.table)")
    }

    @Test func sinceAndUntilSelectFilesByModificationTime() throws {
        let f = TestFolder()
        let source = f.root + "/backup"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let days = ["2025-07-01", "2025-07-15", "2025-07-29"]
        for (n, day) in days.enumerated() {
            let path = f.land("\(n).ndjson.gz", [recordLine("s\(n)", time: "2025-07-30T10:00:00Z")], folder: source)
            let date = Date(timeIntervalSince1970: try Timestamp.parse(day + "T12:00:00Z").get().secondsSinceEpoch)
            try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: path)
        }
        let run = try backfill(f, from: source, extra: ["--since", "2025-07-10T00:00:00Z", "--until", "2025-07-20T00:00:00Z", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try f.row("s1") != nil)
        #expect(try f.row("s0") == nil && f.row("s2") == nil)
        #expect(try backfill(f, from: source, extra: ["--since", "yesterday"]).status == 64)
        // A window no file falls in says so, rather than nothing (or "no file in the source").
        let none = try backfill(f, from: source, extra: ["--since", "2025-08-01T00:00:00Z"])
        #expect(none.status == 0 && none.stderr.contains("none of the 3 files in the source was modified within --since/--until: nothing to do"), "\(none.stderr)")
    }

    @Test func killedBackfillResumesToTheSameState() throws {
        let reference = TestFolder()
        let source = reference.root + "/backup"
        try Self.produce(into: source, sent: reference.sent, events: 1200, seed: 5)
        #expect(try backfill(reference, from: source, extra: ["--max-new-partitions", "100"]).status == 0)
        let expected = try reference.eventRows()
        let expectedLedger = try ledger(reference).map { $0.replacingOccurrences(of: reference.root, with: "") }

        for (fault, after) in [("mid-file", "40"), ("before-commit", "0"), ("after-commit", "0"), ("mid-file", "150")] {
            let f = TestFolder()
            let killed = try backfill(f, from: source, env: ["TIDEMARK_FAULT": fault, "TIDEMARK_FAULT_AFTER": after])
            #expect(killed.status == SIGKILL, "\(fault) \(killed.stderr)")
            let rerun = try backfill(f, from: source)
            #expect(rerun.status == 0, "\(rerun.stderr)")
            #expect(try f.eventRows() == expected, "after \(fault)")
            #expect(try ledger(f).map { $0.replacingOccurrences(of: f.root, with: "") } == expectedLedger, "after \(fault)")
            // Every ledger file has its archived copy.
            let locations = try f.query { try String.fetchAll($0, sql: "SELECT location FROM ingested_files") }
            #expect(locations.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        }
    }
}
