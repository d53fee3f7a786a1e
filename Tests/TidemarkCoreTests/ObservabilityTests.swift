import Foundation
import GRDB
import Logging
import Testing
@testable import TidemarkCore

/// Parses the Prometheus text exposition format strictly enough to catch mistakes:
/// returns metric name → (type, value).
func parsePrometheus(_ text: String) throws -> [String: (type: String, value: Double)] {
    struct Bad: Error { var line: String }
    var types: [String: String] = [:]
    var out: [String: (String, Double)] = [:]
    let name = #"^[a-zA-Z_:][a-zA-Z0-9_:]*$"#
    for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) where !line.isEmpty {
        if line.hasPrefix("# HELP ") { continue }
        if line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            guard parts.count == 4, ["counter", "gauge"].contains(parts[3]) else { throw Bad(line: line) }
            types[String(parts[2])] = String(parts[3])
            continue
        }
        let parts = line.split(separator: " ")
        guard parts.count == 2, parts[0].range(of: name, options: .regularExpression) != nil, let value = Double(parts[1]),
              let type = types[String(parts[0])] else { throw Bad(line: line) }
        if type == "counter" && !parts[0].hasSuffix("_total") { throw Bad(line: line) }
        out[String(parts[0])] = (type, value)
    }
    return out
}

@Suite(.serialized) struct ObservabilityTests {
    static let demo: Result<(folder: TestFolder, run: BinaryRun), TidemarkError> = Result {
        let f = TestFolder()
        let run = try Binary.run(["demo", "--dir", f.root + "/demo", "--events", "4000", "--metrics-file", f.root + "/metrics.prom",
                                  "--html", f.root + "/report.html"])
        return (f, run)
    }.mapError { TidemarkError("demo", "", cause: "\($0)", exit: .ioError) }

    @Test func demoPassesAndSummarizes() throws {
        let (_, run) = try Self.demo.get()
        #expect(run.status == 0, "\(run.stderr)")
        for needle in ["validation passed", "events produced", "late events", "deleted", "duplicates absorbed", "partitions reprocessed", "ingestion lag"] {
            #expect(run.stdout.contains(needle), "missing \(needle)")
        }
        // Every hour was rebuilt and found unchanged (not zero of zero).
        let partitions = run.stdout.firstMatch(of: /events in (\d+) hourly partitions/).map { Int($0.1)! } ?? 0
        #expect(partitions > 0)
        #expect(run.stdout.contains("\(partitions) of \(partitions) hours unchanged (every row recomputed and compared; a dry run, nothing written)"), "\(run.stdout)")
        // A second run into the same folder is refused rather than summarizing duplicates.
        let (f, _) = try Self.demo.get()
        let again = try Binary.run(["demo", "--dir", f.root + "/demo", "--events", "10"])
        #expect(again.status == 64 && again.stderr.contains("already holds a demo run"), "\(again.stderr)")
    }

    /// Status shows a lag of a minute or more as a duration (the demo's batches run every two
    /// simulated minutes, so their lag p95 is over a minute), not as seconds with a decimal.
    @Test func statusShowsLongLagsAsDurations() throws {
        let (f, _) = try Self.demo.get()
        let status = try Binary.run(["status", "--data", f.root + "/demo/data", "--landing", f.root + "/demo/landing"])
        #expect(status.status == 0, "\(status.stderr)")
        let batchLines = status.stdout.split(separator: "\n").filter { $0.contains(" ingest ") && $0.contains("succeeded") }
        #expect(!batchLines.isEmpty, "\(status.stdout)")
        #expect(batchLines.contains { $0.firstMatch(of: /\d+ min( \d+ s)?$/) != nil }, "\(status.stdout)")
        #expect(!batchLines.contains { $0.firstMatch(of: /\d{3,}\.\d s$/) != nil }, "\(status.stdout)")
    }

    /// The demo fails when its dry-run rebuild would change an hour, even with validation passed.
    @Test func demoFailsWhenItsRebuildWouldChangeAnHour() {
        func hour(_ label: String, _ outcome: String) -> RebuildHourResult {
            RebuildHourResult(hour: label, checksumBefore: nil, checksumAfter: "0", rows: 1, added: 0, changed: 0, removed: 0,
                              filesRead: 1, outcome: outcome)
        }
        var result = DemoResult(produced: ProducerSummary(), validation: ValidationReport(), folder: "/demo")
        result.rebuild = RebuildReport(dryRun: true, hours: [hour("2025-07-30T10", "would be unchanged")])
        #expect(result.ok)
        result.rebuild.hours.append(hour("2025-07-30T11", "would be repaired"))
        #expect(!result.ok)
        #expect(result.summary.contains("FAILED: 2025-07-30T11 differed from their raw files"), "\(result.summary)")
    }

