import Foundation
import GRDB
import Logging

/// What to validate.
public struct ValidateOptions: Sendable {
    public var dataFolder: String
    /// The producer's sent log: the source of truth for the "against the source" checks.
    public var sentLogFolder: String?
    /// Only these hours (inclusive); nil means all.
    public var hours: ClosedRange<PartitionHour>?
    /// Recompute the selected hours from the archived raw files and diff with the target.
    public var replay = false
    /// How many example findings each check lists.
    public var sampleLimit = 10
    /// Events per in-memory pass when comparing with a source (bounds memory).
    public var eventsPerPass = 400_000
    /// Where the first pass sets later passes' records aside (nil: `$TMPDIR`, else /tmp).
    public var scratchFolder: String?
    /// The landing folder: with a sent log, files still waiting there explain events missing
    /// from the target (nil, or a folder that cannot be read: not looked at).
    public var landingFolder: String?

    public init(dataFolder: String) { self.dataFolder = dataFolder }
}

/// One check's verdict.
public struct ValidationCheck: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case ok, failed, info }
    public var name: String
    public var status: Status
    /// What was checked (rows, files, hours…), or how many problems when failed.
    public var count: Int
    public var detail: String
    public var findings: [String]
}

/// The validation verdict: ok when no check failed.
public struct ValidationReport: Codable, Sendable, JSONDocument {
    public var ok: Bool { !checks.contains { $0.status == .failed } }
    public var checks: [ValidationCheck] = []
    /// The data folder validated, named in the next steps (not part of the JSON).
    public var dataFolder = "DATA"

    enum CodingKeys: String, CodingKey { case ok, checks, nextSteps = "next_steps" }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ok, forKey: .ok)
        try c.encode(checks, forKey: .checks)
        try c.encode(nextSteps, forKey: .nextSteps)
    }

    /// What to do about the failed checks, one line per kind of failure.
    public var nextSteps: [String] {
        let failed = Set(checks.filter { $0.status == .failed }.map(\.name))
        func any(_ names: [String]) -> Bool { names.contains { failed.contains($0) } }
        var steps: [String] = []
        if failed.contains("sqlite_integrity") {
            steps.append("the database file is damaged: move it aside, then " + Warehouse.recovery(dataFolder))
        }
        if failed.contains("archived_files") {
            steps.append("an archived file is missing or changed: restore it from backup into the path named; until then rebuild refuses the hours it feeds")
        }
        if any(["rows_in_their_hour", "one_row_per_event", "deletion_markers", "partition_checksums", "hourly_summary", "tombstones_applied"])
            || failed.contains(where: { $0.hasPrefix("replay_") }) {
            steps.append("the tables disagree with what the archive gives: tidemark rebuild --hour H for the hours named above (or rebuild --all) recomputes them from the archived files; then validate again")
            if failed.contains(where: { $0.hasPrefix("replay_") }) {
                // Rebuild works hour by hour, following event_moves and file_hours; the replay
                // folds every file at once. A history whose links were lost (rows of both gone
                // by hand) can be out of an hour's reach.
                steps.append("should a replay finding stay after rebuild --all, the event's history spans hours whose links (event_moves, file_hours) were lost: fold the whole archive into a new data folder, \(Warehouse.backfillCommand(from: dataFolder, into: Warehouse.newDataFolder)), and validate that one --replay")
            }
        }
        if failed.contains("archive_in_ledger") {
            steps.append("the database lost files it had applied (restored from an older backup, or its last commits lost): \(Warehouse.backfillCommand(from: dataFolder, into: dataFolder)) applies them again where they lie (files the ledger holds are skipped)")
        }
        if failed.contains("line_accounting") {
            steps.append("a file's line counts do not add up: the ledger was edited, or this is a tidemark bug; rebuild does not change the ledger, so please report it with the findings")
        }
        if failed.contains(where: { $0.hasPrefix("source_") }) {
            steps.append(failed.contains("archive_in_ledger")
                ? "the tables disagree with the sent log: first apply the archived files the ledger lacks (above), then validate again"
                : "the tables disagree with the sent log: ingest whatever still waits in landing; validate --replay tells whether the archive agrees with the tables (then the sent log has deliveries the archive lacks) or not (then rebuild --all)")
        }
        return steps
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        checks = try c.decode([ValidationCheck].self, forKey: .checks)
    }

    /// An aligned table for people, then the first findings of each failed check.
    public var table: String {
        var rows = [["check", "status", "count", "detail"]]
        for check in checks {
            rows.append([check.name, check.status == .failed ? "FAILED" : check.status.rawValue, String(check.count), check.detail])
        }
        var out = TextTable.render(rows)
        for check in checks where !check.findings.isEmpty && check.status != .ok {
            out += "\n\(check.name):\n"
            for finding in check.findings { out += "  - \(finding)\n" }
        }
        out += "\n" + (ok ? "validation passed" : "validation FAILED: \(checks.filter { $0.status == .failed }.count) checks found discrepancies") + "\n"
        for step in nextSteps { out += "hint: \(step)\n" }
        return out
    }

}

