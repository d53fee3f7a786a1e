import Foundation
import GRDB
import Testing
@testable import TidemarkCore

/// End-to-end tests of the built `tidemark ingest` binary: exit codes, messages, crash healing.
@Suite struct IngestCommandTests {
    func args(_ f: TestFolder, _ extra: [String] = []) -> [String] {
        ["ingest", "--landing", f.landing, "--data", f.data] + extra
    }

    /// A producer's file written in place: `stream.ndjson.gz` landed with one event ("first"),
    /// the bytes it holds, and the gzip member (event "second") a test appends to it.
    func streamFile(_ f: TestFolder) throws -> (path: String, appliedBytes: [UInt8], appended: [UInt8]) {
        let path = f.land("stream.ndjson.gz", [recordLine("first", time: "2025-07-30T10:00:00Z")])
        return (path, try FileSystem.readAll(path), GzipWriter.gzip(recordLine("second", time: "2025-07-30T10:00:01Z") + "\n"))
    }

    /// `streamFile`, held open for appending as a producer that writes it in place holds its
    /// descriptor (which follows the file when it is renamed). The caller closes `fd`.
    func openStreamFile(_ f: TestFolder) throws -> (path: String, appliedBytes: [UInt8], appended: [UInt8], fd: Int32) {
        let (path, appliedBytes, appended) = try streamFile(f)
        let fd = open(path, O_WRONLY | O_APPEND)
        try #require(fd >= 0)
        return (path, appliedBytes, appended, fd)
    }

    /// `openStreamFile`, ingested (so archived whole), then appended to through the producer's
    /// descriptor, which followed the file into the archive: its archived path. The caller
    /// closes `fd`.
    func appendIntoArchivedStreamFile(_ f: TestFolder, sourceLocation: SourceLocation = #_sourceLocation) throws
        -> (path: String, appliedBytes: [UInt8], appended: [UInt8], fd: Int32, archived: String) {
        let (path, appliedBytes, appended, fd) = try openStreamFile(f)
        do {
            #expect(try Binary.run(args(f)).status == 0, sourceLocation: sourceLocation)
            let archived = try #require(try f.archivedPath("stream.ndjson.gz"), sourceLocation: sourceLocation)
            try append(appended, through: fd)
            return (path, appliedBytes, appended, fd, archived)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Validate, with the archive replay, finds nothing wrong.
    func expectReplayValidates(_ f: TestFolder, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let check = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)", sourceLocation: sourceLocation)
    }

    /// The ledger's reason for the file of that name (its first row).
    func ledgerReason(_ f: TestFolder, _ name: String) throws -> String? {
        try f.query { try String.fetchOne($0, sql: "SELECT reason FROM ingested_files WHERE name = ? ORDER BY file_id", arguments: [name]) }
    }

    /// Runs the binary held before it decodes (`TIDEMARK_PAUSE_AT=before-decode`), removes
    /// `path` once it is held there (`TIDEMARK_PAUSE_NOTICE`: the scan, which listed the file,
    /// and backfill's content check, which reads it, are done), and returns how the run ended:
    /// the file is gone between the scan and the read.
    func runRemoving(_ path: String, whilePaused arguments: [String], _ f: TestFolder) throws -> BinaryRun {
        try runRemoving([path], whilePaused: arguments, f)
    }

    func runRemoving(_ paths: [String], whilePaused arguments: [String], _ f: TestFolder) throws -> BinaryRun {
        try Binary.runPaused(at: "before-decode", arguments, f) {
            for path in paths { try FileManager.default.removeItem(atPath: path) }
        }
    }

    /// Writes `bytes` (a gzip member) at the end of the file open at `fd`, as a producer
    /// writing in place does.
    func append(_ bytes: [UInt8], through fd: Int32) throws {
        try #require(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count)
    }

    /// The same, opening and closing the file at `path`.
    func append(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND)
        try #require(fd >= 0)
        defer { close(fd) }
        try append(bytes, through: fd)
    }

    /// A producer puts a new file under a name the batch has read and applied, before the
    /// batch archives it (an atomic rename over it, after the commit). The archive gets the
    /// content applied (from the descriptor held open), the new file stays in landing, and the
    /// next run applies it: nothing is lost, and validate agrees.
    @Test func aFileReplacedUnderItsNameBeforeItIsArchivedIsKeptForTheNextRun() throws {
        let f = TestFolder()
        let path = f.land("1.ndjson.gz", [recordLine("first", time: "2025-07-30T10:00:00Z")])
        let appliedBytes = try FileSystem.readAll(path)
        let run = try Binary.runPaused(at: "after-commit", args(f, ["--json"]), f) {
            let other = f.land(".next.tmp", [recordLine("second", time: "2025-07-30T10:00:00Z")])
            #expect(rename(other, path) == 0)
        }
        #expect(run.status == 0, "\(run.stderr)")
        // The new file is backlog: the next run takes it.
        #expect(run.stdout.contains("\"backlog_files\" : 1"), "\(run.stdout)")
        #expect(run.stderr.contains("another file was put under this landing name"), "\(run.stderr)")
        let archived = try #require(try f.archivedPath("1.ndjson.gz"))
        #expect(try FileSystem.readAll(archived) == appliedBytes)
        #expect(FileManager.default.fileExists(atPath: path))
        #expect(try f.row("second") == nil)

        let next = try Binary.run(args(f))
        #expect(next.status == 0, "\(next.stderr)")
        #expect(try f.row("first") != nil && f.row("second") != nil)
        #expect(!FileManager.default.fileExists(atPath: path))
        try expectReplayValidates(f)
    }

    /// A producer that writes a file in place keeps appending gzip members to it after the
    /// batch read it (here: after the commit, before the move). The file is not moved (the
    /// producer's appends would go into the archive, never applied): the archive gets the bytes
    /// applied, the whole file stays in landing, runs leave it while it is still being written,
    /// and once it is quiet a run applies the rest. Nothing is lost, and validate agrees.
    @Test func aFileStillBeingWrittenInPlaceIsNotArchivedWithUnappliedData() throws {
        let f = TestFolder()
        let (path, appliedBytes, appended) = try streamFile(f)
        let run = try Binary.runPaused(at: "after-commit", args(f, ["--json"]), f) {
            try append(appended, to: path)
        }
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("landing file grew after the batch read it: it is still being written in place"), "\(run.stderr)")
        #expect(run.stdout.contains("\"backlog_files\" : 1"), "\(run.stdout)")
        let archived = try #require(try f.archivedPath("stream.ndjson.gz"))
        #expect(try FileSystem.readAll(archived) == appliedBytes)
        #expect(try FileSystem.readAll(path) == appliedBytes + appended)
        #expect(try f.landingEntries() == ["stream.ndjson.gz"])
        let reason = try ledgerReason(f, "stream.ndjson.gz")
        #expect(reason?.hasPrefix("grew while read: the archive holds the \(appliedBytes.count) bytes read") == true, "\(reason ?? "nil")")
        #expect(try f.row("first") != nil && f.row("second") == nil)
        // Written just now: left alone while it may still grow.
        let waiting = try Binary.run(args(f, ["--json", "-v"]))
        #expect(waiting.status == 0, "\(waiting.stderr)")
        #expect(waiting.stderr.contains("landing file is still being written in place"), "\(waiting.stderr)")
        #expect(try f.row("second") == nil && f.landingEntries() == ["stream.ndjson.gz"])
        // Quiet long enough: applied whole (the first record again is a duplicate).
        let quiet = try Binary.run(args(f, ["--settle-seconds", "0", "--json"]))
        #expect(quiet.status == 0, "\(quiet.stderr)")
        #expect(quiet.stdout.contains("\"new\" : 1") && quiet.stdout.contains("\"duplicate\" : 1"), "\(quiet.stdout)")
        #expect(try f.row("second") != nil && f.landingEntries().isEmpty)
        try expectReplayValidates(f)
        // Read whole: a later file of that name is not held back.
        f.land("stream.ndjson.gz", [recordLine("later", time: "2025-07-30T10:00:05Z")])
        #expect(try Binary.run(args(f)).status == 0)
        #expect(try f.row("later") != nil)
    }

    /// A producer that keeps its descriptor and appends once the file is archived writes into
    /// the archive. The next run finds the archived copy longer than the ledger's size and
    /// starting with the file recorded: the file goes back to landing whole, the archive keeps
    /// the bytes read, and a later run reads the rest. Nothing is lost, and validate agrees.
    @Test func appendsIntoAnArchivedFileAreReclaimedByTheNextRun() throws {
        let f = TestFolder()
        let (path, appliedBytes, appended, fd, archived) = try appendIntoArchivedStreamFile(f)
        defer { close(fd) }
        #expect(try FileSystem.readAll(archived) == appliedBytes + appended)
        let reclaim = try Binary.run(args(f, ["--json"]))
        #expect(reclaim.status == 0, "\(reclaim.stderr)")
        #expect(reclaim.stderr.contains("archived file grew after it was moved: its producer is still writing it in place"), "\(reclaim.stderr)")
        // Back in landing: backlog for the next runs.
        #expect(reclaim.stdout.contains("\"backlog_files\" : 1"), "\(reclaim.stdout)")
        #expect(try FileSystem.readAll(archived) == appliedBytes)
        #expect(try FileSystem.readAll(path) == appliedBytes + appended)
        let reason = try ledgerReason(f, "stream.ndjson.gz")
        #expect(reason?.hasPrefix("grew while read: the archive holds the \(appliedBytes.count) bytes read") == true, "\(reason ?? "nil")")
        // The producer's descriptor followed the file back to landing.
        let more = GzipWriter.gzip(recordLine("third", time: "2025-07-30T10:00:02Z") + "\n")
        try append(more, through: fd)
        let quiet = try Binary.run(args(f, ["--settle-seconds", "0"]))
        #expect(quiet.status == 0, "\(quiet.stderr)")
        #expect(try f.row("first") != nil && f.row("second") != nil && f.row("third") != nil)
        #expect(try FileSystem.readAll(archived) == appliedBytes)
        try expectReplayValidates(f)
    }

