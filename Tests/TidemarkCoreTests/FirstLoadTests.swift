import Foundation
import GRDB
import Testing
@testable import TidemarkCore

/// The ingest or backfill that creates a data folder's database (its first load) writes it
/// without a journal and puts it on disk once, at its end (`Warehouse.firstLoad`): until then no
/// file leaves landing or reaches the archive, and whatever a crash or an error leaves of the
/// database is removed and loaded again by the next run.
@Suite struct FirstLoadTests {
    func marker(_ f: TestFolder) -> String { Warehouse.firstLoadMarker(of: f.data) }

    /// Six files of two events each, in two hours.
    func landSix(_ f: TestFolder) {
        for n in 0..<6 {
            f.land("\(n).ndjson.gz", [recordLine("e\(n)", time: "2025-07-30T10:00:00Z"), recordLine("f\(n)", time: "2025-07-30T11:00:00Z")])
        }
    }

    /// Every command but ingest and backfill, which refuse a first load that has not ended.
    func readers(_ f: TestFolder) -> [[String]] {
        [["status", "--data", f.data], ["validate", "--data", f.data], ["rebuild", "--data", f.data, "--all"],
         ["freshness", "--data", f.data, "--warn-after", "10m", "--error-after", "1h"], ["report", "--data", f.data, "--html", f.root + "/report.html"]]
    }

    func journalMode(_ f: TestFolder) throws -> String? { try f.query { try String.fetchOne($0, sql: "PRAGMA journal_mode") } }

    /// Killed after a commit before its end (ingest: its second of three): every file is still in landing and none in the
    /// archive; readers and rebuild refuse the incomplete database (66) saying so; a dry run
    /// plans against an empty one; the next run removes it, says so, and loads everything into
    /// a WAL database that validates, with one batch on record.
    @Test(arguments: ["ingest", "backfill"]) func aFirstLoadKilledMidwayIsLoadedAgainByTheNextRun(kind: String) throws {
        let f = TestFolder()
        landSix(f)
        let run = kind == "ingest" ? ["ingest", "--landing", f.landing, "--data", f.data] : ["backfill", "--from-dir", f.landing, "--data", f.data]
        // Ingest commits every two files here (backfill has no such knob: it is killed at its one commit).
        let killed = try Binary.run(run + (kind == "ingest" ? ["--files-per-commit", "2"] : []),
                                    environment: ["TIDEMARK_FAULT": "first-load-commit", "TIDEMARK_FAULT_AFTER": kind == "ingest" ? "1" : "0"])
        #expect(killed.status == SIGKILL, "\(killed.stderr)")
        #expect(FileManager.default.fileExists(atPath: marker(f)) && FileManager.default.fileExists(atPath: f.database))
        #expect(try f.landingEntries().count == 6)
        #expect(Warehouse.archivedDataFiles(f.data).isEmpty)
        for reader in readers(f) {
            let refused = try Binary.run(reader)
            #expect(refused.status == 66 && refused.stderr.contains("is incomplete: the first load into this data folder was interrupted"),
                    "\(reader[0]): \(refused.stderr)")
        }
        let dry = try Binary.run(run + ["--dry-run", "--json"])
        #expect(dry.status == 0 && dry.stdout.contains("\"files_applied\" : 6"), "\(dry.stderr)")
        #expect(FileManager.default.fileExists(atPath: marker(f)))
        let again = try Binary.run(run + ["--json"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("the first load into this data folder was interrupted before it ended: what it had written was removed"),
                "\(again.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker(f)))
        #expect(try journalMode(f) == "wal")
        #expect(try f.integer("SELECT COUNT(*) FROM ingested_files") == 6 && f.eventRows().count == 12)
        #expect(try f.integer("SELECT COUNT(*) FROM batches") == 1)
        #expect(try f.landingEntries().count == (kind == "ingest" ? 0 : 6))
        #expect(Warehouse.archivedDataFiles(f.data).count == 6)
        let check = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(check.status == 0, "\(check.stdout)")
    }

    /// While a first load runs, status, validate and rebuild wait for it (75), naming it; after,
    /// they run.
    @Test func readersAndJobsWaitWhileAFirstLoadRuns() throws {
        let f = TestFolder()
        landSix(f)
        var during: [BinaryRun] = []
        var markerDuring = false
        let run = try Binary.runPaused(at: "before-decode", ["ingest", "--landing", f.landing, "--data", f.data], f) {
            markerDuring = FileManager.default.fileExists(atPath: marker(f))
            during = try readers(f).map { try Binary.run($0) }
        }
        #expect(run.status == 0, "\(run.stderr)")
        #expect(markerDuring)
        for refused in during {
            #expect(refused.status == 75 && refused.stderr.contains("is being created by the first load into this data folder, running now"),
                    "\(refused.stderr)")
        }
        #expect(try Binary.run(["status", "--data", f.data]).status == 0)
        #expect(try Binary.run(["rebuild", "--data", f.data, "--all"]).status == 0)
    }