/// `tidemark validate`: proves that nothing is missing, every correction is reflected and
/// duplicates made no extra rows (against the producer's sent log), that the target is
/// internally consistent (always), and, with `--replay`, that recomputing from the archived
/// raw files gives the same partitions.
public enum ValidateJob {
    public static func run(_ options: ValidateOptions, logger: Logger, progress: ((String) -> Void)? = nil) throws -> ValidationReport {
        // A missing folder is refused by `SentLog.files`; one with no sent-log file (a wrong
        // path that exists, the landing folder) would be compared as an empty log and fail
        // every row as unexplained.
        if let sent = options.sentLogFolder, try SentLog.files(in: sent).isEmpty {
            throw TidemarkError("read sent log", sent, cause: "holds no sent-log file (\(SentLog.filePrefix)NNNNNNNNN\(SentLog.fileSuffix))",
                                hint: SentLog.folderHint, exit: .noInput)
        }
        let warehouse = try Warehouse(dataFolder: options.dataFolder, create: false, readOnly: true, busyTimeout: 10)
        // Listed before the snapshot begins: a file moved into the archive later was committed
        // later too, and must not be taken for one the ledger lost (`archive_in_ledger`).
        let archived = options.hours == nil ? Warehouse.archivedDataFiles(options.dataFolder) : []
        return try warehouse.read { db in
            var v = try Validator(options: options, db: db, logger: logger, progress: progress ?? { _ in })
            v.archivedBeforeSnapshot = archived
            try v.runAll(dataFolder: options.dataFolder)
            v.report.dataFolder = options.dataFolder
            return v.report
        }
    }
}

struct Validator {
    let options: ValidateOptions
    let db: Database
    let progress: (String) -> Void
    let logger: Logger
    var report = ValidationReport()
    /// Hours whose `summary_users` rows differ from the partition, found during the partition
    /// scan and reported with the summaries.
    var summaryUserProblems: [String] = []
    /// Per hour, its summary recounted from the rows during the partition scan
    /// (`HourDelta.summaryLines`); an hour with an unreadable row is recounted in SQL instead.
    var recountedSummaries: [Int: [String]] = [:]
    /// The event_ids with a tombstone waiting in `pending_tombstones`, read once per run.
    let waitingTombstones: Set<ExactText>
    /// The data files in the archive, listed before the read snapshot began.
    var archivedBeforeSnapshot: [String] = []
    var limit: Int { options.sampleLimit }

    init(options: ValidateOptions, db: Database, logger: Logger, progress: @escaping (String) -> Void) throws {
        self.options = options
        self.db = db
        self.logger = logger
        self.progress = progress
        waitingTombstones = try ValidationQueries.pendingTombstoneIDs(db)
    }

    func inScope(_ hour: PartitionHour) -> Bool { options.hours.map { $0.contains(hour) } ?? true }

    mutating func add(_ name: String, failures: Int, checked: Int, detail: String, findings: [String], infoOnly: Bool = false) {
        let status: ValidationCheck.Status = failures == 0 ? .ok : (infoOnly ? .info : .failed)
        report.checks.append(ValidationCheck(name: name, status: status, count: failures == 0 ? checked : failures,
                                             detail: detail, findings: Array(findings.prefix(limit))))
    }

