import Foundation
import GRDB
import GRDBSQLite
import Logging
import Testing
@testable import TidemarkCore

@Suite struct IngestTests {
    @Test func lateEventLandsInItsHourAndIsCountedLate() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("a", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z")])
        try f.ingest()
        f.land("2.ndjson.gz", [recordLine("late", time: "2025-07-30T10:59:00Z", received: "2025-07-30T11:00:05Z"),
                               recordLine("ontime", time: "2025-07-30T10:59:45Z", received: "2025-07-30T11:00:05Z")])
        let s = try f.ingest()
        #expect(s.lateEvents == 1)
        #expect(try f.row("late")?.table == "events_2025073010")
        #expect(try f.row("ontime")?.table == "events_2025073010")
        let late = try f.integer("SELECT late_events FROM hourly_summary WHERE hour = '2025-07-30T10'")
        #expect(late == 1)
    }

    @Test func theWatermarkDoesNotRunAheadOfTheIngestClock() throws {
        // One record two hours in the future (allowed: up to 24 h) must not make everything
        // after it late: the watermark follows event time only up to the ingest clock.
        let f = TestFolder()
        let now = f.options().clock().secondsSinceEpoch
        func at(_ offset: Double) -> String { Timestamp(secondsSinceEpoch: now + offset).rfc3339 }
        f.land("1.ndjson.gz", [recordLine("future", time: at(7200), received: at(0))])
        try f.ingestInProcess() // in process: the test's clock is the ingest clock
        f.land("2.ndjson.gz", [recordLine("recent", time: at(-10), received: at(0)),
                               recordLine("old", time: at(-600), received: at(0))])
        let s = try f.ingestInProcess()
        #expect(s.lateEvents == 1) // only "old", 10 minutes behind the clock
    }

    @Test func durabilitySettingsAreWALWithFullSync() throws {
        let f = TestFolder()
        let warehouse = try Warehouse(dataFolder: f.data)
        let (mode, sync) = try warehouse.withConnection { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"))
        }
        #expect(mode == "wal")
        #expect(sync == 2) // FULL: a commit is on disk before its files leave landing
    }