    /// A name landed a second time is archived as `ID-NAME` (the first file has the plain
    /// name). Appended to there through the producer's descriptor, it goes back to landing
    /// under the name it was landed with, not its archive name, and the archive keeps both
    /// files as read. Nothing is lost, and validate agrees.
    @Test func aReclaimedFileArchivedUnderItsIDGoesBackUnderItsLandedName() throws {
        let f = TestFolder()
        f.land("stream.ndjson.gz", [recordLine("zero", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        let (path, appliedBytes, appended, fd) = try openStreamFile(f)
        defer { close(fd) }
        #expect(try Binary.run(args(f)).status == 0)
        let fileID = try #require(try f.integer("SELECT MAX(file_id) FROM ingested_files"))
        let archived = try #require(try f.archivedPath("\(fileID)-stream.ndjson.gz"))
        try append(appended, through: fd)
        let reclaim = try Binary.run(args(f))
        #expect(reclaim.status == 0 && reclaim.stderr.contains("archived file grew after it was moved"), "\(reclaim.stderr)")
        #expect(try f.landingEntries() == ["stream.ndjson.gz"])
        #expect(try FileSystem.readAll(archived) == appliedBytes && FileSystem.readAll(path) == appliedBytes + appended)
        let quiet = try Binary.run(args(f, ["--settle-seconds", "0"]))
        #expect(quiet.status == 0, "\(quiet.stderr)")
        #expect(try f.row("zero") != nil && f.row("first") != nil && f.row("second") != nil && f.landingEntries().isEmpty)
        try expectReplayValidates(f)
    }

    /// Taken back from the archive, but the archive cannot take the bytes read again (here: no
    /// space): the file is back in landing whole with no archived copy, noted as grown and
    /// counted as backlog; runs leave it while it is still being written, then archive its
    /// start and read it whole. Nothing is lost, and validate agrees.
    @Test func aReclaimedFileWhoseArchiveCopyFailsIsHeldThenArchivedFromItsStart() throws {
        let f = TestFolder()
        let (path, appliedBytes, appended, fd, archived) = try appendIntoArchivedStreamFile(f)
        defer { close(fd) }
        let reclaim = try Binary.run(args(f, ["--json"]), environment: ["TIDEMARK_ARCHIVE_SPACE_FILES": "0"])
        #expect(reclaim.status == 0, "\(reclaim.stderr)")
        #expect(reclaim.stderr.contains("It went back to landing whole, but the \(appliedBytes.count) bytes read could not be archived again"), "\(reclaim.stderr)")
        #expect(reclaim.stdout.contains("\"backlog_files\" : 1"), "\(reclaim.stdout)")
        #expect(!FileManager.default.fileExists(atPath: archived))
        #expect(try FileSystem.readAll(path) == appliedBytes + appended)
        let reason = try ledgerReason(f, "stream.ndjson.gz")
        #expect(reason?.contains("grew while read: the \(appliedBytes.count) bytes read could not be archived yet") == true, "\(reason ?? "nil")")
        let waiting = try Binary.run(args(f, ["-v"]))
        #expect(waiting.status == 0 && waiting.stderr.contains("landing file is still being written in place"), "\(waiting.stderr)")
        #expect(try !FileManager.default.fileExists(atPath: archived) && f.row("second") == nil)
        let quiet = try Binary.run(args(f, ["--settle-seconds", "0"]))
        #expect(quiet.status == 0, "\(quiet.stderr)")
        #expect(quiet.stderr.contains("archived the start of a landing file that grew after an earlier run read it"), "\(quiet.stderr)")
        #expect(try FileSystem.readAll(archived) == appliedBytes)
        #expect(try f.row("first") != nil && f.row("second") != nil && f.landingEntries().isEmpty)
        try expectReplayValidates(f)
    }

    /// The same, but the archive cannot take the bytes read then (here: no space): the grown
    /// file stays in landing with no archived copy of what was applied. Runs leave it while it
    /// is still being written; once it is quiet, a run writes that copy from the file's first
    /// bytes, where the ledger says, then reads the whole file again.
    @Test func aGrownFileWhoseArchiveCopyFailedIsArchivedFromItsStartNextRun() throws {
        let f = TestFolder()
        let (path, appliedBytes, appended) = try streamFile(f)
        let run = try Binary.runPaused(at: "after-commit", args(f), f, environment: ["TIDEMARK_ARCHIVE_SPACE_FILES": "0"]) {
            try append(appended, to: path)
        }
        #expect(run.status == 74, "\(run.stderr)")
        #expect(try f.archivedPath("stream.ndjson.gz") == nil)
        #expect(try FileSystem.readAll(path) == appliedBytes + appended)
        #expect(try f.integer("SELECT size FROM ingested_files WHERE name = 'stream.ndjson.gz'") == appliedBytes.count)
        let reason = try ledgerReason(f, "stream.ndjson.gz")
        #expect(reason?.contains("grew while read: the \(appliedBytes.count) bytes read could not be archived yet") == true, "\(reason ?? "nil")")
        // Written just now: left alone while it may still grow, its start not archived yet.
        let waiting = try Binary.run(args(f, ["-v"]))
        #expect(waiting.status == 0, "\(waiting.stderr)")
        #expect(waiting.stderr.contains("landing file is still being written in place"), "\(waiting.stderr)")
        #expect(try f.archivedPath("stream.ndjson.gz") == nil && f.row("second") == nil)
        let next = try Binary.run(args(f, ["--settle-seconds", "0"]))
        #expect(next.status == 0, "\(next.stderr)")
        #expect(next.stderr.contains("archived the start of a landing file that grew after an earlier run read it"), "\(next.stderr)")
        #expect(try FileSystem.readAll(try #require(try f.archivedPath("stream.ndjson.gz"))) == appliedBytes)
        #expect(try f.row("first") != nil && f.row("second") != nil && f.landingEntries().isEmpty)
        try expectReplayValidates(f)
    }

    /// Killed after its commit, before its moves; then the producer puts another file under
    /// the same name (breaking the contract: the content applied now exists nowhere). The next
    /// run archives the new file under a name no ledger row gives, so validate reports the
    /// first file's archived copy missing (not another file's SHA-256), and nothing overwrites
    /// the new file's only raw copy.
    @Test func aNameUsedAgainAfterAKilledRunGetsAnArchiveNameOfItsOwn() throws {
        let f = TestFolder()
        let path = f.land("x.ndjson.gz", [recordLine("first", time: "2025-07-30T10:00:00Z")])
        let killed = try Binary.run(args(f), environment: ["TIDEMARK_FAULT": "after-commit"])
        #expect(killed.status == SIGKILL)
        let other = f.land(".x.tmp", [recordLine("second", time: "2025-07-30T10:00:00Z"), recordLine("third", time: "2025-07-30T10:00:00Z")])
        #expect(rename(other, path) == 0)
        let next = try Binary.run(args(f))
        #expect(next.status == 0, "\(next.stderr)")
        let locations = try f.query { try String.fetchAll($0, sql: "SELECT location FROM ingested_files ORDER BY file_id") }
        #expect(locations.count == 2 && Set(locations).count == 2, "\(locations)")
        #expect(locations.last?.hasSuffix("/2-x.ndjson.gz") == true, "\(locations)")
        let check = try Binary.run(["validate", "--data", f.data])
        #expect(check.status == 1)
        #expect(check.stdout.contains("file x.ndjson.gz (applied): archived copy \(locations[0]) is missing"), "\(check.stdout)")
    }

    /// A 255-byte name landed a second time (new content): its archive name takes a ledger-id
    /// prefix and would pass the 255-byte limit of a name, so its stem is cut (marked `~`) and
    /// its suffix kept. Before, the move failed on every run, and every later file waited behind
    /// it with exit 74.
    @Test func aLongNameLandedTwiceIsArchivedUnderANameThatFits() throws {
        let f = TestFolder()
        let name = String(repeating: "a", count: 255 - ".ndjson.gz".utf8.count) + ".ndjson.gz"
        f.land(name, [recordLine("first", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        f.land(name, [recordLine("second", time: "2025-07-30T10:00:00Z")])
        let again = try Binary.run(args(f))
        #expect(again.status == 0, "\(again.stderr)")
        f.land("later.ndjson.gz", [recordLine("third", time: "2025-07-30T11:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        let locations = try f.query { try String.fetchAll($0, sql: "SELECT location FROM ingested_files ORDER BY file_id") }
        let second = (locations[1] as NSString).lastPathComponent
        #expect(second.utf8.count <= 255 && second.hasPrefix("2-aaa") && second.hasSuffix("~.ndjson.gz"), "\(second)")
        #expect(locations.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        #expect(try f.landingEntries().isEmpty)
        #expect(try f.row("second") != nil && f.row("third") != nil)
        #expect(try Binary.run(["validate", "--data", f.data, "--replay", "--landing", f.landing]).status == 0)
        #expect(BatchRunner.prefixed("12-", "short.ndjson.gz") == "12-short.ndjson.gz")
        #expect(BatchRunner.prefixed("12-", String(repeating: "é", count: 130) + ".json.gz").utf8.count <= 255)
    }

    /// Killed right after capturing a landing file for its move (`captured-<id>-NAME`, still
    /// in landing): the next run recognizes the capture by its ledger id and finishes the move,
    /// with no second ledger row, and validate's archive replay agrees.
    @Test func aKillAfterTheCaptureIsHealedByTheNextRun() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("first", time: "2025-07-30T10:00:00Z")])
        f.land("2.ndjson.gz", [recordLine("second", time: "2025-07-30T10:00:00Z")])
        let killed = try Binary.run(args(f), environment: ["TIDEMARK_FAULT": "after-capture"])
        #expect(killed.status == SIGKILL)
        let left = try f.landingEntries()
        #expect(left == ["2.ndjson.gz", "captured-1-1.ndjson.gz"], "\(left)")
        let next = try Binary.run(args(f, ["--json"]))
        // Both were committed together: the capture and the file not moved yet are healed.
        #expect(next.status == 0 && next.stdout.contains("\"files_healed\" : 2"), "\(next.stdout)\(next.stderr)")
        #expect(try f.landingEntries().isEmpty)
        #expect(try f.integer("SELECT COUNT(*) FROM ingested_files") == 2)
        #expect(try f.archivedPath("1.ndjson.gz") != nil && f.archivedPath("2.ndjson.gz") != nil)
        let check = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(check.status == 0, "\(check.stdout)")
    }

    /// Files recorded and files waiting in a merge group each hold a descriptor until archived:
    /// under a low open-files limit, many quarantined files behind one waiting in the group
    /// make the batch apply the group early and commit, instead of running out of descriptors.
    @Test func heldFilesStayWithinTheOpenFilesLimit() throws {
        let f = TestFolder()
        f.land("0-good.ndjson.gz", [recordLine("good", time: "2025-07-30T10:00:00Z")])
        for n in 0..<200 { f.landBytes(String(format: "bad-%03d.ndjson.gz", n), Array("not gzip \(n)".utf8)) }
        let run = try Binary.run(args(f, ["--json"]), openFilesLimit: 128)
        #expect(run.status == 0, "\(run.stderr.suffix(500))")
        #expect(run.stdout.contains("\"files_quarantined\" : 200") && run.stdout.contains("\"files_applied\" : 1"), "\(run.stdout.prefix(400))")
        #expect(try f.landingEntries().isEmpty)
    }

    /// A file removed from landing after it was read and applied, before it is archived, is
    /// archived from the descriptor held open: the archive still holds every file applied.
    @Test func aFileRemovedBeforeItIsArchivedIsArchivedFromTheCopyHeldOpen() throws {
        let f = TestFolder()
        let path = f.land("1.ndjson.gz", [recordLine("first", time: "2025-07-30T10:00:00Z")])
        let appliedBytes = try FileSystem.readAll(path)
        let run = try Binary.runPaused(at: "after-commit", args(f), f) { try FileManager.default.removeItem(atPath: path) }
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("landing file was removed"), "\(run.stderr)")
        let archived = try #require(try f.archivedPath("1.ndjson.gz"))
        #expect(try FileSystem.readAll(archived) == appliedBytes)
        try expectReplayValidates(f)
    }

    /// One landing folder feeds one data folder: a second ingest into another data folder
    /// meets the landing folder's lock (exit 75, saying how to find the holder) while
    /// the first runs, instead of applying every file a second time.
    @Test func aSecondIngestFromTheSameLandingFolderIntoAnotherDataFolderIsRefused() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        var second: BinaryRun?
        let first = try Binary.runPaused(at: "before-decode", args(f), f) {
            // Without the landing folder's claim (two first runs at once), the lock on the
            // landing folder is what keeps the second out.
            try FileManager.default.removeItem(atPath: f.landing + "/" + LandingClaim.fileName)
            second = try Binary.run(["ingest", "--landing", f.landing, "--data", f.root + "/other-data"])
        }
        #expect(first.status == 0, "\(first.stderr)")
        let refused = try #require(second)
        #expect(refused.status == 75, "\(refused.stderr)")
        #expect(refused.stderr.contains("error: lock \(f.landing): another ingest is taking files from this landing folder"), "\(refused.stderr)")
        #expect(refused.stderr.contains("give each its own landing folder"), "\(refused.stderr)")
        #expect(try f.row("one") != nil)
        // Once the first is done, the landing folder's lock is free again (the claim, removed
        // above, is not there to refuse the other data folder).
        let after = try Binary.run(["ingest", "--landing", f.landing, "--data", f.root + "/other-data"])
        #expect(after.status == 0, "\(after.stderr)")
    }

    /// A mistyped --data (or an unset or empty TIDEMARK_DATA) must not start a new warehouse
    /// and move the waiting files into it: the landing folder names the data folder it feeds,
    /// by the id in its database. The same data folder moved, or copied and restored, keeps
    /// that id and goes on; removing the claim file is how ingestion moves for good.
    @Test func aLandingFolderFeedsTheDataFolderItStartedWith() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        let claim = f.landing + "/" + LandingClaim.fileName
        #expect(FileManager.default.fileExists(atPath: claim))
        f.land("2.ndjson.gz", [recordLine("two", time: "2025-07-30T10:00:00Z")])
        for (data, environment) in [(f.root + "/dta", [:]), (f.root + "/unset", ["TIDEMARK_DATA": f.root + "/unset"])] {
            let command = environment.isEmpty ? ["ingest", "--landing", f.landing, "--data", data] : ["ingest", "--landing", f.landing]
            let refused = try Binary.run(command, environment: environment)
            #expect(refused.status == 64, "\(refused.stderr)")
            #expect(refused.stderr.contains("this landing folder feeds the data folder \(FileSystem.resolvedPath(f.data)!)") && refused.stderr.contains("hint: pass --data"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: data))
            let dry = try Binary.run(command + ["--dry-run"], environment: environment)
            #expect(dry.status == 64, "\(dry.stderr)")
        }
        #expect(try Binary.run(["ingest", "--landing", f.landing], environment: ["TIDEMARK_DATA": ""]).status == 64)
        // TIDEMARK_DATA unset under cron, run from another directory: the default `data` there.
        let elsewhere = TestFolder()
        let unset = try Binary.run(["ingest", "--landing", f.landing], cwd: elsewhere.root)
        #expect(unset.status == 64 && unset.stderr.contains("this landing folder feeds the data folder"), "\(unset.stderr)")
        #expect(!FileManager.default.fileExists(atPath: elsewhere.root + "/data"))
        #expect(FileManager.default.fileExists(atPath: f.landing + "/2.ndjson.gz"))
        // The data folder moved: same id, it goes on, and the claim names the new place.
        let moved = f.root + "/moved-data"
        try FileManager.default.moveItem(atPath: f.data, toPath: moved)
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", moved]).status == 0)
        #expect(try String(contentsOfFile: claim, encoding: .utf8).contains(FileSystem.resolvedPath(moved)!))
        // A copy of the data folder, while the original still exists, is refused; so is the
        // original's path holding an empty folder (a disk that did not mount) or a database
        // copied in from another data folder.
        let copy = f.root + "/copy-data"
        try FileManager.default.copyItem(atPath: moved, toPath: copy)
        let intoCopy = try Binary.run(["ingest", "--landing", f.landing, "--data", copy])
        #expect(intoCopy.status == 64 && intoCopy.stderr.contains("is a copy of the data folder"), "\(intoCopy.stderr)")
        try FileManager.default.removeItem(atPath: copy)
        let unmounted = f.root + "/unmounted"
        try FileManager.default.moveItem(atPath: moved, toPath: unmounted)
        try FileManager.default.createDirectory(atPath: moved, withIntermediateDirectories: true)
        let empty = try Binary.run(["ingest", "--landing", f.landing, "--data", moved])
        #expect(empty.status == 64 && empty.stderr.contains("has no .tidemark-id now: an empty folder where it was (its disk not mounted?)")
                && empty.stderr.contains("hint: mount the data folder's disk"), "\(empty.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: moved).isEmpty)
        try FileManager.default.removeItem(atPath: moved)
        try FileManager.default.moveItem(atPath: unmounted, toPath: moved)
        let stranger = TestFolder()
        stranger.land("s.ndjson.gz", [recordLine("s", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(["ingest", "--landing", stranger.landing, "--data", stranger.data]).status == 0)
        try FileManager.default.moveItem(atPath: moved + "/tidemark.sqlite", toPath: f.root + "/own.sqlite")
        try FileManager.default.copyItem(atPath: stranger.database, toPath: moved + "/tidemark.sqlite")
        for command in [["ingest", "--landing", f.landing, "--data", moved], ["backfill", "--from-dir", moved + "/archive", "--data", moved],
                        ["rebuild", "--all", "--data", moved], ["validate", "--data", moved]] {
            let wrongDatabase = try Binary.run(command)
            #expect(wrongDatabase.status == 64 && wrongDatabase.stderr.contains("belongs to another data folder"), "\(command[0]): \(wrongDatabase.stderr)")
        }
        #expect(try DatabaseQueue(path: moved + "/tidemark.sqlite").read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM ingested_files") } == 1)
        try FileManager.default.removeItem(atPath: moved + "/tidemark.sqlite")
        try FileManager.default.moveItem(atPath: f.root + "/own.sqlite", toPath: moved + "/tidemark.sqlite")
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", moved]).status == 0)
        // Moving ingestion elsewhere for good: remove the claim.
        try FileManager.default.removeItem(atPath: claim)
        f.land("3.ndjson.gz", [recordLine("three", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.root + "/new-home"]).status == 0)
    }

    /// A landing folder inside the data folder (a mistyped --landing naming an archive day)
    /// is refused before anything moves: ingest would take each archived file for a landed
    /// copy and remove it. So is a symlink to such a folder.
    @Test func aLandingFolderInsideTheDataFolderIsRefusedAndTheArchiveKept() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        let archived = try #require(try f.archivedPath("1.ndjson.gz"))
        let day = (archived as NSString).deletingLastPathComponent
        try FileManager.default.createSymbolicLink(atPath: f.root + "/linked-day", withDestinationPath: day)
        for landing in [day, f.data, f.data + "/quarantine", f.root + "/linked-day"] {
            let run = try Binary.run(["ingest", "--landing", landing, "--data", f.data])
            #expect(run.status == 64, "\(landing): \(run.stderr)")
            #expect(run.stderr.contains("ingest would move the files there onto themselves") && run.stderr.contains("'tidemark backfill"), "\(run.stderr)")
        }
        // A new data folder given as the landing folder too: refused, and no backfill is
        // suggested (there is no archive to apply).
        let fresh = f.root + "/fresh"
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        let same = try Binary.run(["ingest", "--landing", fresh, "--data", fresh])
        #expect(same.status == 64 && same.stderr.contains("onto themselves") && !same.stderr.contains("backfill"), "\(same.stderr)")
        // An archive day folder is marked as such, so that it is refused under any path (a bind
        // mount elsewhere, which the path checks cannot see).
        #expect(FileManager.default.fileExists(atPath: day + "/.tidemark-archive-folder"))
        #expect(try Binary.run(["ingest", "--landing", day, "--data", f.data]).stderr.contains("it holds .tidemark-archive-folder"))
        #expect(FileManager.default.fileExists(atPath: archived))
        #expect(try Binary.run(["validate", "--data", f.data]).status == 0)
        // Another data folder's archive is refused as well; a folder of the data folder that is
        // neither its archive nor its quarantine (DATA/incoming) is a landing folder like any.
        let other = TestFolder()
        let intoOther = try Binary.run(["ingest", "--landing", day, "--data", other.data])
        #expect(intoOther.status == 64 && intoOther.stderr.contains("a data folder's archive or quarantine folder"), "\(intoOther.stderr)")
        // Without the mark (an archive from before marks were kept), the path still tells.
        try FileManager.default.removeItem(atPath: day + "/.tidemark-archive-folder")
        let unmarked = try Binary.run(["ingest", "--landing", day, "--data", other.data])
        #expect(unmarked.status == 64 && unmarked.stderr.contains("lies in its archive or quarantine"), "\(unmarked.stderr)")
        #expect(FileManager.default.fileExists(atPath: archived) && !FileManager.default.fileExists(atPath: other.data))
        let incoming = other.data + "/incoming"
        try FileManager.default.createDirectory(atPath: incoming, withIntermediateDirectories: true)
        other.land("i.ndjson.gz", [recordLine("in", time: "2025-07-30T10:00:00Z")], folder: incoming)
        #expect(try Binary.run(["ingest", "--landing", incoming, "--data", other.data]).status == 0)
        #expect(try other.row("in") != nil)
    }

    /// A database restored from an older backup forgets files it had applied, which are in
    /// the archive: validate names them (`archive_in_ledger`) and says to backfill the archive,
    /// which applies them where they lie (no second copy), and validate passes again.
    @Test func filesTheLedgerLostAreFoundByValidateAndBackfilledInPlace() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        let backup = f.root + "/backup.sqlite"
        try FileManager.default.copyItem(atPath: f.database, toPath: backup) // ingest ends with a full checkpoint
        f.land("2.ndjson.gz", [recordLine("two", time: "2025-07-30T10:00:00Z"), tombstoneLine("one")])
        #expect(try Binary.run(args(f)).status == 0)
        try FileManager.default.removeItem(atPath: f.database)
        try FileManager.default.copyItem(atPath: backup, toPath: f.database)
        #expect(try Binary.run(args(f)).status == 0)
        let archived = Warehouse.archivedDataFiles(f.data).count
        let validate = try Binary.run(["validate", "--data", f.data])
        #expect(validate.status == 1, "\(validate.stdout)")
        #expect(validate.stdout.contains("archive_in_ledger") && validate.stdout.contains("2.ndjson.gz is in the archive but not in the ledger"), "\(validate.stdout)")
        #expect(validate.stdout.contains("hint: the database lost files it had applied") && validate.stdout.contains("--from-dir \(f.data)/archive --data \(f.data)"), "\(validate.stdout)")
        let backfill = try Binary.run(["backfill", "--from-dir", f.data + "/archive", "--data", f.data])
        #expect(backfill.status == 0, "\(backfill.stderr)")
        #expect(try f.row("two") != nil && f.row("one")?.isValid == 0)
        #expect(Warehouse.archivedDataFiles(f.data).count == archived)
        let again = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(again.status == 0, "\(again.stdout)")
    }

    /// After a restore from an older backup, file ids repeat: a new file is never archived
    /// over one the restored ledger forgot (the move would replace it), and a redelivery the
    /// lost database had archived is recorded where it lies by the backfill that recovers, so
    /// that validate passes again.
    @Test func aRestoredDatabaseNeverArchivesOverTheFilesItForgot() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        let backup = f.root + "/backup.sqlite"
        try FileManager.default.copyItem(atPath: f.database, toPath: backup)
        // Applied after the backup: a file named like the first (archived as ID-NAME) and a redelivery.
        f.land("1.ndjson.gz", [recordLine("two", time: "2025-07-30T10:00:00Z")])
        f.land("2-again.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        try FileManager.default.removeItem(atPath: f.database)
        try FileManager.default.copyItem(atPath: backup, toPath: f.database)
        let forgotten = Warehouse.archivedDataFiles(f.data).sorted()
        let forgottenBytes = try forgotten.map { try FileSystem.readAll($0) }
        // The same names again, with the ids the lost database gave.
        f.land("1.ndjson.gz", [recordLine("three", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        #expect(try forgotten.map { try FileSystem.readAll($0) } == forgottenBytes, "an archived file was replaced")
        let validate = try Binary.run(["validate", "--data", f.data])
        #expect(validate.status == 1 && validate.stdout.contains("archive_in_ledger"), "\(validate.stdout)")
        #expect(try Binary.run(["backfill", "--from-dir", f.data + "/archive", "--data", f.data]).status == 0)
        let again = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(again.status == 0, "\(again.stdout)")
        #expect(try f.row("two") != nil && f.row("three") != nil)
        // A rerun of the recovery changes nothing.
        let ledger = try f.integer("SELECT COUNT(*) FROM ingested_files")
        #expect(try Binary.run(["backfill", "--from-dir", f.data + "/archive", "--data", f.data]).status == 0)
        #expect(try f.integer("SELECT COUNT(*) FROM ingested_files") == ledger)
    }

    /// A batch killed after it opened (its row still "running") shows as interrupted in
    /// status once the job is gone, although its pid is still in the lock file.
    @Test func aKilledBatchShowsAsInterrupted() throws {
        let f = TestFolder()
        try f.createDatabase()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        let run = try Binary.run(args(f), environment: ["TIDEMARK_FAULT": "mid-file"])
        #expect(run.status == SIGKILL)
        #expect(try String(contentsOfFile: f.data + "/tidemark.lock", encoding: .utf8).hasPrefix("ingest pid "))
        let status = try Binary.run(["status", "--landing", f.landing, "--data", f.data])
        #expect(status.stdout.contains("interrupted"), "\(status.stdout)")
    }

    /// A database lost (deleted, or emptied) beside an archive is not silently started anew,
    /// which would forget every archived file: ingest and readers refuse, saying how to
    /// recover; a backfill of the archive into the same data folder is that recovery. Another
    /// program's database is not taken over either.
    @Test func aLostDatabaseIsNotStartedAnewBesideItsArchive() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        let before = try f.eventRows()
        for emptied in [false, true] {
            // Refused runs create no database: there is none to remove the second time.
            if !emptied { try FileManager.default.removeItem(atPath: f.database) }
            #expect(!FileManager.default.fileExists(atPath: f.database))
            if emptied { createTestFile(atPath: f.database, contents: Data()) }
            for command in [args(f), ["status", "--data", f.data], ["validate", "--data", f.data], ["rebuild", "--all", "--data", f.data]] {
                let run = try Binary.run(command)
                #expect(run.status == 66, "\(command[0]): \(run.stderr)")
                #expect(run.stderr.contains("is missing or empty, but \(f.data)/archive holds files a database recorded"), "\(command[0]): \(run.stderr)")
            }
            #expect(try Binary.run(args(f)).stderr.contains("hint: rebuild it in place from the archive: tidemark backfill --from-dir \(f.data)/archive --data \(f.data)"))
        }
        // A quarantined file is named too: the rebuilt ledger will not know it.
        try FileManager.default.createDirectory(atPath: f.data + "/quarantine", withIntermediateDirectories: true)
        createTestFile(atPath: f.data + "/quarantine/bad.ndjson.gz", contents: Data("x".utf8))
        #expect(try Binary.run(args(f)).stderr.contains("a ledger rebuilt from the archive does not know the 1 file in \(f.data)/quarantine: to retry it, move it back into landing"))
        try FileManager.default.removeItem(atPath: f.data + "/quarantine/bad.ndjson.gz")
        let recovered = try Binary.run(["backfill", "--from-dir", f.data + "/archive", "--data", f.data])
        #expect(recovered.status == 0, "\(recovered.stderr)")
        #expect(try f.eventRows() == before)
        #expect(try Binary.run(["validate", "--data", f.data]).status == 0)
        // Ingest goes on into the recovered folder: the landing folder knows it by its place.
        f.land("2.ndjson.gz", [recordLine("two", time: "2025-07-30T10:00:00Z")])
        let next = try Binary.run(args(f))
        #expect(try next.status == 0 && f.row("two") != nil, "\(next.stderr)")
        // A folder with no id file either (made before ids were kept in one): the rebuilt
        // database takes the id of the landing folder's claim, which names this place.
        try FileManager.default.removeItem(atPath: f.data + "/.tidemark-id")
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: f.database + suffix) }
        #expect(try Binary.run(["backfill", "--from-dir", f.data + "/archive", "--data", f.data]).status == 0)
        f.land("3.ndjson.gz", [recordLine("three", time: "2025-07-30T10:00:00Z")])
        let legacy = try Binary.run(args(f))
        #expect(try legacy.status == 0 && f.row("three") != nil, "\(legacy.stderr)")
        // Another program's database under the name.
        let other = TestFolder()
        try FileManager.default.createDirectory(atPath: other.data, withIntermediateDirectories: true)
        try DatabaseQueue(path: other.database).write { try $0.execute(sql: "CREATE TABLE accounts (id INTEGER)") }
        let foreign = try Binary.run(["ingest", "--landing", other.landing, "--data", other.data])
        #expect(foreign.status == 74 && foreign.stderr.contains("holds tables, but none of tidemark's"), "\(foreign.stderr)")
        // Left as it was: no tables added, not switched to WAL.
        #expect(try DatabaseQueue(path: other.database).read { try $0.tableExists("partitions") } == false)
        #expect(try DatabaseQueue(path: other.database).read { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "delete")
        #expect(!FileManager.default.fileExists(atPath: other.database + "-wal"))
    }

    /// A partition table dropped by hand stops the next batch that writes there, and the
    /// error says which rebuild restores it; after that rebuild the batch goes through.
    @Test func aDroppedPartitionTableStopsIngestWithTheRebuildToRun() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        try f.execute("DROP TABLE events_2025073010")
        f.land("2.ndjson.gz", [recordLine("two", time: "2025-07-30T10:30:00Z")])
        let stopped = try Binary.run(args(f))
        #expect(stopped.status == 74, "\(stopped.stderr)")
        #expect(stopped.stderr.contains("a partition table is missing") && stopped.stderr.contains("hint: run 'tidemark rebuild --hour 2025-07-30T10'"), "\(stopped.stderr)")
        #expect(try Binary.run(["rebuild", "--hour", "2025-07-30T10", "--data", f.data]).status == 0)
        #expect(try Binary.run(args(f)).status == 0)
        #expect(try f.row("one") != nil && f.row("two") != nil)
    }

    /// A file applied and committed whose archive move fails ends the batch with exit 74
    /// naming it; it stays in landing, and the run after the cause is fixed finishes the move
    /// without applying it again.
    @Test func aFileThatCannotBeArchivedEndsTheBatchWithExit74AndIsMovedNextTime() throws {
        let f = TestFolder()
        let path = f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        try FileSystem.makeFolder(f.data)
        createTestFile(atPath: f.data + "/archive", contents: Data("in the way".utf8))
        let blocked = try Binary.run(args(f))
        #expect(blocked.status == 74, "\(blocked.stderr)")
        #expect(blocked.stderr.contains("error: archive \(path): create folder \(f.data)/archive"), "\(blocked.stderr)")
        #expect(blocked.stderr.contains("the next run finishes the move without applying it again"), "\(blocked.stderr)")
        #expect(try f.row("one") != nil && FileManager.default.fileExists(atPath: path))
        try FileManager.default.removeItem(atPath: f.data + "/archive")
        let next = try Binary.run(args(f, ["--json"]))
        #expect(next.status == 0, "\(next.stderr)")
        #expect(next.stdout.contains("\"files_healed\" : 1") || next.stdout.contains("\"files_healed\":1"), "\(next.stdout)")
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    /// A disk that fills while files are moved to the archive: the batch takes no more files
    /// (its next commit would fail too), warns about the first few moves and sums up the rest,
    /// ends with exit 74 naming how many files stay in landing, prints its summary, and the
    /// next run, with space again, moves them without applying them again.
    @Test func aFullDiskDuringArchiveMovesEndsTheBatchWithEveryFileAccountedFor() throws {
        let f = TestFolder()
        try f.createDatabase()
        for n in 0..<40 { f.land(String(format: "%02d.ndjson.gz", n), [recordLine("e\(n)", time: "2025-07-30T10:00:00Z")]) }
        let full = try Binary.run(args(f, ["--json", "--files-per-commit", "10"]), environment: ["TIDEMARK_ARCHIVE_SPACE_FILES": "5"])
        #expect(full.status == 74, "\(full.stderr)")
        #expect(full.stderr.contains("no space left to archive files: ending the batch"), "\(full.stderr)")
        #expect(full.stderr.components(separatedBy: "could not move file after commit").count - 1 == 3, "\(full.stderr)")
        #expect(full.stderr.contains("2 more files could not be moved after their commit"), "\(full.stderr)")
        #expect(full.stderr.contains("and 4 more files (see --json)") && full.stderr.contains("(5 in all)"), "\(full.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(full.stdout.utf8)) as? [String: Any]
        #expect((summary?["unarchived_files"] as? [Any])?.count == 5 && summary?["files_applied"] as? Int == 10, "\(full.stdout)")
        #expect(try f.integer("SELECT COUNT(*) FROM ingested_files") == 10)
        let next = try Binary.run(args(f, ["--json"]))
        #expect(next.status == 0, "\(next.stderr)")
        #expect(try f.landingEntries().isEmpty && f.integer("SELECT COUNT(*) FROM ingested_files") == 40)
        #expect(try Binary.run(["validate", "--data", f.data]).status == 0)
    }

    /// A file written in place (no temporary name) and caught half-written is left in landing
    /// while it was modified within `--settle-seconds`, then applied whole once written; one
    /// that still ends early after that is quarantined, the log saying where and how to retry.
    @Test func settleLeavesAFileStillBeingWrittenForTheNextRun() throws {
        let f = TestFolder()
        let whole = GzipWriter.gzip((0..<300).map { recordLine("w\($0)", time: "2025-07-30T10:00:00Z") + "\n" }.joined())
        f.landBytes("w.ndjson.gz", Array(whole.prefix(whole.count / 2)))
        let early = try Binary.run(args(f, ["--json"]))
        #expect(early.status == 0, "\(early.stderr)")
        #expect(early.stderr.contains("probably still being written"), "\(early.stderr)")
        #expect(early.stdout.contains("\"files_left_for_next_batch\" : 1") && early.stdout.contains("\"files_quarantined\" : 0"), "\(early.stdout)")
        #expect(early.stdout.contains("\"backlog_files\" : 1"), "\(early.stdout)")
        #expect(try f.integer("SELECT COUNT(*) FROM ingested_files") == 0)
        f.landBytes("w.ndjson.gz", whole)
        let written = try Binary.run(args(f, ["--json"]))
        #expect(written.status == 0 && written.stdout.contains("\"files_applied\" : 1"), "\(written.stdout)\(written.stderr)")
        #expect(try f.row("w299") != nil)

        // Still cut short a minute after its last change: quarantined, with where and how.
        f.landBytes("x.ndjson.gz", Array(whole.prefix(whole.count / 2)))
        var times = [timeval(tv_sec: time(nil) - 60, tv_usec: 0), timeval(tv_sec: time(nil) - 60, tv_usec: 0)]
        #expect(utimes(f.landing + "/x.ndjson.gz", &times) == 0)
        let stale = try Binary.run(args(f))
        #expect(stale.status == 0)
        #expect(stale.stderr.contains("quarantined file: nothing of it was applied; to retry it once repaired, move it back into the landing folder"), "\(stale.stderr)")
        #expect(stale.stderr.contains("to=\(f.data)/quarantine/x.ndjson.gz"), "\(stale.stderr)")
        let negative = try Binary.run(args(f, ["--settle-seconds=-1"]))
        #expect(negative.status == 64 && negative.stderr.contains("--settle-seconds must be 0 to 604800 seconds (a week), got -1.0"), "\(negative.stderr)")
        let endless = try Binary.run(args(f, ["--settle-seconds", "inf"]))
        #expect(endless.status == 64 && endless.stderr.contains("--settle-seconds must be 0 to 604800 seconds (a week), got inf"), "\(endless.stderr)")
        // 1e308 passed the old check, and an empty file then crashed ingest while it wrote how
        // long the file would wait (exit 132).
        f.land("empty.ndjson.gz", [])
        let huge = try Binary.run(args(f, ["--settle-seconds", "1e308"]))
        #expect(huge.status == 64 && huge.stderr.contains("--settle-seconds must be 0 to 604800 seconds (a week), got 1e+308"), "\(huge.stderr)")
        #expect(Durations.text(1e308) == "forever" && Durations.text(Double(Int.max)) == "forever" && Durations.text(90) == "1 min 30 s")
    }

    /// Landing entries that will never be ingested are not out of sight: one that looks meant
    /// as data (another case, a symlink) is warned about at each run, any other is logged with
    /// -v, and status lists them all beside the backlog.
    @Test func entriesThatWillNeverBeIngestedAreWarnedAboutAndListedByStatus() throws {
        let f = TestFolder()
        f.land("upper.NDJSON.GZ", [recordLine("u", time: "2025-07-30T10:00:00Z")])
        createTestFile(atPath: f.landing + "/readme.txt", contents: Data("notes".utf8))
        let target = f.land("target.bin", [recordLine("t", time: "2025-07-30T10:00:00Z")], folder: f.root)
        try FileManager.default.createSymbolicLink(atPath: f.landing + "/link.ndjson.gz", withDestinationPath: target)
        let run = try Binary.run(args(f))
        #expect(run.status == 0)
        #expect(run.stderr.contains("not ingesting this landing entry") && run.stderr.contains("file=upper.NDJSON.GZ"), "\(run.stderr)")
        #expect(run.stderr.contains("file=link.ndjson.gz"), "\(run.stderr)")
        #expect(!run.stderr.contains("readme.txt"), "\(run.stderr)")
        let status = try Binary.run(["status", "--data", f.data, "--landing", f.landing])
        #expect(status.stdout.contains("backlog: 0 files, 0 bytes waiting in landing\nignored in landing, never ingested: 3 entries: link.ndjson.gz (symlink"), "\(status.stdout)")
        #expect(status.stdout.contains("upper.NDJSON.GZ (name does not end in"), "\(status.stdout)")
    }

    /// `ingest --dry-run` prints its plan (as backfill's does) and says "would" for what it
    /// did not do; a missing landing folder (exit 66) leaves no data folder behind.
    @Test func dryRunPrintsItsPlanAndClaimsNothingItDidNotDo() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z"), "not json"])
        f.landBytes("2.ndjson.gz", Array("not gzip at all".utf8))
        f.land("3.ndjson.gz", [recordLine("f", time: "2025-07-30T10:00:00Z")])
        let run = try Binary.run(args(f, ["--dry-run"]))
        #expect(run.status == 0, "\(run.stderr)")
        // Listed in name order, the order files are taken in, whatever order each was settled in.
        #expect(run.stdout.split(separator: "\n").dropLast().map { $0.prefix(11) } == ["1.ndjson.gz", "2.ndjson.gz", "3.ndjson.gz"], "\(run.stdout)")
        #expect(run.stdout.contains("1.ndjson.gz\tapply\t2 lines\t2025-07-30T10"), "\(run.stdout)")
        #expect(run.stdout.contains("2.ndjson.gz\tquarantine: not a gzip file"), "\(run.stdout)")
        #expect(run.stdout.contains("would touch 1 hours: 2025-07-30T10"), "\(run.stdout)")
        #expect(run.stderr.contains("dry run: would quarantine file") && !run.stderr.contains("quarantined file"), "\(run.stderr)")
        #expect(run.stderr.contains("dry run: 1 line would be rejected in 1 file"), "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: f.data))
        let missing = try Binary.run(["ingest", "--landing", f.root + "/no-such-landing", "--data", f.data])
        #expect(missing.status == 66)
        #expect(!FileManager.default.fileExists(atPath: f.data))
    }

    /// Mistakes in what was asked get a message saying what is wrong, not a misleading one.
    @Test func mistakesInWhatWasAskedAreNamedForWhatTheyAre() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        let empty = try Binary.run(["rebuild", "--data", f.data, "--hour", "2025-07-30T15"])
        #expect(empty.status == 0)
        #expect(empty.stdout.contains("nothing to rebuild for 2025-07-30T15: no partition and no archived file holds events of that hour"), "\(empty.stdout)")
        let both = try Binary.run(["rebuild", "--data", f.data, "--all", "--hour", "2025-07-30T10"])
        #expect(both.status == 64 && both.stderr.contains("--all rebuilds every hour: it cannot be combined with --hour"), "\(both.stderr)")
        let reversed = try Binary.run(["backfill", "--from-dir", f.landing, "--data", f.data, "--since", "2025-07-31T00:00:00Z", "--until", "2025-07-30T00:00:00Z"])
        #expect(reversed.status == 64 && reversed.stderr.contains("is not before --until"), "\(reversed.stderr)")
        let file = f.land("plain.bin", [], folder: f.root)
        let notFolder = try Binary.run(["ingest", "--landing", file, "--data", f.data])
        #expect(notFolder.status == 66 && notFolder.stderr.contains("not a folder (a file is there)\nhint: pass the landing folder, not a file, as --landing DIR"), "\(notFolder.stderr)")
        let emptyHour = try Binary.run(["validate", "--data", f.data, "--hour", "2030-01-01T00"])
        #expect(emptyHour.status == 0 && emptyHour.stdout.contains("no partition holds hour 2030-01-01T00: nothing there to check"), "\(emptyHour.stdout)")
        let dataFile = try Binary.run(["status", "--data", file])
        #expect(dataFile.status == 66 && dataFile.stderr.contains("error: open data folder \(file): not a folder (a file is there)"), "\(dataFile.stderr)")
    }

    /// The job lock names its holder only while it is held: released, the file is empty, so
    /// whoever takes the lock next (an operator's `flock`, say) is not shown as an old pid.
    @Test func theLockFileNamesItsHolderOnlyWhileHeld() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        var during = ""
        let run = try Binary.runPaused(at: "before-decode", args(f), f) {
            during = (try? String(contentsOfFile: f.data + "/tidemark.lock", encoding: .utf8)) ?? ""
        }
        #expect(run.status == 0)
        #expect(during.hasPrefix("ingest pid "), "\(during)")
        #expect(try String(contentsOfFile: f.data + "/tidemark.lock", encoding: .utf8).isEmpty)
    }