    mutating func runAll(dataFolder: String) throws {
        let partitions = try ValidationQueries.partitions(db).filter { inScope($0.hour) }
        // Hours asked for that hold nothing: say so, rather than let "passed" suggest they were checked.
        if let hours = options.hours, partitions.isEmpty {
            add("hours_selected", failures: 1, checked: 0,
                detail: "no partition holds \(hours.lowerBound == hours.upperBound ? "hour \(hours.lowerBound)" : "hours \(hours.lowerBound) to \(hours.upperBound)"): nothing there to check",
                findings: [], infoOnly: true)
        }
        // The sent log is read and folded on a second thread, starting now: its first pass
        // overlaps the internal checks, and each later pass the scan of the one before.
        // Lines ingest rejected (with their reason, in rejected_lines) are not expected in the
        // tables: left out of the sent log's deliveries, and counted below.
        let rejected = options.sentLogFolder == nil ? [:] : try ValidationQueries.rejectedLines(db)
        let sentFold = try options.sentLogFolder.map { sent in
            try sourceFold(name: "source", source: ValidationSource(read: { divert, body in
                try SentLog.forEachDelivery(in: sent, skipping: { file, line, record in
                    guard let texts = rejected[.init(file: file, line: line)] else { return false }
                    let text = LineRejection.rawText(record)
                    return texts.contains { $0 == nil || $0 == text }
                }, divert: divert) { _, _, delivery in
                    try body(delivery)
                }
            }, unparsable: { file, entry, reason in SentLog.malformedRecord(in: sent, fileIndex: file, entry: entry, reason) }))
        }
        defer { sentFold?.cancel() }
        progress("checking \(partitions.count) partitions")
        try checkPartitions(partitions)
        try checkSummaries(partitions)
        try checkLedger(dataFolder: dataFolder)
        // The first few in event_id byte order, as SQLite sorts them.
        let samples = waitingTombstones.map(\.text).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.prefix(limit)
            .map { "tombstone for \($0) is waiting for its event" }
        add("pending_tombstones", failures: waitingTombstones.count, checked: 0, detail: "tombstones waiting for their event (not an error)",
            findings: samples, infoOnly: true)
        // Quarantined files nobody retried: their events are not in the tables (on purpose,
        // until the file is repaired or put back), which "no record missing" would not say.
        let quarantined = try ReportQueries.quarantined(limit: Int.max, dataFolder: dataFolder, db)
        add("quarantined_files", failures: quarantined.count, checked: 0,
            detail: "files in quarantine, not applied (not an error: 'tidemark status' lists them; to retry one, move it back into landing)",
            findings: quarantined.map { "\($0.name): \($0.reason) (\($0.location))" }, infoOnly: true)
        let integrity = try ValidationQueries.integrityCheck(db)
        add("sqlite_integrity", failures: integrity.count, checked: 1, detail: "PRAGMA integrity_check", findings: integrity)
        if let sentFold {
            progress("comparing with the sent log")
            // Files the sent log names may still wait in landing: their events are not missing,
            // only not ingested yet, and the report says so.
            if let landing = options.landingFolder {
                do {
                    let waiting = try LandingFolder.scan(landing).files.count
                    if waiting > 0 {
                        add("landing_backlog", failures: waiting, checked: 0,
                            detail: "\(plural(waiting, "file")) still \(waiting == 1 ? "waits" : "wait") in \(landing): the sent log's events in them count as missing below until ingest takes them (run ingest, then validate again)",
                            findings: [], infoOnly: true)
                    }
                } catch {
                    // Unknown rather than none: files waiting there would show as missing below.
                    add("landing_backlog", failures: 1, checked: 0,
                        detail: "the landing folder could not be read (\(error)): files still waiting there would count as missing below; pass --landing",
                        findings: [], infoOnly: true)
                }
            }
            if !rejected.isEmpty {
                add("source_rejected_lines", failures: rejected.count, checked: 0,
                    detail: "\(plural(rejected.count, "line")) that ingest rejected \(rejected.count == 1 ? "is" : "are") not expected in the tables: left out of the sent log's deliveries below (tidemark status --rejected \(min(rejected.count, 100)) lists them with their reasons)",
                    findings: [], infoOnly: true)
            }
            let sentCounts = try compareWithSource(name: "source", partitions: partitions, sourceLabel: "sent log", fold: sentFold)
            let files = try ValidationQueries.duplicateContentFiles(db)
            let lines = try ValidationQueries.duplicateLines(db)
            add("source_duplicates_absorbed", failures: 0, checked: sentCounts.redelivered,
                detail: "\(sentCounts.redelivered) of \(sentCounts.deliveries) deliveries in the sent log repeat an earlier one; the ledger saw \(lines) duplicate lines and \(files) duplicate files; rows = distinct events (\(sentCounts.expectedEvents))",
                findings: [])
        }
        if options.replay {
            progress("replaying archived files")
            let archive = try ArchiveReplay(dataFolder: options.dataFolder, db)
            // Lines that do not parse were rejected at ingest: replay skips them wherever read.
            let replayFold = try sourceFold(name: "replay", source: ValidationSource(read: archive.forEachDelivery, unparsable: { _, _, _ in nil }))
            defer { replayFold.cancel() }
            try compareWithSource(name: "replay", partitions: partitions, sourceLabel: "archived files", fold: replayFold)
        }
    }

    // MARK: Internal consistency

