import Foundation
import GRDB
import Logging
import Testing
@testable import TidemarkCore

/// Kills `tidemark ingest` with SIGKILL at random moments and at named fault points, reruns,
/// and checks that the end state equals an uninterrupted run. `TIDEMARK_CRASH_ROUNDS` sets the
/// number of rounds (20 here; `scripts/crash-loop.sh` runs hundreds).
@Suite(.serialized) struct CrashTests {
    static let quiet = quietLogger

    /// A produced source folder and the tables of one uninterrupted ingest of it.
    final class Reference: @unchecked Sendable {
        let folder = TestFolder()
        var source: String { folder.root + "/source" }
        let rows: [String]
        let checksums: [String]

        init() throws {
            var options = ProducerOptions(landingFolder: folder.root + "/source", sentLogFolder: folder.sent,
                                          start: try Timestamp.parse("2025-07-30T10:56:00Z").get())
            options.rate = 8
            options.count = 4000
            options.seed = 77
            let producer = try Producer(options: options, logger: CrashTests.quiet)
            while try producer.advance(seconds: 600) {}
            try FileManager.default.removeItem(atPath: folder.landing)
            try FileManager.default.copyItem(atPath: folder.root + "/source", toPath: folder.landing)
            _ = try folder.ingest()
            rows = try folder.eventRows()
            checksums = try CrashTests.checksums(folder)
        }

        func freshCopy() throws -> TestFolder {
            let f = TestFolder()
            try FileManager.default.removeItem(atPath: f.landing)
            try FileManager.default.copyItem(atPath: source, toPath: f.landing)
            try FileManager.default.copyItem(atPath: folder.sent, toPath: f.sent)
            return f
        }
    }

    static let reference: Result<Reference, TidemarkError> = Result { try Reference() }
        .mapError { TidemarkError("build reference", "", cause: "\($0)", exit: .ioError) }

    static func checksums(_ f: TestFolder) throws -> [String] {
        try f.query { try Row.fetchAll($0, sql: "SELECT hour, row_count, valid_count, checksum FROM partitions ORDER BY hour").map { "\($0)" } }
    }

    /// Runs the binary (`Binary.run`), killed with SIGKILL after `killAfter` seconds if still
    /// running; its exit status.
    static func run(_ args: [String], environment: [String: String] = [:], killAfter: Double? = nil) throws -> Int32 {
        try Binary.run(args, environment: environment, killAfterSeconds: killAfter).status
    }

    func assertMatchesReference(_ f: TestFolder, _ reference: Reference, _ context: String) throws {
        let remaining = try FileManager.default.contentsOfDirectory(atPath: f.landing).filter { LandingFolder.hasLandingSuffix($0) && !LandingFolder.isInProgressName($0) }
        #expect(remaining.isEmpty, "\(context): files left in landing: \(remaining.prefix(3))")
        #expect(try Self.checksums(f) == reference.checksums, "\(context)")
        #expect(try f.eventRows() == reference.rows, "\(context)")
        var options = ValidateOptions(dataFolder: f.data)
        options.sentLogFolder = f.sent
        options.replay = true
        let report = try ValidateJob.run(options, logger: Self.quiet)
        #expect(report.ok, "\(context)\n\(report.table)")
    }

