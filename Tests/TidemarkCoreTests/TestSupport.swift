import Foundation
import Testing
import GRDB
import Logging
@testable import TidemarkCore

/// A fresh temporary folder per test, with landing/ and data/ inside; removed on deinit.
final class TestFolder: @unchecked Sendable {
    let root: String
    var landing: String { root + "/landing" }
    var data: String { root + "/data" }
    var sent: String { root + "/sent" }
    var database: String { data + "/tidemark.sqlite" }
    /// Extra environment for the binary's runs (test hooks).
    var environment: [String: String] = [:]

    init() {
        root = NSTemporaryDirectory() + "tidemark-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: root + "/landing", withIntermediateDirectories: true)
        // The fixtures a suite shares (static) are never deinitialized.
        TemporaryPaths.removeAtExit(root)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: root)
        TemporaryPaths.removed(root)
    }

    /// Creates the database by an ingest of nothing (call it before landing files), so that
    /// the next batch is not the data folder's first load, whose commits are not durable and
    /// which moves no file until it ends (`Warehouse.firstLoad`).
    func createDatabase() throws {
        let run = try Binary.run(["ingest", "--landing", landing, "--data", data])
        #expect(run.status == 0 && FileManager.default.fileExists(atPath: database), "\(run.stderr)")
    }

    /// Writes a gzip landing file; each element of `members` becomes one gzip member.
    @discardableResult
    func land(_ name: String, _ lines: [String], members: Int = 1, folder: String? = nil) -> String {
        let path = (folder ?? landing) + "/" + name
        var bytes: [UInt8] = []
        let chunk = max(1, (lines.count + members - 1) / max(members, 1))
        var index = 0
        repeat {
            let part = Array(lines[index..<min(lines.count, index + chunk)])
            bytes += GzipWriter.gzip(part.map { $0 + "\n" }.joined())
            index += chunk
        } while index < lines.count
        createTestFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// Where the archive holds a file of this name (in any day's folder), nil when it does not.
    func archivedPath(_ name: String) throws -> String? {
        let archive = data + "/archive"
        guard FileManager.default.fileExists(atPath: archive) else { return nil }
        return try FileManager.default.contentsOfDirectory(atPath: archive).sorted()
            .map { archive + "/" + $0 + "/" + name }.first { FileManager.default.fileExists(atPath: $0) }
    }

    func landBytes(_ name: String, _ bytes: [UInt8], folder: String? = nil) {
        createTestFile(atPath: (folder ?? landing) + "/" + name, contents: Data(bytes))
    }

    func options() -> IngestOptions {
        var o = IngestOptions(landingFolder: landing, dataFolder: data)
        o.clock = { Timestamp(secondsSinceEpoch: 1_753_900_000 + 86_400) } // 2025-07-31, after the fixtures
        // Fixture files are written just before they are read: a broken one is quarantined at
        // once, not left to settle (`settleLeavesAFileStillBeingWrittenForTheNextRun` tests that).
        o.settleSeconds = 0
        return o
    }

    /// Runs one batch through the built `tidemark ingest --json` binary, the way cron does,
    /// and returns its summary. Option changes become flags.
    @discardableResult
    func ingest(_ tweak: (inout IngestOptions) -> Void = { _ in }) throws -> BatchSummary {
        let defaults = options()
        var o = defaults
        tweak(&o)
        var args = ["ingest", "--landing", o.landingFolder, "--data", o.dataFolder, "--json"]
        if o.dryRun { args.append("--dry-run") }
        if o.maxNewPartitions != defaults.maxNewPartitions { args += ["--max-new-partitions", String(o.maxNewPartitions)] }
        if o.maxFileOutputBytes != defaults.maxFileOutputBytes { args += ["--max-file-output", String(o.maxFileOutputBytes)] }
        if o.filesPerCommit != defaults.filesPerCommit { args += ["--files-per-commit", String(o.filesPerCommit)] }
        if o.settleSeconds != IngestOptions(landingFolder: "", dataFolder: "").settleSeconds { args += ["--settle-seconds", String(o.settleSeconds)] }
        if o.allowedLateness != defaults.allowedLateness { args += ["--allowed-lateness", String(o.allowedLateness)] }
        let run = try Binary.run(args, environment: environment)
        guard run.status == 0 else {
            throw TidemarkError("tidemark ingest", o.landingFolder, cause: "exit \(run.status): \(run.stderr)", exit: .ioError)
        }
        return try JSONDecoder().decode(BatchSummary.self, from: Data(run.stdout.utf8))
    }

    /// The same batch in-process, for tests that need the library's clock.
    @discardableResult
    func ingestInProcess(_ tweak: (inout IngestOptions) -> Void = { _ in }) throws -> BatchSummary {
        var o = options()
        tweak(&o)
        return try IngestJob.run(o, logger: quietLogger)
    }

    /// The test's own connection waits for a job's locks as the tool's readers do (a batch's
    /// closing checkpoint holds readers off for a moment), rather than fail at once with "busy".
    var connection: Configuration {
        var config = Configuration()
        config.busyMode = .timeout(10)
        return config
    }

    func query<T>(_ body: (Database) throws -> T) throws -> T {
        let queue = try DatabaseQueue(path: database, configuration: connection)
        return try queue.read(body)
    }

    /// What the landing folder holds, less the claim ingest keeps there (`LandingClaim`).
    func landingEntries() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: landing).filter { $0 != LandingClaim.fileName }.sorted()
    }

    /// One integer the query returns (a count, mostly).
    func integer(_ sql: String, _ arguments: StatementArguments = StatementArguments()) throws -> Int? {
        try query { try Int.fetchOne($0, sql: sql, arguments: arguments) }
    }

    /// Changes the database behind the tool's back, as the tampering tests do.
    func write(_ body: (Database) throws -> Void) throws {
        try DatabaseQueue(path: database, configuration: connection).write(body)
    }

    func execute(_ sql: String, _ arguments: StatementArguments = StatementArguments()) throws {
        try write { try $0.execute(sql: sql, arguments: arguments) }
    }

    /// Every event row over all partitions: (hour table, data columns) sorted by event_id.
    func eventRows() throws -> [String] {
        try query { db in
            let tables = try String.fetchAll(db, sql: "SELECT table_name FROM partitions ORDER BY hour")
            var rows: [String] = []
            for table in tables {
                rows += try Row.fetchAll(db, sql: """
                    SELECT event_id, user_id, event_type, event_time, received_time, is_valid, deleted_by, deleted_at, extra
                    FROM \(table)
                    """).map { row in
                        "\(table)|" + (0..<9).map { (row[$0] as DatabaseValue).description }.joined(separator: "|")
                    }
            }
            return rows.sorted()
        }
    }

    func row(_ id: String) throws -> (table: String, isValid: Int, userID: String, eventType: String, eventTime: String, deletedBy: String?)? {
        try query { db in
            for table in try String.fetchAll(db, sql: "SELECT table_name FROM partitions") {
                if let r = try Row.fetchOne(db, sql: "SELECT is_valid, user_id, event_type, event_time, deleted_by FROM \(table) WHERE event_id = ?", arguments: [id]) {
                    return (table, r[0], r[1], r[2], r[3], r[4])
                }
            }
            return nil
        }
    }
}