    @Test func metricsFileParsesAndHoldsTheCounters() throws {
        let (f, _) = try Self.demo.get()
        let text = try String(contentsOfFile: f.root + "/metrics.prom", encoding: .utf8)
        let metrics = try parsePrometheus(text)
        for counter in ["files_applied", "lines_read", "events_new", "events_duplicate", "events_stale", "deletions_flag",
                        "deletions_tombstone", "late_events", "rejected_lines", "files_quarantined", "files_duplicate_content", "batches"] {
            #expect(metrics["tidemark_\(counter)_total"]?.type == "counter", "\(counter)")
        }
        #expect(metrics["tidemark_events_new_total"]?.value == 4000)
        #expect((metrics["tidemark_deletions_flag_total"]?.value ?? 0) > 0)
        #expect(metrics["tidemark_last_success_timestamp_seconds"]?.type == "gauge")
        // The last batch's gauges too, as an ingest writes them.
        for gauge in ["last_batch_duration_seconds", "last_batch_files", "backlog_files", "tombstones_pending"] {
            #expect(metrics["tidemark_\(gauge)"]?.type == "gauge", "\(gauge)")
        }
        #expect(!FileManager.default.fileExists(atPath: f.root + "/.metrics.prom.tmp"))
    }

    @Test func ingestWritesMetricsWithLastBatchGauges() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:01Z")])
        let run = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data, "--metrics-file", f.root + "/m/tidemark.prom"])
        #expect(run.status == 0)
        let metrics = try parsePrometheus(try String(contentsOfFile: f.root + "/m/tidemark.prom", encoding: .utf8))
        #expect(metrics["tidemark_last_batch_files"]?.value == 1)
        #expect(metrics["tidemark_backlog_files"]?.value == 0)
        #expect(metrics["tidemark_ingestion_lag_max_seconds"] != nil)
        #expect(metrics["tidemark_event_delay_max_seconds"]?.value == 1)

        // An idle run keeps the lag and delay gauges, from the last batch that read events:
        // a series that vanishes breaks absent() alerts.
        let idle = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data, "--metrics-file", f.root + "/m/tidemark.prom"])
        #expect(idle.status == 0)
        let after = try parsePrometheus(try String(contentsOfFile: f.root + "/m/tidemark.prom", encoding: .utf8))
        #expect(after["tidemark_last_batch_files"]?.value == 0)
        #expect(after["tidemark_event_delay_max_seconds"]?.value == 1)
        #expect(after["tidemark_ingestion_lag_max_seconds"]?.value == metrics["tidemark_ingestion_lag_max_seconds"]?.value)
        #expect(after["tidemark_ingestion_lag_p50_seconds"] != nil && after["tidemark_event_delay_p95_seconds"] != nil)
    }

    @Test func htmlReportIsSelfContained() throws {
        let (f, _) = try Self.demo.get()
        let html = try String(contentsOfFile: f.root + "/report.html", encoding: .utf8)
        #expect(html.contains("<svg") && html.contains("Events per hour") && html.contains("Ingestion lag per batch"))
        #expect(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"))
    }

    /// Output files go where asked: a missing folder is created (as for --metrics-file), and
    /// an error names the file asked for, not the temporary one written first.
    @Test func reportAndMetricsPathsAreCreatedAndNamedInErrors() throws {
        let (f, _) = try Self.demo.get()
        let nested = f.root + "/out/deeper/report.html"
        #expect(try Binary.run(["report", "--data", f.root + "/demo/data", "--html", nested]).status == 0)
        #expect(FileManager.default.fileExists(atPath: nested))
        let folder = f.root + "/out/deeper"
        let onFolder = try Binary.run(["report", "--data", f.root + "/demo/data", "--html", folder])
        #expect(onFolder.status == 74 && onFolder.stderr.contains("error: write \(folder): Is a directory") && !onFolder.stderr.contains(".tmp"), "\(onFolder.stderr)")
    }

    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: FileManager.default.isExecutableFile(atPath:))

    /// Shown as skipped, not passed, where Chromium is not installed (apt-get install chromium).
    @Test(.enabled(if: chromium != nil, "Chromium is not installed"))
    func htmlReportRendersInHeadlessChromium() throws {
        let (f, _) = try Self.demo.get()
        let chromium = try #require(Self.chromium)
        let png = f.root + "/report.png"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: chromium)
        process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--screenshot=\(png)", "--window-size=1000,1200", "file://\(f.root)/report.html"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let bytes = try FileSystem.readAll(png)
        #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(bytes.count > 10_000) // a blank page compresses to far less
    }

    @Test func statusReportsRunsBacklogAndQuarantine() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:01Z"), tombstoneLine("ghost")])
        f.landBytes("2-bad.ndjson.gz", Array("not gzip".utf8))
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        f.land("3-waiting.ndjson.gz", [recordLine("w", time: "2025-07-30T10:00:00Z")])
        let run = try Binary.run(["status", "--landing", f.landing, "--data", f.data, "--json"])
        #expect(run.status == 0)
        let o = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        #expect(o["events"] as? Int == 1)
        #expect(o["pending_tombstones"] as? Int == 1)
        #expect(o["backlog_files"] as? Int == 1)
        #expect((o["quarantined"] as? [[String: Any]])?.first?["reason"] as? String == "not a gzip file (bad header)")
        #expect((o["recent_batches"] as? [[String: Any]])?.first?["files_applied"] as? Int == 1)
        let text = try Binary.run(["status", "--landing", f.landing, "--data", f.data])
        #expect(text.stdout.contains("recent batches (runs that found nothing to do left out):") && text.stdout.contains("quarantined files:"))
        // The short column names are spelled out under the table.
        #expect(text.stdout.contains("(files: applied; dup: files whose content was applied before; quar: quarantined;"), "\(text.stdout)")
        let noBatches = try Binary.run(["status", "--landing", f.landing, "--data", f.data, "--batches", "0"])
        #expect(noBatches.stdout.contains("recent batches: none to show\n") && !noBatches.stdout.contains("batch  kind"), "\(noBatches.stdout)")
        // Runs that found nothing to do (a cron minute with nothing new) do not push the
        // batches that did something out of view.
        try FileManager.default.removeItem(atPath: f.landing + "/3-waiting.ndjson.gz")
        for _ in 0..<3 { #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0) }
        func recentBatches() throws -> [[String: Any]] {
            let run = try Binary.run(["status", "--landing", f.landing, "--data", f.data, "--json"])
            #expect(run.status == 0)
            return (try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any])["recent_batches"] as! [[String: Any]]
        }
        let shown = try recentBatches()
        #expect(shown.count == 1, "\(shown)")
        // While another job runs (holds the lock and has a batch open), status still answers;
        // a batch left "running" by a job that is gone (killed) shows as interrupted.
        var lock: JobLock? = try JobLock(dataFolder: f.data, job: "ingest")
        try f.execute("INSERT INTO batches (kind, status, started_at) VALUES ('ingest', 'running', '2025-07-30T10:05:00Z')")
        #expect(try recentBatches().last?["status"] as? String == "running")
        withExtendedLifetime(lock) {}
        lock = nil
        #expect(try recentBatches().last?["status"] as? String == "interrupted")
        try FileManager.default.removeItem(atPath: f.data + "/tidemark.lock")
        #expect(try recentBatches().last?["status"] as? String == "interrupted")
    }

    /// On btrfs the kernel's lock table names a file by the whole file system's device while
    /// `stat` gives its subvolume's: a held lock must still be seen (status showed a running
    /// batch as interrupted), by the inode and its holder having the folder open.
    @Test func aHeldLockIsSeenWhenTheLockTableNamesAnotherDevice() throws {
        let f = TestFolder()
        try FileManager.default.createDirectory(atPath: f.data, withIntermediateDirectories: true)
        var info = stat()
        #expect(stat(f.data, &info) == 0)
        var lock: JobLock? = try JobLock(dataFolder: f.data, job: "ingest")
        #expect(JobLock.isHeld(dataFolder: f.data))
        let table = try String(contentsOfFile: "/proc/locks", encoding: .utf8)
        let ours = table.split(separator: "\n").filter { $0.contains(" FLOCK ") && $0.hasSuffix(":\(info.st_ino) 0 EOF") && $0.contains(" \(getpid()) ") }
        try #require(!ours.isEmpty, "\(table)")
        // The same entries as btrfs would list them: another device, the same inode.
        let elsewhere = ours.map { line -> String in
            var fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            fields[5] = "ff:ee:\(info.st_ino)"
            return fields.joined(separator: " ")
        }.joined(separator: "\n")
        #expect(JobLock.flockHolders(of: info, in: elsewhere, sameInodeElsewhere: true) { JobLock.processHasOpen(pid: $0, info) })
        // Held by a process that does not have the folder open: another file with that inode.
        #expect(!JobLock.flockHolders(of: info, in: elsewhere, sameInodeElsewhere: true) { _ in false })
        #expect(JobLock.processHasOpen(pid: getpid(), info) == true)
        // A holder whose descriptors cannot be listed (another user's): the inode decides.
        #expect(JobLock.flockHolders(of: info, in: elsewhere, sameInodeElsewhere: true) { _ in nil })
        // Off btrfs, another device is another file, whatever its inode.
        #expect(!JobLock.flockHolders(of: info, in: elsewhere, sameInodeElsewhere: false) { JobLock.processHasOpen(pid: $0, info) })
        // Another inode is another file.
        let otherInode = elsewhere.replacingOccurrences(of: ":\(info.st_ino) ", with: ":\(info.st_ino + 1) ")
        #expect(!JobLock.flockHolders(of: info, in: otherInode, sameInodeElsewhere: true) { _ in true })
        withExtendedLifetime(lock) {}
        lock = nil
        #expect(!JobLock.isHeld(dataFolder: f.data))
        #expect(JobLock.processHasOpen(pid: getpid(), info) == false)
    }

    /// A reader run by a user who cannot write the data folder (readers too need to: SQLite's
    /// WAL index) is told so and what to do, not just "check permissions".
    @Test(.enabled(if: Binary.forNobody != nil, "needs root and setpriv, to run the binary as the user nobody"))
    func aReaderWithoutWriteAccessIsToldWhy() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        let run = try Binary.run(["status", "--landing", f.landing, "--data", f.data], asNobody: Binary.forNobody)
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stderr.contains("hint: every command, the readers too, needs write access to the data folder"), "\(run.stderr)")
    }

    /// A landing folder that cannot be read is named, not shown as an empty backlog.
    @Test func statusNamesAMissingLandingFolder() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:01Z")])
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        let gone = f.root + "/no-such-landing"
        let run = try Binary.run(["status", "--landing", gone, "--data", f.data, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let o = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        #expect(o["landing_error"] as? String == "\(gone): no such folder")
        #expect(o["landing_hint"] as? String == "create it, or pass --landing DIR (or set TIDEMARK_LANDING)")
        #expect(o["events"] as? Int == 1)
        let text = try Binary.run(["status", "--landing", gone, "--data", f.data])
        #expect(text.stdout.contains("backlog: unknown, the landing folder cannot be read: \(gone): no such folder\nhint: create it, or pass --landing DIR"))
        let fine = try Binary.run(["status", "--landing", f.landing, "--data", f.data, "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(fine.stdout.utf8)) as! [String: Any])["landing_error"] == nil)
    }

    /// `report` writes one self-contained page with the warehouse's figures and four charts;
    /// without a database it exits 66 and writes nothing.
    @Test func reportWritesASelfContainedPage() throws {
        let f = try ProducedPipeline(events: 1200, seed: 12).copy()
        let page = f.root + "/report.html"
        let run = try Binary.run(["report", "--data", f.data, "--html", page])
        #expect(run.status == 0, "\(run.stderr)")
        let html = try String(contentsOfFile: page, encoding: .utf8)
        let events = try f.query { try Int.fetchOne($0, sql: "SELECT SUM(row_count) FROM partitions")! }
        #expect(html.hasPrefix("<!DOCTYPE html>") && html.hasSuffix("</html>"))
        #expect(html.contains("<div class=\"kpi\"><b>\(events)</b>events</div>"))
        #expect(html.components(separatedBy: "<svg ").count - 1 == 4)
        #expect(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"))
        let missing = try Binary.run(["report", "--data", f.root + "/no-data", "--html", f.root + "/other.html"])
        #expect(missing.status == 66)
        #expect(!FileSystem.exists(f.root + "/other.html"))
    }

    @Test func durationsReadAsPeopleSayThem() {
        #expect(Durations.text(42) == "42 s")
        #expect(Durations.text(60) == "1 min")
        #expect(Durations.text(725) == "12 min 5 s")
        #expect(Durations.text(3 * 3600 + 20 * 60 + 7) == "3 h 20 min")
        #expect(Durations.text(41_947_730) == "485 d 12 h")
        #expect(Durations.text(86_400) == "1 d")
    }

    /// A batch with rejected lines says so at the default level (a rejected line may be a
    /// deletion that did not happen), naming the first; `status --rejected N` lists them.
    @Test func rejectedLinesAreWarnedAboutAndListedByStatus() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("ok", time: "2025-07-30T10:00:00Z"), #"{"event_id":"ok","reason":"gdpr"}"#, "not json"])
        let run = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(run.status == 0)
        #expect(run.stderr.contains("2 lines rejected in 1 file, kept in rejected_lines (tidemark status --rejected 2 lists them); the rest of each file was applied. To apply a line once its cause is fixed, land it in a new file"), "\(run.stderr)")
        #expect(run.stderr.contains("first=1.ndjson.gz line 2: missing field user_id: a record needs"), "\(run.stderr)")
        let status = try Binary.run(["status", "--data", f.data, "--landing", f.landing, "--rejected", "5"])
        #expect(status.status == 0)
        #expect(status.stdout.contains("rejected lines (newest first"), "\(status.stdout)")
        let listed = status.stdout.components(separatedBy: "rejected lines (newest first")[1]
        #expect(listed.contains("1.ndjson.gz  3     invalid JSON at byte 1"), "\(listed)")
        #expect(listed.contains("1.ndjson.gz  2     missing field user_id"), "\(listed)")
        let json = try Binary.run(["status", "--data", f.data, "--landing", f.landing, "--rejected", "1", "--json"])
        let o = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
        #expect((o["rejected_lines"] as? [[String: Any]])?.map { $0["line"] as? Int } == [3])
        #expect(!(try Binary.run(["status", "--data", f.data, "--landing", f.landing])).stdout.contains("rejected lines ("))
        // A file whose every line is rejected is said to have had nothing applied, alone or
        // beside a file whose other lines were applied.
        f.land("2.ndjson.gz", ["not json", #"{"event_id":"x"}x"#])
        let none = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(none.status == 0)
        #expect(none.stderr.contains("2 lines rejected in 1 file, kept in rejected_lines (tidemark status --rejected 2 lists them); no line of it was applied."), "\(none.stderr)")
        f.land("3.ndjson.gz", ["not json"])
        f.land("4.ndjson.gz", [recordLine("four", time: "2025-07-30T10:00:00Z"), "not json"])
        let some = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(some.stderr.contains("2 lines rejected in 2 files, kept in rejected_lines (tidemark status --rejected 2 lists them); the rest of each file was applied, except in 1 file whose every line was rejected."), "\(some.stderr)")
    }

    /// The rejected-lines warning's other cases, which the binary test above does not reach:
    /// one line, more lines than status lists at once, every line of several files, a dry run.
    @Test func rejectedLinesWarningNamesWhatWasAppliedAndWhatStatusLists() {
        #expect(rejectedLinesWarning(lines: 1, files: 1, filesAllRejected: 0, dryRun: false)
            .hasPrefix("1 line rejected in 1 file, kept in rejected_lines (tidemark status --rejected 1 lists it); the rest of each file was applied. To apply"))
        #expect(rejectedLinesWarning(lines: 100, files: 3, filesAllRejected: 0, dryRun: false)
            .contains("(tidemark status --rejected 100 lists them)"))
        #expect(rejectedLinesWarning(lines: 101, files: 3, filesAllRejected: 3, dryRun: false)
            .hasPrefix("101 lines rejected in 3 files, kept in rejected_lines (tidemark status --rejected 100 lists the latest 100); no line of them was applied. To apply"))
        #expect(rejectedLinesWarning(lines: 5, files: 2, filesAllRejected: 1, dryRun: true)
            == "dry run: 5 lines would be rejected in 2 files; the rest of each file would be applied, except in 1 file whose every line would be rejected")
        #expect(rejectedLinesWarning(lines: 2, files: 1, filesAllRejected: 1, dryRun: true)
            == "dry run: 2 lines would be rejected in 1 file; no line of it would be applied")
    }

    /// A lost partition table does not take status and freshness down: status names the hour
    /// to rebuild; a landing folder that cannot be read leaves the backlog out of `--json`
    /// (unknown, not zero).
    @Test func statusAndFreshnessSurviveALostTableAndSayWhatIsUnknown() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("a", time: "2025-07-30T10:00:00Z"), recordLine("b", time: "2025-07-30T11:00:00Z")])
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        try f.execute("DROP TABLE events_2025073011")
        let status = try Binary.run(["status", "--data", f.data, "--landing", f.landing])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("partition table missing for 1 hour: 2025-07-30T11 (run: tidemark rebuild --hour H for each, or rebuild --all)"), "\(status.stdout)")
        let freshness = try Binary.run(["freshness", "--data", f.data, "--warn-after", "1h", "--error-after", "2h"])
        #expect([0, 1, 2].contains(freshness.status), "\(freshness.stderr)")
        let unknown = try Binary.run(["status", "--data", f.data, "--landing", f.root + "/nowhere", "--json"])
        let o = try JSONSerialization.jsonObject(with: Data(unknown.stdout.utf8)) as! [String: Any]
        #expect(o["backlog_files"] == nil && o["backlog_bytes"] == nil && o["landing_error"] != nil, "\(o)")
    }

    /// A batch killed after a commit keeps what it committed: its row (marked failed by the
    /// next run) has the counts of its committed files, and the cumulative counters count them
    /// exactly once, so the totals after the next run equal the events and files there are.
    @Test func aBatchKilledAfterACommitKeepsItsCommittedCounts() throws {
        let f = TestFolder()
        try f.createDatabase() // batch 1, of nothing
        for n in 0..<6 { f.land("\(n).ndjson.gz", [recordLine("e\(n)", time: "2025-07-30T10:00:00Z"), recordLine("f\(n)", time: "2025-07-30T10:00:00Z")]) }
        let killed = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data, "--files-per-commit", "2"],
                                    environment: ["TIDEMARK_FAULT": "after-commit", "TIDEMARK_FAULT_AFTER": "1"])
        #expect(killed.status == SIGKILL)
        let committed = try f.integer("SELECT COUNT(*) FROM ingested_files") ?? 0
        #expect(committed == 4)
        #expect(try f.integer("SELECT value FROM pipeline_state WHERE key = 'counter.events_new_total'") == 8)
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        let first = try f.query { db in
            try Row.fetchOne(db, sql: "SELECT status, files_applied, events_new FROM batches WHERE batch_id = 2")
                .map { "\($0[0] as String) \($0[1] as Int) \($0[2] as Int)" }
        }
        #expect(first == "failed 4 8")
        let totals = try f.query { db in
            try Row.fetchAll(db, sql: "SELECT key, value FROM pipeline_state WHERE key IN ('counter.events_new_total', 'counter.files_applied_total', 'counter.lines_read_total') ORDER BY key")
                .map { "\($0[0] as String)=\($0[1] as Int)" }
        }
        #expect(totals == ["counter.events_new_total=12", "counter.files_applied_total=6", "counter.lines_read_total=12"], "\(totals)")
    }

    /// The crontab's ingest line, run as cron would (sh, its environment): quiet when all is
    /// well, it prints (cron mails) a run's warnings, every line goes to the log, and a run
    /// skipped for the lock stays quiet.
    @Test func theCrontabLineIsQuietOnSuccessAndMailsWarnings() throws {
        let f = TestFolder()
        let crontab = try String(contentsOf: repositoryRoot.appendingPathComponent("crontab.example"), encoding: .utf8)
        let entry = try #require(crontab.split(separator: "\n").first { $0.hasPrefix("* * * * *") && $0.contains("tidemark ingest") })
        let command = entry.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)[5]
            .replacingOccurrences(of: "/var/log/tidemark/ingest.log", with: f.root + "/ingest.log")
            .replacingOccurrences(of: "/var/lib/node_exporter/textfile/tidemark.prom", with: f.root + "/tidemark.prom")
        func cron() throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", String(command)]
            var env = ["PATH": URL(fileURLWithPath: Binary.path).deletingLastPathComponent().path + ":/usr/bin:/bin",
                       "TIDEMARK_LANDING": f.landing, "TIDEMARK_DATA": f.data]
            env["TMPDIR"] = NSTemporaryDirectory()
            process.environment = env
            let out = Pipe()
            process.standardOutput = out
            process.standardError = out
            try process.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return text
        }
        f.land("1.ndjson.gz", [recordLine("a", time: "2025-07-30T10:00:00Z")])
        #expect(try cron() == "")
        #expect(try f.row("a") != nil && FileManager.default.fileExists(atPath: f.root + "/tidemark.prom"))
        f.land("2.ndjson.gz", [recordLine("b", time: "2025-07-30T10:00:00Z"), "not json"])
        let mailed = try cron()
        #expect(mailed.contains("level=warning") && mailed.contains("1 line rejected in 1 file"), "\(mailed)")
        let log = try String(contentsOfFile: f.root + "/ingest.log", encoding: .utf8)
        #expect(log.contains("1 line rejected in 1 file"))
        // Busy: another job holds the lock (a paused ingest); the cron run is skipped, quietly.
        f.land("3.ndjson.gz", [recordLine("c", time: "2025-07-30T10:00:00Z")])
        let holder = try Binary.startPaused(at: "before-decode", ["ingest", "--landing", f.landing, "--data", f.data], notice: f.root + "/paused")
        let skipped = try cron()
        holder.waitUntilExit()
        #expect(skipped == "", "\(skipped)")
        // It was skipped for the lock (its error record says so in the log), not quiet for nothing.
        let last = try String(contentsOfFile: f.root + "/ingest.log", encoding: .utf8).split(separator: "\n").last ?? ""
        #expect(last.contains("level=error") && last.contains("exit_code=75"), "\(last)")
    }

    /// Freshness allows five minutes of clock skew: a row dated within them counts (the age
    /// never goes negative), one dated further ahead, in an hour after now, is left out and
    /// cannot hold the age at "fresh" through a stall.
    @Test func freshnessLeavesOutRowsDatedAheadOfTheClock() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("on-time", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z"),
                               recordLine("ahead", time: "2025-07-30T12:00:00Z", received: "2025-07-30T12:00:00Z")])
        var options = f.options()
        options.clock = { try! Timestamp.parse("2025-07-30T10:00:30Z").get() }
        _ = try IngestJob.run(options, logger: quietLogger)
        func age() throws -> Double? {
            let run = try Binary.run(["freshness", "--data", f.data, "--now", "2025-07-30T10:05:00Z", "--json"])
            return (try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])?["data_age_seconds"] as? Double
        }
        #expect(try age() == 300)
        f.land("2.ndjson.gz", [recordLine("skewed", time: "2025-07-30T10:07:00Z", received: "2025-07-30T10:07:00Z")])
        _ = try IngestJob.run(options, logger: quietLogger)
        #expect(try age() == 0)
    }

    /// Freshness counts what brings data in: a rebuild does not refresh the last success,
    /// and a source that sends no received_time is aged by event_time, not "no data" forever.
    @Test func freshnessIgnoresRebuildsAndAgesDataWithoutReceivedTime() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        var options = f.options()
        options.clock = { try! Timestamp.parse("2025-07-30T10:00:30Z").get() }
        _ = try IngestJob.run(options, logger: quietLogger)
        var rebuild = RebuildOptions(dataFolder: f.data)
        rebuild.clock = { try! Timestamp.parse("2025-07-30T12:00:00Z").get() }
        _ = try RebuildJob.run(rebuild, logger: quietLogger)
        let run = try Binary.run(["freshness", "--data", f.data, "--now", "2025-07-30T10:05:00Z", "--json"])
        #expect(run.status == 0, "\(run.stdout)")
        let o = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        #expect(o["last_success_at"] as? String == "2025-07-30T10:00:30.000000000Z", "\(o)")
        #expect(o["data_age_seconds"] as? Double == 300, "\(o)")
    }

    /// Durations are what the help shows (a decimal number and one unit), up to ten years:
    /// "inf" was taken and then failed as JSON with exit 74, "0x10s" was read as 16 s.
    @Test func freshnessDurationsAreDecimalWithOneUnit() throws {
        #expect(FreshnessReport.parseDuration("90s") == 90 && FreshnessReport.parseDuration("10m") == 600)
        #expect(FreshnessReport.parseDuration("1.5h") == 5400 && FreshnessReport.parseDuration("2d") == 172_800)
        #expect(FreshnessReport.parseDuration("90") == 90 && FreshnessReport.parseDuration("0s") == 0 && FreshnessReport.parseDuration(".5m") == 30)
        #expect(FreshnessReport.parseDuration("10min") == 600 && FreshnessReport.parseDuration("min") == nil && FreshnessReport.parseDuration("10mins") == nil)
        for bad in ["inf", "infinity", "nan", "1e308d", "0x10s", "0x1p1000d", "-5m", "+5m", "", "s", ".", "1.2.3s", "١٠m", "10 m", "3651d", "1h30m"] {
            #expect(FreshnessReport.parseDuration(bad) == nil, "accepted \(bad)")
        }
        let f = TestFolder()
        let run = try Binary.run(["freshness", "--data", f.data, "--error-after", "inf", "--json"])
        #expect(run.status == 64 && run.stderr.contains("--error-after inf is not a duration like 90s, 10m, 1h or 2d (ten years at most)"), "\(run.stderr)")
    }

    @Test func freshnessOnFreshRunningAndStalledPipelines() throws {
        let f = TestFolder()
        let never = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(never.status == 0)
        let empty = try Binary.run(["freshness", "--data", f.data])
        #expect(empty.status == 2)
        #expect(empty.stdout.contains("no data ingested yet"), "\(empty.stdout)")
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        var options = f.options()
        options.clock = { try! Timestamp.parse("2025-07-30T10:00:30Z").get() }
        _ = try IngestJob.run(options, logger: quietLogger)
        func freshness(at now: String) throws -> BinaryRun {
            try Binary.run(["freshness", "--data", f.data, "--warn-after", "10m", "--error-after", "1h", "--now", now, "--json"])
        }
        let fresh = try freshness(at: "2025-07-30T10:05:00Z")
        #expect(fresh.status == 0, "\(fresh.stdout)")
        let late = try freshness(at: "2025-07-30T10:30:00Z")
        #expect(late.status == 1)
        let stalled = try freshness(at: "2025-07-30T12:00:00Z")
        #expect(stalled.status == 2)
        let o = try JSONSerialization.jsonObject(with: Data(stalled.stdout.utf8)) as! [String: Any]
        #expect(o["status"] as? String == "error")
        #expect(o["data_age_seconds"] as? Double == 7200)
        #expect((o["reason"] as? String)?.hasPrefix("stalled: newest data 2 h old, last successful run 1 h 59 min ago (error after 1 h)") == true, "\(o)")
        #expect(try Binary.run(["freshness", "--data", f.data, "--warn-after", "2h", "--error-after", "1h"]).status == 64)
    }

    /// Shown as skipped, not passed, where systemd-analyze is not installed (apt-get install systemd).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "systemd-analyze is not installed"))
    func systemdUnitsVerify() throws {
        let f = TestFolder()
        var units: [String] = []
        for name in ["tidemark-ingest.service", "tidemark-ingest.timer", "tidemark-producer.service"] {
            let text = try String(contentsOf: repositoryRoot.appendingPathComponent("deploy/systemd/" + name), encoding: .utf8)
            // Point ExecStart at the binary built here; everything else is verified as shipped.
            let unit = f.root + "/" + name
            try text.replacingOccurrences(of: "/usr/local/bin/tidemark", with: Binary.path).write(toFile: unit, atomically: true, encoding: .utf8)
            units.append(unit)
        }
        func verify(_ paths: [String]) throws -> (Int32, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
            p.arguments = ["verify", "--man=no"] + paths
            let errPath = f.root + "/verify.err"
            createTestFile(atPath: errPath, contents: nil)
            p.standardError = FileHandle(forWritingAtPath: errPath)
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            return (p.terminationStatus, try String(contentsOfFile: errPath, encoding: .utf8))
        }
        let (status, messages) = try verify(units)
        #expect(status == 0)
        #expect(messages.isEmpty, "\(messages)")
        // The check can fail: a broken timer value is reported.
        let broken = f.root + "/broken.timer"
        try (try String(contentsOfFile: units[1], encoding: .utf8)).replacingOccurrences(of: "OnUnitInactiveSec=10s", with: "OnUnitInactiveSec=soon")
            .write(toFile: broken, atomically: true, encoding: .utf8)
        #expect(try verify([broken]).1.contains("Failed to parse"))
    }
}