    @Test func randomKillsAndFaultPointsEndInTheUninterruptedState() throws {
        let reference = try Self.reference.get()
        let rounds = ProcessInfo.processInfo.environment["TIDEMARK_CRASH_ROUNDS"].flatMap(Int.init) ?? 20
        var random = SeededRandom(seed: UInt64(ProcessInfo.processInfo.environment["TIDEMARK_CRASH_SEED"].flatMap(Int.init) ?? 1))
        var f = try reference.freshCopy()
        var log: [String] = []
        // Where the rounds on the claiming path say how many events took the group's fold.
        let trace = reference.folder.root + "/group-trace-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: trace) }
        // Once a copy's landing folder is drained, its end state is compared with the
        // reference and the next rounds start over on a fresh copy: every round starts with
        // files to ingest (a drained folder would only see idle runs).
        var cycles = 0
        // A copy's first round is its first load; half of them are killed at one of its commits.
        var firstLoad = true
        var firstLoadsKilled = 0
        for round in 0..<rounds {
            if try !hasLandingFiles(f) {
                #expect(try Self.run(["ingest", "--landing", f.landing, "--data", f.data]) == 0)
                try assertMatchesReference(f, reference, "cycle \(cycles), before round \(round):\n" + log.suffix(5).joined(separator: "\n"))
                cycles += 1
                f = try reference.freshCopy()
                firstLoad = true
            }
            var args = ["ingest", "--landing", f.landing, "--data", f.data,
                        "--max-files", String(Int.random(in: 5...120, using: &random)),
                        "--files-per-commit", String(Int.random(in: 1...40, using: &random))]
            var env: [String: String] = [:]
            var killAfter: Double?
            switch Int.random(in: 0..<5, using: &random) {
            case 0: env = ["TIDEMARK_FAULT": "mid-file", "TIDEMARK_FAULT_AFTER": String(Int.random(in: 0...60, using: &random))]
            case 1: env = ["TIDEMARK_FAULT": "before-commit", "TIDEMARK_FAULT_AFTER": String(Int.random(in: 0...3, using: &random))]
            // (A copy's first round is its first load, whose commits are not durable until it
            // ends: `first-load-commit` kills it after one of them.)
            case 2: env = ["TIDEMARK_FAULT": ["after-commit", "after-capture", "first-load-commit"].randomElement(using: &random)!,
                           "TIDEMARK_FAULT_AFTER": String(Int.random(in: 0...3, using: &random))]
            case 3: killAfter = Double.random(in: 0.0...0.4, using: &random)
            default: args += ["--allowed-lateness", "30"]
            }
            if firstLoad && Bool.random(using: &random) {
                env = ["TIDEMARK_FAULT": "first-load-commit", "TIDEMARK_FAULT_AFTER": String(Int.random(in: 0...2, using: &random))]
                killAfter = nil
            }
            // Half the rounds treat groups of any size as large: they claim lookup entries and
            // take their new events from the group's own fold (`GroupFold`), the path a big
            // backlog takes, which this small source would otherwise never reach.
            if Bool.random(using: &random) {
                env["TIDEMARK_CLAIM_THRESHOLD"] = String(Int.random(in: 0...40, using: &random))
                env["TIDEMARK_GROUP_TRACE"] = trace
            }
            let status = try Self.run(args, environment: env, killAfter: killAfter)
            if firstLoad && status == SIGKILL && FileManager.default.fileExists(atPath: Warehouse.firstLoadMarker(of: f.data)) { firstLoadsKilled += 1 }
            firstLoad = false
            log.append("round \(round): \(env) kill \(killAfter ?? -1) -> \(status)")
            #expect(status == 0 || status == SIGKILL, "\(log.last!)")
        }
        // Finish whatever is left, as the next scheduled run would.
        #expect(try Self.run(["ingest", "--landing", f.landing, "--data", f.data]) == 0)
        try assertMatchesReference(f, reference, log.suffix(5).joined(separator: "\n"))
        if rounds >= 100 { #expect(cycles >= 1, "no copy was drained in \(rounds) rounds: the rounds never started over") }
        // Some of the rounds must have merged events from the group's own fold.
        let folded = ((try? String(contentsOfFile: trace, encoding: .utf8)) ?? "").split(separator: "\n")
            .filter { !$0.hasSuffix(" from_fold=0") }.count
        #expect(folded > 0, "no round took the group's fold")
        if rounds >= 100 { #expect(firstLoadsKilled > 0, "no first load was killed midway in \(rounds) rounds") }
        if rounds > 20 {
            FileHandle.standardError.write(Data("crash rounds: \(rounds), copies drained and compared: \(cycles + 1), groups merged partly from their fold: \(folded), first loads killed midway: \(firstLoadsKilled)\n".utf8))
        }
    }

    /// Whether files wait in the copy's landing folder (an interrupted move's leftovers count).
    func hasLandingFiles(_ f: TestFolder) throws -> Bool {
        try FileManager.default.contentsOfDirectory(atPath: f.landing).contains { LandingFolder.hasLandingSuffix($0) }
    }

    @Test func sigtermMidBatchCommitsCleanly() throws {
        let reference = try Self.reference.get()
        let f = try reference.freshCopy()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binary.path)
        process.arguments = ["ingest", "--landing", f.landing, "--data", f.data, "--files-per-commit", "50", "-v"]
        process.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        process.standardError = err
        try process.run()
        // Wait for the first commit (50 files), then ask it to stop.
        func committedFiles() -> Int {
            guard FileManager.default.fileExists(atPath: f.database) else { return 0 }
            return (try? f.query { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM ingested_files") ?? 0 }) ?? 0
        }
        while process.isRunning && committedFiles() == 0 { usleep(5_000) }
        kill(process.processIdentifier, SIGTERM)
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(log.contains("stop requested"), "\(log.suffix(500))")
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        // The signal really stopped the batch early: files are left for the next run.
        let left = try FileManager.default.contentsOfDirectory(atPath: f.landing).filter { LandingFolder.hasLandingSuffix($0) }
        try #require(!left.isEmpty, "the batch ended before SIGTERM arrived; the test proves nothing")
        let backlog = try f.integer("SELECT backlog_files FROM batches ORDER BY batch_id LIMIT 1")
        #expect(backlog == left.count, "the batch's backlog counts the files it left")
        // Whatever was applied is whole and consistent, and no batch was left open.
        var options = ValidateOptions(dataFolder: f.data)
        options.replay = true
        #expect(try ValidateJob.run(options, logger: Self.quiet).ok)
        let open = try f.integer("SELECT COUNT(*) FROM batches WHERE status != 'succeeded'")
        #expect(open == 0)
        #expect(try Self.run(["ingest", "--landing", f.landing, "--data", f.data]) == 0)
        try assertMatchesReference(f, reference, "after SIGTERM")
    }

    @Test func crashBeforeRebuildCommitLeavesTheOldPartition() throws {
        let reference = try Self.reference.get()
        let f = try reference.freshCopy()
        #expect(try Self.run(["ingest", "--landing", f.landing, "--data", f.data]) == 0)
        let table = try f.largestHour().table
        try f.write { db in
            try db.execute(sql: "UPDATE \(table) SET user_id = 'edited' WHERE event_id = (SELECT MIN(event_id) FROM \(table))")
        }
        let edited = try f.eventRows()
        let status = try Self.run(["rebuild", "--data", f.data, "--all"], environment: ["TIDEMARK_FAULT": "rebuild-before-commit"])
        #expect(status == SIGKILL)
        #expect(try f.eventRows() == edited) // the old partition, untouched
        #expect(try Self.run(["rebuild", "--data", f.data, "--all"]) == 0)
        try assertMatchesReference(f, reference, "after rebuild crash")
    }

    @Test func concurrentJobsExclude() throws {
        let reference = try Self.reference.get()
        let f = try reference.freshCopy()
        #expect(try Self.run(["ingest", "--landing", f.landing, "--data", f.data, "--max-files", "20"]) == 0)
        // The first ingest pauses 3 s right after its first commit, holding the lock with a batch
        // open: the others meet it for sure, and validate reads in the middle of a batch.
        let first = Process()
        first.executableURL = URL(fileURLWithPath: Binary.path)
        first.arguments = ["ingest", "--landing", f.landing, "--data", f.data, "--files-per-commit", "5"]
        var env = ProcessInfo.processInfo.environment
        env["TIDEMARK_PAUSE_AT"] = "after-commit"
        env["TIDEMARK_PAUSE_SECONDS"] = "3"
        first.environment = env
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        func committedFiles() -> Int {
            (try? f.query { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM ingested_files") ?? 0 }) ?? 0
        }
        var waited = 0
        while committedFiles() <= 20 && first.isRunning && waited < 2000 { usleep(2_000); waited += 1 }
        #expect(jobLockIsHeld(dataFolder: f.data))
        let open = try f.integer("SELECT COUNT(*) FROM batches WHERE status = 'running'")
        #expect(open == 1) // a batch is in progress
        let backfillSource = f.root + "/other"
        try FileManager.default.createDirectory(atPath: backfillSource, withIntermediateDirectories: true)
        let started = Date()
        for (job, args) in [("ingest", ["ingest", "--landing", f.landing, "--data", f.data]),
                            ("backfill", ["backfill", "--from-dir", backfillSource, "--data", f.data]),
                            ("rebuild", ["rebuild", "--data", f.data, "--all"])] {
            let run = try Binary.run(args)
            #expect(run.status == 75, "\(job) exited \(run.status): \(run.stderr)")
        }
        // Readers never wait for the lock and see a consistent snapshot, even one whose
        // committed files are not moved to the archive yet.
        let validate = try Binary.run(["validate", "--data", f.data, "--replay"])
        #expect(validate.status == 0, "\(validate.stdout)")
        #expect(Date().timeIntervalSince(started) < 3, "the checks ran while the first job held the lock")
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        #expect(try Self.run(["ingest", "--landing", f.landing, "--data", f.data]) == 0)
        try assertMatchesReference(f, reference, "after concurrent jobs")
    }

}