    /// The lock file removed as "stale" while an ingest runs lets no second job in: the data
    /// folder itself is locked too. (Before, a rebuild then ran beside the ingest and undid
    /// rows it committed.) A holder that is not tidemark is pointed at with `fuser`.
    @Test func removingTheLockFileLetsNoSecondJobIn() throws {
        let f = TestFolder()
        try f.createDatabase()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        var rebuild: BinaryRun?
        let run = try Binary.runPaused(at: "before-decode", args(f), f) {
            try FileManager.default.removeItem(atPath: f.data + "/tidemark.lock")
            rebuild = try Binary.run(["rebuild", "--data", f.data, "--all"])
        }
        #expect(run.status == 0, "\(run.stderr)")
        let refused = try #require(rebuild)
        #expect(refused.status == 75 && refused.stderr.contains("another tidemark job is running"), "\(refused.stderr)")
        #expect(try f.row("one") != nil)
        // Someone else's flock on the lock file: exit 75, and the hint says how to find them.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = [f.data + "/tidemark.lock", "sleep", "3"]
        try holder.run()
        defer { holder.terminate() }
        var busy = try Binary.run(args(f))
        for _ in 0..<100 where busy.status == 0 {
            usleep(20_000)
            busy = try Binary.run(args(f))
        }
        #expect(busy.status == 75 && busy.stderr.contains("fuser -v \(f.data) \(f.data)/tidemark.lock"), "\(busy.stderr)")
    }