    /// SQLite counts a cache given in KiB in pages of the size at that moment; a new database
    /// switches from 4 KiB to larger pages after, and its cache held more memory than asked for
    /// (with 8 KiB pages, a 1M ingest's "8 MiB" cache used 17 MB). Filled well past its size, it stays within it.
    @Test func aNewDatabasesPageCacheHoldsNoMoreThanAskedFor() throws {
        let f = TestFolder()
        let warehouse = try Warehouse(dataFolder: f.data, cacheMebibytes: 2)
        let cacheBytes = try warehouse.withConnection { db -> Int32 in
            #expect(try Int.fetchOne(db, sql: "PRAGMA page_size") == Warehouse.pageSize)
            try db.execute(sql: "BEGIN")
            defer { try? db.execute(sql: "ROLLBACK") }
            try db.execute(sql: "CREATE TABLE filler (payload BLOB)")
            // 8 MB of rows in one transaction: four times the cache, all dirty.
            try db.execute(sql: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO filler SELECT randomblob(4000) FROM n")
            var used: Int32 = 0, highest: Int32 = 0
            #expect(sqlite3_db_status(db.sqliteConnection, SQLITE_DBSTATUS_CACHE_USED, &used, &highest, 0) == SQLITE_OK)
            return used
        }
        // 2 MiB and each page's header (about 3 %); twice that before the fix.
        #expect(cacheBytes > 1 << 20)
        #expect(cacheBytes <= (2 << 20) + (2 << 20) / 10, "the page cache holds \(cacheBytes) bytes for a 2 MiB cache")
    }

    @Test func invalidationByFlagAndByTombstone() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("f", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
                               recordLine("t", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        f.land("2.ndjson.gz", [recordLine("f", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:01:00Z", valid: false),
                               tombstoneLine("t")])
        let s = try f.ingest()
        #expect(s.lines.deletedByFlag == 1 && s.lines.deletedByTombstone == 1)
        #expect(try f.row("f")?.isValid == 0)
        #expect(try f.row("f")?.deletedBy == "flag")
        #expect(try f.row("t")?.isValid == 0)
        #expect(try f.row("t")?.deletedBy == "tombstone")
        let summary = try f.query { try Row.fetchOne($0, sql: "SELECT valid_events, deleted_events FROM hourly_summary") }
        #expect(summary?[0] == 0 && summary?[1] == 2)
    }

    @Test func tombstoneBeforeEventAndRedeliveryAfterDeletion() throws {
        let f = TestFolder()
        try FileManager.default.copyItem(atPath: fixture("decode/tombstone-before-event/1-tombstone.ndjson.gz"), toPath: f.landing + "/1-tombstone.ndjson.gz")
        var s = try f.ingest()
        #expect(s.tombstonesPending == 1)
        #expect(try f.row("t1") == nil)
        try FileManager.default.copyItem(atPath: fixture("decode/tombstone-before-event/2-event.ndjson.gz"), toPath: f.landing + "/2-event.ndjson.gz")
        s = try f.ingest()
        #expect(s.tombstonesPending == 0)
        #expect(try f.row("t1")?.isValid == 0)
        // At-least-once redelivery of the original, under a new name and with new bytes around it.
        f.land("3-redelivery.ndjson.gz", [recordLine("t1", user: "u1", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:01Z"),
                                          recordLine("t1", user: "u9", time: "2025-07-30T10:00:00Z", received: "2025-07-30T12:00:00Z")])
        try f.ingest()
        #expect(try f.row("t1")?.isValid == 0)
        #expect(try f.row("t1")?.userID == "u9")
    }

    @Test func newerUpdateWinsStaleOneDoesNot() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", user: "v1", type: "view", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        f.land("2.ndjson.gz", [recordLine("e", user: "v2", type: "click", time: "2025-07-30T12:00:00Z", received: "2025-07-30T10:05:00Z")])
        try f.ingest()
        f.land("3.ndjson.gz", [recordLine("e", user: "v0", type: "scroll", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:01:00Z")])
        let s = try f.ingest()
        #expect(s.lines.stale == 1)
        let row = try f.row("e")
        #expect(row?.userID == "v2")
        #expect(row?.table == "events_2025073012") // moved with the newer event_time
        let hours = try f.query { try String.fetchAll($0, sql: "SELECT hour FROM hourly_summary ORDER BY hour") }
        #expect(hours == ["2025-07-30T12"])
    }

    @Test func sameContentUnderAnotherNameAppliesOnce() throws {
        let f = TestFolder()
        let lines = [recordLine("x", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")]
        f.land("a.ndjson.gz", lines)
        try FileManager.default.copyItem(atPath: f.landing + "/a.ndjson.gz", toPath: f.landing + "/b.jsonl.gz")
        let s = try f.ingest()
        #expect(s.filesApplied == 1 && s.filesDuplicate == 1)
        let statuses = try f.query { try String.fetchAll($0, sql: "SELECT status FROM ingested_files ORDER BY name") }
        #expect(statuses == ["applied", "duplicate_content"])
        #expect(try f.ingest().filesApplied == 0)
    }

    @Test func corruptGzipIsQuarantinedAndTheNextFileApplied() throws {
        let f = TestFolder()
        try FileManager.default.copyItem(atPath: fixture("decode/truncated/events.ndjson.gz"), toPath: f.landing + "/1-truncated.ndjson.gz")
        f.land("2-good.ndjson.gz", [recordLine("g", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        let s = try f.ingest()
        #expect(s.filesQuarantined == 1 && s.filesApplied == 1)
        #expect(FileManager.default.fileExists(atPath: f.data + "/quarantine/1-truncated.ndjson.gz"))
        #expect(try f.row("m1") == nil) // nothing of the truncated file applied
        #expect(try f.row("g") != nil)
        let reason = try f.query { try String.fetchOne($0, sql: "SELECT reason FROM ingested_files WHERE status = 'quarantined'") }
        #expect(reason?.hasPrefix("truncated gzip") == true)
    }

    @Test func badLinesAreRejectedAndTheRestApplied() throws {
        let f = TestFolder()
        try FileManager.default.copyItem(atPath: fixture("decode/bad-utf8/events.ndjson.gz"), toPath: f.landing + "/x.ndjson.gz")
        let s = try f.ingest()
        #expect(s.lines.rejected == 1 && s.lines.new == 1)
        let rejected = try f.query { try Row.fetchOne($0, sql: "SELECT file_name, line_number, reason FROM rejected_lines") }
        #expect(rejected?[0] == "x.ndjson.gz")
        #expect(rejected?[1] == 1)
        #expect((rejected?[2] as String?)?.hasPrefix("invalid UTF-8") == true)
    }

    /// A UTF-8 byte order mark opening a file (some Windows tools write one) is skipped; one
    /// opening a later line rejects that line, saying why. Rebuild reads the file alike.
    @Test func aByteOrderMarkOpeningTheFileIsSkipped() throws {
        let f = TestFolder()
        f.land("bom.ndjson.gz", ["\u{FEFF}" + recordLine("first", time: "2025-07-30T10:00:00Z"),
                                 "\u{FEFF}" + recordLine("second", time: "2025-07-30T10:00:01Z")])
        let s = try f.ingest()
        #expect(s.lines.new == 1 && s.lines.rejected == 1)
        #expect(try f.row("first") != nil && f.row("second") == nil)
        let reason = try f.query { try String.fetchOne($0, sql: "SELECT reason FROM rejected_lines WHERE line_number = 2") }
        #expect(reason?.contains("found a UTF-8 byte order mark (BOM)") == true, "\(reason ?? "nil")")
        let rebuilt = try Binary.run(["rebuild", "--data", f.data, "--all", "--json"])
        #expect(rebuilt.status == 0 && !rebuilt.stdout.contains("repaired") && !rebuilt.stdout.contains("restored"), "\(rebuilt.stdout)")
    }

    @Test func multiMemberFixtureAppliesEveryLine() throws {
        let f = TestFolder()
        try FileManager.default.copyItem(atPath: fixture("decode/two-members/events.ndjson.gz"), toPath: f.landing + "/m.ndjson.gz")
        #expect(try f.ingest().lines.new == 2)
    }

    @Test func dryRunWritesNothing() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        let s = try f.ingest { $0.dryRun = true }
        #expect(s.lines.new == 1 && s.partitionsTouched == ["2025-07-30T10"])
        #expect(FileManager.default.fileExists(atPath: f.landing + "/1.ndjson.gz"))
        // Not even a database or a lock file: with none yet, the dry run plans in a temporary one.
        #expect(!FileManager.default.fileExists(atPath: f.data))
        #expect(try f.ingest().lines.new == 1)
        // With a database, the dry run leaves it as it was.
        f.land("2.ndjson.gz", [recordLine("e2", time: "2025-07-30T10:00:00Z")])
        #expect(try f.ingest { $0.dryRun = true }.lines.new == 1)
        #expect(try f.integer("SELECT COUNT(*) FROM ingested_files") == 1)
        #expect(try f.row("e2") == nil)
    }

    @Test func untouchedHoursAreNotRecomputed() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
                               recordLine("b", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z")])
        let first = try f.ingest()
        f.land("2.ndjson.gz", [recordLine("c", time: "2025-07-30T11:30:00Z", received: "2025-07-30T11:30:00Z")])
        let second = try f.ingest()
        #expect(second.partitionsTouched == ["2025-07-30T11"])
        let batches = try f.query { try Row.fetchAll($0, sql: "SELECT hour, computed_batch FROM hourly_summary ORDER BY hour") }
        #expect(batches.map { $0[1] as Int64 } == [first.batchID, second.batchID])
    }

    @Test func symlinksAndInProgressNamesAreIgnored() throws {
        let f = TestFolder()
        let outside = f.land("outside.ndjson.gz", [recordLine("o", time: "2025-07-30T10:00:00Z")], folder: f.root)
        try FileManager.default.createSymbolicLink(atPath: f.landing + "/link.ndjson.gz", withDestinationPath: outside)
        f.land(".hidden.ndjson.gz", [recordLine("h", time: "2025-07-30T10:00:00Z")])
        f.land("_tmp.ndjson.gz", [recordLine("u", time: "2025-07-30T10:00:00Z")])
        f.land("x.ndjson.gz.partial", [recordLine("p", time: "2025-07-30T10:00:00Z")])
        let s = try f.ingest()
        #expect(s.filesApplied == 0)
        #expect(FileManager.default.fileExists(atPath: f.landing + "/link.ndjson.gz"))
    }

    @Test func partitionCapQuarantinesFileWithTooManyHours() throws {
        let f = TestFolder()
        let lines = (0..<50).map { h in recordLine("h\(h)", time: Timestamp(nanosecondsSinceEpoch: (1_753_000_000 + Int64(h) * 3600) * 1_000_000_000).rfc3339) }
        f.land("many-hours.ndjson.gz", lines)
        f.land("normal.ndjson.gz", [recordLine("n", time: "2025-07-30T10:00:00Z")])
        let s = try f.ingest { $0.maxNewPartitions = 10 }
        #expect(s.filesQuarantined == 1 && s.filesApplied == 1)
        #expect(s.quarantined.first?.reason.contains("more than 10 new partitions") == true)
        #expect(try f.integer("SELECT COUNT(*) FROM partitions") == 1)
    }

    /// The cap is per batch: files that fit in a batch of their own, but not in what is left of
    /// this one, stay in landing for the next run (out of the ledger, counted in the backlog),
    /// and the next runs apply them. Only a file that alone needs more is quarantined, and its
    /// reason names how many hours, and which.
    @Test func partitionCapLeavesFilesForTheNextBatchAndQuarantinesOnlyAFileOverItAlone() throws {
        let f = TestFolder()
        for n in 0..<6 {
            f.land("f\(n).ndjson.gz", [recordLine("a\(n)", time: hour(2 * n)), recordLine("b\(n)", time: hour(2 * n + 1))])
        }
        f.land("g-old-hours.ndjson.gz", [recordLine("old", time: hour(0))])
        f.land("z-too-many.ndjson.gz", (100..<106).map { recordLine("z\($0)", time: hour($0)) })
        let first = try f.ingest { $0.maxNewPartitions = 5 }
        // f0 and f1 (4 hours) fit, f2 would make 6; hour 0 already planned, g fits too.
        #expect(first.filesApplied == 3 && first.filesDeferred == 4 && first.filesQuarantined == 1)
        #expect(first.backlogFiles == 4)
        #expect(first.quarantined.first?.name == "z-too-many.ndjson.gz")
        #expect(first.quarantined.first?.reason.hasPrefix("would create 6 new partitions (hours \(try Timestamp.parse(hour(100)).get().hour) to ") == true,
                "\(first.quarantined)")
        #expect(FileManager.default.fileExists(atPath: f.landing + "/f2.ndjson.gz"))
        #expect(try f.integer("SELECT COUNT(*) FROM ingested_files WHERE name = 'f2.ndjson.gz'") == 0)
        let second = try f.ingest { $0.maxNewPartitions = 5 }
        #expect(second.filesApplied == 2 && second.filesDeferred == 2 && second.filesQuarantined == 0)
        let third = try f.ingest { $0.maxNewPartitions = 5 }
        #expect(third.filesApplied == 2 && third.filesDeferred == 0 && third.backlogFiles == 0)
        for n in 0..<6 { #expect(try f.row("a\(n)") != nil && f.row("b\(n)") != nil) }
        let validate = try Binary.run(["validate", "--data", f.data])
        #expect(validate.status == 0, "\(validate.stdout)")
    }

    /// A file applied in slices (over 100,000 lines) that meets the full cap mid-file is rolled
    /// back whole and left for the next batch, like a small one. (In a new data folder, as
    /// here: the first load ends before the file, since a rollback to its savepoint takes a
    /// journal.)
    @Test func aSlicedFileThatMeetsTheCapIsLeftWholeForTheNextBatch() throws {
        let f = TestFolder()
        f.land("a.ndjson.gz", [recordLine("a", time: hour(0)), recordLine("a2", time: hour(1))])
        // The first slice (the first 106,496 lines: 13 decoded pieces of 8,192) lands in hour 2
        // alone and is applied; the last one reaches hours 3 and 4: the batch would make 5.
        let big = (0..<110_000).map { recordLine("big\($0)", time: hour(2)) } + (0..<2_000).map { recordLine("late\($0)", time: hour(3 + $0 % 2)) }
        f.land("b-big.ndjson.gz", big)
        let first = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data, "--max-new-partitions", "4", "--json", "-v"])
        #expect(first.status == 0)
        #expect(first.stdout.contains("\"files_applied\" : 1") && first.stdout.contains("\"files_left_for_next_batch\" : 1"), "\(first.stdout.prefix(600))")
        #expect(first.stderr.contains("rolled back the slices of the file applied so far"), "\(first.stderr)")
        #expect(first.stderr.contains("notice this batch created as many new partitions as --max-new-partitions allows; files that need more stay in landing for the next run"), "\(first.stderr)")
        #expect(try f.row("big0") == nil)
        #expect(try f.integer("SELECT COUNT(*) FROM partitions") == 2)
        let second = try f.ingest { $0.maxNewPartitions = 4 }
        #expect(second.filesApplied == 1 && second.lines.new == 112_000)
    }

    /// An event whose correction moves it to another hour leaves the same tables whether both
    /// deliveries come in one batch or in two: the hour it left keeps an (empty) table either
    /// way, and a rebuild finds every hour as it is.
    @Test func anEventMovedOutOfAnHourLeavesTheSameTablesInOneBatchOrTwo() throws {
        let first = recordLine("e1", user: "u1", type: "click", time: "2025-07-30T10:10:00Z", received: "2025-07-30T10:10:01Z")
        let moved = recordLine("e1", user: "u1", type: "click", time: "2025-07-30T11:10:00Z", received: "2025-07-30T11:10:01Z")
        func tables(_ f: TestFolder) throws -> [String] {
            try f.query { db in
                try Row.fetchAll(db, sql: "SELECT hour, table_name, row_count, valid_count, checksum FROM partitions ORDER BY hour").map { "\($0)" }
                    + String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'events_%' ORDER BY name")
                    + Row.fetchAll(db, sql: "SELECT * FROM hourly_summary ORDER BY hour").map { "\($0["hour"]!) \($0["event_type"]!) \($0["valid_events"]!)" }
            }
        }
        let oneBatch = TestFolder()
        oneBatch.land("1.ndjson.gz", [first, moved])
        try oneBatch.ingest()
        let twoBatches = TestFolder()
        twoBatches.land("1.ndjson.gz", [first])
        try twoBatches.ingest()
        twoBatches.land("2.ndjson.gz", [moved])
        try twoBatches.ingest()
        #expect(try tables(oneBatch) == tables(twoBatches))
        #expect(try tables(oneBatch).contains("events_2025073010"))
        for f in [oneBatch, twoBatches] {
            let rebuild = try RebuildJob.run(RebuildOptions(dataFolder: f.data), logger: quietLogger)
            #expect(rebuild.hours.map(\.outcome) == ["unchanged", "unchanged"], "\(rebuild.hours)")
        }
    }

    /// Same inputs give the same tables whatever the file order and batch boundaries.
    @Test func anyOrderAndBatchSplitGivesIdenticalTables() throws {
        var random = SeededRandom(seed: 5)
        var files: [[String]] = []
        let base = 1_753_869_600 // 2025-07-30T10:00:00Z
        func time(_ s: Int) -> String { Timestamp(nanosecondsSinceEpoch: Int64(base + s) * 1_000_000_000).rfc3339Millis }
        for _ in 0..<8 {
            var lines: [String] = []
            for _ in 0..<25 {
                let id = "e\(Int.random(in: 0..<40, using: &random))"
                switch Int.random(in: 0..<12, using: &random) {
                case 0: lines.append(tombstoneLine(id))
                case 1: lines.append(recordLine(id, time: time(Int.random(in: 0..<7200, using: &random)), received: time(Int.random(in: 0..<9000, using: &random)), valid: false))
                case 2: lines.append("{broken")
                default:
                    lines.append(recordLine(id, user: "u\(Int.random(in: 0..<5, using: &random))", type: ["view", "click"].randomElement(using: &random)!,
                                            time: time(Int.random(in: 0..<7200, using: &random)), received: time(Int.random(in: 0..<9000, using: &random))))
                }
            }
            files.append(lines)
        }
        var reference: [String]?
        var referenceSummary: [String]?
        for trial in 0..<5 {
            let f = TestFolder()
            // A tiny recent index folds into event_index every few batches: lookups, moves
            // and deletions must find events in either tree.
            // Groups of any size may claim lookup entries before looking events up.
            if trial > 0 {
                f.environment["TIDEMARK_RECENT_INDEX_CAPACITY"] = String(Int.random(in: 0...12, using: &random))
                f.environment["TIDEMARK_CLAIM_THRESHOLD"] = String(Int.random(in: 0...12, using: &random))
            }
            var order = Array(files.indices)
            if trial > 0 { order.shuffle(using: &random) }
            var pending = order
            while !pending.isEmpty {
                let take = trial == 0 ? pending.count : Int.random(in: 1...pending.count, using: &random)
                for index in pending.prefix(take) {
                    // Redeliver a file now and then: same content, other name.
                    f.land("f\(index)-\(trial).ndjson.gz", files[index])
                    if Int.random(in: 0..<3, using: &random) == 0 { f.land("again-\(index)-\(trial).ndjson.gz", files[index]) }
                }
                pending.removeFirst(take)
                try f.ingest()
            }
            let report = try ValidateJob.run(ValidateOptions(dataFolder: f.data), logger: quietLogger)
            #expect(report.failedChecks == [], "trial \(trial)")
            let rows = try f.eventRows()
            // The summaries, and the partitions themselves: which tables exist, their counts and checksums.
            let summary = try f.query { db in
                try Row.fetchAll(db, sql: "SELECT hour, event_type, valid_events, distinct_users, deleted_events FROM hourly_summary ORDER BY hour, event_type")
                    .map { "\($0)" }
                + Row.fetchAll(db, sql: "SELECT hour, table_name, row_count, valid_count, checksum FROM partitions ORDER BY hour").map { "\($0)" }
                + String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'events_%' ORDER BY name")
            }
            // Rebuilt from the archive, every hour is found as it is.
            let rebuild = try RebuildJob.run(RebuildOptions(dataFolder: f.data), logger: quietLogger)
            let allUnchanged = rebuild.hours.allSatisfy { $0.isUnchanged }
            #expect(allUnchanged, "trial \(trial): \(rebuild.hours.map { "\($0.hour) \($0.outcome)" })")
            if let reference {
                #expect(rows == reference, "trial \(trial)")
                #expect(summary == referenceSummary, "trial \(trial)")
            } else {
                reference = rows
                referenceSummary = summary
                #expect(rows.count > 20)
            }
        }
    }
}

/// Regressions found in review.
@Suite struct ReviewRegressionTests {
    /// A group or rebuild pass of more new rows than `EncodedRows.threadThreshold` is formatted
    /// and counted on a second thread, chunk by chunk: validate recomputes every hour's rows,
    /// checksum and summary from the rows, and rebuild writes the same rows back.
    @Test func rowsFormattedOnASecondThreadAreTheRowsWritten() throws {
        let f = TestFolder()
        let count = EncodedRows.threadThreshold + 2 * EncodedRows.rowsPerChunk + 17
        func t(_ second: Int) -> String { Timestamp(nanosecondsSinceEpoch: Int64(1_753_869_600 + second) * 1_000_000_000).rfc3339Millis }
        f.land("1.ndjson.gz", (0..<count).map { n in
            recordLine("big-\(n)", user: "u\(n % 37)", type: ["view", "click", "buy"][n % 3], time: t(n % 5000), received: t(n % 5000 + 5),
                       valid: n % 11 == 0 ? false : nil, extra: n % 7 == 0 ? ",\"note\":\"n\(n)\"" : "")
        })
        let summary = try f.ingest()
        #expect(summary.lines.new + summary.lines.deletedByFlag == count)
        func failed() throws -> [String] {
            try ValidateJob.run(ValidateOptions(dataFolder: f.data), logger: quietLogger).failedChecks
        }
        #expect(try failed() == [])
        let before = try f.eventRows()
        #expect(before.count == count)
        func rowIDs() throws -> [String] {
            try f.query { db in
                try ["events_2025073010", "events_2025073011"].flatMap { table in
                    try String.fetchAll(db, sql: "SELECT event_id || '@' || row_id FROM \(table) ORDER BY event_id")
                }
            }
        }
        let rowIDsBefore = try rowIDs()
        for hour in ["2025-07-30T10", "2025-07-30T11"] {
            let rebuild = try Binary.run(["rebuild", "--data", f.data, "--hour", hour])
            #expect(rebuild.status == 0 && rebuild.stdout.contains("unchanged"), "\(rebuild.stdout)\(rebuild.stderr)")
        }
        #expect(try f.eventRows() == before)
        #expect(try rowIDs() == rowIDsBefore, "rebuild keeps each surviving event's row_id")
        #expect(try failed() == [])
    }

    /// A NUL inside an id, user or type would be cut by every C-string path (GRDB binds text
    /// that way): "a\u0000b" would be stored or matched as "a". Such lines are rejected, with
    /// the reason, and the rest of the file applies.
    @Test func textWithANULCharacterIsRejectedNotCut() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [
            recordLine("a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
            tombstoneLine("a\\u0000b", received: "2025-07-30T10:01:00Z"),
            recordLine("c\\u0000", time: "2025-07-30T10:00:00Z"),
            recordLine("d", user: "u\\u0000", time: "2025-07-30T10:00:00Z"),
            recordLine("e", type: "\\u0000view", time: "2025-07-30T10:00:00Z"),
            recordLine("f", time: "2025-07-30\\u0000T10:00:00Z"),
            "{\"event_id\":\"g\u{0}\"}",
        ])
        let summary = try f.ingest()
        #expect(summary.lines.new == 1 && summary.lines.rejected == 6)
        // Reasons and raw texts keep what follows a NUL (written escaped).
        let stored = try f.query { try Row.fetchAll($0, sql: "SELECT reason, raw_text FROM rejected_lines WHERE line_number >= 6 ORDER BY line_number") }
        #expect((stored.first?[0] as String?)?.hasPrefix("event_time \"2025-07-30\\u0000T10:00:00Z\": ") == true, "\(stored)")
        #expect(stored.last?[1] as String? == "{\"event_id\":\"g\\0\"}", "\(stored)")
        #expect(try f.row("a")?.isValid == 1, "the tombstone for a\\u0000b must not delete a")
        let reasons = try f.query { try String.fetchAll($0, sql: "SELECT reason FROM rejected_lines WHERE line_number < 6 ORDER BY line_number") }
        #expect(reasons == ["event_id contains a NUL character (\\u0000), which SQLite tools and drivers cut text at",
                            "event_id contains a NUL character (\\u0000), which SQLite tools and drivers cut text at",
                            "user_id contains a NUL character (\\u0000), which SQLite tools and drivers cut text at",
                            "event_type contains a NUL character (\\u0000), which SQLite tools and drivers cut text at"])
    }

    /// "café" with é as one code point and as e + U+0301 are one String to Swift but two
    /// event_ids to SQLite (and to the source): they were merged into one event, losing one.
    @Test func eventIDsThatDifferOnlyInUnicodeNormalizationAreTwoEvents() throws {
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        try #require(composed == decomposed && Array(composed.utf8) != Array(decomposed.utf8), "the premise")
        let f = TestFolder()
        f.land("1.ndjson.gz", [
            recordLine(composed, user: "u\u{E9}", type: "r\u{E9}sum\u{E9}", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
            recordLine(decomposed, user: "ue\u{301}", type: "re\u{301}sume\u{301}", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:01Z"),
            tombstoneLine("x\u{E9}", received: "2025-07-30T10:00:02Z"),
        ])
        try f.ingest()
        // One group of a large batch claims lookup entries instead: the same must hold.
        f.environment["TIDEMARK_CLAIM_THRESHOLD"] = "0"
        f.land("2.ndjson.gz", [
            recordLine("xe\u{301}", time: "2025-07-30T10:05:00Z", received: "2025-07-30T10:05:00Z"), // not the pending one
            tombstoneLine(decomposed, received: "2025-07-30T10:06:00Z"),                            // deletes only its own
        ])
        try f.ingest()
        let rows = try f.query { db in
            try Row.fetchAll(db, sql: "SELECT hex(event_id), hex(user_id), is_valid FROM events_2025073010 ORDER BY event_id").map { "\($0[0] as String)/\($0[1] as String)/\($0[2] as Int)" }
        }
        #expect(rows == ["63616665CC81/7565CC81/0", "636166C3A9/75C3A9/1", "7865CC81/7531/1"])
        let summary = try f.query { db in
            try Row.fetchAll(db, sql: "SELECT hex(event_type), valid_events, distinct_users, deleted_events FROM hourly_summary ORDER BY event_type").map { "\($0[0] as String)/\($0[1] as Int)/\($0[2] as Int)/\($0[3] as Int)" }
        }
        #expect(summary == ["7265CC8173756D65CC81/0/0/1", "72C3A973756DC3A9/1/1/0", "76696577/1/1/0"])
        #expect(try f.integer("SELECT COUNT(*) FROM pending_tombstones") == 1)
        let check = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(check.status == 0, "\(check.stdout)")
        // Rebuild folds the archive by event_id the same way.
        let rebuild = try Binary.run(["rebuild", "--data", f.data, "--hour", "2025-07-30T10"])
        #expect(rebuild.status == 0 && rebuild.stdout.contains("unchanged"), "\(rebuild.stdout)\(rebuild.stderr)")
        #expect(try Binary.run(["validate", "--data", f.data, "--replay"]).status == 0)
        // A stored attribute that equals the source's only as a Swift String is a difference:
        // validate reports it, and rebuild counts and repairs it.
        try f.write { db in
            try db.execute(sql: "UPDATE events_2025073010 SET user_id = ? WHERE event_id = ?", arguments: ["ue\u{301}", composed])
        }
        let tampered = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(tampered.status == 1, "\(tampered.stdout)")
        #expect(tampered.stdout.split(separator: "\n").contains { $0.hasPrefix("replay_updates_reflected ") && $0.contains("FAILED") }, "\(tampered.stdout)")
        // The hints: rebuild first, and what to do should the replay still disagree after it.
        #expect(tampered.stdout.contains("hint: should a replay finding stay after rebuild --all, the event's history spans hours whose links (event_moves, file_hours) were lost: fold the whole archive into a new data folder, tidemark backfill --from-dir \(f.data)/archive --data NEW_DATA"), "\(tampered.stdout)")
        let repair = try Binary.run(["rebuild", "--data", f.data, "--hour", "2025-07-30T10", "--json"])
        let hours = (try JSONSerialization.jsonObject(with: Data(repair.stdout.utf8)) as? [String: Any])?["hours"] as? [[String: Any]]
        #expect(hours?.first?["changed"] as? Int == 1 && hours?.first?["outcome"] as? String == "repaired", "\(repair.stdout)")
        #expect(try Binary.run(["validate", "--data", f.data, "--replay"]).status == 0)
    }

    @Test func dryRunOfManyFilesCommitsNothing() throws {
        let f = TestFolder()
        for n in 0..<7 { f.land("\(n).ndjson.gz", [recordLine("d\(n)", time: "2025-07-30T10:00:00Z")]) }
        let s = try f.ingest { $0.dryRun = true; $0.filesPerCommit = 2 }
        #expect(s.lines.new == 7 && s.files.count == 7)
        #expect(try f.landingEntries().count == 7)
        #expect(!FileManager.default.fileExists(atPath: f.data))
    }

    @Test func staleDeliveryNamingAnotherHourDoesNotMakeRebuildInventRows() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e1", user: "new", time: "2025-07-30T12:10:00Z", received: "2025-07-30T12:10:00Z")])
        f.land("2.ndjson.gz", [recordLine("e1", user: "old", time: "2025-07-30T11:59:00Z", received: "2025-07-30T12:00:00Z"),
                               recordLine("e1", user: "old", time: "2025-07-30T11:58:00Z", received: "2025-07-30T12:00:01Z", valid: false),
                               recordLine("e2", time: "2025-07-30T11:30:00Z", received: "2025-07-30T11:30:00Z")])
        try f.ingest()
        #expect(try f.row("e1")?.table == "events_2025073012")
        #expect(try f.row("e1")?.isValid == 0)
        let rows = try f.eventRows()
        let rebuild = try Binary.run(["rebuild", "--data", f.data, "--all", "--json"])
        #expect(rebuild.status == 0, "\(rebuild.stderr)")
        #expect(!rebuild.stdout.contains("repaired") && !rebuild.stdout.contains("restored"), "\(rebuild.stdout)")
        #expect(try f.eventRows() == rows)
        let validate = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(validate.status == 0, "\(validate.stdout)")
        // A later newer delivery still moves it: no key clash with a phantom row.
        f.land("3.ndjson.gz", [recordLine("e1", user: "newest", time: "2025-07-30T11:00:00Z", received: "2025-07-30T13:00:00Z")])
        try f.ingest()
        #expect(try f.row("e1")?.table == "events_2025073011")
    }

    @Test func memberEndingExactlyAtTheBufferBoundaryIsRead() throws {
        let f = TestFolder()
        var text = ""
        var n = 0
        while text.utf8.count < 262_144 - 200 {
            text += recordLine("b\(n)", time: "2025-07-30T10:00:00Z") + "\n"
            n += 1
        }
        let pad = 262_144 - text.utf8.count - 1
        text += String(repeating: " ", count: pad) + "\n" // a blank line of spaces: ignored
        #expect(text.utf8.count == 262_144)
        f.landBytes("exact.ndjson.gz", GzipWriter.gzip(text))
        let s = try f.ingest()
        #expect(s.filesApplied == 1 && s.filesQuarantined == 0)
        #expect(s.lines.new == n)
        #expect(s.lines.rejected == 0) // the blank line is not a rejected record
    }

    @Test func pendingTombstoneKeepsItsEarliestTimeAcrossBatches() throws {
        let lines = [tombstoneLine("x", received: "2025-07-30T10:05:00Z"), tombstoneLine("x", received: "2025-07-30T10:01:00Z")]
        let event = [recordLine("x", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")]
        let split = TestFolder()
        split.land("1.ndjson.gz", lines)
        try split.ingest()
        split.land("2.ndjson.gz", event)
        try split.ingest()
        let together = TestFolder()
        together.land("1.ndjson.gz", lines)
        together.land("2.ndjson.gz", event)
        try together.ingest()
        #expect(try split.eventRows() == together.eventRows())
        let deletedAt = try split.query { try String.fetchOne($0, sql: "SELECT deleted_at FROM events_2025073010") }
        #expect(deletedAt == "2025-07-30T10:01:00.000000000Z")
    }

    /// A file quarantined half-written, then put back complete under its name (the README's
    /// retry): applied, no longer listed by status as quarantined, and validate passes
    /// although the quarantined copy is gone.
    @Test func aRepairedFilePutBackSettlesItsQuarantine() throws {
        let f = TestFolder()
        let lines = (0..<200).map { recordLine("r\($0)", time: "2025-07-30T10:00:00Z") }
        let whole = GzipWriter.gzip(lines.map { $0 + "\n" }.joined())
        f.landBytes("w.ndjson.gz", Array(whole.prefix(whole.count / 2)))
        #expect(try f.ingest().filesQuarantined == 1)
        let listed = try Binary.run(["status", "--data", f.data, "--landing", f.landing])
        #expect(listed.stdout.contains("quarantined files") && listed.stdout.contains("w.ndjson.gz"), "\(listed.stdout)")
        try FileManager.default.removeItem(atPath: f.data + "/quarantine/w.ndjson.gz")
        f.landBytes("w.ndjson.gz", whole)
        let retry = try f.ingest()
        #expect(retry.filesApplied == 1 && retry.lines.new == 200)
        let status = try Binary.run(["status", "--data", f.data, "--landing", f.landing])
        #expect(status.status == 0 && !status.stdout.contains("quarantined files"), "\(status.stdout)")
        let validate = try Binary.run(["validate", "--data", f.data])
        #expect(validate.status == 0, "\(validate.stdout)")

        // A producer that reuses names: a later file under a quarantined file's name does not
        // settle that quarantine while its quarantined copy is still there.
        f.landBytes("v.ndjson.gz", Array("not gzip".utf8))
        #expect(try f.ingest().filesQuarantined == 1)
        f.land("v.ndjson.gz", [recordLine("v", time: "2025-07-30T10:00:00Z")])
        #expect(try f.ingest().filesApplied == 1)
        let reused = try Binary.run(["status", "--data", f.data, "--landing", f.landing])
        #expect(reused.stdout.contains("quarantined files") && reused.stdout.contains("v.ndjson.gz"), "\(reused.stdout)")
    }

    @Test func quarantinedFilePutBackIsRetried() throws {
        let f = TestFolder()
        let lines = (0..<12).map { h in recordLine("q\(h)", time: Timestamp(nanosecondsSinceEpoch: (1_753_000_000 + Int64(h) * 3600) * 1_000_000_000).rfc3339) }
        f.land("hours.ndjson.gz", lines)
        #expect(try f.ingest { $0.maxNewPartitions = 5 }.filesQuarantined == 1)
        try FileManager.default.moveItem(atPath: f.data + "/quarantine/hours.ndjson.gz", toPath: f.landing + "/hours.ndjson.gz")
        let retry = try f.ingest()
        #expect(retry.filesApplied == 1 && retry.lines.new == 12 && retry.filesHealed == 0)
        let validate = try Binary.run(["validate", "--data", f.data])
        #expect(validate.status == 0, "\(validate.stdout)")
    }
}

/// An event_time `h` hours after a fixed start (2025-07-20T08:26:40Z), as RFC 3339 text.
private func hour(_ h: Int) -> String { Timestamp(nanosecondsSinceEpoch: (1_753_000_000 + Int64(h) * 3600) * 1_000_000_000).rfc3339 }
