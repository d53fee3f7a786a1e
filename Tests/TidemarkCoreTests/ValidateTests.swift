import Foundation
import GRDB
import Logging
import Testing
@testable import TidemarkCore

/// A small realistic pipeline run: produced with late events, corrections and redeliveries,
/// ingested in several micro-batches, then checked.
final class ProducedPipeline: @unchecked Sendable {
    let folder = TestFolder()
    let summary: ProducerSummary

    init(events: Int = 3000, seed: UInt64 = 9) throws {
        var options = ProducerOptions(landingFolder: folder.landing, sentLogFolder: folder.sent,
                                      start: try Timestamp.parse("2025-07-30T10:55:00Z").get())
        options.rate = 5
        options.count = events
        options.seed = seed
        let producer = try Producer(options: options, logger: quietLogger)
        while try producer.advance(seconds: 97) {
            try folder.ingest()
        }
        try folder.ingest()
        summary = producer.summary
    }

    /// A copy of the finished pipeline to tamper with. Readers would find the copy's own
    /// archive anyway (`Ledger.currentPath`), but tests that tamper with an archived file take
    /// its path from the ledger: the paths are pointed at the copy, so that no test ever
    /// touches the shared original.
    func copy() throws -> TestFolder {
        let other = TestFolder()
        try FileManager.default.removeItem(atPath: other.root)
        try FileManager.default.copyItem(atPath: folder.root, toPath: other.root)
        let queue = try DatabaseQueue(path: other.database)
        try queue.write { db in
            try db.execute(sql: "UPDATE ingested_files SET location = replace(location, ?, ?)", arguments: [folder.root, other.root])
        }
        return other
    }
}

@Suite(.serialized) struct ValidateTests {
    // Built once, read-only afterwards: every test tampers with its own copy.
    static let pipeline: Result<ProducedPipeline, TidemarkError> = Result { try ProducedPipeline() }.mapError { TidemarkError("build pipeline", "", cause: "\($0)", exit: .ioError) }

    func validate(_ f: TestFolder, replay: Bool = false) throws -> ValidationReport {
        var options = ValidateOptions(dataFolder: f.data)
        options.sentLogFolder = f.sent
        options.replay = replay
        return try ValidateJob.run(options, logger: quietLogger)
    }

    func failed(_ r: ValidationReport) -> [String] { r.failedChecks }

    /// Validate recounts each hour's summary from the rows of its partition scan
    /// (`HourDelta.summaryLines`) instead of running `Summaries.freshSummarySQL`: both must give
    /// the same lines, on the produced pipeline and on event types whose String order and byte
    /// order differ, with a type whose every event is deleted and late events among them; and
    /// validate itself passes its summary check there.
    @Test func summaryRecountEqualsTheSQLRecomputation() throws {
        func recounted(_ f: TestFolder) throws -> [String: [String]] {
            try f.query { db in
                var out: [String: [String]] = [:]
                for p in try ValidationQueries.partitions(db) {
                    var recount = HourDelta()
                    try ValidationQueries.forEachRow(p.table, db) { row, _ in
                        let row = try #require(row)
                        recount.count(row, hash: row.contentHash, sign: 1)
                    }
                    out[p.hour.label] = recount.summaryLines()
                }
                return out
            }
        }
        func inSQL(_ f: TestFolder) throws -> [String: [String]] {
            try f.query { db in
                var out: [String: [String]] = [:]
                for p in try ValidationQueries.partitions(db) { out[p.hour.label] = try ValidationQueries.freshSummary(p.hour, db) }
                return out
            }
        }
        let pipeline = try Self.pipeline.get().folder
        let produced = try recounted(pipeline)
        let producedInSQL = try inSQL(pipeline)
        #expect(produced.count >= 2 && produced == producedInSQL)

        let f = TestFolder()
        func t(_ minute: Int) -> String { String(format: "2025-07-30T10:%02d:00Z", minute) }
        f.land("1.ndjson.gz", [
            recordLine("a", user: "u1", type: "r\u{E9}sum\u{E9}", time: t(50), received: t(50)),
            recordLine("b", user: "u2", type: "re\u{301}sume\u{301}", time: t(50), received: t(50)),
            recordLine("c", user: "u1", type: "View", time: t(51), received: t(51)),
            recordLine("d", user: "u1", type: "view", time: t(51), received: t(51)),
            recordLine("e", user: "u3", type: "view", time: t(52), received: t(52)),
            recordLine("g", user: "u1", type: "gone", time: t(53), received: t(53), valid: false),
            recordLine("h", user: "u2", type: "gone", time: t(53), received: t(53)),
            tombstoneLine("h", received: t(54)),
        ])
        try f.ingest()
        // Late: behind the watermark the first file set.
        f.land("2.ndjson.gz", [recordLine("l", user: "u4", type: "view", time: t(1), received: t(55)),
                               recordLine("m", user: "u4", type: "click", time: t(2), received: t(56))])
        let second = try f.ingest()
        #expect(second.lateEvents == 2)
        let crafted = try recounted(f)
        let craftedInSQL = try inSQL(f)
        #expect(crafted == craftedInSQL)
        #expect(crafted["2025-07-30T10"]?.contains("gone: valid 0, users 0, deleted 2, late 0") == true, "\(crafted)")
        #expect(crafted["2025-07-30T10"]?.contains("view: valid 3, users 3, deleted 0, late 1") == true, "\(crafted)")
        #expect(failed(try ValidateJob.run(ValidateOptions(dataFolder: f.data), logger: quietLogger)) == [])
    }