    mutating func checkPartitions(_ partitions: [ValidationQueries.PartitionEntry]) throws {
        var outside = (0, [String]()), index = (0, [String]()), orphans = (0, [String]()), counts = (0, [String]()), deletion = [String]()
        var rows = 0
        // Lookup entries per hour, from one scan of both trees: an hour's orphans are its
        // entries minus its rows that agree with their entry (each entry matches one row at most).
        let entriesPerHour = try ValidationQueries.lookupEntriesPerHour(db)
        var unapplied: [String] = []
        for p in partitions {
            guard try ValidationQueries.tableExists(p.table, db) else {
                counts.0 += 1
                counts.1.append("partition \(p.hour) is registered but its table \(p.table) is missing (run: tidemark rebuild --hour \(p.hour))")
                continue
            }
            let o = try ValidationQueries.rowsOutsideHour(p, limit: limit, db)
            outside.0 += o.0; outside.1 += o.1
            let i = try ValidationQueries.indexDisagreements(p, limit: limit, db)
            index.0 += i.0; index.1 += i.1
            deletion += try ValidationQueries.deletionInconsistencies(p, db)
            // The readable rows counted as ingest counts them: rows, valid rows, checksum, and
            // the summary (valid events per (type, user) are what summary_users holds).
            var table = HourDelta()
            var unreadable: Int64 = 0
            try ValidationQueries.forEachRow(p.table, db) { row, id in
                // A tombstone waits only for an event no partition holds.
                if !waitingTombstones.isEmpty && waitingTombstones.contains(ExactText(id)) {
                    unapplied.append("event \(id) is in \(p.table) but its tombstone still waits in pending_tombstones (run: tidemark rebuild --hour \(p.hour))")
                }
                guard let row else {
                    unreadable += 1
                    counts.1.append("event \(id) in \(p.table) has an unreadable timestamp")
                    return
                }
                table.count(row, hash: row.contentHash, sign: 1)
            }
            let rowCount = table.rows + unreadable, validCount = table.valid, checksum = table.checksum
            if unreadable == 0 { recountedSummaries[p.hour.hoursSinceEpoch] = table.summaryLines() }
            var users = table.users
            var differing: [String] = []
            var differingCount = 0
            // In key order, so that the samples named are the same from run to run.
            let byKey = { (a: SummaryUser, b: SummaryUser) in (a.eventType, a.userID) < (b.eventType, b.userID) }
            let stored = try ValidationQueries.summaryUsers(p.hour, db)
            for key in stored.keys.sorted(by: byKey) where users.removeValue(forKey: key) != stored[key] {
                differingCount += 1
                if differing.count < limit { differing.append("\(key.eventType)/\(key.userID): summary_users has \(stored[key]!)") }
            }
            for key in users.keys.sorted(by: byKey) {
                differingCount += 1
                if differing.count < limit { differing.append("\(key.eventType)/\(key.userID): \(users[key]!) valid events, no summary_users row") }
            }
            if differingCount > 0 {
                summaryUserProblems.append("hour \(p.hour): \(differingCount) summary_users rows differ from the partition (\(differing.joined(separator: "; ")))")
            }
            rows += Int(rowCount)
            if (entriesPerHour[p.hour.hoursSinceEpoch] ?? 0) != Int(rowCount) - i.0 {
                // Only then the slower query that names them.
                let r = try ValidationQueries.indexOrphans(p, limit: limit, db)
                orphans.0 += r.0; orphans.1 += r.1
            }
            if rowCount != p.rowCount || validCount != p.validCount || checksumText(checksum) != p.checksum {
                counts.0 += 1
                counts.1.append("partition \(p.hour): stored rows \(p.rowCount)/valid \(p.validCount)/checksum \(p.checksum), table has \(rowCount)/\(validCount)/\(checksumText(checksum))")
            }
        }
        // Entries naming an hour with no partition (its table and row dropped, say): for the
        // hours asked for, or all.
        let stray = try ValidationQueries.indexEntriesWithoutPartition(entriesPerHour, partitions: Set(partitions.map(\.hour.hoursSinceEpoch)),
                                                                       in: options.hours, limit: limit, db)
        orphans.0 += stray.0; orphans.1 += stray.1
        if options.hours == nil {
            let both = try ValidationQueries.lookupEntriesInBothTrees(limit: limit, db)
            orphans.0 += both.0; orphans.1 += both.1
        }
        add("rows_in_their_hour", failures: outside.0, checked: rows, detail: "every row's event_time lies in its partition's hour", findings: outside.1)
        add("one_row_per_event", failures: index.0 + orphans.0, checked: rows,
            detail: "each event_id in exactly one partition, matching event_index", findings: index.1 + orphans.1)
        add("deletion_markers", failures: deletion.count, checked: rows, detail: "is_valid = 0 exactly when deleted_by is set", findings: deletion)
        add("tombstones_applied", failures: unapplied.count, checked: waitingTombstones.count,
            detail: "no tombstone waits for an event a partition holds", findings: unapplied)
        add("partition_checksums", failures: counts.0, checked: partitions.count,
            detail: "partitions.row_count, valid_count and checksum match the tables", findings: counts.1)
    }