/// A logger that drops everything, for jobs run in-process.
let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

extension ValidationReport {
    /// The names of the checks that failed.
    var failedChecks: [String] { checks.filter { $0.status == .failed }.map(\.name) }

    /// One check's findings (none when the report has no such check).
    func findings(of check: String) -> [String] { checks.first { $0.name == check }?.findings ?? [] }
}

/// Builds one record line of the ingest contract.
func recordLine(_ id: String, user: String = "u1", type: String = "view", time: String,
                received: String? = nil, valid: Bool? = nil, extra: String = "") -> String {
    var s = "{\"event_id\":\"\(id)\",\"user_id\":\"\(user)\",\"event_type\":\"\(type)\",\"event_time\":\"\(time)\""
    if let received { s += ",\"received_time\":\"\(received)\"" }
    if let valid { s += ",\"is_valid\":\(valid)" }
    s += extra
    return s + "}"
}

func tombstoneLine(_ id: String, received: String? = nil) -> String {
    received.map { "{\"event_id\":\"\(id)\",\"received_time\":\"\($0)\"}" } ?? "{\"event_id\":\"\(id)\"}"
}

extension TestFolder {
    /// The hour with the most rows: its label, its table and the hour.
    func largestHour() throws -> (label: String, table: String, hour: PartitionHour) { try hour(largest: true) }

    /// The hour with the fewest rows: its label, its table and the hour.
    func smallestHour() throws -> (label: String, table: String, hour: PartitionHour) { try hour(largest: false) }