    /// Validate and rebuild split events into passes of at most `eventsPerPass`; a library
    /// caller's 0 means one event per pass, not a division by zero.
    @Test func aPassHoldsAtLeastOneEvent() {
        #expect(PassSplit.passes(for: 10, perPass: 0) == 10)
        #expect(PassSplit.passes(for: 0, perPass: 0) == 1)
        #expect(PassSplit.passes(for: 10, perPass: 4) == 3)
    }

    /// A row whose timestamp cannot be read is reported (partition_checksums), and its hour's
    /// summary rows are then recomputed in SQL, which still counts that row as ingest did: they
    /// are not reported as different. (The row's user is, in summary_users, which the scan
    /// compares from the rows it could read.)
    @Test func anUnreadableRowLeavesTheSummaryRowsToSQL() throws {
        let f = try Self.pipeline.get().copy()
        let (id, table) = try someEvent(f, valid: true)
        try write(f, "UPDATE \(table) SET event_time = 'garbage' WHERE event_id = '\(id)'")
        let report = try validate(f)
        #expect(report.findings(of: "partition_checksums").joined().contains("event \(id) in \(table) has an unreadable timestamp"))
        let summary = report.findings(of: "hourly_summary")
        #expect(!summary.contains { $0.contains("but partition gives") }, "\(summary)")
        #expect(summary.contains { $0.contains("summary_users rows differ") }, "\(summary)")
    }

    /// The checks that fail after one SQL change to a copy of the pipeline.
    func failedAfterTampering(_ sql: String) throws -> [String] {
        let f = try Self.pipeline.get().copy()
        try write(f, sql)
        return failed(try validate(f))
    }

    func write(_ f: TestFolder, _ sql: String) throws {
        try f.execute(sql)
    }

    func someEvent(_ f: TestFolder, valid: Bool) throws -> (id: String, table: String) {
        try f.query { db in
            for table in try String.fetchAll(db, sql: "SELECT table_name FROM partitions ORDER BY hour") {
                if let id = try String.fetchOne(db, sql: "SELECT event_id FROM \(table) WHERE is_valid = ? LIMIT 1", arguments: [valid ? 1 : 0]) {
                    return (id, table)
                }
            }
            throw TidemarkError("test", "", cause: "no such event", exit: .ioError)
        }
    }