    mutating func checkSummaries(_ partitions: [ValidationQueries.PartitionEntry]) throws {
        var problems: [String] = []
        // Summaries change in the transaction that changes the rows, so every committed
        // state, even in the middle of a running batch, must match.
        for p in partitions where try ValidationQueries.tableExists(p.table, db) {
            let stored = try ValidationQueries.storedSummary(p.hour, db)
            let fresh = try recountedSummaries[p.hour.hoursSinceEpoch] ?? ValidationQueries.freshSummary(p.hour, db)
            if stored != fresh {
                problems.append("hour \(p.hour): stored [\(stored.joined(separator: "; "))] but partition gives [\(fresh.joined(separator: "; "))]")
            }
        }
        // The per-user counts behind distinct_users, which later batches build on (compared
        // during the partition scan).
        problems += summaryUserProblems
        if options.hours == nil {
            for hour in try ValidationQueries.summaryHoursWithoutPartition(db) {
                problems.append("hourly_summary has hour \(hour) with no partition")
            }
        }
        add("hourly_summary", failures: problems.count, checked: partitions.count,
            detail: "summary rows (and the per-user counts behind them) equal a fresh recomputation", findings: problems)
    }

    mutating func checkLedger(dataFolder: String) throws {
        let (files, accounting) = try ValidationQueries.ledgerAccounting(limit: limit, db)
        add("line_accounting", failures: accounting.count, checked: files,
            detail: "per file: read = new + updated + duplicate + stale + deleted + rejected", findings: accounting)
        let unindexed = try Ledger.filesMissingFromHourIndex(limit: limit, db)
        let dropped = try Ledger.indexedHoursWithoutPartition(in: options.hours, db)
        add("file_hours", failures: unindexed.count + dropped.count, checked: files,
            detail: "every applied file that wrote rows names the hours it touched, and each of those hours has a partition (rebuild reads an hour's files from this index)",
            findings: unindexed.files.map { "file \($0.name) (ledger file \($0.fileID)) wrote rows, but file_hours names no hour for it" } + dropped.map { "hour \($0.hour): \(plural($0.files, "file")) touched it, but it has no partition (its table and partition row are gone: run tidemark rebuild --hour \($0.hour))" })
        var archive: [String] = []
        var awaitingMove = 0
        let ledger = try ValidationQueries.ledgerFiles(dataFolder: dataFolder, db)
        // A job running now (a backfill between its commit and its copies) is not a failure.
        let backfillMayBeCopying = JobLock.isHeld(dataFolder: dataFolder)
        let retried = try Ledger.retriedQuarantines(db)
        for (n, file) in ledger.enumerated() {
            if n % 500 == 0 { progress("checking archived files \(n)/\(ledger.count)") }
            // A quarantined file that an operator put back (the README's way to retry one,
            // repaired or not) lives on under its later ledger row: its quarantined copy is gone.
            if file.status == "quarantined" && Ledger.quarantineIsSettled(fileID: file.fileID, location: file.location, retried: retried) { continue }
            guard FileSystem.exists(file.location) else {
                // Committed but not moved yet (a batch in progress, or one that died between its
                // commit and the move, which the next run finishes): the file is still where it was.
                // A backfill's copy is finished only by running that backfill again.
                if file.byBackfill && file.status != "quarantined" && !backfillMayBeCopying {
                    archive.append("file \(file.name): archived copy \(file.location) is missing (a backfill's copy that failed: run that backfill again, from \(file.sourcePath))")
                    continue
                }
                if Ledger.readablePath(location: file.location, sourcePath: file.sourcePath, sha256: file.sha256) != nil {
                    awaitingMove += 1
                    continue
                }
                archive.append("file \(file.name) (\(file.status)): archived copy \(file.location) is missing")
                continue
            }
            guard file.status != "quarantined" else { continue }
            let sha = try FileSystem.sha256(ofFile: file.location)
            if sha != file.sha256 {
                archive.append("file \(file.name): \(file.location) has SHA-256 \(sha.prefix(12))…, the ledger recorded \(file.sha256.prefix(12))…")
            }
        }
        add("archived_files", failures: archive.count, checked: ledger.count,
            detail: "every ledger file's archived copy exists with its SHA-256"
                + (awaitingMove > 0 ? " (\(plural(awaitingMove, "committed file")) still in landing, to be moved)" : ""),
            findings: archive)
        // The other way round: a file in the archive the ledger does not name was applied by a
        // database that is gone (restored from an older backup, or its last commits lost with
        // the WAL): its events are missing, and no rebuild reads it.
        guard options.hours == nil else { return }
        let recorded = Set(ledger.map { ($0.location as NSString).standardizingPath })
        var unrecorded: [String] = [], unrecordedCount = 0
        for path in archivedBeforeSnapshot where !recorded.contains((path as NSString).standardizingPath) {
            unrecordedCount += 1
            if unrecorded.count < limit { unrecorded.append("\(path) is in the archive but not in the ledger") }
        }
        add("archive_in_ledger", failures: unrecordedCount, checked: unrecordedCount + recorded.count,
            detail: "every file in the archive is one the ledger recorded", findings: unrecorded)
    }

