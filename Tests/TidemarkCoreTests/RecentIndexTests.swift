import Foundation
import GRDB
import Logging
import Testing
@testable import TidemarkCore

/// The event lookup is two trees: small batches add to `event_index_recent`, which is folded
/// into `event_index` when full. Every path (update, move, deletion, rebuild, validate) must
/// find an event in either one.
@Suite struct RecentIndexTests {
    func lookup(_ f: TestFolder) throws -> (main: [String], recent: [String]) {
        try f.query { db in
            (try String.fetchAll(db, sql: "SELECT event_id || '@' || hour FROM event_index ORDER BY event_id"),
             try String.fetchAll(db, sql: "SELECT event_id || '@' || hour FROM event_index_recent ORDER BY event_id"))
        }
    }

    func failedChecks(_ f: TestFolder) throws -> [String] {
        try ValidateJob.run(ValidateOptions(dataFolder: f.data), logger: quietLogger).failedChecks
    }

    let h10 = PartitionHour.parse("2025-07-30T10")!.hoursSinceEpoch
    let h11 = PartitionHour.parse("2025-07-30T11")!.hoursSinceEpoch

    @Test func eventsInTheRecentIndexAreUpdatedMovedAndDeleted() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [
            recordLine("a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
            recordLine("b", time: "2025-07-30T10:05:00Z", received: "2025-07-30T10:05:00Z"),
            recordLine("c", time: "2025-07-30T10:06:00Z", received: "2025-07-30T10:06:00Z"),
        ])
        try f.ingest()
        #expect(try lookup(f).main == [])
        #expect(try lookup(f).recent == ["a@\(h10)", "b@\(h10)", "c@\(h10)"])
        // a moves to 11:00, b is deleted by tombstone, c is updated in place.
        f.land("2.ndjson.gz", [
            recordLine("a", time: "2025-07-30T11:00:00Z", received: "2025-07-30T10:30:00Z"),
            tombstoneLine("b"),
            recordLine("c", user: "u7", time: "2025-07-30T10:06:00Z", received: "2025-07-30T10:31:00Z"),
        ])
        try f.ingest()
        #expect(try lookup(f).recent == ["a@\(h11)", "b@\(h10)", "c@\(h10)"])
        #expect(try f.row("a")?.table == "events_2025073011")
        #expect(try f.row("b")?.isValid == 0)
        #expect(try f.row("c")?.userID == "u7")
        #expect(try failedChecks(f) == [])
    }

    @Test func aFullRecentIndexIsFoldedAndBothTreesStayConsistent() throws {
        let f = TestFolder()
        // Room for 4 entries; a group may add at most 4 / 4 = 1 new event to it.
        f.environment["TIDEMARK_RECENT_INDEX_CAPACITY"] = "4"
        // Three new events in one group: too many for the recent index, so into event_index.
        f.land("1.ndjson.gz", [
            recordLine("a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
            recordLine("b", time: "2025-07-30T10:01:00Z", received: "2025-07-30T10:01:00Z"),
            recordLine("c", time: "2025-07-30T10:02:00Z", received: "2025-07-30T10:02:00Z"),
        ])
        try f.ingest()
        #expect(try lookup(f) == (["a@\(h10)", "b@\(h10)", "c@\(h10)"], []))
        for (n, id) in ["d", "e", "f", "g"].enumerated() {
            f.land("2-\(id).ndjson.gz", [recordLine(id, time: "2025-07-30T10:1\(n):00Z", received: "2025-07-30T10:1\(n):00Z")])
            try f.ingest()
        }
        #expect(try lookup(f).recent == ["d@\(h10)", "e@\(h10)", "f@\(h10)", "g@\(h10)"])
        // h does not fit: d–g are folded into event_index first. a (always in event_index)
        // and d (folded now) move to 11:00 in the same batch.
        f.land("3.ndjson.gz", [
            recordLine("h", time: "2025-07-30T10:20:00Z", received: "2025-07-30T10:20:00Z"),
            recordLine("a", time: "2025-07-30T11:10:00Z", received: "2025-07-30T10:40:00Z"),
            recordLine("d", time: "2025-07-30T11:11:00Z", received: "2025-07-30T10:41:00Z"),
        ])
        try f.ingest()
        #expect(try lookup(f) == (["a@\(h11)", "b@\(h10)", "c@\(h10)", "d@\(h11)", "e@\(h10)", "f@\(h10)", "g@\(h10)"], ["h@\(h10)"]))
        #expect(try failedChecks(f) == [])
        // Rebuild works on event_index alone: it folds the recent entries first.
        let before = try f.eventRows()
        let rebuild = try Binary.run(["rebuild", "--data", f.data, "--all"])
        #expect(rebuild.status == 0, "\(rebuild.stderr)")
        #expect(try lookup(f).recent == [])
        #expect(try lookup(f).main.count == 8)
        #expect(try f.eventRows() == before)
        #expect(try failedChecks(f) == [])
    }

    /// A large group claims the `event_index` entry of each event it has a record of before
    /// looking events up (`TIDEMARK_CLAIM_THRESHOLD` lowers what counts as large), and takes
    /// the merge of events new to it from its own fold (`GroupFold`, on a second thread). New
    /// events, events in either tree, moves, deletions, a tombstone waiting for its event and
    /// events delivered twice in one group must come out exactly as when every event is looked
    /// up and merged one delivery at a time: the same rows and lookup entries, and the same
    /// counts per file, hours per file and moves.
    @Test func claimingEntriesGivesTheSameTablesAsLookingEventsUp() throws {
        func t(_ minute: Int) -> String { String(format: "2025-07-30T%02d:%02d:00Z", 10 + minute / 60, minute % 60) }
        var reference: (rows: [String], lookup: [String], bookkeeping: [String])?
        for claim in [false, true] {
            let f = TestFolder()
            f.environment["TIDEMARK_RECENT_INDEX_CAPACITY"] = "64"
            // 20 new events (more than 64 / 4) go to event_index, then e to the recent tree;
            // f's tombstone waits.
            f.land("1.ndjson.gz", (0..<20).map { recordLine("a\($0)", time: t($0), received: t($0)) })
            try f.ingest()
            f.land("2.ndjson.gz", [recordLine("e", time: t(30), received: t(30)), tombstoneLine("f", received: t(31)),
                                   recordLine("z", time: t(55), received: t(32))])
            try f.ingest()
            // z holds the last row of 10:00, and moves to an earlier hour below: its old row must
            // go only after the claimed rows of 10:00 are appended, or SQLite would give its
            // row_id again instead of the one claimed (a debug build stops on that).
            let last = try f.query { try String.fetchOne($0, sql: "SELECT event_id FROM events_2025073010 ORDER BY row_id DESC LIMIT 1") }
            try #require(last == "z")
            let trace = f.root + "/group-trace"
            if claim {
                f.environment["TIDEMARK_CLAIM_THRESHOLD"] = "0"
                f.environment["TIDEMARK_GROUP_TRACE"] = trace
            }
            f.land("3.ndjson.gz", [
                recordLine("a0", time: t(70), received: t(40)),            // moves to 11:00
                recordLine("a1", user: "u9", time: t(1), received: t(41)),  // updated in place
                tombstoneLine("a2", received: t(42)),                      // deleted, tombstone only here
                recordLine("e", type: "click", time: t(30), received: t(43)), // in the recent tree
                recordLine("f", time: t(44), received: t(44)),             // meets its tombstone
                recordLine("g", time: t(45), received: t(50)),             // twice: the later-received
                recordLine("g", time: t(75), received: t(46)),             //   one wins, in 10:00
                recordLine("h", time: t(47), received: t(47)),
                recordLine("h", time: t(80), received: t(48)),             // wins: h lives in 11:00
                tombstoneLine("i", received: t(49)),                       // waits
                recordLine("k", time: t(80), received: t(51)),             // equal received times:
                recordLine("k", time: t(50), received: t(51)),             //   the later event_time wins
                recordLine("m", time: t(52)),                              // no received times:
                recordLine("m", time: t(85)),                              //   likewise, 11:00
                recordLine("z", time: "2025-07-30T09:59:00Z", received: t(53)), // the last row of 10:00
                                                                           //   moves to an earlier hour
                recordLine("n", time: t(54), received: t(54)),             // delivered twice:
                recordLine("n", time: t(54), received: t(54)),             //   a duplicate
                recordLine("p", time: "2025-07-30T08:00:00Z", received: t(56)), // new and late
                recordLine("q", time: t(57), received: t(57)),             // new, then deleted
                tombstoneLine("q", received: t(58)),                       //   in the same group
                recordLine("r", time: t(59), received: t(59), valid: false), // new and deleted by flag
            ])
            let summary = try f.ingest()
            #expect(summary.lines.read == 21)
            // n's second delivery is a duplicate; g's and k's second ones are stale.
            #expect(summary.lines.duplicate == 1 && summary.lines.stale == 2, "claim \(claim)")
            #expect(try failedChecks(f) == [], "claim \(claim)")
            if claim {
                // g, h, k, m, n, p, q and r are new to the store, nothing waits for them and a
                // record comes first: they took the group's own fold. f (a tombstone waits),
                // i (a tombstone only) and the stored events did not.
                #expect(try String(contentsOfFile: trace, encoding: .utf8) == "events=15 from_fold=8\n")
                // Claimed entries go to event_index; e and z stayed in the recent tree.
                #expect(try lookup(f).recent == ["e@\(h10)", "z@\(h10 - 1)"])
                let main = try lookup(f).main
                #expect(main.contains("h@\(h11)") && main.contains("g@\(h10)") && main.contains("k@\(h11)") && main.contains("m@\(h11)"))
            }
            let all = try (lookup(f).main + lookup(f).recent).sorted()
            let rows = try f.eventRows()
            let bookkeeping = try f.query { db in
                try Row.fetchAll(db, sql: """
                    SELECT name, lines_read, lines_new, lines_updated, lines_duplicate, lines_stale, lines_deleted, late_events
                    FROM ingested_files ORDER BY name
                    """).map { "\($0)" }
                    + Row.fetchAll(db, sql: "SELECT * FROM file_hours ORDER BY file_id, hour").map { "\($0)" }
                    + Row.fetchAll(db, sql: "SELECT * FROM event_moves ORDER BY rowid").map { "\($0)" }
            }
            if let reference {
                #expect(rows == reference.rows)
                #expect(all == reference.lookup)
                #expect(bookkeeping == reference.bookkeeping)
            } else {
                reference = (rows, all, bookkeeping)
                #expect(rows.count == 31)
                // a0, z, and h and m within the group, moved.
                #expect(bookkeeping.filter { $0.contains("from_hour") }.count == 4, "\(bookkeeping)")
            }
            // Another batch after the claimed one finds every event where the claims left it.
            f.land("4.ndjson.gz", [recordLine("g", user: "u5", time: t(45), received: t(90)), recordLine("h", time: t(20), received: t(91))])
            try f.ingest()
            if claim {
                // Both events are stored: the fold is cancelled, not waited for (no trace line).
                #expect(try String(contentsOfFile: trace, encoding: .utf8) == "events=15 from_fold=8\n")
            }
            #expect(try failedChecks(f) == [], "claim \(claim)")
            #expect(try f.row("g")?.userID == "u5")
            #expect(try f.row("h")?.table == "events_2025073010")
            #expect(try f.row("z")?.table == "events_2025073009")
        }
    }

    @Test func validateFindsAnEventInBothTrees() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        try f.ingest()
        let queue = try DatabaseQueue(path: f.database)
        try queue.write { try $0.execute(sql: "INSERT INTO event_index SELECT * FROM event_index_recent") }
        try queue.close()
        #expect(try failedChecks(f) == ["one_row_per_event"])
        // The finding names the hours, and rebuilding them repairs the lookup (rebuild's own
        // fold of the recent tree must not stop at the contradiction it is there to repair).
        let report = try Binary.run(["validate", "--data", f.data])
        #expect(report.stdout.contains("event a has entries in both event_index (hour 2025-07-30T10) and event_index_recent (hour 2025-07-30T10): rebuild --hour 2025-07-30T10"), "\(report.stdout)")
        let rebuild = try Binary.run(["rebuild", "--data", f.data, "--hour", "2025-07-30T10"])
        #expect(rebuild.status == 0, "\(rebuild.stderr)")
        #expect(try failedChecks(f) == [])
        #expect(try lookup(f).main == ["a@\(h10)"] && lookup(f).recent == [])
    }

    /// Entries of one event in both trees naming different hours: the finding names both
    /// rebuilds, one after the other (`--hour` takes one hour), and running them repairs it,
    /// whichever of the two entries was the wrong one.
    @Test func validateNamesBothHoursOfAnEventInBothTrees() throws {
        for wrongTree in ["event_index", "event_index_recent"] {
            let f = TestFolder()
            f.land("1.ndjson.gz", [recordLine("b", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z")])
            try f.ingest()
            let queue = try DatabaseQueue(path: f.database)
            try queue.write { db in
                if wrongTree == "event_index" {
                    try db.execute(sql: "INSERT INTO event_index SELECT event_id, ?, row_id FROM event_index_recent", arguments: [h10])
                } else { // the large tree is right, the recent entry names another hour
                    try db.execute(sql: "INSERT INTO event_index SELECT * FROM event_index_recent")
                    try db.execute(sql: "UPDATE event_index_recent SET hour = ?", arguments: [h10])
                }
            }
            try queue.close()
            let (large, recent) = wrongTree == "event_index" ? ("10", "11") : ("11", "10")
            let report = try Binary.run(["validate", "--data", f.data])
            #expect(report.status == 1)
            #expect(report.stdout.contains("event b has entries in both event_index (hour 2025-07-30T\(large)) and event_index_recent (hour 2025-07-30T\(recent)): rebuild --hour 2025-07-30T\(large), then rebuild --hour 2025-07-30T\(recent)"), "\(wrongTree) wrong: \(report.stdout)")
            for hour in ["2025-07-30T\(large)", "2025-07-30T\(recent)"] {
                let rebuild = try Binary.run(["rebuild", "--data", f.data, "--hour", hour])
                #expect(rebuild.status == 0, "\(rebuild.stderr)")
            }
            #expect(try failedChecks(f) == [], "\(wrongTree) wrong")
            #expect(try lookup(f).main == ["b@\(h11)"] && lookup(f).recent == [], "\(wrongTree) wrong")
        }
    }
}