    /// A move that fails after the capture (here: a folder stands where the archived copy
    /// goes) puts the file back under its landing name, which the exit-74 error names, and the
    /// next run, the obstacle gone, finishes the move.
    @Test func aMoveFailingAfterTheCaptureLeavesTheFileUnderItsName() throws {
        let f = TestFolder()
        let path = f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        var obstacle = ""
        let run = try Binary.runPaused(at: "after-commit", args(f), f) {
            let location = try f.query { try String.fetchOne($0, sql: "SELECT location FROM ingested_files") } ?? ""
            obstacle = location
            try FileManager.default.createDirectory(atPath: location, withIntermediateDirectories: true)
        }
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stderr.contains("error: archive \(path): "), "\(run.stderr)")
        #expect(try f.landingEntries() == ["1.ndjson.gz"])
        try FileManager.default.removeItem(atPath: obstacle)
        let next = try Binary.run(args(f))
        #expect(next.status == 0 && !FileManager.default.fileExists(atPath: path), "\(next.stderr)")
        #expect(try f.archivedPath("1.ndjson.gz") != nil)
    }

    /// A dry run writes no metrics file.
    @Test func aDryRunWritesNoMetricsFile() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        f.land("2.ndjson.gz", [recordLine("two", time: "2025-07-30T10:00:00Z")])
        let run = try Binary.run(args(f, ["--dry-run", "--metrics-file", f.root + "/m.prom"]))
        #expect(run.status == 0 && !FileManager.default.fileExists(atPath: f.root + "/m.prom"), "\(run.stderr)")
    }

    /// An output file (`--html`, `--metrics-file`) that names one of the files tidemark keeps,
    /// however it is spelled, is refused with 64 before anything is written or ingested: a
    /// tab-completed `--html DATA/tidemark.sqlite` replaced the database with a web page, exit 0.
    @Test func outputFilesNeverReplaceTheFilesTidemarkKeeps() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        let archived = try #require(try f.archivedPath("1.ndjson.gz"))
        let link = f.root + "/link-to-data"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: f.data)
        f.land("2.ndjson.gz", [recordLine("two", time: "2025-07-30T10:00:00Z")])
        let refused: [[String]] = [
            ["report", "--data", f.data, "--html", f.data + "/tidemark.sqlite"],
            ["report", "--data", f.data, "--html", link + "/./tidemark.sqlite"],
            ["report", "--data", f.data, "--html", archived],
            ["report", "--data", f.data, "--html", f.root + "/typo.ndjson.gz"],
            args(f, ["--metrics-file", f.data + "/tidemark.sqlite-wal"]),
            args(f, ["--metrics-file", f.data + "/.tidemark-id"]),
            args(f, ["--metrics-file", f.data + "/tidemark.sqlite-loading"]),
            ["backfill", "--from-dir", f.landing, "--data", f.data, "--metrics-file", f.data + "/tidemark.lock"],
            // Markers and locks beside the data: the producer's lock and in-flight marker, the
            // landing folder's claim.
            args(f, ["--metrics-file", f.landing + "/.producer.lock"]),
            args(f, ["--metrics-file", f.root + "/sent/.inflight"]),
            args(f, ["--metrics-file", f.landing + "/.tidemark-data-folder"]),
        ]
        let databaseBefore = try FileSystem.sha256(ofFile: f.database), archivedBefore = try FileSystem.sha256(ofFile: archived)
        for arguments in refused {
            let run = try Binary.run(arguments)
            #expect(run.status == 64 && run.stderr.contains("nothing was written"), "\(arguments): \(run.stderr)")
        }
        #expect(try FileSystem.sha256(ofFile: f.database) == databaseBefore && FileSystem.sha256(ofFile: archived) == archivedBefore)
        #expect(try f.row("two") == nil) // the refused ingest and backfill applied nothing
        #expect(try Binary.run(["status", "--data", f.data]).status == 0)
        // A report beside them is fine, and so is a hidden metrics file named after the tool.
        #expect(try Binary.run(["report", "--data", f.data, "--html", f.data + "/report.html"]).status == 0)
        #expect(try Binary.run(args(f, ["--metrics-file", f.root + "/.tidemark.prom"])).status == 0)
        #expect(try f.row("two") != nil)
    }

    /// Every command's help lists the exit codes it can give (the README's table explains them).
    @Test func everyCommandsHelpListsItsExitCodes() throws {
        let codes: [String: [Int]] = [
            "ingest": [0, 64, 66, 74, 75], "backfill": [0, 64, 66, 74, 75], "produce": [0, 64, 74, 75],
            "validate": [0, 1, 64, 66, 74, 75], "rebuild": [0, 64, 65, 66, 74, 75], "status": [0, 64, 66, 74, 75],
            "freshness": [0, 1, 2, 64, 66, 74, 75], "report": [0, 64, 66, 74, 75], "demo": [0, 1, 64, 65, 66, 74, 75],
        ]
        for (command, expected) in codes {
            let help = try Binary.run([command, "--help"])
            let text = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            // The paragraph after "Exit codes:", not the options' help below it.
            let listed = (text.components(separatedBy: "Exit codes:").dropFirst().first ?? "").components(separatedBy: "USAGE:")[0]
            for code in expected {
                #expect(listed.range(of: "(^|[ ;])\(code) ", options: .regularExpression) != nil, "\(command) --help does not list \(code): \(listed.prefix(300))")
            }
        }
    }

    @Test func quietOnSuccessAndJSONOnRequest() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        let quiet = try Binary.run(args(f))
        #expect(quiet.status == 0)
        #expect(quiet.stdout.isEmpty && quiet.stderr.isEmpty)
        f.land("2.ndjson.gz", [recordLine("e2", time: "2025-07-30T10:00:00Z")])
        let json = try Binary.run(args(f, ["--json"]))
        #expect(json.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["files_applied"] as? Int == 1)
        #expect((object?["lines"] as? [String: Any])?["new"] as? Int == 1)
    }

    /// A landing file that cannot be read (here: gone between the scan and the read; as root,
    /// CI cannot make one unreadable) ends the run with exit 74 naming it, while the batch
    /// commits the other files, stays `succeeded` and still prints its summary.
    @Test func unreadableFileExits74AndTheBatchKeepsTheRest() throws {
        let f = TestFolder()
        f.land("1-fine.ndjson.gz", [recordLine("fine", time: "2025-07-30T10:00:00Z")])
        let gone = f.land("2-gone.ndjson.gz", [recordLine("gone", time: "2025-07-30T10:00:00Z")])
        let run = try runRemoving(gone, whilePaused: args(f, ["--json"]), f)
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stderr.contains("error: read \(gone): No such file or directory"), "\(run.stderr)")
        #expect(run.stderr.contains("hint: nothing of it was applied (the other files were): it was renamed or removed while the batch ran; renamed within the folder, the next run takes it"), "\(run.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        #expect(object?["files_applied"] as? Int == 1)
        #expect((object?["unreadable_files"] as? [[String: Any]])?.first?["path"] as? String == gone)
        // The batch succeeded; the run's exit code is in the document too.
        #expect(object?["status"] as? String == "succeeded" && object?["exit_code"] as? Int == 74, "\(run.stdout)")
        #expect(try f.query { try String.fetchAll($0, sql: "SELECT status FROM batches") } == ["succeeded"])
        let next = try Binary.run(args(f, ["--json"]))
        #expect(next.status == 0 && next.stdout.contains("\"exit_code\" : 0"), "\(next.stdout)")
        #expect(try f.row("fine") != nil)
    }

    /// Several unreadable files are all named, each with its cause, and the hint speaks of
    /// them all (not of "the other files", which here include unreadable ones).
    @Test func severalUnreadableFilesAreAllNamed() throws {
        let f = TestFolder()
        f.land("1-fine.ndjson.gz", [recordLine("fine", time: "2025-07-30T10:00:00Z")])
        let gone = (2...3).map { f.land("\($0)-gone.ndjson.gz", [recordLine("gone\($0)", time: "2025-07-30T10:00:00Z")]) }
        let run = try runRemoving(gone, whilePaused: args(f), f)
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stderr.contains("error: read \(gone[0]): No such file or directory; also \(gone[1]): No such file or directory"), "\(run.stderr)")
        #expect(run.stderr.contains("hint: none of these 2 files was applied (every other file was): they were renamed or removed while the batch ran"), "\(run.stderr)")
        #expect(try f.row("fine") != nil)
    }

    /// A landing file ingest may not read (run as the user nobody: root reads everything)
    /// stays in landing with a hint about access; the other files are applied, and the run
    /// once it is readable takes it.
    @Test(.enabled(if: Binary.forNobody != nil, "needs root and setpriv, to run the binary as the user nobody"))
    func aLandingFileWithoutReadAccessStaysWithAHintAboutAccess() throws {
        let f = TestFolder()
        f.land("1-fine.ndjson.gz", [recordLine("fine", time: "2025-07-30T10:00:00Z")])
        let locked = f.land("2-locked.ndjson.gz", [recordLine("locked", time: "2025-07-30T10:00:00Z")])
        try FileManager.default.setAttributes([.posixPermissions: 0], ofItemAtPath: locked)
        for folder in [f.landing, f.root] { try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder) }
        let run = try Binary.run(args(f), asNobody: Binary.forNobody)
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stderr.contains("error: read \(locked): Permission denied"), "\(run.stderr)")
        #expect(run.stderr.contains("hint: nothing of it was applied (the other files were): tidemark runs as nobody: give it access to that path") && run.stderr.contains("it stays in the landing folder and the next run takes it"), "\(run.stderr)")
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: locked)
        #expect(try Binary.run(args(f), asNobody: Binary.forNobody).status == 0)
        #expect(try f.row("fine") != nil && f.row("locked") != nil)
    }

    /// An archive folder ingest may not write: the error names that folder, not the landing
    /// file (whose folder is fine); the file stays in landing, and the next run, once the
    /// folder is writable, finishes the move without applying it again.
    @Test(.enabled(if: Binary.forNobody != nil, "needs root and setpriv, to run the binary as the user nobody"))
    func anArchiveFolderWithoutWriteAccessIsTheOneNamed() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        for folder in [f.landing, f.root] { try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder) }
        #expect(try Binary.run(args(f), asNobody: Binary.forNobody).status == 0)
        let day = try #require(try FileManager.default.contentsOfDirectory(atPath: f.data + "/archive").first.map { f.data + "/archive/" + $0 })
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: day)
        f.land("2.ndjson.gz", [recordLine("two", time: "2025-07-30T10:00:00Z")])
        let run = try Binary.run(args(f, ["--json"]), asNobody: Binary.forNobody)
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stderr.contains("into \(day): Permission denied"), "\(run.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        let unarchived = summary?["unarchived_files"] as? [[String: Any]]
        #expect(unarchived?.count == 1 && unarchived?.first?["path"] as? String == f.landing + "/2.ndjson.gz", "\(run.stdout)")
        #expect((unarchived?.first?["cause"] as? String)?.hasSuffix("into \(day): Permission denied") == true, "\(run.stdout)")
        #expect(try f.row("two") != nil && f.landingEntries() == ["2.ndjson.gz"])
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: day)
        let next = try Binary.run(args(f, ["--json"]), asNobody: Binary.forNobody)
        #expect(next.status == 0 && next.stdout.contains("\"files_healed\" : 1"), "\(next.stdout)\(next.stderr)")
        #expect(try f.landingEntries().isEmpty)
    }

    /// Backfill meets an unreadable source file the same way: exit 74 naming it, the rest
    /// applied, and a hint that the file stays where it is for a rerun.
    @Test func backfillOfAnUnreadableFileExits74AndKeepsTheRest() throws {
        let f = TestFolder()
        let source = f.root + "/backup"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        f.land("1-fine.ndjson.gz", [recordLine("fine", time: "2025-07-30T10:00:00Z")], folder: source)
        let gone = f.land("2-gone.ndjson.gz", [recordLine("gone", time: "2025-07-30T10:00:00Z")], folder: source)
        let run = try runRemoving(gone, whilePaused: ["backfill", "--from-dir", source, "--data", f.data], f)
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stderr.contains("error: read \(gone): No such file or directory"), "\(run.stderr)")
        #expect(run.stderr.contains("it was renamed or removed while the batch ran"), "\(run.stderr)")
        #expect(try f.row("fine") != nil)
    }

    /// A reader holding a snapshot (status, validate, a dashboard) does not hold the batch up
    /// for the busy timeout at its closing checkpoint; the WAL is emptied by a later batch.
    @Test func aReaderDoesNotHoldTheBatchUpAtItsCheckpoint() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        var config = Configuration()
        config.allowsUnsafeTransactions = true // the read transaction stays open across the run
        let reader = try DatabaseQueue(path: f.database, configuration: config)
        try reader.inDatabase { db in
            try db.execute(sql: "BEGIN")
            _ = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM batches")
        }
        f.land("2.ndjson.gz", [recordLine("two", time: "2025-07-30T10:00:00Z")])
        let started = Date()
        let run = try Binary.run(args(f, ["--busy-timeout", "30"]))
        let seconds = Date().timeIntervalSince(started)
        try reader.inDatabase { try $0.execute(sql: "COMMIT") }
        #expect(run.status == 0, "\(run.stderr)")
        // Not a speed test: waiting out the 30 s busy timeout is the failure.
        #expect(seconds < 20, "the batch waited \(seconds) s for a reader")
        #expect(try f.row("two") != nil)
    }

    @Test func maxFilesLeavesTheRestAsBacklog() throws {
        let f = TestFolder()
        for n in 0..<5 { f.land("\(n).ndjson.gz", [recordLine("m\(n)", time: "2025-07-30T10:00:00Z")]) }
        let run = try Binary.run(args(f, ["--max-files", "2", "--json"]))
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        #expect(object?["files_applied"] as? Int == 2)
        #expect(object?["backlog_files"] as? Int == 3)
        #expect((object?["backlog_bytes"] as? Int ?? 0) > 0)
        #expect(try f.landingEntries() == ["2.ndjson.gz", "3.ndjson.gz", "4.ndjson.gz"])
    }

    @Test func missingLandingFolderExits66() throws {
        let f = TestFolder()
        let run = try Binary.run(["ingest", "--landing", f.root + "/nope", "--data", f.data])
        #expect(run.status == 66)
        #expect(run.stderr.hasPrefix("error: scan landing folder \(f.root)/nope: no such folder\nhint: "))
    }

    @Test func environmentVariablesNameTheFolders() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        let run = try Binary.run(["ingest"], environment: ["TIDEMARK_LANDING": f.landing, "TIDEMARK_DATA": f.data])
        #expect(run.status == 0)
        #expect(FileManager.default.fileExists(atPath: f.database))
        #expect(try f.row("e") != nil) // the file came from TIDEMARK_LANDING
    }

    @Test func usageErrorsExit64() throws {
        // Even at its default value: without --loop one batch runs, not one every 5 s.
        for seconds in ["3", "5"] {
            let run = try Binary.run(["ingest", "--interval", seconds])
            #expect(run.status == 64)
            #expect(run.stderr.contains("--interval only applies with --loop"), "\(run.stderr)")
        }
        let zero = try Binary.run(["ingest", "--files-per-commit", "0"])
        #expect(zero.status == 64)
        #expect(zero.stderr.contains("--files-per-commit must be at least 1, got 0"))
        // A negative number is a value, not an unknown option, and each value out of range is
        // named (those bounded above would overflow the clock arithmetic behind them; they
        // crashed before).
        let cases: [([String], String)] = [
            (["ingest", "--loop", "--interval", "-1"], "--interval must be a number of seconds greater than 0, got -1.0"),
            (["ingest", "--loop", "--interval", "nan"], "--interval must be a number of seconds greater than 0, got nan"),
            (["ingest", "--max-new-partitions", "0"], "--max-new-partitions must be at least 1, got 0"),
            (["backfill", "--from-dir", "/tmp", "--max-new-partitions", "-3"], "--max-new-partitions must be at least 1, got -3"),
            (["ingest", "--busy-timeout", "3e6"], "--busy-timeout must be 0 to 86400 seconds (a day), got 3000000.0"),
            (["ingest", "--busy-timeout", "inf"], "--busy-timeout must be 0 to 86400 seconds (a day), got inf"),
            (["ingest", "--allowed-lateness", "1e12"], "--allowed-lateness must be 0 to 31536000 seconds (a year), got 1000000000000.0"),
            (["ingest", "--allowed-lateness", "-5"], "--allowed-lateness must be 0 to 31536000 seconds (a year), got -5.0"),
            (["ingest", "--max-files", "-2"], "--max-files must be at least 1, got -2"),
            (["status", "--batches", "-1"], "--batches must be 0 or more, got -1"),
            (["validate", "--show", "-1"], "--show must be 0 or more, got -1"),
            (["status", "--rejected", "-4"], "--rejected must be 0 or more, got -4"),
            (["demo", "--events", "0"], "--events must be at least 1, got 0"),
        ]
        for (arguments, message) in cases {
            let run = try Binary.run(arguments)
            #expect(run.status == 64 && run.stderr.contains(message), "\(arguments): \(run.stderr)")
        }
    }

    /// Backfill's source is not a landing folder: the hint says to check --from-dir, not to create it.
    @Test func backfillFromAMissingFolderSaysWhatToCheck() throws {
        let f = TestFolder()
        let run = try Binary.run(["backfill", "--from-dir", f.root + "/typo", "--data", f.data])
        #expect(run.status == 66)
        #expect(run.stderr.hasPrefix("error: scan backfill source \(f.root)/typo: no such folder\nhint: check --from-dir"), "\(run.stderr)")
    }

    @Test func lockedRunExits75AndChangesNothing() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        let held = try JobLock(dataFolder: f.data, job: "test")
        let run = try Binary.run(args(f))
        #expect(run.status == 75)
        #expect(run.stderr.contains("another tidemark job is running"))
        let lines = run.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("error: lock "), "\(run.stderr)")
        #expect(FileManager.default.fileExists(atPath: f.landing + "/1.ndjson.gz"))
        withExtendedLifetime(held) {}
    }

    @Test func databaseBusyPastTimeoutExits75() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        f.land("2.ndjson.gz", [recordLine("e2", time: "2025-07-30T10:00:00Z")])
        let other = try DatabaseQueue(path: f.database)
        try other.writeWithoutTransaction { db in
            try db.execute(sql: "BEGIN IMMEDIATE")
            let run = try Binary.run(args(f, ["--busy-timeout", "0.2"]))
            #expect(run.status == 75)
            #expect(run.stderr.contains("database is locked"))
            try db.execute(sql: "ROLLBACK")
        }
        let files = try f.integer("SELECT COUNT(*) FROM ingested_files")
        #expect(files == 1)
        #expect(try Binary.run(args(f)).status == 0)
    }

    @Test func crashBetweenCommitAndArchiveIsHealed() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        let crashed = try Binary.run(args(f), environment: ["TIDEMARK_FAULT": "after-commit"])
        #expect(crashed.status == SIGKILL) // killed at the fault point
        #expect(FileManager.default.fileExists(atPath: f.landing + "/1.ndjson.gz")) // committed, not yet moved
        #expect(try f.row("e") != nil)
        let rerun = try Binary.run(args(f, ["--json"]))
        #expect(rerun.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(rerun.stdout.utf8)) as? [String: Any]
        #expect(object?["files_healed"] as? Int == 1)
        #expect(object?["files_applied"] as? Int == 0)
        #expect(!FileManager.default.fileExists(atPath: f.landing + "/1.ndjson.gz"))
        let ledger = try f.query { try Row.fetchAll($0, sql: "SELECT status, location FROM ingested_files") }
        #expect(ledger.count == 1)
        #expect(FileManager.default.fileExists(atPath: ledger[0]["location"]))
    }

    /// A lookup entry that names a row which is not there stops the merge with exit 74, naming
    /// the event and the hour and saying to rebuild it; after that rebuild the same file applies.
    @Test func aLookupEntryNamingAMissingRowStopsTheMergeUntilRebuilt() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", user: "u1", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        try f.write { db in
            for tree in ["event_index", "event_index_recent"] { try db.execute(sql: "UPDATE \(tree) SET row_id = 999999 WHERE event_id = 'e'") }
        }
        f.land("2.ndjson.gz", [recordLine("e", user: "u2", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:05:00Z")])
        let stopped = try Binary.run(args(f))
        #expect(stopped.status == 74)
        #expect(stopped.stderr.contains("error: merge event e: the lookup names row 999999 of hour 2025-07-30T10, which is missing"), "\(stopped.stderr)")
        #expect(stopped.stderr.contains("hint: run 'tidemark validate', then 'tidemark rebuild --hour 2025-07-30T10'"), "\(stopped.stderr)")
        #expect(try f.row("e")?.userID == "u1")
        #expect(try Binary.run(["rebuild", "--data", f.data, "--hour", "2025-07-30T10"]).status == 0)
        #expect(try Binary.run(args(f)).status == 0)
        #expect(try f.row("e")?.userID == "u2")
        #expect(try Binary.run(["validate", "--data", f.data, "--replay"]).status == 0)
    }

    /// The loop goes on only past an unreadable file and a busy lock: anything else ends it
    /// with its exit code (here: the metrics file cannot be written, 74; the landing folder is
    /// missing, 66), rather than spinning on it.
    @Test func loopEndsOnAnyOtherError() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("one", time: "2025-07-30T10:00:00Z")])
        createTestFile(atPath: f.root + "/not-a-folder", contents: Data())
        let metrics = try Binary.run(args(f, ["--loop", "--interval", "0.2", "--metrics-file", f.root + "/not-a-folder/m.prom"]), killAfterSeconds: 20)
        #expect(metrics.status == 74, "\(metrics.stderr)")
        #expect(metrics.stderr.contains("not-a-folder"), "\(metrics.stderr)")
        try FileManager.default.removeItem(atPath: f.landing)
        let landing = try Binary.run(args(f, ["--loop", "--interval", "0.2"]), killAfterSeconds: 20)
        #expect(landing.status == 66, "\(landing.stderr)")
    }

    /// A loop goes on past a file it cannot read: it logs the error, applies the rest, and
    /// picks up files landed later.
    @Test func loopGoesOnPastAnUnreadableFile() throws {
        let f = TestFolder()
        f.land("1-fine.ndjson.gz", [recordLine("fine", time: "2025-07-30T10:00:00Z")])
        let gone = f.land("2-gone.ndjson.gz", [recordLine("gone", time: "2025-07-30T10:00:00Z")])
        let log = f.root + "/loop.log"
        createTestFile(atPath: log, contents: nil)
        // The first batch scans landing and holds before decoding (it says so with the notice
        // file): the file goes while it waits.
        let process = try Binary.startPaused(at: "before-decode", ["ingest", "--landing", f.landing, "--data", f.data, "--loop", "--interval", "0.2"],
                                             notice: f.root + "/paused", standardError: FileHandle(forWritingAtPath: log))
        defer { if process.isRunning { process.terminate() } }
        @discardableResult func waitFor(_ condition: () -> Bool) -> Bool {
            var waited = 0
            while !condition() && waited < 1000 { usleep(10_000); waited += 1 }
            return condition()
        }
        try FileManager.default.removeItem(atPath: gone)
        waitFor { (try? f.row("fine")) != nil }
        #expect(try f.row("fine") != nil)
        f.land("3-later.ndjson.gz", [recordLine("later", time: "2025-07-30T10:00:00Z")])
        waitFor { (try? f.row("later")) != nil }
        #expect(try f.row("later") != nil && process.isRunning)
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let stderr = try String(contentsOfFile: log, encoding: .utf8)
        #expect(stderr.contains("read \(gone): No such file or directory"), "\(stderr)")
    }

    /// The loop runs a batch per tick; a tick that meets another job's lock is skipped with a
    /// warning (a single run would exit 75), and SIGTERM ends it with 0.
    @Test func loopRunsBatchesUntilSIGTERM() throws {
        let f = TestFolder()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binary.path)
        process.arguments = ["ingest", "--landing", f.landing, "--data", f.data, "--loop", "--interval", "0.2", "--json"]
        let log = f.root + "/loop.log", out = f.root + "/loop.out"
        createTestFile(atPath: log, contents: nil)
        createTestFile(atPath: out, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        func applied() -> Int {
            guard FileManager.default.fileExists(atPath: f.database) else { return 0 }
            return (try? f.query { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM ingested_files") ?? 0 }) ?? 0
        }
        func waitFor(_ n: Int) {
            var waited = 0
            while applied() < n && waited < 500 { usleep(10_000); waited += 1 }
        }
        for n in 1...3 {
            var lock: JobLock?
            // Taken between two ticks (a tick holds it while its batch runs).
            for _ in 0..<500 where n == 2 && lock == nil {
                lock = try? JobLock(dataFolder: f.data, job: "test")
                if lock == nil { usleep(10_000) }
            }
            if n == 2 { try #require(lock != nil, "the lock was never free") }
            f.land("\(n).ndjson.gz", [recordLine("loop\(n)", time: "2025-07-30T10:00:00Z")])
            if lock != nil {
                usleep(700_000) // three ticks or so, each meeting the lock
                #expect(applied() == 1 && process.isRunning, "the loop waits out a held lock")
                lock = nil
            }
            waitFor(n)
            #expect(applied() == n, "file \(n) not picked up by the loop")
        }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        let batches = try f.query { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM batches WHERE status = 'succeeded'") ?? 0 }
        #expect(batches >= 3)
        let warnings = try String(contentsOfFile: log, encoding: .utf8)
        #expect(warnings.contains("skipped a batch") && warnings.contains("another tidemark job is running"), "\(warnings)")
        // --json in a loop: one document per line (JSON Lines), one per batch run.
        let documents = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        #expect(documents.count >= 3)
        for line in documents {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["batch_id"] != nil, "\(line)")
        }
    }

    @Test func logFormatsAreStructured() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        f.landBytes("2.ndjson.gz", Array("not gzip".utf8))
        let json = try Binary.run(args(f, ["--log-format", "json"]))
        #expect(json.status == 0)
        let lines = json.stderr.split(separator: "\n")
        #expect(!lines.isEmpty) // the quarantine is a warning, logged even without -v
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] as? String == "warning")
            #expect(object?["file"] as? String == "2.ndjson.gz")
        }
        f.landBytes("3.ndjson.gz", Array("also not gzip".utf8))
        let logfmt = try Binary.run(args(f, ["--log-format", "logfmt"]))
        #expect(logfmt.stderr.contains("level=warning") && logfmt.stderr.contains("file=3.ndjson.gz"))
        // An error that ends the command is one record in the same format, with its hint.
        // The exit code is a number. Every command does it (the readers too), and so does a
        // usage error, which the argument parser would print as text.
        for (command, status) in [(["ingest", "--landing", f.root + "/nowhere", "--data", f.data], 66),
                                  (["status", "--data", f.root + "/nowhere"], 66), (["freshness", "--data", f.root + "/nowhere"], 66),
                                  (["report", "--data", f.root + "/nowhere", "--html", f.root + "/r.html"], 66),
                                  (["rebuild", "--data", f.data], 64), (["ingest", "--no-such-flag"], 64),
                                  (["ingest", "--landing", f.data + "/archive", "--data", f.data], 64)] {
            let missing = try Binary.run(command + ["--log-format", "json"])
            #expect(missing.status == Int32(status), "\(command)")
            let errorLines = missing.stderr.split(separator: "\n")
            #expect(errorLines.count == 1, "\(command): \(missing.stderr)")
            let record = try JSONSerialization.jsonObject(with: Data((errorLines.first ?? "").utf8)) as? [String: Any]
            #expect(record?["level"] as? String == "error" && record?["exit_code"] as? Int == status && record?["hint"] != nil, "\(command): \(missing.stderr)")
        }
    }

    @Test func crashBeforeCommitAppliesNothing() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        let crashed = try Binary.run(args(f), environment: ["TIDEMARK_FAULT": "before-commit"])
        #expect(crashed.status == SIGKILL)
        let rows = try f.integer("SELECT COUNT(*) FROM ingested_files")
        #expect(rows == 0)
        #expect(try Binary.run(args(f)).status == 0)
        #expect(try f.row("e") != nil)
    }

    /// A small batch into an existing database reads it through a memory map (a first load
    /// maps nothing). A fault on a mapped page (SIGBUS from the kernel, as a failing device
    /// gives; provoked by the test hook) ends the run with exit 74 and a message naming the
    /// database instead of a crash; a SIGBUS sent by another process gets the action it had
    /// before (the Swift runtime's backtrace here).
    /// What was committed stays: the next run finishes the batch and validation passes.
    @Test func aSmallBatchReadsThroughAMapAndAFaultThereEndsItWith74() throws {
        let f = TestFolder()
        let run = ["ingest", "--landing", f.landing, "--data", f.data]
        let held = ["TIDEMARK_PAUSE_SECONDS": "60"]
        let fault = ["TIDEMARK_SIGBUS_AT": "after-commit", "TIDEMARK_SIGBUS_SCRATCH": f.root + "/shortened"]
        // A line of /proc/PID/maps ends with the path of the file mapped (not -wal or -shm).
        func mapsTheDatabase(_ process: Process) throws -> Bool {
            let maps = try String(contentsOfFile: "/proc/\(process.processIdentifier)/maps", encoding: .utf8)
            return maps.split(separator: "\n").contains { $0.hasSuffix(" " + FileSystem.canonicalPath(f.database)) }
        }
        func endedBy(_ process: Process) -> String { "\(process.terminationReason == .exit ? "exit" : "signal") \(process.terminationStatus)" }
        f.land("1.ndjson.gz", [recordLine("e1", time: "2025-07-30T10:00:00Z"), recordLine("e2", time: "2025-07-30T11:00:00Z")])
        func ended(_ process: Process) {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        let first = try Binary.startPaused(at: "after-commit", run, notice: f.root + "/paused-first", environment: held)
        defer { ended(first) }
        #expect(try !mapsTheDatabase(first))
        kill(first.processIdentifier, SIGKILL) // after its commit: the next run archives the file
        first.waitUntilExit()
        f.land("2.ndjson.gz", [recordLine("e3", time: "2025-07-30T10:00:00Z"), recordLine("e1", time: "2025-07-30T10:00:00Z", valid: false)])
        let secondLog = f.root + "/second.err"
        createTestFile(atPath: secondLog, contents: nil)
        let second = try Binary.startPaused(at: "after-commit", run, notice: f.root + "/paused-second", environment: held,
                                            standardError: FileHandle(forWritingAtPath: secondLog))
        defer { ended(second) }
        #expect(try mapsTheDatabase(second))
        // Sent, not a fault: the action from before Tidemark armed its handler (the default, or
        // the Swift runtime's backtrace), never the report and its exit 74.
        kill(second.processIdentifier, SIGBUS)
        second.waitUntilExit()
        #expect(!(second.terminationReason == .exit && second.terminationStatus == 74), "\(endedBy(second))")
        let secondErr = try String(contentsOfFile: secondLog, encoding: .utf8)
        #expect(!secondErr.contains("memory-mapped database could not be read"), "\(secondErr)")
        f.land("3.ndjson.gz", [recordLine("e4", time: "2025-07-30T10:00:00Z")])
        let faulted = try Binary.run(run, environment: fault)
        #expect(faulted.status == 74, "\(faulted.stderr)")
        #expect(faulted.stderr.contains("error: read \(f.database): a page of the memory-mapped database could not be read (SIGBUS)")
                && faulted.stderr.contains("dmesg") && faulted.stderr.contains("tidemark validate --data \(f.data)"), "\(faulted.stderr)")
        // In a JSON log, the report is one JSON record, as any error's.
        f.land("4.ndjson.gz", [recordLine("e5", time: "2025-07-30T10:00:00Z")])
        let faultedJSON = try Binary.run(run + ["--log-format", "json"], environment: fault)
        #expect(faultedJSON.status == 74, "\(faultedJSON.stderr)")
        let record = faultedJSON.stderr.split(separator: "\n").last.flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(record?["level"] as? String == "error" && record?["exit_code"] as? Int == 74
                && (record?["msg"] as? String)?.contains("memory-mapped database could not be read (SIGBUS)") == true
                && (record?["hint"] as? String)?.contains("dmesg") == true, "\(faultedJSON.stderr)")
        let again = try Binary.run(run)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try f.landingEntries().isEmpty && f.eventRows().count == 5 && f.row("e1")?.isValid == 0)
        let validated = try Binary.run(["validate", "--data", f.data])
        #expect(validated.status == 0, "\(validated.stdout)\(validated.stderr)")
    }

    /// Which batches map the database (`Warehouse.mapForReading`): one whose new events cannot
    /// fill the recent lookup tree, estimated from its landing bytes; not one as large as the
    /// tree, nor a small one into a nearly full tree (its fold would sweep the large tree
    /// through the map), nor any without a prepared fault report. Mapped, the connection's
    /// mmap_size is SQLite's ceiling; ended, it is 0 again.
    @Test func onlyBatchesThatCannotFillTheRecentTreeAreMapped() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e1", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        let warehouse = try Warehouse(dataFolder: f.data)
        let fault = MappedReadFault { _, _ in ("", 74) }
        let capacity = MergeWriter.recentIndexCapacity
        let treeSized = Int64(capacity) * Warehouse.fewestGzipBytesPerEvent
        try warehouse.withConnection { db throws -> Void in
            func mmapSize() throws -> Int64? { try Int64.fetchOne(db, sql: "PRAGMA mmap_size") }
            #expect(try !warehouse.mapForReading(db, landingBytes: treeSized, recentEntries: 0, fault: fault))
            #expect(try !warehouse.mapForReading(db, landingBytes: 51_390, recentEntries: capacity - 1_000, fault: fault))
            #expect(try !warehouse.mapForReading(db, landingBytes: 51_390, recentEntries: 0, fault: nil))
            #expect(try mmapSize() == 0)
            #expect(try warehouse.mapForReading(db, landingBytes: treeSized - Warehouse.fewestGzipBytesPerEvent, recentEntries: 0, fault: fault))
            #expect(try mmapSize() == 2_147_418_112)
            warehouse.endMapping(db)
            #expect(try mmapSize() == 0)
        }
    }
}