    // MARK: Against a source

    /// Starts folding a source on its own thread (`SourceFold`), split into passes as the
    /// ledger's line count asks.
    func sourceFold(name: String, source: ValidationSource) throws -> PassesAhead<SourceFold.Pass> {
        let total = try ValidationQueries.totalLinesRead(db)
        let passes = PassSplit.passes(for: total, perPass: options.eventsPerPass)
        let scratch = options.scratchFolder ?? ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        // Without scratch files validate is still right, only slower: each pass not read yet
        // reads (and decompresses) the source again.
        let logger = self.logger
        var spills: PassSpills?
        if passes > 1 {
            do {
                spills = try PassSpills(passes: passes, pathPrefix: "\(scratch)/.tidemark-validate-\(getpid())-\(name)-") { error in
                    logger.warning("a scratch file for validate's passes could not be written; the passes left read the source again (set TMPDIR to a folder with room)",
                                   metadata: ["error": "\(error)"])
                }
            } catch {
                logger.warning("no scratch files for validate's passes; each pass reads the source again (set TMPDIR to a writable folder with room)",
                               metadata: ["error": "\(error)"])
            }
        }
        return SourceFold.start(source: source, passes: passes, expectedPerPass: total / passes + 1, spills: spills)
    }

    /// Diffs the target with a source folded by the merge rule (`SourceFold`), in passes over a
    /// hash split of event ids so that memory stays bounded whatever the size: each pass's fold
    /// is scanned against the partitions while the next one is being folded.
    /// Returns how many deliveries repeated an earlier one, of how many, and the events expected.
    @discardableResult
    mutating func compareWithSource(name: String, partitions: [ValidationQueries.PartitionEntry], sourceLabel: String,
                                    fold: PassesAhead<SourceFold.Pass>) throws
        -> (redelivered: Int, deliveries: Int, expectedEvents: Int) {
        let passes = fold.count
        var missing: [String] = [], missingCount = 0
        var wrongHour: [String] = [], wrongHourCount = 0
        var validity: [String] = [], validityCount = 0
        var attributes: [String] = [], attributeCount = 0
        var unexpected: [String] = [], unexpectedCount = 0
        var tombstones: [String] = [], tombstoneCount = 0
        var expectedEvents = 0, expectedDeleted = 0, redelivered = 0, deliveries = 0
        for pass in 0..<passes {
            if passes > 1 { progress("\(sourceLabel): pass \(pass + 1) of \(passes)") }
            let split = PassSplit(index: pass, count: passes)
            var (expected, passDeliveries, passRedelivered) = try fold.next()
            deliveries += passDeliveries
            redelivered += passRedelivered
            for (state, _) in expected.values where state.record != nil {
                guard inScope(state.record!.eventTime.hour) else { continue }
                expectedEvents += 1
                if !state.isValid { expectedDeleted += 1 }
            }
            for p in partitions where try ValidationQueries.tableExists(p.table, db) {
                try ValidationQueries.forEachRow(p.table, db, where: split.contains) { row, text in
                    let id = ExactText(text)
                    guard let at = expected.index(forKey: id) else {
                        unexpectedCount += 1
                        if unexpected.count < limit { unexpected.append("event \(id) in \(p.table) is not in the \(sourceLabel)") }
                        return
                    }
                    // A second row of an event is the internal check's finding, not this one's.
                    if expected.values[at].met { return }
                    expected.values[at].met = true
                    let exp = expected.values[at].state
                    guard let want = exp.record, let row else {
                        unexpectedCount += 1
                        if unexpected.count < limit { unexpected.append("event \(id) in \(p.table): the \(sourceLabel) has only tombstones for it") }
                        return
                    }
                    if want.eventTime.hour != p.hour {
                        wrongHourCount += 1
                        if wrongHour.count < limit { wrongHour.append("event \(id) is in \(p.table), its event_time \(want.eventTime.rfc3339) belongs in \(want.eventTime.hour.tableName)") }
                    }
                    if exp.isValid != row.state.isValid {
                        validityCount += 1
                        if validity.count < limit {
                            validity.append(exp.isValid ? "event \(id) in \(p.table) is marked deleted but was never deleted"
                                                        : "event \(id) in \(p.table) was deleted (\(exp.deletion!.kind)) but is valid")
                        }
                    } else if let d = exp.deletion, let got = row.state.deletion, d.kind != got.kind || d.deletedAt != got.deletedAt {
                        validityCount += 1
                        if validity.count < limit { validity.append("event \(id): deletion \(d.kind) at \(d.deletedAt?.rfc3339 ?? "-") but table says \(got.kind) at \(got.deletedAt?.rfc3339 ?? "-")") }
                    }
                    let have = row.record
                    if !(sameBytes(have.userID, want.userID) && sameBytes(have.eventType, want.eventType)
                         && have.eventTime == want.eventTime && have.receivedTime == want.receivedTime && sameBytes(have.extra, want.extra)) {
                        attributeCount += 1
                        if attributes.count < limit {
                            // Only the columns that differ, each with both values.
                            var differences: [String] = []
                            func compare(_ column: String, _ expected: String?, _ found: String?) {
                                if expected.map({ Array($0.utf8) }) != found.map({ Array($0.utf8) }) {
                                    differences.append("\(column) expected \(expected ?? "null"), table has \(found ?? "null")")
                                }
                            }
                            compare("user_id", want.userID, have.userID)
                            compare("event_type", want.eventType, have.eventType)
                            compare("event_time", want.eventTime.rfc3339, have.eventTime.rfc3339)
                            compare("received_time", want.receivedTime?.rfc3339, have.receivedTime?.rfc3339)
                            compare("extra", want.extra, have.extra)
                            attributes.append("event \(id) in \(p.table): \(differences.joined(separator: "; "))")
                        }
                    }
                }
            }
            for (id, (state, met)) in expected where !met {
                if let record = state.record {
                    guard inScope(record.eventTime.hour) else { continue }
                    missingCount += 1
                    if missing.count < limit { missing.append("event \(id) (\(record.eventTime.hour.tableName), \(state.isValid ? "valid" : "deleted")) is missing from the target") }
                } else if options.hours == nil && !waitingTombstones.contains(id) {
                    tombstoneCount += 1
                    if tombstones.count < limit { tombstones.append("tombstone for \(id) is neither applied nor pending") }
                }
            }
        }
        add("\(name)_no_record_missing", failures: missingCount, checked: expectedEvents, detail: "every event in the \(sourceLabel) is in the target", findings: missing)
        add("\(name)_right_hour", failures: wrongHourCount, checked: expectedEvents, detail: "each event is in the hour of its winning event_time", findings: wrongHour)
        add("\(name)_deletions_reflected", failures: validityCount, checked: expectedDeleted, detail: "deleted events are is_valid = 0 (flag or tombstone), others valid", findings: validity)
        add("\(name)_updates_reflected", failures: attributeCount, checked: expectedEvents, detail: "attributes of the newest delivery", findings: attributes)
        add("\(name)_nothing_extra", failures: unexpectedCount, checked: expectedEvents, detail: "no row that the \(sourceLabel) does not explain", findings: unexpected)
        add("\(name)_tombstones", failures: tombstoneCount, checked: 0, detail: "tombstones without an event are pending", findings: tombstones)
        return (redelivered, deliveries, expectedEvents)
    }

}