    /// An hour whose table, partition row and summary were dropped by hand, while its events'
    /// lookup entries still name it: validate of that hour (or a range holding it) fails on
    /// them and names the rebuild, rather than pass as an hour with nothing to check.
    @Test func validateOfAnHourWhoseTableWasDroppedFails() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("a", time: "2025-07-30T09:10:00Z", received: "2025-07-30T09:10:00Z"),
                               recordLine("b", time: "2025-07-30T09:20:00Z", received: "2025-07-30T09:20:00Z"),
                               recordLine("c", time: "2025-07-30T10:10:00Z", received: "2025-07-30T10:10:00Z")])
        try f.ingest()
        try write(f, """
            DROP TABLE events_2025073009; DELETE FROM partitions WHERE hour = '2025-07-30T09';
            DELETE FROM hourly_summary WHERE hour = '2025-07-30T09'; DELETE FROM summary_users WHERE hour = '2025-07-30T09'
            """)
        for scope in [["--hour", "2025-07-30T09"], ["--from", "2025-07-30T09", "--to", "2025-07-30T10"]] {
            let run = try Binary.run(["validate", "--data", f.data] + scope)
            #expect(run.status == 1, "\(scope): \(run.stdout)")
            #expect(run.stdout.contains("event a: its lookup entry says hour 2025-07-30T09, which has no partition"), "\(run.stdout)")
        }
        #expect(try Binary.run(["validate", "--data", f.data, "--hour", "2025-07-30T10"]).status == 0)
        #expect(try Binary.run(["rebuild", "--data", f.data, "--hour", "2025-07-30T09"]).status == 0)
        let after = try Binary.run(["validate", "--data", f.data, "--hour", "2025-07-30T09"])
        #expect(after.status == 0, "\(after.stdout)")
        // The hour's lookup entries gone too: the file index still names the hour.
        let nine = try #require(PartitionHour.parse("2025-07-30T09")).hoursSinceEpoch
        try write(f, """
            DROP TABLE events_2025073009; DELETE FROM partitions WHERE hour = '2025-07-30T09';
            DELETE FROM hourly_summary WHERE hour = '2025-07-30T09'; DELETE FROM summary_users WHERE hour = '2025-07-30T09';
            DELETE FROM event_index WHERE hour = \(nine); DELETE FROM event_index_recent WHERE hour = \(nine)
            """)
        for scope in [[], ["--hour", "2025-07-30T09"], ["--from", "2025-07-30T08", "--to", "2025-07-30T10"]] {
            let run = try Binary.run(["validate", "--data", f.data] + scope)
            #expect(run.status == 1, "\(scope): \(run.stdout)")
            #expect(run.stdout.contains("hour 2025-07-30T09: 1 file touched it, but it has no partition"), "\(scope): \(run.stdout)")
        }
        #expect(try Binary.run(["validate", "--data", f.data, "--hour", "2025-07-30T10"]).status == 0)
        #expect(try Binary.run(["rebuild", "--data", f.data, "--all"]).status == 0)
        #expect(try Binary.run(["validate", "--data", f.data, "--replay"]).status == 0)
    }

    /// A line the producer sent that ingest rejected (dated more than a day ahead) is not
    /// expected in the tables: validate against the sent log leaves it out and says so, instead
    /// of reporting its event missing.
    @Test func linesIngestRejectedAreNotExpectedFromTheSentLog() throws {
        let f = TestFolder()
        let good = recordLine("a", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:01Z")
        let future = recordLine("b", time: "2099-01-01T00:00:00Z", received: "2025-07-30T10:00:02Z")
        f.land("1.ndjson.gz", [good, future])
        try FileManager.default.createDirectory(atPath: f.sent, withIntermediateDirectories: true)
        let entries = [good, future].enumerated().map { "{\"file\":\"1.ndjson.gz\",\"line\":\($0.offset + 1),\"record\":\($0.element)}\n" }.joined()
        #expect(FileManager.default.createFile(atPath: f.sent + "/sent-000000001.ndjson.gz", contents: Data(GzipWriter.gzip(entries))))
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        #expect(try f.integer("SELECT COUNT(*) FROM rejected_lines") == 1)
        let run = try Binary.run(["validate", "--data", f.data, "--sent-log", f.sent])
        #expect(run.status == 0, "\(run.stdout)")
        #expect(run.stdout.contains("source_rejected_lines") && run.stdout.contains("1 line that ingest rejected is not expected in the tables"), "\(run.stdout)")
        // The name used again for another file: its line 2 (a tombstone) was not rejected.
        let c = recordLine("c", time: "2025-07-30T10:00:03Z", received: "2025-07-30T10:00:03Z")
        let deletion = tombstoneLine("a", received: "2025-07-30T10:00:04Z")
        f.land("1.ndjson.gz", [c, deletion])
        let again = [c, deletion].enumerated().map { "{\"file\":\"1.ndjson.gz\",\"line\":\($0.offset + 1),\"record\":\($0.element)}\n" }.joined()
        #expect(FileManager.default.createFile(atPath: f.sent + "/sent-000000002.ndjson.gz", contents: Data(GzipWriter.gzip(again))))
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        #expect(try f.row("a")?.isValid == 0)
        let reused = try Binary.run(["validate", "--data", f.data, "--sent-log", f.sent])
        #expect(reused.status == 0, "\(reused.stdout)")
        // A sent line that is neither in the tables nor rejected is still missing.
        let lost = recordLine("d", time: "2025-07-30T10:00:05Z", received: "2025-07-30T10:00:05Z")
        #expect(FileManager.default.createFile(atPath: f.sent + "/sent-000000003.ndjson.gz",
                                               contents: Data(GzipWriter.gzip("{\"file\":\"2.ndjson.gz\",\"line\":1,\"record\":\(lost)}\n"))))
        let missing = try Binary.run(["validate", "--data", f.data, "--sent-log", f.sent])
        #expect(missing.status == 1 && missing.stdout.contains("source_no_record_missing"), "\(missing.stdout)")
    }

    @Test func passesAfterNormalRuns() throws {
        let p = try Self.pipeline.get()
        try #require(p.summary.late > 0 && p.summary.correctionsFlag > 0 && p.summary.correctionsTombstone > 0 && p.summary.duplicates > 0)
        let report = try validate(p.folder, replay: true)
        #expect(report.ok, "\(report.table)")
        #expect(report.checks.contains { $0.name == "source_no_record_missing" && $0.count == 3000 })
    }

    /// Validating against the sent log while files still wait in landing: the events in them
    /// are missing from the target, and the report says why (an info check naming the folder).
    @Test func filesStillInLandingAreNamedAsTheReasonForMissingEvents() throws {
        let f = TestFolder()
        #expect(try Binary.run(["produce", "--landing", f.landing, "--sent-log", f.sent, "--fast", "--count", "300", "--seed", "4"]).status == 0)
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data, "--max-files", "1"]).status == 0)
        let run = try Binary.run(["validate", "--data", f.data, "--landing", f.landing, "--sent-log", f.sent])
        #expect(run.status == 1)
        #expect(run.stdout.contains("landing_backlog"), "\(run.stdout)")
        #expect(run.stdout.contains("files still wait in \(f.landing): the sent log's events in them count as missing below"), "\(run.stdout)")
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        let after = try Binary.run(["validate", "--data", f.data, "--landing", f.landing, "--sent-log", f.sent])
        #expect(after.status == 0 && !after.stdout.contains("landing_backlog"), "\(after.stdout)")
        // A landing folder that cannot be read is said to be unknown, not taken as empty.
        let unknown = try Binary.run(["validate", "--data", f.data, "--landing", f.root + "/no-landing", "--sent-log", f.sent])
        #expect(unknown.status == 0 && unknown.stdout.contains("the landing folder could not be read"), "\(unknown.stdout)")
        // A quarantined file is listed for information: its events are not in the tables.
        f.landBytes("bad.ndjson.gz", Array("not gzip".utf8))
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        let quarantined = try Binary.run(["validate", "--data", f.data])
        #expect(quarantined.status == 0, "\(quarantined.stdout)")
        #expect(quarantined.stdout.contains("quarantined_files") && quarantined.stdout.contains("bad.ndjson.gz: not a gzip file"), "\(quarantined.stdout)")
    }

    @Test func deletedRowRemovedIsDetected() throws {
        let f = try Self.pipeline.get().copy()
        let (id, table) = try someEvent(f, valid: false)
        try write(f, "DELETE FROM \(table) WHERE event_id = '\(id)'")
        let r = try validate(f)
        #expect(failed(r).contains("source_no_record_missing"))
        #expect(failed(r).contains("one_row_per_event"))
        #expect(r.findings(of: "source_no_record_missing").joined().contains(id))
    }

    @Test func deletedEventSetValidIsDetected() throws {
        let f = try Self.pipeline.get().copy()
        let (id, table) = try someEvent(f, valid: false)
        try write(f, "UPDATE \(table) SET is_valid = 1 WHERE event_id = '\(id)'")
        let r = try validate(f)
        #expect(failed(r).contains("source_deletions_reflected"))
        #expect(failed(r).contains("deletion_markers"))
        #expect(r.findings(of: "source_deletions_reflected").joined().contains(id))
    }

    @Test func rowMovedToWrongHourIsDetected() throws {
        let f = try Self.pipeline.get().copy()
        let tables = try f.query { try String.fetchAll($0, sql: "SELECT table_name FROM partitions ORDER BY hour") }
        try #require(tables.count >= 2)
        let (id, table) = try someEvent(f, valid: true)
        let other = try #require(tables.first { $0 != table })
        try write(f, "INSERT INTO \(other) (\(PartitionTable.columns)) SELECT \(PartitionTable.columns) FROM \(table) WHERE event_id = '\(id)'; DELETE FROM \(table) WHERE event_id = '\(id)'")
        let r = try validate(f)
        #expect(failed(r).contains("rows_in_their_hour"))
        #expect(failed(r).contains("source_right_hour"))
    }

    @Test func secondRowOfAnEventInItsOwnPartitionIsDetected() throws {
        // Partition tables are keyed by row_id; event_index is what keeps one row per event.
        let f = try Self.pipeline.get().copy()
        let (id, table) = try someEvent(f, valid: true)
        // The second row (another user) comes after the first in row_id order.
        let copied = PartitionTable.columns.replacingOccurrences(of: "user_id", with: "'someone-else'")
        try write(f, "INSERT INTO \(table) (\(PartitionTable.columns)) SELECT \(copied) FROM \(table) WHERE event_id = '\(id)'")
        let r = try validate(f)
        #expect(failed(r).contains("one_row_per_event"))
        #expect(r.findings(of: "one_row_per_event").joined().contains("\(id) has a second row in \(table)"))
        // Compared with the archive, the second row is that check's finding: not a row the
        // archive does not explain, nor compared again (its other user would count as an update).
        let replayed = try validate(f, replay: true)
        #expect(failed(replayed).filter { $0.hasPrefix("replay_") } == [])
    }

    @Test func eventInTwoPartitionsIsDetected() throws {
        let f = try Self.pipeline.get().copy()
        let tables = try f.query { try String.fetchAll($0, sql: "SELECT table_name FROM partitions ORDER BY hour") }
        let (id, table) = try someEvent(f, valid: true)
        let other = try #require(tables.first { $0 != table })
        try write(f, "INSERT INTO \(other) (\(PartitionTable.columns)) SELECT \(PartitionTable.columns) FROM \(table) WHERE event_id = '\(id)'")
        let r = try validate(f)
        #expect(failed(r).contains("one_row_per_event"))
        #expect(r.findings(of: "one_row_per_event").joined().contains(id))
    }

    /// A row no delivery explains (with its lookup entry, so one_row_per_event holds) is what
    /// "nothing that was never sent" catches.
    @Test func rowNeverSentIsDetected() throws {
        let f = try Self.pipeline.get().copy()
        let (id, table) = try someEvent(f, valid: true)
        try write(f, """
            INSERT INTO \(table) (\(PartitionTable.columns)) SELECT 'never-sent', user_id, event_type, event_time, received_time, is_valid,
                deleted_by, deleted_at, is_late, extra, first_batch, last_batch FROM \(table) WHERE event_id = '\(id)';
            INSERT INTO event_index (event_id, hour, row_id) SELECT 'never-sent', hour, (SELECT MAX(row_id) FROM \(table))
                FROM event_index WHERE event_id = '\(id)' UNION ALL SELECT 'never-sent', hour, (SELECT MAX(row_id) FROM \(table))
                FROM event_index_recent WHERE event_id = '\(id)'
            """)
        let r = try validate(f, replay: true)
        #expect(failed(r).contains("source_nothing_extra"))
        #expect(failed(r).contains("replay_nothing_extra"))
        #expect(r.findings(of: "source_nothing_extra").joined().contains("event never-sent in \(table) is not in the sent log"))
    }

    @Test func lineAccountingThatDoesNotAddUpIsDetected() throws {
        #expect(try failedAfterTampering("UPDATE ingested_files SET lines_new = lines_new + 1 WHERE file_id = (SELECT MIN(file_id) FROM ingested_files WHERE status = 'applied')")
                == ["line_accounting"])
    }

    /// A deletion of the wrong kind or time (is_valid still 0) is a deletion not reflected.
    @Test func deletionOfTheWrongKindIsDetected() throws {
        let f = try Self.pipeline.get().copy()
        let (id, table) = try someEvent(f, valid: false)
        try write(f, """
            UPDATE \(table) SET deleted_by = CASE deleted_by WHEN 'flag' THEN 'tombstone' ELSE 'flag' END,
                deleted_at = '2025-07-30T09:00:00.000000000Z' WHERE event_id = '\(id)'
            """)
        let r = try validate(f)
        #expect(failed(r).contains("source_deletions_reflected"))
        #expect(r.findings(of: "source_deletions_reflected").joined().contains("event \(id): deletion"))
    }

    /// A tombstone whose event never came must stay pending; one dropped from the pending list is found.
    @Test func droppedPendingTombstoneIsDetected() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z"), tombstoneLine("waiting", received: "2025-07-30T10:00:01Z")])
        try f.ingest()
        var options = ValidateOptions(dataFolder: f.data)
        options.replay = true
        let logger = quietLogger
        #expect(try ValidateJob.run(options, logger: logger).ok)
        try write(f, "DELETE FROM pending_tombstones")
        let r = try ValidateJob.run(options, logger: logger)
        #expect(failed(r) == ["replay_tombstones"])
        #expect(r.findings(of: "replay_tombstones") == ["tombstone for waiting is neither applied nor pending"])
    }

    @Test func alteredSummaryIsDetected() throws {
        #expect(try failedAfterTampering("UPDATE hourly_summary SET valid_events = valid_events + 1 WHERE rowid = (SELECT MIN(rowid) FROM hourly_summary)")
                == ["hourly_summary"])
    }

    @Test func modifiedArchiveFileIsDetected() throws {
        let f = try Self.pipeline.get().copy()
        let location = try f.query { try String.fetchOne($0, sql: "SELECT location FROM ingested_files WHERE status = 'applied' LIMIT 1") }!
        var bytes = try FileSystem.readAll(location)
        bytes[bytes.count / 2] ^= 0x55
        createTestFile(atPath: location, contents: Data(bytes))
        let r = try validate(f)
        #expect(failed(r).contains("archived_files"))
        // The replay, which cannot read that file, still finishes its report.
        let replay = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(replay.status == 1, "\(replay.stderr)")
        #expect(replay.stdout.contains("archived_files") && replay.stdout.contains(location))
    }

    /// A sent-log record that does not parse stops validate with the file and line, whether it
    /// is read in the first pass or set aside for a later one (both run on the folding thread).
    @Test func aMalformedSentLogRecordStopsValidateNamingItsFileAndLine() throws {
        for (perPass, laterPass) in [(400_000, false), (700, false), (700, true)] {
            let f = try Self.pipeline.get().copy()
            let total = try f.integer("SELECT SUM(lines_read) FROM ingested_files") ?? 0
            let passes = PassSplit.passes(for: total, perPass: perPass)
            // An event whose id sends it to the first pass, or to a later one.
            let id = try #require((0..<1000).map { "malformed-\($0)" }.first { candidate in
                let pass = PassSplit.pass(ofHash: stableHash(candidate), count: passes)
                return laterPass ? pass > 0 : pass == 0
            })
            let names = try FileManager.default.contentsOfDirectory(atPath: f.sent).filter { $0.hasSuffix(".ndjson.gz") }.sorted()
            let last = f.sent + "/" + (try #require(names.last))
            var entries = 0
            _ = try GzipLineReader(path: last).forEachLine { _, _ in entries += 1 }
            let bad = "{\"file\":\"x.ndjson.gz\",\"line\":1,\"record\":{\"event_id\":\"\(id)\",\"user_id\":\"u\",\"event_type\":\"view\",\"event_time\":\"soon\"}}\n"
            let handle = try #require(FileHandle(forWritingAtPath: last))
            handle.seekToEndOfFile()
            handle.write(Data(GzipWriter.gzip(bad)))
            handle.closeFile()
            var options = ValidateOptions(dataFolder: f.data)
            options.sentLogFolder = f.sent
            options.eventsPerPass = perPass
            let error = try #require(throws: TidemarkError.self, "\(perPass) \(laterPass)") {
                try ValidateJob.run(options, logger: quietLogger)
            }
            #expect(error.exitStatus == .dataError)
            #expect(error.description.hasPrefix("read sent log \(last) line \(entries + 1)"), "\(error)")
            #expect(error.description.contains("event_time"), "\(error)")
        }
    }

    /// A fold whose caller gave up (validate failed) stops within 65,536 records instead of
    /// reading the whole source on its thread.
    @Test func aCancelledSourceFoldStopsReading() throws {
        final class Count: @unchecked Sendable {
            private let lock = NSLock()
            private var n = 0
            func bump() { lock.lock(); n += 1; lock.unlock() }
            var value: Int { lock.lock(); defer { lock.unlock() }; return n }
        }
        let read = Count()
        let source = ValidationSource(read: { _, body in
            for n in 0..<10_000_000 {
                read.bump()
                try body(.tombstone(eventID: "e\(n % 1000)", receivedTime: nil))
            }
        }, unparsable: { _, _, _ in nil })
        let fold = SourceFold.start(source: source, passes: 1, expectedPerPass: 1000, spills: nil)
        while read.value < 1000 { usleep(1000) }
        fold.cancel()
        var last = -1
        for _ in 0..<100 where read.value != last { // until it stops (at most 10 s)
            last = read.value
            usleep(100_000)
        }
        #expect(read.value < 1000 + 2 * 65_536, "read \(read.value) records after cancel")
    }

    @Test func severalPassesFindWhatOnePassFinds() throws {
        let f = try Self.pipeline.get().copy()
        var options = ValidateOptions(dataFolder: f.data)
        options.sentLogFolder = f.sent
        options.replay = true
        options.eventsPerPass = 700 // several passes over the hash split
        let clean = try ValidateJob.run(options, logger: quietLogger)
        #expect(failed(clean) == [])
        let (id, table) = try someEvent(f, valid: true)
        try write(f, "DELETE FROM \(table) WHERE event_id = '\(id)'; DELETE FROM event_index WHERE event_id = '\(id)'; DELETE FROM event_index_recent WHERE event_id = '\(id)'")
        let r = try ValidateJob.run(options, logger: quietLogger)
        #expect(failed(r).contains("source_no_record_missing"))
        #expect(failed(r).contains("replay_no_record_missing"))
        #expect(r.findings(of: "source_no_record_missing").joined().contains(id))
    }

    /// With no usable scratch folder for the set-aside records, validate warns and reads the
    /// sources again in each pass, and reports exactly what it reports with one.
    @Test func noScratchFolderOnlyCostsTime() throws {
        final class Warnings: LogHandler, @unchecked Sendable {
            private let lock = NSLock()
            private var messages: [String] = []
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .warning
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                lock.lock()
                messages.append("\(event.message)")
                lock.unlock()
            }
            var all: [String] { lock.lock(); defer { lock.unlock() }; return messages }
        }
        let f = try Self.pipeline.get().copy()
        let (id, table) = try someEvent(f, valid: true)
        try write(f, "UPDATE \(table) SET user_id = 'edited' WHERE event_id = '\(id)'")
        var options = ValidateOptions(dataFolder: f.data)
        options.sentLogFolder = f.sent
        options.replay = true
        options.eventsPerPass = 700
        let withScratch = try ValidateJob.run(options, logger: quietLogger)
        options.scratchFolder = f.root + "/no-such-folder"
        let warnings = Warnings()
        let without = try ValidateJob.run(options, logger: Logger(label: "test", factory: { _ in warnings }))
        #expect(warnings.all.contains { $0.contains("no scratch files for validate's passes") }, "\(warnings.all)")
        #expect(failed(without) == failed(withScratch) && failed(without).contains("source_updates_reflected"))
        #expect(without.findings(of: "source_updates_reflected") == withScratch.findings(of: "source_updates_reflected"))
        // The finding names the column that differs, with both values, and only that column.
        let finding = withScratch.findings(of: "source_updates_reflected").first ?? ""
        #expect(finding.hasPrefix("event \(id) in \(table): user_id expected ") && finding.hasSuffix(", table has edited"), "\(finding)")
    }

    /// A scratch file that cannot be written (its disk fills up) only costs time: the passes
    /// not read yet read the source again, and the report is the one validate gives with room.
    /// Run under `ulimit -f`, so that writes past 256 KiB fail with EFBIG. With two passes the
    /// second pass's scratch file outgrows its 1 MiB buffer, and fails while the first pass
    /// reads the source; with eleven passes each file stays in its buffer, and fails when the
    /// second pass writes it out.
    @Test func scratchFilesThatCannotBeWrittenOnlyCostTime() throws {
        let f = try TestFolder.producedByTheBinary(count: 20_000, seed: 21)
        let victims = try f.validEventsOfTheLargestHour(24)
        for (id, table) in victims { try write(f, "UPDATE \(table) SET user_id = 'not-the-sender' WHERE event_id = '\(id)'") }
        let scratch = f.root + "/scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        for perPass in ["12000", "2000"] {
            let arguments = ["validate", "--data", f.data, "--sent-log", f.sent, "--replay", "--json", "--events-per-pass", perPass]
            let withRoom = try Binary.run(arguments, environment: ["TMPDIR": scratch])
            let cramped = try Binary.run(arguments, environment: ["TMPDIR": scratch], fileSizeLimitKiB: 256)
            #expect(withRoom.status == 1 && withRoom.stdout.contains("source_updates_reflected"), "\(withRoom.stdout)\n\(withRoom.stderr)")
            #expect(!withRoom.stderr.contains("could not be written"), "\(withRoom.stderr)")
            #expect(cramped.stderr.contains("a scratch file for validate's passes could not be written"), "\(perPass): \(cramped.stderr)")
            #expect(cramped.stderr.contains(scratch), "the warning names the folder: \(cramped.stderr)")
            #expect(cramped.status == withRoom.status)
            #expect(cramped.stdout == withRoom.stdout, "\(perPass) per pass:\n\(cramped.stdout)\n---\n\(withRoom.stdout)")
        }
    }

    /// Validate in many passes (the first pass sets the later passes' records aside) reports
    /// exactly what one pass reports, for the sent log and the replay, clean or broken.
    @Test func manyPassesReportWhatOnePassReports() throws {
        let f = try Self.pipeline.get().copy()
        let victims = try f.validEventsOfTheLargestHour(16)
        for (n, (id, table)) in victims.enumerated() {
            if n % 2 == 0 {
                try write(f, "DELETE FROM \(table) WHERE event_id = '\(id)'; DELETE FROM event_index WHERE event_id = '\(id)'; DELETE FROM event_index_recent WHERE event_id = '\(id)'")
            } else {
                try write(f, "UPDATE \(table) SET user_id = 'not-the-sender' WHERE event_id = '\(id)'")
            }
        }
        func run(_ perPass: Int, scratch: String? = nil) throws -> [String] {
            var options = ValidateOptions(dataFolder: f.data)
            options.sentLogFolder = f.sent
            options.replay = true
            options.sampleLimit = 100
            options.eventsPerPass = perPass
            options.scratchFolder = scratch
            let report = try ValidateJob.run(options, logger: quietLogger)
            return report.checks.map { "\($0.name) \($0.status) \($0.count) \($0.findings.sorted())" }
        }
        let one = try run(10_000_000)
        let many = try run(300)
        #expect(many == one)
        // Without a place for scratch files every pass reads the source again: same report.
        #expect(try run(300, scratch: f.root + "/no-such-folder") == one)
        #expect(one.contains { $0.hasPrefix("source_no_record_missing failed 8 ") })
        #expect(one.contains { $0.hasPrefix("replay_updates_reflected failed 8 ") })
    }

    @Test func replayAloneFindsAChangedAttribute() throws {
        let f = try Self.pipeline.get().copy()
        let (id, table) = try someEvent(f, valid: true)
        try write(f, "UPDATE \(table) SET user_id = 'not-the-sender' WHERE event_id = '\(id)'")
        var options = ValidateOptions(dataFolder: f.data)
        options.replay = true
        let r = try ValidateJob.run(options, logger: quietLogger)
        #expect(failed(r).contains("replay_updates_reflected"))
        #expect(r.findings(of: "replay_updates_reflected").joined().contains(id))
    }

    @Test func sentEventMissingFromTargetIsDetected() throws {
        let f = try Self.pipeline.get().copy()
        let (id, table) = try someEvent(f, valid: true)
        try write(f, "DELETE FROM \(table) WHERE event_id = '\(id)'; DELETE FROM event_index WHERE event_id = '\(id)'; DELETE FROM event_index_recent WHERE event_id = '\(id)'")
        let r = try validate(f)
        #expect(failed(r).contains("source_no_record_missing"))
        #expect(failed(r).contains("partition_checksums"))
    }

    @Test func hourScopeChecksOnlyThoseHours() throws {
        let f = try Self.pipeline.get().copy()
        let tables = try f.query { try String.fetchAll($0, sql: "SELECT hour FROM partitions ORDER BY hour") }
        try #require(tables.count >= 2)
        let (first, last) = (tables.first!, tables.last!)
        try write(f, "UPDATE hourly_summary SET valid_events = valid_events + 1 WHERE hour = '\(last)'")
        let elsewhere = try Binary.run(["validate", "--data", f.data, "--sent-log", f.sent, "--hour", first])
        #expect(elsewhere.status == 0, "\(elsewhere.stdout)")
        let there = try Binary.run(["validate", "--data", f.data, "--from", first, "--to", last])
        #expect(there.status == 1)
        #expect(there.stdout.contains("hour \(last)"))
        let bad = try Binary.run(["validate", "--data", f.data, "--from", last, "--to", first])
        #expect(bad.status == 64)
    }

    @Test func cliExitCodes() throws {
        let p = try Self.pipeline.get()
        let ok = try Binary.run(["validate", "--data", p.folder.data, "--sent-log", p.folder.sent])
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
        #expect(ok.stdout.contains("validation passed"))
        #expect(ok.stderr.isEmpty) // progress only on a terminal
        let missing = try Binary.run(["validate", "--data", p.folder.data, "--sent-log", p.folder.root + "/nowhere"])
        #expect(missing.status == 66)
        #expect(missing.stderr.hasPrefix("error: read sent log \(p.folder.root)/nowhere: no such folder\nhint: pass the folder given to tidemark produce --sent-log"), "\(missing.stderr)")
        // A file given for the folder is named as such, not as missing.
        let sentFile = p.folder.root + "/sent-log-file"
        #expect(FileManager.default.createFile(atPath: sentFile, contents: Data("x".utf8)))
        let notFolder = try Binary.run(["validate", "--data", p.folder.data, "--sent-log", sentFile])
        #expect(notFolder.status == 66)
        #expect(notFolder.stderr.hasPrefix("error: read sent log \(sentFile): not a folder (a file is there)\nhint: pass the folder given to tidemark produce --sent-log"), "\(notFolder.stderr)")
        // A folder with no sent-log file in it (a wrong path that exists, or a landing folder)
        // is named as such, not compared as an empty log that explains no row.
        let landingLike = p.folder.root + "/not-sent"
        try FileManager.default.createDirectory(atPath: landingLike, withIntermediateDirectories: true)
        for files in [[], ["x.ndjson.gz"]] {
            for name in files { #expect(FileManager.default.createFile(atPath: landingLike + "/" + name, contents: Data("x".utf8))) }
            let noLog = try Binary.run(["validate", "--data", p.folder.data, "--sent-log", landingLike])
            #expect(noLog.status == 66, "\(noLog.stdout)\(noLog.stderr)")
            #expect(noLog.stderr.hasPrefix("error: read sent log \(landingLike): holds no sent-log file (sent-NNNNNNNNN.ndjson.gz)\nhint: pass the folder given to tidemark produce --sent-log"), "\(noLog.stderr)")
        }
        let noDB = try Binary.run(["validate", "--data", p.folder.root + "/nodata"])
        #expect(noDB.status == 66)
        for command in ["validate", "rebuild"] {
            for (value, shown) in [("0", "0"), ("9223372036854775807", "9223372036854775807")] { // the largest overflowed rebuild's pass arithmetic
                let usage = try Binary.run([command, "--data", p.folder.data, "--all", "--events-per-pass", value].filter { $0 != "--all" || command == "rebuild" })
                #expect(usage.status == 64 && usage.stderr.contains("--events-per-pass must be 1 to 100000000, got \(shown)"), "\(command): \(usage.stderr)")
            }
        }
        let f = try p.copy()
        try write(f, "UPDATE hourly_summary SET late_events = late_events + 5")
        let bad = try Binary.run(["validate", "--data", f.data, "--json"])
        #expect(bad.status == 1)
        let object = try JSONSerialization.jsonObject(with: Data(bad.stdout.utf8)) as? [String: Any]
        #expect(object?["ok"] as? Bool == false)
    }
}