    private func hour(largest: Bool) throws -> (label: String, table: String, hour: PartitionHour) {
        let (label, table) = try query { db -> (String, String) in
            let row = try Row.fetchOne(db, sql: "SELECT hour, table_name FROM partitions ORDER BY row_count \(largest ? "DESC" : "ASC") LIMIT 1")!
            return (row[0], row[1])
        }
        return (label, table, PartitionHour.parse(label)!)
    }

    /// The first `limit` valid events of the largest hour, in event_id order, with its table.
    func validEventsOfTheLargestHour(_ limit: Int) throws -> [(id: String, table: String)] {
        let table = try largestHour().table
        return try query { try String.fetchAll($0, sql: "SELECT event_id FROM \(table) WHERE is_valid = 1 ORDER BY event_id LIMIT \(limit)") }
            .map { ($0, table) }
    }

    /// A folder holding `count` events from `tidemark produce --fast` (1,000 a second from
    /// 2025-07-30T10:00:00Z, so nearly all in one hour), ingested by the binary in one run.
    static func producedByTheBinary(count: Int, seed: Int) throws -> TestFolder {
        let f = TestFolder()
        let produce = try Binary.run(["produce", "--fast", "--count", "\(count)", "--rate", "1000", "--seed", "\(seed)",
                                      "--landing", f.landing, "--sent-log", f.sent])
        guard produce.status == 0 else { throw TidemarkError("produce", f.landing, cause: produce.stderr, exit: .ioError) }
        let ingest = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        guard ingest.status == 0 else { throw TidemarkError("ingest", f.landing, cause: ingest.stderr, exit: .ioError) }
        return f
    }
}

/// Temporary folders removed when the test process exits, if nothing removed them before:
/// they would otherwise pile up in /tmp, run after run.
enum TemporaryPaths {
    private final class Registry: @unchecked Sendable {
        var paths: Set<String> = []
        let lock = NSLock()
    }
    private static let registry: Registry = {
        atexit {
            TemporaryPaths.registry.lock.lock()
            for path in TemporaryPaths.registry.paths { try? FileManager.default.removeItem(atPath: path) }
            TemporaryPaths.registry.lock.unlock()
        }
        return Registry()
    }()

    static func removeAtExit(_ path: String) {
        registry.lock.lock()
        registry.paths.insert(path)
        registry.lock.unlock()
    }

    static func removed(_ path: String) {
        registry.lock.lock()
        registry.paths.remove(path)
        registry.lock.unlock()
    }
}

/// Runs the built `tidemark` binary.
struct BinaryRun: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The repository's root folder (this file is Tests/TidemarkCoreTests/TestSupport.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

enum Binary {
    static var path: String {
        let candidates: [String] = {
            var list: [String] = []
            if let exe = Bundle.main.executableURL?.deletingLastPathComponent() { list.append(exe.appendingPathComponent("tidemark").path) }
            let arg0 = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            list.append(arg0.appendingPathComponent("tidemark").path)
            list.append(repositoryRoot.appendingPathComponent(".build/debug/tidemark").path)
            return list
        }()
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
    }

    /// Runs the binary held at the fault point `point`, does `action` once it is held there
    /// (`TIDEMARK_PAUSE_NOTICE`), and returns how the run ended.
    static func runPaused(at point: String, _ arguments: [String], _ f: TestFolder, environment: [String: String] = [:],
                          whilePaused action: () throws -> Void) throws -> BinaryRun {
        let out = Pipe(), err = Pipe()
        let process = try Binary.startPaused(at: point, arguments, notice: f.root + "/paused", environment: environment,
                                             standardOutput: out, standardError: err)
        do { try action() } catch {
            // Not left running against a folder the test is about to remove.
            process.terminate()
            process.waitUntilExit()
            throw error
        }
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return BinaryRun(status: process.terminationStatus, stdout: stdout, stderr: stderr)
    }