/// Where validate compares the target with: `read` calls `divert` with each raw record (the
/// index of its file and its line, for messages) before parsing it, drops the records divert
/// takes, and calls `body` with the others' deliveries. `unparsable` turns a record set aside
/// unparsed that then fails to parse into the error the source would have thrown (nil: skip it).
struct ValidationSource {
    var read: (_ divert: (Int, Int, UnsafeRawBufferPointer) throws -> Bool, _ body: (Delivery) throws -> Void) throws -> Void
    var unparsable: (_ file: Int, _ line: Int, _ reason: String) -> Error?
}

/// Every delivery of the applied files, read back from the archive, in ledger order,
/// skipping the lines the ingest rejected (validate's replay).
struct ArchiveReplay: Sendable {
    /// The applied files in ledger order, each with the lines ingest rejected, read from the
    /// ledger up front so that replaying touches no database connection (it runs on
    /// `SourceFold`'s thread).
    let files: [(location: String, sourcePath: String, sha256: String, rejected: Set<Int>)]

    init(dataFolder: String, _ db: Database) throws {
        let applied = try ValidationQueries.ledgerFiles(dataFolder: dataFolder, db).filter { $0.status == "applied" }
        let rejected = try ValidationQueries.rejectedLineNumbers(in: applied.map(\.fileID), db)
        files = applied.map { ($0.location, $0.sourcePath, $0.sha256, rejected[$0.fileID] ?? []) }
    }