    /// A first load that fails (here the disk fills) leaves neither database nor marker and
    /// moves no file; the error says so, and the next run loads everything.
    @Test func aFailedFirstLoadLeavesNoDatabaseAndMovesNoFile() throws {
        let f = TestFolder()
        f.land("0-small.ndjson.gz", [recordLine("small", time: "2025-07-30T10:00:00Z")])
        f.land("1-big.ndjson.gz", (0..<20_000).map { recordLine("big\($0)", user: String(repeating: "u", count: 100), time: "2025-07-30T10:00:00Z") })
        // A database of at most 1.6 MB: the big file's 20,000 rows (about 3 MB) cannot fit.
        let full = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data],
                                  environment: ["TIDEMARK_MAX_PAGE_COUNT": "\(1_600_000 / Warehouse.pageSize)"])
        #expect(full.status == 74, "\(full.stderr)")
        #expect(full.stderr.contains("disk full") && full.stderr.contains("this run was the data folder's first load: it left no database, and the next run loads again"),
                "\(full.stderr)")
        #expect(!FileManager.default.fileExists(atPath: f.database) && !FileManager.default.fileExists(atPath: marker(f)))
        #expect(try f.landingEntries().count == 2)
        let later = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(later.status == 0, "\(later.stderr)")
        #expect(try f.integer("SELECT (SELECT COUNT(*) FROM event_index) + (SELECT COUNT(*) FROM event_index_recent)") == 20_001)
    }

    /// The first files leave landing only once the load is on disk, in WAL mode, with its
    /// marker gone; killed right then, the next run finishes the moves without applying any
    /// file again.
    @Test func aFirstLoadIsOnDiskBeforeAnyFileLeavesLanding() throws {
        let f = TestFolder()
        landSix(f)
        var seen = ""
        let run = try Binary.runPaused(at: "after-commit", ["ingest", "--landing", f.landing, "--data", f.data, "--files-per-commit", "2"], f) {
            seen = "\(FileManager.default.fileExists(atPath: marker(f))) \(try journalMode(f) ?? "-") \(try f.landingEntries().count) \(try f.integer("SELECT COUNT(*) FROM ingested_files") ?? -1)"
        }
        #expect(run.status == 0, "\(run.stderr)")
        #expect(seen == "false wal 6 6")
        #expect(try f.landingEntries().isEmpty)

        let g = TestFolder()
        landSix(g)
        let killed = try Binary.run(["ingest", "--landing", g.landing, "--data", g.data], environment: ["TIDEMARK_FAULT": "after-commit"])
        #expect(killed.status == SIGKILL)
        #expect(!FileManager.default.fileExists(atPath: marker(g)))
        #expect(try g.landingEntries().count == 6 && g.integer("SELECT COUNT(*) FROM ingested_files") == 6)
        let next = try Binary.run(["ingest", "--landing", g.landing, "--data", g.data, "--json"])
        #expect(next.status == 0 && next.stdout.contains("\"files_healed\" : 6") && next.stdout.contains("\"files_applied\" : 0"), "\(next.stdout)")
        #expect(try g.landingEntries().isEmpty && g.eventRows().count == 12)
    }

    /// A first load ends early, its files moved, and the rest of the batch commits as any later
    /// batch does: when its files waiting, each held open, would reach the open-files limit;
    /// once it has read `BatchRunner.firstLoadLines` (lowered here to 50); and once
    /// `BatchRunner.firstLoadFiles` files wait (lowered here to 20). Killed at that first
    /// move, the load is on disk with part of the files, and the next run finishes.
    /// (With few files per commit, the files waiting pile up over commits that are not yet
    /// durable: they count against the limit too.)
    @Test(arguments: ["open files", "lines", "files"]) func aFirstLoadEndsEarly(when limit: String) throws {
        let f = TestFolder()
        for n in 0..<60 { f.land(String(format: "%02d.ndjson.gz", n), [recordLine("e\(n)", time: "2025-07-30T10:00:00Z"), recordLine("f\(n)", time: "2025-07-30T11:00:00Z")]) }
        let openFiles = limit == "open files" ? 128 : nil
        let lines = limit == "lines" ? ["TIDEMARK_FIRST_LOAD_LINES": "50"] : limit == "files" ? ["TIDEMARK_FIRST_LOAD_FILES": "20"] : [:]
        let killed = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data, "--files-per-commit", "4"],
                                    environment: ["TIDEMARK_FAULT": "after-commit"].merging(lines) { $1 }, openFilesLimit: openFiles)
        #expect(killed.status == SIGKILL)
        #expect(!FileManager.default.fileExists(atPath: marker(f)))
        let loaded = try f.integer("SELECT COUNT(*) FROM ingested_files") ?? 0
        switch limit {
        case "lines": #expect(loaded == 25)
        case "files": #expect(loaded == 20)
        default: #expect(loaded > 0 && loaded < 60, "\(loaded)")
        }
        let next = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data, "--json"], environment: lines, openFilesLimit: openFiles)
        #expect(next.status == 0 && next.stdout.contains("\"files_healed\" : \(loaded)") && next.stdout.contains("\"files_applied\" : \(60 - loaded)"),
                "\(next.stdout.prefix(600))")
        #expect(try f.landingEntries().isEmpty && f.eventRows().count == 120)
        #expect(try Binary.run(["validate", "--data", f.data, "--replay"]).status == 0)
    }

    /// A marker beside a database in WAL mode (a first load stopped after it ended, before its
    /// marker went; or a marker someone else left) is no reason to remove anything: readers
    /// read, a dry run plans against it, and the next ingest removes only the marker. Beside a
    /// database not in WAL mode
    /// but with archived files, which no first load has, ingest refuses (74) and removes
    /// nothing.
    @Test func aMarkerBesideAWholeDatabaseRemovesNothing() throws {
        let f = TestFolder()
        landSix(f)
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        let rows = try f.eventRows()
        try Data("left here\n".utf8).write(to: URL(fileURLWithPath: marker(f)))
        #expect(try Binary.run(["status", "--data", f.data]).status == 0)
        // A redelivery of a stored event is planned as one (against an empty database it
        // would be new).
        f.land("again.ndjson.gz", [recordLine("e0", time: "2025-07-30T10:00:00Z")])
        let dry = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data, "--dry-run", "--json"])
        #expect(dry.status == 0 && dry.stdout.contains("\"duplicate\" : 1") && dry.stdout.contains("\"new\" : 0"), "\(dry.stdout)")
        let again = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(again.status == 0 && !again.stderr.contains("interrupted"), "\(again.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker(f)))
        #expect(try f.eventRows() == rows && f.integer("SELECT COUNT(*) FROM ingested_files") == 7)

        // Not in WAL mode (switched by hand), archived files, and a marker: refused.
        let queue = try DatabaseQueue(path: f.database)
        try queue.writeWithoutTransaction { _ = try String.fetchOne($0, sql: "PRAGMA journal_mode = DELETE") }
        try queue.close()
        try Data("left here\n".utf8).write(to: URL(fileURLWithPath: marker(f)))
        let refused = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(refused.status == 74 && refused.stderr.contains("the archive holds files, which no first load has"), "\(refused.stderr)")
        #expect(FileManager.default.fileExists(atPath: f.database) && FileManager.default.fileExists(atPath: marker(f)))
        try FileManager.default.removeItem(atPath: marker(f))
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        #expect(try f.eventRows() == rows)
    }

    /// A lost database rebuilt in place (`backfill --from-dir DATA/archive --data DATA`) is a
    /// first load beside a full archive. Killed midway, it leaves a marker that ingest refuses
    /// (74: a first load never has archived files, unless it is this backfill) and that the
    /// same backfill, run again, removes with its incomplete database to load everything again.
    @Test func anInterruptedRebuildInPlaceIsLoadedAgainByTheSameBackfill() throws {
        let f = TestFolder()
        landSix(f)
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        let rows = try f.eventRows()
        for file in Warehouse.sqliteFiles(of: f.database) where FileManager.default.fileExists(atPath: file) {
            try FileManager.default.removeItem(atPath: file)
        }
        let backfill = ["backfill", "--from-dir", f.data + "/archive", "--data", f.data]
        let killed = try Binary.run(backfill, environment: ["TIDEMARK_FAULT": "first-load-commit"])
        #expect(killed.status == SIGKILL, "\(killed.stderr)")
        #expect(FileManager.default.fileExists(atPath: marker(f)) && !Warehouse.isInWALMode(f.database))
        let refused = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(refused.status == 74 && refused.stderr.contains("the archive holds files, which no first load has"), "\(refused.stderr)")
        let again = try Binary.run(backfill)
        #expect(again.status == 0 && again.stderr.contains("the first load into this data folder was interrupted"), "\(again.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker(f)) && Warehouse.isInWALMode(f.database))
        #expect(try f.eventRows() == rows && Warehouse.archivedDataFiles(f.data).count == 6)
        #expect(try Binary.run(["validate", "--data", f.data, "--replay"]).status == 0)
    }

    /// A script polling the new database while the first load creates it does not make the load
    /// fail: the database has no journal from its first page, so the load never has to leave
    /// WAL mode, which SQLite refuses at once while another connection has the file open (the
    /// first form failed so, with 75, every time under this poll).
    @Test func aReaderPollingTheNewDatabaseDoesNotFailTheFirstLoad() throws {
        let f = TestFolder()
        for n in 0..<100 { f.land(String(format: "%03d.ndjson.gz", n), [recordLine("e\(n)", time: "2025-07-30T10:00:00Z")]) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binary.path)
        process.arguments = ["ingest", "--landing", f.landing, "--data", f.data, "--files-per-commit", "10"]
        process.standardError = FileHandle.nullDevice
        try process.run()
        var polls = 0
        while process.isRunning {
            guard FileManager.default.fileExists(atPath: f.database) else { continue }
            var config = Configuration()
            config.readonly = true
            if let queue = try? DatabaseQueue(path: f.database, configuration: config) {
                _ = try? queue.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM sqlite_master") }
                try? queue.close()
                polls += 1
            }
        }
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "after \(polls) polls")
        #expect(polls > 0, "the poll never met the new database: this test showed nothing")
        #expect(try f.integer("SELECT COUNT(*) FROM ingested_files") == 100 && f.landingEntries().isEmpty)
    }

    /// A folder sync the device fails (EIO, injected after the real fsync) stops the first load
    /// as it writes its marker: exit 74 naming the file and the cause, with a hint, no database
    /// and every file still in landing. A file system that cannot sync folders at all (EINVAL)
    /// is no error: the next run loads everything, clearing what the failed one left.
    @Test func aFolderSyncTheDeviceFailsStopsTheRunAndOneNotSupportedDoesNot() throws {
        let f = TestFolder()
        landSix(f)
        let run = ["ingest", "--landing", f.landing, "--data", f.data]
        let failed = try Binary.run(run, environment: ["TIDEMARK_FOLDER_SYNC_ERRNO": "\(EIO)"])
        #expect(failed.status == 74, "\(failed.stderr)")
        #expect(failed.stderr.contains("wrote \(marker(f)), but could not fsync its folder \(f.data): Input/output error")
                && failed.stderr.contains("dmesg"), "\(failed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: f.database))
        #expect(try f.landingEntries().count == 6 && Warehouse.archivedDataFiles(f.data).isEmpty)
        let unsupported = try Binary.run(run, environment: ["TIDEMARK_FOLDER_SYNC_ERRNO": "\(EINVAL)"])
        #expect(unsupported.status == 0, "\(unsupported.stderr)")
        #expect(try f.eventRows().count == 12 && f.landingEntries().isEmpty && !FileManager.default.fileExists(atPath: marker(f)))
    }
}