    /// Starts the binary held at the fault point `point` (`TIDEMARK_PAUSE_AT`, for two seconds)
    /// and returns once it says it is held there (it creates `notice`, `TIDEMARK_PAUSE_NOTICE`).
    /// It runs in the notice's folder (a core file, should a test kill it so, stays there); one
    /// that never gets there within 30 s is killed before the test fails.
    static func startPaused(at point: String, _ arguments: [String], notice: String, environment: [String: String] = [:],
                            standardOutput: Any? = FileHandle.nullDevice, standardError: Any? = FileHandle.nullDevice) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "TIDEMARK_LANDING")
        env.removeValue(forKey: "TIDEMARK_DATA")
        env["TIDEMARK_PAUSE_AT"] = point
        env["TIDEMARK_PAUSE_SECONDS"] = "2"
        env["TIDEMARK_PAUSE_NOTICE"] = notice
        env.merge(environment) { _, given in given }
        process.environment = env
        process.standardOutput = standardOutput
        process.standardError = standardError
        process.currentDirectoryURL = URL(fileURLWithPath: (notice as NSString).deletingLastPathComponent)
        try process.run()
        var waited = 0
        while waited < 15_000 && process.isRunning && !FileManager.default.fileExists(atPath: notice) {
            usleep(2_000)
            waited += 1
        }
        if !FileManager.default.fileExists(atPath: notice) && process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try #require(FileManager.default.fileExists(atPath: notice), "the run never reached its pause at \(point)")
        return process
    }

    /// The binary, where the unprivileged user nobody can run it (a link or copy in a temporary
    /// folder), for tests of permission errors: root, which the tests usually run as, reads
    /// every file. Nil, and those tests skip saying why, unless the tests run as root, setpriv
    /// is installed and nobody can run it.
    static let forNobody: String? = {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { return nil }
        let folder = NSTemporaryDirectory() + "tidemark-nobody-" + UUID().uuidString
        let binary = folder + "/tidemark"
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            TemporaryPaths.removeAtExit(folder)
            if link(path, binary) != 0 { try FileManager.default.copyItem(atPath: path, toPath: binary) }
        } catch {
            return nil
        }
        return (try? run(["--version"], asNobody: binary))?.status == 0 ? binary : nil
    }()

    /// With `fileSizeLimitKiB`, the binary runs under that `ulimit -f` with SIGXFSZ ignored:
    /// a write past the limit fails with EFBIG, as on a full disk. The limit is on the offset
    /// of any write to any file the process writes (its database too), not only on growth.
    /// With `openFilesLimit`, it runs under that `ulimit -n` (soft and hard).
    /// With `killAfterSeconds`, a run still going then is killed (SIGKILL, status 9).
    @discardableResult
    /// With `asNobody` (`forNobody`), it runs as the user nobody (uid and gid 65534).
    static func run(_ arguments: [String], environment: [String: String] = [:], cwd: String? = nil,
                    fileSizeLimitKiB: Int? = nil, openFilesLimit: Int? = nil, killAfterSeconds: Double? = nil,
                    asNobody nobodyBinary: String? = nil) throws -> BinaryRun {
        let process = Process()
        if let nobodyBinary {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", nobodyBinary] + arguments
        } else if let fileSizeLimitKiB {
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = ["-c", "trap '' XFSZ; ulimit -f \(fileSizeLimitKiB) && exec \"$0\" \"$@\"", path] + arguments
        } else if let openFilesLimit {
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = ["-c", "ulimit -n \(openFilesLimit) && exec \"$0\" \"$@\"", path] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "TIDEMARK_LANDING")
        env.removeValue(forKey: "TIDEMARK_DATA")
        for (k, v) in environment { env[k] = v }
        process.environment = env
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let outPath = NSTemporaryDirectory() + "tidemark-out-" + UUID().uuidString
        let errPath = outPath + ".err"
        createTestFile(atPath: outPath, contents: nil)
        createTestFile(atPath: errPath, contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        let out = FileHandle(forWritingAtPath: outPath)!, err = FileHandle(forWritingAtPath: errPath)!
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        if let killAfterSeconds {
            let deadline = Date().addingTimeInterval(killAfterSeconds)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        try? out.close()
        try? err.close()
        let outData = FileManager.default.contents(atPath: outPath) ?? Data()
        let errData = FileManager.default.contents(atPath: errPath) ?? Data()
        return BinaryRun(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// Property tests draw from the producer's seeded generator (xoshiro256**).
typealias SeededRandom = SeededGenerator

func fixture(_ relative: String) -> String {
    Bundle.module.resourceURL!.appendingPathComponent("Fixtures/" + relative).path
}

/// Whether a process holds the job lock of a data folder right now (a batch is running).
func jobLockIsHeld(dataFolder: String) -> Bool {
    let fd = open((dataFolder as NSString).appendingPathComponent("tidemark.lock"), O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    if flock(fd, LOCK_SH | LOCK_NB) != 0 { return true }
    flock(fd, LOCK_UN)
    return false
}

/// Creates (or replaces) a file for a test, stopping the test run if it cannot: a file a test
/// meant to write and did not would fail later, far from the cause.
func createTestFile(atPath path: String, contents: Data?) {
    precondition(FileManager.default.createFile(atPath: path, contents: contents), "could not write \(path)")
}