    func forEachDelivery(divert: (_ fileIndex: Int, _ line: Int, _ bytes: UnsafeRawBufferPointer) throws -> Bool,
                         _ body: (Delivery) throws -> Void) throws {
        let parser = EventLineParser.forPublishedLines
        for (index, file) in files.enumerated() {
            // Where the file is now (a running ingest may just have moved it to the archive);
            // a missing file is reported by archived_files.
            guard let path = Ledger.readablePath(location: file.location, sourcePath: file.sourcePath, sha256: file.sha256) else { continue }
            do {
                _ = try GzipLineReader(path: path, maxOutputBytes: .max).forEachLine { number, content in
                    guard case .bytes(let bytes) = content, !file.rejected.contains(number), try !divert(index, number, bytes),
                          case .success(let delivery) = parser.parse(bytes) else { return }
                    try body(delivery)
                }
            } catch is GzipError {
                // A damaged archived copy is reported by archived_files (its SHA-256 no longer
                // matches); its events show up as missing from the replay.
                continue
            }
        }
    }
}

/// A source folded with the merge rule, pass by pass, on its own thread (`PassesAhead`): the caller takes each
/// pass's expected states in order (`next`) while the next pass is folded. The first pass reads
/// the source once and sets the raw records of the later passes aside in scratch files
/// (`LineSpill`, in the temporary folder: validate may not write the data folder); each later
/// pass reads its own. Should no scratch file be possible, or one fail to be written, each
/// pass not read yet reads the source again, skipping the other passes' records. A pass is folded only once the one before has been
/// taken, so memory holds two passes. The source must not touch a database connection (the
/// thread has none).
enum SourceFold {
    typealias Expected = [ExactText: (state: EventState, met: Bool)]
    typealias Pass = (expected: Expected, deliveries: Int, redelivered: Int)

    static func start(source: ValidationSource, passes: Int, expectedPerPass: Int, spills: PassSpills?) -> PassesAhead<Pass> {
        PassesAhead(count: passes) { pass, isCancelled in
            try fold(pass, of: passes, source: source, expectedPerPass: expectedPerPass, spills: spills, isCancelled: isCancelled)
        }
    }

    private static func fold(_ pass: Int, of passes: Int, source: ValidationSource, expectedPerPass: Int, spills: PassSpills?,
                             isCancelled: @escaping () -> Bool) throws -> Pass {
        var expected: Expected = [:]
        expected.reserveCapacity(expectedPerPass)
        var deliveries = 0, redelivered = 0
        let split = PassSplit(index: pass, count: passes)
        let parser = EventLineParser.forPublishedLines
        // A caller that stopped (it failed) should not wait for a whole pass to be read: every
        // 65,536 records read, set aside or kept, the fold looks whether it was cancelled.
        var seen = 0
        let checkCancelled = {
            seen += 1
            if seen & 0xFFFF == 0 && isCancelled() { throw CancellationError() }
        }
        // This pass's records: set aside for it by the first pass, or read from the source
        // again (no scratch files, or one could not be written).
        let setAside = try pass > 0 ? spills?.lines(ofPass: pass) : nil
        let divertsOthers = pass == 0 ? spills : nil
        // Records set aside for this pass, or kept by the first pass while it sets the others
        // aside, are all of this pass already; records read from the source again are not.
        let allOfThisPass = setAside != nil || divertsOthers != nil
        let add = { (delivery: Delivery) in
            try checkCancelled()
            guard allOfThisPass || split.contains(delivery.eventID) else { return }
            deliveries += 1
            let id = ExactText(delivery.eventID)
            let (state, outcome) = MergeRule.merge(expected[id]?.state, delivery)
            if outcome == .duplicate { redelivered += 1 }
            expected[id] = (state, false)
        }
        if let setAside {
            try setAside.forEachLine { file, line, record in
                switch parser.parse(record) {
                case .success(let delivery): try add(delivery)
                case .failure(let rejection): if let error = source.unparsable(file, line, rejection.reason) { throw error }
                }
            }
        } else if let divertsOthers {
            // A record that does not parse stays here, where the source reports or skips it.
            // (After a failed write, `divert` skips the other passes' records instead.)
            try source.read({ file, line, record in
                try checkCancelled()
                return try divertsOthers.divert(file: file, line: line, bytes: record, parser: parser)
            }, add)
        } else {
            try source.read({ _, _, record in
                try checkCancelled()
                return split.excludes(line: record)
            }, add)
        }
        return (expected, deliveries, redelivered)
    }
}

/// Aligned plain-text tables for terminal output.
public enum TextTable {
    /// The first five items, then how many there are in all when there are more.
    static func firstFew(_ items: [String], separator: String = ", ") -> String {
        items.prefix(5).joined(separator: separator) + (items.count > 5 ? "\(separator)… (\(items.count) in all)" : "")
    }

    public static func render(_ rows: [[String]]) -> String {
        guard let header = rows.first else { return "" }
        var widths = header.map { $0.count }
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        var out = ""
        for (n, row) in rows.enumerated() {
            let cells = row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            out += cells.joined(separator: "  ") + "\n"
            if n == 0 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        return out
    }
}

