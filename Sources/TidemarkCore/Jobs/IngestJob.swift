import Foundation
import GRDB
import Logging

/// Settings of one ingest (or backfill) run.
public struct IngestOptions: Sendable {
    public var landingFolder: String
    public var dataFolder: String
    /// Process at most this many files (the rest wait for the next run).
    public var maxFiles: Int?
    /// What ends the process should a page of the database read through a memory map fail
    /// (prepared by the executable); nil: small batches read without a map (`Warehouse.mapForReading`).
    public var mappedReadFault: MappedReadFault?
    /// Decode and merge everything, report, then roll back and move nothing.
    public var dryRun = false
    /// Allowed lateness behind the watermark, in seconds.
    public var allowedLateness: Double = 30
    /// Decompression guard per file (gzip bombs).
    public var maxFileOutputBytes: Int64 = 1 << 30
    /// Partitions one batch may create; a file that would exceed it is quarantined.
    public var maxNewPartitions = 1000
    /// A landing file that ends early (truncated or empty gzip) and was modified less than this
    /// many seconds ago is probably still being written in place: it is left for the next run
    /// instead of being quarantined. (Producers should write `.NAME.tmp` and rename.)
    public var settleSeconds: Double = 10
    /// Commit after this many files or decompressed bytes, whichever comes first.
    public var filesPerCommit = 256
    public var bytesPerCommit: Int64 = 64 << 20
    /// `ingest` moves files out of the landing folder; `backfill` copies them and leaves the source as it was.
    public var kind = Kind.ingest
    /// Backfill only: files modified in this range.
    public var modifiedSince: Double?
    public var modifiedUntil: Double?
    /// Seconds to wait for another connection's write lock.
    public var busyTimeout: Double = 5
    /// The ingest clock (lag, the 24 h future guard). Tests and the demo use a simulated one.
    public var clock: @Sendable () -> Timestamp = { Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970) }
    /// Called after each file (progress bars).
    public var progress: (@Sendable (IngestProgress) -> Void)?

    public enum Kind: String, Sendable { case ingest, backfill }

    /// A backfill of this data folder's own archive (a lost database rebuilt in place).
    var backfillsOwnArchive: Bool {
        kind == .backfill && FileSystem.isSameOrInside(landingFolder, Warehouse.archiveFolder(of: dataFolder))
    }

    public init(landingFolder: String, dataFolder: String) {
        self.landingFolder = landingFolder
        self.dataFolder = dataFolder
    }
}

/// Where a batch stands, for progress displays.
public struct IngestProgress: Sendable {
    public var filesDone: Int
    public var filesTotal: Int
    public var bytesDone: Int64
    public var bytesTotal: Int64
    public var events: Int
}

/// The micro-batch ingest: picks up new files from the landing folder through the ledger,
/// merges their events into hourly partitions, archives them, and recomputes the summaries
/// of the hours it touched. See the README's "Merge semantics" for the contract.
public enum IngestJob {
    /// `ingest --loop`: a batch every `interval` seconds until SIGINT or SIGTERM (install
    /// `StopSignal` first), handing each batch's summary to `afterBatch`. A loop outlives what
    /// a single run reports as a failure: a file that cannot be read waits in landing, named
    /// by each batch's summary (`endError`), and a batch that meets another job's lock
    /// is skipped and handed to `skipped`. Anything else, and whatever `afterBatch` throws,
    /// ends the loop. The caller says what happened; this only decides whether to go on.
    public static func runLoop(_ options: IngestOptions, interval: Double, logger: Logger,
                               afterBatch: (BatchSummary) throws -> Void, skipped: (TidemarkError) -> Void) throws {
        repeat {
            do {
                try afterBatch(try run(options, logger: logger))
            } catch let error as TidemarkError where error.exitStatus == .busy {
                skipped(error)
            }
            StopSignal.sleep(seconds: interval)
        } while !StopSignal.requested
    }

    public static func run(_ options: IngestOptions, logger: Logger) throws -> BatchSummary {
        // The ledger records paths: absolute ones, which mean the same from any directory.
        var options = options
        options.landingFolder = FileSystem.absolutePath(options.landingFolder)
        options.dataFolder = FileSystem.absolutePath(options.dataFolder)
        if options.kind == .ingest {
            // Landing in a data folder's archive (a mistyped --landing): ingest would take the
            // archived files for new ones and remove them. And a landing folder that feeds another
            // data folder is refused before this one is created (`LandingClaim`).
            try LandingClaim.refuseInsideDataFolder(landingFolder: options.landingFolder, dataFolder: options.dataFolder)
            if !FileSystem.exists(Warehouse.databasePath(of: options.dataFolder)) && !Warehouse.archiveHoldsFiles(options.dataFolder) {
                _ = try LandingClaim.bind(landingFolder: options.landingFolder, dataFolder: options.dataFolder,
                                          storedID: nil, databaseExists: false, record: false)
            }
        }
        // The source first: a missing one (exit 66) leaves no data folder behind.
        let checkSource = "check --from-dir: a folder of *.ndjson.gz files (subfolders too), such as DATA/archive"
        let scan = options.kind == .backfill
            ? try LandingFolder.scan(options.landingFolder, role: "backfill source", missingHint: checkSource, notFolderHint: checkSource, recursive: true)
            : try LandingFolder.scan(options.landingFolder)
        if options.kind == .backfill && scan.files.isEmpty {
            logger.warning("no \(LandingFolder.suffixes.map { "*" + $0 }.joined(separator: ", ")) file in the backfill source or its subfolders: nothing to do",
                           metadata: ["from_dir": "\(options.landingFolder)"])
        }
        // A dry run writes nothing: with no database yet, it plans against an empty one in a
        // temporary folder, removed after (archive and quarantine places still name --data).
        let dryRunFolder = options.dryRun && (!FileSystem.exists(Warehouse.databasePath(of: options.dataFolder))
                                              || Warehouse.hasUnfinishedFirstLoad(options.dataFolder))
            ? NSTemporaryDirectory() + "tidemark-dry-run-\(UUID().uuidString)" : nil
        defer { if let dryRunFolder { try? FileManager.default.removeItem(atPath: dryRunFolder) } }
        let storeFolder = dryRunFolder ?? options.dataFolder
        let lock = try JobLock(dataFolder: storeFolder, job: options.kind.rawValue)
        defer { withExtendedLifetime(lock) {} }
        // Ingest moves files out of landing; backfill and dry runs leave their source alone.
        let landingLock = options.kind == .ingest && !options.dryRun ? try LandingLock(landingFolder: options.landingFolder) : nil
        defer { withExtendedLifetime(landingLock) {} }
        // A small page cache: a large load's random-key B-trees fit no affordable cache anyway
        // (1M events ran as fast with 8 MiB as with 16 or 32 MiB), and each MiB is RSS.
        // A backfill of this data folder's own archive is how a lost database is rebuilt in place.
        // A run that creates the database loads it without a journal (`Warehouse.firstLoad`).
        let warehouse = try Warehouse(dataFolder: storeFolder, busyTimeout: options.busyTimeout, cacheMebibytes: 8,
                                      allowsArchiveWithoutDatabase: options.backfillsOwnArchive, firstLoad: !options.dryRun)
        if warehouse.restartedFirstLoad {
            logger.warning("the first load into this data folder was interrupted before it ended: what it had written was removed, and this run loads again (the interrupted run had moved no file)",
                          metadata: ["data": "\(options.dataFolder)"])
        }
        for skipped in scan.skipped {
            // An entry that looks meant as data is never ingested unless renamed: say so. So is a
            // folder a backfill does not read.
            if skipped.isFolder {
                logger.warning("not reading this folder of the backfill source", metadata: ["folder": "\(skipped.name)", "reason": "\(skipped.reason)"])
            } else if LandingFolder.looksLikeData(skipped.name) {
                logger.warning("not ingesting this landing entry: rename it, or make it a regular file, to have it ingested",
                               metadata: ["file": "\(skipped.name)", "reason": "\(skipped.reason)"])
            } else {
                logger.info("skipping landing entry", metadata: ["file": "\(skipped.name)", "reason": "\(skipped.reason)"])
            }
        }
        var files = scan.files
        if let since = options.modifiedSince { files = files.filter { $0.modified >= since } }
        if let until = options.modifiedUntil { files = files.filter { $0.modified < until } }
        if files.isEmpty && !scan.files.isEmpty && (options.modifiedSince != nil || options.modifiedUntil != nil) {
            logger.warning("none of the \(plural(scan.files.count, "file")) in the source was modified within --since/--until: nothing to do",
                           metadata: ["since": "\(options.modifiedSince.map { Timestamp(secondsSinceEpoch: $0).rfc3339 } ?? "-")",
                                      "until": "\(options.modifiedUntil.map { Timestamp(secondsSinceEpoch: $0).rfc3339 } ?? "-")"])
        }
        if let maxFiles = options.maxFiles, files.count > maxFiles { files = Array(files.prefix(maxFiles)) }
        let started = options.clock()
        let wallStart = Date()
        do {
            return try runBatch(files, scan: scan, on: warehouse, realDatabase: dryRunFolder == nil, options: options, logger: logger,
                                started: started, wallStart: wallStart)
        } catch {
            guard warehouse.isFirstLoad else { throw error }
            // Nothing of a failed first load stays, and it moved no file: the next run loads again
            // (unless what failed was the command line itself).
            warehouse.discardFirstLoad()
            guard let failure = TidemarkError.describing(error, database: warehouse.databasePath), failure.exitStatus != .usage else { throw error }
            throw failure.adding(hint: "this run was the data folder's first load: it left no database, and the next run loads again")
        }
    }

    /// The batch itself, on the opened warehouse.
    /// `realDatabase`: false for a dry run's temporary database.
    private static func runBatch(_ files: [LandingFile], scan: LandingFolder.Scan, on warehouse: Warehouse, realDatabase: Bool,
                                 options: IngestOptions, logger: Logger, started: Timestamp, wallStart: Date) throws -> BatchSummary {
        return try warehouse.withConnection { db in
            if options.kind == .ingest {
                // One landing folder feeds one data folder, for good (`LandingClaim`), known by
                // its id (`DataFolderIdentity`), which its database keeps too.
                // A dry run without a database plans against a temporary one: no id of its own.
                if let newID = try LandingClaim.bind(landingFolder: options.landingFolder, dataFolder: options.dataFolder,
                                                     storedID: realDatabase ? warehouse.dataFolderID : nil, databaseExists: realDatabase,
                                                     record: !options.dryRun) {
                    try BatchLog.setDataFolderID(newID, db)
                }
            }
            var runner = try BatchRunner(options: options, warehouse: warehouse, db: db, logger: logger, dataFolder: options.dataFolder, started: started)
            let mapped = realDatabase && !options.dryRun && !warehouse.isFirstLoad
                ? try warehouse.mapForReading(db, landingBytes: files.reduce(0) { $0 + $1.size },
                                              recentEntries: runner.session.writer.recentEntries, fault: options.mappedReadFault)
                : false
            defer { if mapped { warehouse.endMapping(db) } }
            do {
                try runner.process(files)
                var summary = runner.summary
                // What is still waiting: the landing folder's files this run did not settle (left
                // by --max-files, a stop request or a read error); for backfill, whose source is
                // never emptied, the selected files it did not get to.
                // Files this run put back or could not move are still there, too.
                let pool = options.kind == .backfill ? files : scan.files
                summary.backlogFiles = pool.count - runner.settled.files + runner.leftInLanding.files
                summary.backlogBytes = pool.reduce(0) { $0 + $1.size } - runner.settled.bytes + runner.leftInLanding.bytes
                summary.finishedAt = options.clock().rfc3339
                summary.durationSeconds = Date().timeIntervalSince(wallStart)
                // The batch succeeded for what it could read; the caller ends with exit 74
                // (`endError`) for the rest.
                summary.unreadable = (scan.unreadable + runner.unreadable).map { .init(path: $0.path, cause: $0.cause, hint: $0.hint, gone: $0.code == ENOENT) }
                summary.unarchived = runner.unarchived.map { .init(path: $0.path, cause: $0.error.description, hint: $0.error.hint) }
                summary.exitCode = summary.endError?.exitStatus.rawValue ?? 0
                if !options.dryRun {
                    summary.partitionsTouched = runner.session.touchedHours.sorted().map { PartitionHour(hoursSinceEpoch: $0).label }
                    try BatchBookkeeping.finish(summary, counted: runner.counted, db)
                }
                logger.info("\(summary.oneLine)")
                return summary
            } catch {
                runner.abandon(error)
                // Files committed by earlier chunks whose move failed are still in landing: say
                // so, since the error itself is about something else (the last commit).
                if !runner.unarchived.isEmpty, let failure = TidemarkError.describing(error, database: warehouse.databasePath) {
                    let count = runner.unarchived.count
                    throw failure.adding(hint: "\(plural(count, "file")) committed earlier in this batch could not be moved to the archive and \(count == 1 ? "stays" : "stay") in landing; the next run moves \(count == 1 ? "it" : "them") without applying \(count == 1 ? "it" : "them") again")
                }
                throw error
            }
        }
    }
}

/// The body of one batch; holds the session and the running counts.
struct BatchRunner {
    let options: IngestOptions
    /// Its first load, while one runs, defers every move to the load's end (`commitChunk`).
    let warehouse: Warehouse
    let db: Database
    let logger: Logger
    let session: IngestSession
    let archiveFolder: String
    let quarantineFolder: String
    /// A backfill of this data folder's own archive (a lost database rebuilt in place): each
    /// file stays where it is and the ledger records it there, instead of a second copy.
    let adoptsArchivedFiles: Bool
    var summary = BatchSummary()
    var nextFileID: Int64
    var maxEventTime: Timestamp?
    var lags = DurationHistogram()
    var delays = DurationHistogram()
    /// Moves to do once the current transaction has committed, each with the file as read.
    var pendingMoves: [(fileID: Int64, from: String, to: String, held: HeldLandingFile)] = []
    /// Files in landing after their move: put there meanwhile by someone else, or not movable.
    var leftInLanding: (files: Int, bytes: Int64) = (0, 0)
    /// The cumulative counter values already added by this batch's commits.
    var counted: [String: Int] = [:]
    /// Files recorded or waiting in a group that may be held open at once (each file read is
    /// held open until it is archived), within this process's open-files limit.
    let heldFilesLimit: Int
    /// Files the decoder may hold open ahead of the writer.
    let filesAhead: Int
    var filesInChunk = 0
    var bytesInChunk: Int64 = 0
    /// Lines of the files decoded whole so far (applied, waiting in a group, or not applied).
    var linesDecoded = 0
    /// Whole files waiting to be merged together, their content digests and line count.
    var group: [InFlightFile] = []
    var groupContent: [String: Int64] = [:]
    var groupLines = 0
    /// Hours this batch will have created: the partition cap counts against them.
    var plannedHours = Set<Int>()
    var plannedHoursAtFileStart = Set<Int>()
    /// Files that could not be read (permissions, I/O): left in landing, reported at the end.
    var unreadable: [FileSystemError] = []
    /// Files left in landing for the next batch: this batch's new partitions reached the cap.
    var deferred = 0
    /// Files left in landing because they end early and were modified just now (`settleSeconds`).
    var unfinished = 0
    /// Applied files with rejected lines, and the first such line (for the batch's warning).
    var filesWithRejections = 0
    /// Of those, the files whose every line was rejected: nothing of them was applied.
    var filesAllRejected = 0
    var firstRejection: (file: String, line: Int, reason: String)?
    /// Files applied and committed whose move out of landing failed (disk full, permissions):
    /// the next run finishes the move; the batch ends with exit 74 naming them.
    var unarchived: [(path: String, error: FileSystemError)] = []
    /// A move after a commit failed for want of space: the batch takes no more files (the
    /// next commit would fail too) and ends with exit 74 naming what it could not move.
    var outOfSpace = false
    /// Folders files were placed in this batch: made and marked once, not per file.
    var preparedFolders: Set<String> = []
    /// Move failures warned about one by one; the rest are summed up at the end of the batch.
    static let moveWarningsShown = 3
    /// Files whose fate this run decided (applied, duplicate, quarantined, healed, skipped).
    var settled: (files: Int, bytes: Int64) = (0, 0)
    let now: Timestamp
    let parser: EventLineParser

    init(options: IngestOptions, warehouse: Warehouse, db: Database, logger: Logger, dataFolder: String, started: Timestamp) throws {
        self.options = options
        self.warehouse = warehouse
        self.db = db
        self.logger = logger
        now = started
        parser = EventLineParser(now: started)
        let openFiles = FileSystem.raiseOpenFilesLimit()
        filesAhead = max(8, min(FileDecoder.filesAhead, openFiles / 4))
        heldFilesLimit = max(16, openFiles - filesAhead - 128)
        archiveFolder = (Warehouse.archiveFolder(of: dataFolder) as NSString).appendingPathComponent(String(started.rfc3339.prefix(10)))
        quarantineFolder = Warehouse.quarantineFolder(of: dataFolder)
        adoptsArchivedFiles = options.backfillsOwnArchive
        let batchID: Int64
        if options.dryRun {
            try db.execute(sql: "BEGIN IMMEDIATE")
            batchID = try BatchLog.start(kind: options.kind.rawValue, startedAt: started, db)
        } else {
            batchID = try BatchBookkeeping.start(kind: options.kind.rawValue, at: started, db)
        }
        session = try IngestSession(db: db, dataFolder: dataFolder, batchID: batchID, maxNewPartitions: options.maxNewPartitions,
                                    alreadyInTransaction: options.dryRun)
        nextFileID = try Ledger.nextFileID(db)
        maxEventTime = try BatchBookkeeping.maxEventTime(db)
        summary.batchID = batchID
        summary.kind = options.kind.rawValue
        summary.dryRun = options.dryRun
        summary.startedAt = started.rfc3339
    }

    mutating func process(_ files: [LandingFile]) throws {
        if options.kind == .ingest && !options.dryRun { try reclaimGrownArchives() }
        var filesDone = 0
        var bytesDone: Int64 = 0
        let totalBytes = files.reduce(0) { $0 + $1.size }
        func reportProgress(_ file: LandingFile, settled isSettled: Bool = true) {
            filesDone += 1
            bytesDone += file.size
            if isSettled { settled = (settled.files + 1, settled.bytes + file.size) }
            options.progress?(IngestProgress(filesDone: filesDone, filesTotal: files.count, bytesDone: bytesDone,
                                             bytesTotal: totalBytes, events: summary.lines.read))
        }
        // Leftovers of an interrupted move (and, for backfill, content already in the ledger)
        // are settled without decoding. An empty ledger (a first load, or a database that has
        // taken no file yet) knows no file: nothing to ask it, file by file, while the decoder
        // waits to start.
        var toDecode: [LandingFile] = []
        if nextFileID == 1 {
            toDecode = files
        } else {
            for file in files {
                if try stillBeingWritten(file) {
                    reportProgress(file, settled: false)
                } else if try settledWithoutDecoding(file) {
                    reportProgress(file)
                } else {
                    toDecode.append(file)
                }
            }
        }
        FaultPoint.pause("before-decode")
        // A dry run moves nothing, so it holds no file open.
        let decoder = FileDecoder(paths: toDecode.map(\.path), parser: parser, maxOutputBytes: options.maxFileOutputBytes,
                                  holdingFilesAhead: options.dryRun ? nil : filesAhead)
        defer { decoder.cancel() }
        var inFlight: InFlightFile?
        while var piece = decoder.next() {
            if inFlight == nil {
                if StopSignal.requested {
                    logger.notice("stop requested: ending the batch after the files already applied")
                    break
                }
                if outOfSpace {
                    logger.warning("no space left to archive files: ending the batch after the files already applied (they stay in landing until the next run moves them); free space on the data folder's file system, but do not delete files from archive/ to make room: the ledger points at them")
                    break
                }
                inFlight = InFlightFile(file: toDecode[piece.fileIndex], fileID: nextFileID,
                                        watermarkBefore: maxEventTime.map { $0 + -options.allowedLateness }, maxEventTime: maxEventTime)
                nextFileID += 1
            }
            // Handed over, not shared: `absorb` then takes the lines out without copying them.
            var lines: [DecodedLine] = []
            swap(&lines, &piece.lines)
            inFlight!.absorb(lines, now: now)
            if !inFlight!.streaming && inFlight!.buffered > BatchRunner.largeFileLines {
                // A large file is applied in slices inside its own savepoint, so memory stays
                // bounded and the file is still all or nothing. Rolling back to a savepoint
                // takes a journal: a first load ends before such a file.
                try flushGroup()
                if warehouse.isFirstLoad { try commitChunk(endingFirstLoad: true) }
                try session.beginFile()
                plannedHoursAtFileStart = plannedHours
                inFlight!.streaming = true
            }
            if inFlight!.streaming && inFlight!.buffered >= BatchRunner.largeFileLines {
                try applySlice(&inFlight!)
            }
            if let end = piece.end {
                inFlight!.held = piece.held
                let leftBefore = filesLeft
                try finish(&inFlight!, end)
                reportProgress(inFlight!.file, settled: filesLeft == leftBefore)
                linesDecoded += inFlight!.counts.read
                inFlight = nil
                // A dry run keeps everything in one transaction and rolls it back at the end. Files
                // recorded and files waiting in the group each hold a descriptor: should they
                // reach the limit (say, many quarantined files behind one waiting in the group),
                // the group is applied early and the chunk committed. A first load's files wait
                // for its end: it ends there, or once it has read `firstLoadLines` or holds
                // `firstLoadFiles` (what a crash can cost is bounded: the next run redoes it).
                let descriptorsFull = max(filesInChunk, pendingMoves.count) + group.count >= heldFilesLimit
                let firstLoadFull = warehouse.isFirstLoad
                    && (linesDecoded >= BatchRunner.firstLoadLines || pendingMoves.count + group.count >= BatchRunner.firstLoadFiles)
                if !options.dryRun && (descriptorsFull || firstLoadFull || (group.isEmpty && (filesInChunk >= options.filesPerCommit || bytesInChunk >= options.bytesPerCommit))) {
                    try flushGroup()
                    try commitChunk(endingFirstLoad: descriptorsFull || firstLoadFull)
                }
            }
        }
        try flushGroup()
        if deferred > 0 {
            // Backfill warns: nobody runs it again unless told. Ingest's next run (cron) takes
            // the files anyway, so a draining backlog is a notice, not a mail every minute.
            let backfill = options.kind == .backfill
            let rerun = backfill ? "stay in the source folder: run the backfill again to take them" : "stay in landing for the next run"
            logger.log(level: backfill ? .warning : .notice,
                       "this batch created as many new partitions as --max-new-partitions allows; files that need more \(rerun)",
                       metadata: ["files_left": "\(deferred)", "max_new_partitions": "\(options.maxNewPartitions)"])
        }
        summary.filesDeferred = deferred + unfinished
        if let first = firstRejection {
            // Not quiet: a rejected line may be a deletion that did not happen.
            logger.warning("\(rejectedLinesWarning(lines: summary.lines.rejected, files: filesWithRejections, filesAllRejected: filesAllRejected, dryRun: options.dryRun))",
                           metadata: ["first": "\(first.file) line \(first.line): \(first.reason)"])
        }
        if options.dryRun {
            try session.flushWithoutCommit()
            summary.partitionsTouched = session.touchedHours.sorted().map { PartitionHour(hoursSinceEpoch: $0).label }
            session.rollback()
        } else {
            try commitChunk(endingFirstLoad: true)
        }
        // Listed in name order, the order ingest takes files in (each is added as it is settled;
        // a backfill of subfolders takes them in path order, which differs only across folders).
        summary.files.sort { utf8Less($0.name, $1.name) }
        if unarchived.count > BatchRunner.moveWarningsShown {
            logger.warning("\(plural(unarchived.count - BatchRunner.moveWarningsShown, "more file")) could not be moved after their commit; the next run will retry them (--json lists every one under unarchived_files)")
        }
        summary.tombstonesPending = session.pendingTombstones
        summary.partitionsCreated = session.writer.createdHours.count
        summary.lag = BatchSummary.Percentiles(lags)
        summary.lagHistogram = lags
        summary.eventDelay = BatchSummary.Percentiles(delays)
        summary.watermark = maxEventTime.map { ($0 + -options.allowedLateness).rfc3339 }
        summary.status = options.dryRun ? "dry-run" : "succeeded"
    }

    /// Files decoded whole and waiting to be merged together.
    static let groupLines = 50_000
    /// Files with more deliveries than this are applied in slices of this size.
    static let largeFileLines = 100_000
    /// A first load ends (is put on disk and its files moved) once it has read this many lines
    /// (a few seconds of work here; the 1M-event benchmark's 1.09 M fit), or holds this many
    /// files waiting; the batch goes on as any later one. Tests lower both
    /// (`TIDEMARK_FIRST_LOAD_LINES`, `TIDEMARK_FIRST_LOAD_FILES`).
    static let firstLoadLines: Int = getenv("TIDEMARK_FIRST_LOAD_LINES").flatMap { Int(String(cString: $0)) } ?? 2_000_000
    static let firstLoadFiles: Int = getenv("TIDEMARK_FIRST_LOAD_FILES").flatMap { Int(String(cString: $0)) } ?? 4_096

    /// Commits the chunk, then moves its files out of landing. During a first load
    /// (`Warehouse.firstLoad`) no commit is durable until the load ends: the moves wait for
    /// `endingFirstLoad`, which makes the load durable first.
    mutating func commitChunk(endingFirstLoad: Bool) throws {
        precondition(!options.dryRun, "a dry run never commits")
        if let maxEventTime, session.inTransaction { try BatchBookkeeping.setMaxEventTime(maxEventTime, db) }
        var nowCounted = counted
        try session.commit { [summary, session, counted, db] in
            nowCounted = try BatchLog.recordProgress(summary, partitions: session.touchedHours.count, counted: counted, db)
        }
        counted = nowCounted // only once committed
        filesInChunk = 0
        bytesInChunk = 0
        if warehouse.isFirstLoad {
            FaultPoint.hit("first-load-commit")
            guard endingFirstLoad else { return }
            try warehouse.finishFirstLoad(db)
        }
        FaultPoint.hit("after-commit")
        FaultPoint.pause("after-commit")
        FaultPoint.readPastAShortenedMap("after-commit")
        for move in pendingMoves {
            do {
                try place(from: move.from, to: move.to, held: move.held, fileID: move.fileID)
            } catch {
                // The ledger already says where the file belongs; the next run finishes the move.
                let failure = error as? FileSystemError ?? FileSystemError("archive", move.from, cause: "\(error)")
                if unarchived.count < BatchRunner.moveWarningsShown {
                    logger.warning("could not move file after commit; the next run will retry",
                                   metadata: ["file": "\(move.from)", "error": "\(error)"])
                }
                unarchived.append((move.from, failure))
                if failure.isNoSpace { outOfSpace = true }
                noteLeftInLanding(move.from)
                // Grown too (a producer writing it in place): the next runs wait until it is
                // quiet, as when the archive copy succeeds, before archiving its start and
                // reading it whole.
                if options.kind == .ingest, let applied = move.held.appliedBytes, let now = move.held.currentSize(), now != applied,
                   FileSystem.parentFolder(of: move.to) != quarantineFolder {
                    noteGrown(fileID: move.fileID, appliedBytes: applied, nowBytes: now, file: move.from, archived: false)
                }
            }
        }
        pendingMoves.removeAll()
    }

    func abandon(_ error: Error) {
        session.rollback()
        // A failed first load is removed whole (`Warehouse.discardFirstLoad`).
        if options.dryRun || warehouse.isFirstLoad { return }
        BatchBookkeeping.fail(batchID: summary.batchID, error: "\(error)", db)
    }

    /// Moves (ingest) or copies (backfill) a file to its archive or quarantine place: the
    /// content read (`held`), even when another file was put under its name meanwhile.
    /// `copyOnly`: the content held is copied and the landing file left as it is.
    private mutating func place(from source: String, to destination: String, held: HeldLandingFile, fileID: Int64, copyOnly: Bool = false) throws {
        if FaultPoint.archiveIsFull() { throw FileSystemError("archive", destination, errno: ENOSPC) }
        if let folder = FileSystem.parentFolder(of: destination), !preparedFolders.contains(folder) {
            try FileSystem.makeFolder(folder)
            // Marks an archive day or quarantine folder as such: reached under another path (a
            // bind mount), it is still refused as a landing folder.
            LandingClaim.markDataFolderPart(folder)
            preparedFolders.insert(folder)
        }
        if options.kind == .backfill || copyOnly {
            if !FileSystem.exists(destination) { try held.copy(to: destination) }
        } else {
            // The quarantine takes a file whole; the archive, exactly what was read.
            let outcome = try LandingRetirement.archive(held, fileID: fileID, from: source, to: destination,
                                                        keepingGrowth: FileSystem.parentFolder(of: destination) != quarantineFolder)
            if case let .grew(applied, now, _) = outcome {
                // So that the next runs wait until the producer is done with it.
                noteGrown(fileID: fileID, appliedBytes: applied, nowBytes: now, file: source)
            }
            report(outcome, of: source, archived: true)
        }
    }

    /// Files that were in landing when the batch began, or stayed in it this run (unreadable,
    /// left for the next batch, still being written).
    private var filesLeft: Int { unreadable.count + deferred + unfinished }

    /// A file still in landing after its move (put there by someone else, or not movable):
    /// backlog for the next run.
    private mutating func noteLeftInLanding(_ path: String) {
        var info = stat()
        leftInLanding.files += 1
        if lstat(path, &info) == 0 { leftInLanding.bytes += Int64(info.st_size) }
    }

    /// Plans a ledger file's move for after the commit. Every file of a real run is held open;
    /// a dry run holds none and moves nothing.
    private mutating func planMove(_ f: InFlightFile, to location: String) {
        guard let held = f.held else { return }
        pendingMoves.append((f.fileID, f.file.path, location, held))
    }

    /// Warns when the landing name no longer led to the file read: where the other file stays,
    /// and (`archived`: a move, not the removal of a file the archive already holds) that the
    /// content applied was archived from the copy held open.
    private mutating func report(_ outcome: LandingRetirement.Outcome, of source: String, archived: Bool) {
        let fromHeldCopy = archived ? "; the content applied was archived from the copy held open" : ""
        switch outcome {
        case .moved:
            break
        case .replaced(let keptAs):
            noteLeftInLanding(keptAs)
            logger.warning("another file was put under this landing name while the batch ran\(fromHeldCopy), and the new file stays in landing for the next run",
                           metadata: ["file": "\(source)", "new_file": "\(keptAs)"])
        case .vanished:
            logger.warning("landing file was removed (or taken by another process) while the batch ran\(fromHeldCopy)",
                           metadata: ["file": "\(source)"])
        case let .grew(applied, now, keptAs):
            noteLeftInLanding(keptAs)
            logger.warning("""
                landing file grew after the batch read it: it is still being written in place. The \(applied) bytes read were \
                recorded and archived; the whole file (\(now) bytes) stays in landing and is read again once it has been quiet \
                for \(Durations.text(options.settleSeconds)) (the events already applied change nothing). Producers should \
                write .NAME.tmp and rename it
                """, metadata: ["file": "\(source)", "stays_as": "\(keptAs)"])
        }
    }

    /// Notes in the ledger that a file grew while read, so that the next runs wait until its
    /// producer is done with it (`archived` false: the bytes read are not archived yet); a
    /// failure to note it is a warning.
    private func noteGrown(fileID: Int64, appliedBytes: Int64, nowBytes: Int64, file: String, archived: Bool = true) {
        do { try session.noteGrown(fileID: fileID, appliedBytes: appliedBytes, nowBytes: nowBytes, archived: archived) } catch {
            logger.warning("could not note in the ledger that the file grew while read", metadata: ["file": "\(file)", "error": "\(error)"])
        }
    }

    /// Where a file goes: its own name in the folder, else `ID-NAME`, else `ID-K-NAME`: never a
    /// name taken, since the move (a rename) would replace what is there. (After a database
    /// restored from an older backup, file ids repeat while the archive keeps the files of the
    /// ids it forgot.)
    /// Nor a name a ledger row gives a file that is not there yet (its run killed between the
    /// commit and the move, and the name then used again in landing): two rows would name one
    /// place. (A ledger that cannot be read here leaves existence alone to decide.)
    private func destination(in folder: String, name: String, fileID: Int64) -> String {
        func free(_ path: String) -> Bool {
            !FileSystem.exists(path) && !pendingMoves.contains(where: { $0.to == path }) && (try? session.ledgerNames(location: path)) != true
        }
        let plain = (folder as NSString).appendingPathComponent(name)
        if free(plain) { return plain }
        var candidate = (folder as NSString).appendingPathComponent(BatchRunner.prefixed("\(fileID)-", name))
        var k = 2
        while !free(candidate) {
            candidate = (folder as NSString).appendingPathComponent(BatchRunner.prefixed("\(fileID)-\(k)-", name))
            k += 1
        }
        return candidate
    }

    /// `prefix` and `name` as one file name within the 255-byte limit of a name: a long name
    /// loses the end of its stem, marked `~`, and keeps its suffix (`.ndjson.gz`). A 255-byte
    /// name landed twice could otherwise never be archived, and held every later run at 74.
    static func prefixed(_ prefix: String, _ name: String) -> String {
        let limit = 255
        guard prefix.utf8.count + name.utf8.count > limit else { return prefix + name }
        let suffix = LandingFolder.suffixes.first { name.hasSuffix($0) } ?? ""
        var stem = Substring(name.dropLast(suffix.count))
        while !stem.isEmpty && prefix.utf8.count + stem.utf8.count + 1 + suffix.utf8.count > limit { stem = stem.dropLast() }
        return prefix + stem + "~" + suffix
    }

    /// A landing file whose ledger row committed but whose move did not happen (crash in
    /// between): finish the move. Returns true when the file was such a leftover.
    private mutating func healLeftover(_ file: LandingFile) throws -> Bool {
        // A capture a killed run left (`LandingRetirement`) names its ledger file.
        let recorded = try LandingRetirement.capturedFileID(file.name).map { try session.ledgerEntries(fileID: $0) }
            ?? session.ledgerEntries(name: file.name, sizeAtMost: file.size)
        // Only applied or duplicate files are leftovers; a quarantined file put back by an
        // operator is a new attempt.
        let candidates = recorded.filter { $0.size == file.size && $0.status != "quarantined" }
        let starts = recorded.filter { $0.size < file.size && $0.status != "quarantined" && !FileSystem.exists($0.location) }
        guard !candidates.isEmpty || !starts.isEmpty else { return false }
        // A file that cannot be read here is left to the decoder, which reports it as
        // unreadable and goes on with the rest (exit 74 at the end), as for any other file.
        guard let held = try? HeldLandingFile(opening: file.path) else { return false }
        let content: String? = candidates.isEmpty ? nil : try? held.sha256()
        if !candidates.isEmpty && content == nil { return false }
        guard let match = candidates.first(where: { $0.sha256 == content }) else {
            try archiveRecordedStart(of: held, file, among: starts)
            return false
        }
        let sha = match.sha256
        if options.dryRun { return true }
        // Never remove the archived copy itself (landing reached through a symlink or a bind
        // mount into the archive): the same name in the same folder. (A hard link elsewhere is
        // another name, which may go.)
        if FileSystem.sameFile(FileSystem.parentFolder(of: file.path) ?? ".", FileSystem.parentFolder(of: match.location) ?? ".")
            && (file.path as NSString).lastPathComponent == (match.location as NSString).lastPathComponent {
            throw TidemarkError("ingest", file.path, cause: "this landing file is the archived copy \(match.location) itself",
                                hint: "point --landing at the folder the producer writes to, not into the data folder", exit: .usage)
        }
        if FileSystem.exists(match.location), (try? FileSystem.sha256(ofFile: match.location)) == sha {
            report(try LandingRetirement.remove(held, fileID: match.fileID, from: file.path), of: file.path, archived: false)
        } else {
            try place(from: file.path, to: match.location, held: held, fileID: match.fileID)
        }
        summary.filesHealed += 1
        // The file's name, size and content are in the ledger: a move a killed run left
        // undone, or the same file landed again.
        logger.info("already applied: finished its move to the archive (an interrupted move, or the same file landed again)",
                    metadata: ["file": "\(file.name)", "to": "\(match.location)"])
        return true
    }

    /// A file that grew after a run read it, whose archived copy that run could not write (a
    /// full disk, an archive folder not writable, a kill): its first bytes are the file the
    /// ledger recorded (`starts`: rows of its name, shorter than it, with no archived copy).
    /// They are archived where the ledger says before the whole file is read again as new.
    private mutating func archiveRecordedStart(of held: HeldLandingFile, _ file: LandingFile, among starts: [Ledger.Recorded]) throws {
        guard !options.dryRun else { return }
        for start in starts where try held.sha256(ofFirst: start.size) == start.sha256 {
            held.appliedBytes = start.size
            try place(from: file.path, to: start.location, held: held, fileID: start.fileID, copyOnly: true)
            logger.warning("archived the start of a landing file that grew after an earlier run read it (that run could not archive it); the whole file is read again now",
                           metadata: ["file": "\(file.name)", "to": "\(start.location)"])
            return
        }
    }

    /// A producer writing a landing file in place through a descriptor it keeps goes on writing
    /// into the file once it is archived: what it appends would never be applied. Files archived
    /// in the last two minutes (of the last 256 recorded: a batch's cost stays its own) are
    /// looked at, where the ledger put them: one longer than the
    /// ledger's size, whose first bytes are the file recorded, goes back to landing whole (the
    /// producer's descriptor follows it there), and the archive gets those first bytes again.
    /// The next runs read it whole once it has been quiet for `settleSeconds`.
    private mutating func reclaimGrownArchives() throws {
        let since = Timestamp(secondsSinceEpoch: now.secondsSinceEpoch - 120).rfc3339
        for (name, recorded) in try session.recentlyArchived(last: 256, since: since) {
            var info = stat()
            guard lstat(recorded.location, &info) == 0, Int64(info.st_size) > recorded.size else { continue }
            let held: HeldLandingFile
            // Back under its landing name (the name later runs hold back while it grows).
            var back = (options.landingFolder as NSString).appendingPathComponent(name)
            do {
                held = try HeldLandingFile(opening: recorded.location)
                guard try held.sha256(ofFirst: recorded.size) == recorded.sha256 else { continue } // changed otherwise: validate says so
                if FileSystem.exists(back) { back = LandingRetirement.capturePath(for: back, fileID: recorded.fileID) }
                guard FileSystem.renameWithoutReplacing(recorded.location, to: back) else { continue }
            } catch {
                // Not this batch's files: they are still applied; the next run tries again.
                logger.warning("could not take back an archived file that grew after it was moved", metadata: ["file": "\(recorded.location)", "error": "\(error)"])
                continue
            }
            // The bytes read go back where the ledger says they are archived.
            held.appliedBytes = recorded.size
            var archivingError: Error?
            do {
                if FaultPoint.archiveIsFull() { throw FileSystemError("archive", recorded.location, errno: ENOSPC) }
                try held.copy(to: recorded.location)
            } catch {
                archivingError = error
            }
            // Noted as grown, so that runs wait until it is quiet before reading it whole; should
            // the bytes read not be archived again, that run first writes that copy from the
            // file's first bytes (`archiveRecordedStart`).
            noteGrown(fileID: recorded.fileID, appliedBytes: recorded.size, nowBytes: Int64(info.st_size), file: name, archived: archivingError == nil)
            noteLeftInLanding(back)
            let quiet = Durations.text(options.settleSeconds)
            if let archivingError {
                logger.warning("""
                    archived file grew after it was moved: its producer is still writing it in place. It went back to landing whole, \
                    but the \(recorded.size) bytes read could not be archived again; a run after it has been quiet for \
                    \(quiet) archives them from the file's start and reads the whole file again
                    """, metadata: ["file": "\(recorded.location)", "back_as": "\(back)", "error": "\(archivingError)"])
            } else {
                logger.warning("""
                    archived file grew after it was moved: its producer is still writing it in place. It went back to landing whole \
                    (the \(recorded.size) bytes read stay archived) and is read again once it has been quiet for \
                    \(quiet). Producers should write .NAME.tmp and rename it
                    """, metadata: ["file": "\(recorded.location)", "back_as": "\(back)"])
            }
        }
    }

    /// A file that grew while an earlier run read it (a producer writing it in place) is taken
    /// again only once it has been quiet for `settleSeconds`: until then every run would apply
    /// a longer start of it and archive one more copy.
    private mutating func stillBeingWritten(_ file: LandingFile) throws -> Bool {
        guard options.kind == .ingest, !options.dryRun else { return false }
        let age = Date().timeIntervalSince1970 - file.modified
        guard age < options.settleSeconds,
              try session.grewBefore(name: file.name, fileID: LandingRetirement.capturedFileID(file.name)) else { return false }
        unfinished += 1
        logger.info("landing file is still being written in place (it grew while an earlier run read it): left until it has been quiet for \(Durations.text(options.settleSeconds))",
                    metadata: ["file": "\(file.name)", "modified_ago": "\(Durations.text(max(0, age)))"])
        return true
    }

    /// True when the file needs no decoding: an interrupted move to finish, or (backfill)
    /// content already in the ledger, which a rerun must not change.
    private mutating func settledWithoutDecoding(_ file: LandingFile) throws -> Bool {
        guard options.kind == .backfill else { return try healLeftover(file) }
        // Backfill leaves its source alone and identifies files by content only; it finishes
        // an archive copy that a killed run left undone.
        // One that cannot be read is left to the decoder, which reports it as unreadable.
        guard let held = try? HeldLandingFile(opening: file.path), let sha = try? held.sha256() else { return false }
        guard let known = try session.ledgerLocation(sha256: sha) else { return false }
        // A backfill of this data folder's own archive: a file whose content the ledger knows,
        // but not at this place (a redelivery a lost database had archived), is decoded and
        // recorded where it lies, as duplicate content; else the archive would keep a file the
        // ledger does not name.
        if adoptsArchivedFiles, try !session.ledgerRecords(sha256: sha, at: file.path) { return false }
        if options.dryRun { summary.files.append(.init(name: file.name, outcome: "already ingested (same content in the ledger)", lines: 0, hours: [])) }
        if !options.dryRun { try place(from: file.path, to: known, held: held, fileID: 0) } // backfill: a copy, no file id needed
        summary.filesSkipped += 1
        return true
    }

    private func entry(for f: InFlightFile, status: LedgerEntry.Status, sha: String) -> LedgerEntry {
        // The size read and hashed (what the archived copy holds), even if the file grew meanwhile.
        LedgerEntry(fileID: f.fileID, name: f.file.name, size: f.held?.appliedBytes ?? f.held?.size ?? f.file.size, sha256: sha, status: status, reason: nil,
                    duplicateOf: nil, batchID: summary.batchID, counts: LineCounts(), lateEvents: 0,
                    watermarkBefore: status == .applied ? f.watermarkBefore : nil, ingestedAt: now, sourcePath: f.file.path,
                    location: adoptsArchivedFiles && status != .quarantined ? f.file.path
                        : destination(in: status == .quarantined ? quarantineFolder : archiveFolder, name: f.file.name, fileID: f.fileID))
    }

    /// A file has been read to its end (or failed): decide its fate.
    private mutating func finish(_ f: inout InFlightFile, _ end: Result<GzipFileSummary, DecodeFailure>) throws {
        let gz: GzipFileSummary
        switch end {
        case .failure(.gzip(let error)):
            if options.kind == .ingest, error.mayBeUnfinished,
               case let age = Date().timeIntervalSince1970 - (f.held?.modified ?? f.file.modified), age < options.settleSeconds {
                if f.streaming { try abortStreaming(&f) }
                unfinished += 1
                logger.warning("""
                    landing file ends early and was modified \(Durations.text(max(0, age))) ago: left for the next run, as it is \
                    probably still being written (producers should write .NAME.tmp and rename it); quarantined if it still \
                    ends early after \(Durations.text(options.settleSeconds))
                    """, metadata: ["file": "\(f.file.name)", "reason": "\(error)"])
                return
            }
            return try quarantine(&f, reason: error.description, sha: nil)
        case .failure(.io(let error)):
            // Not the file's content: leave it in landing, out of the ledger, and go on; the
            // batch ends with exit 74 naming it.
            if f.streaming { try abortStreaming(&f) }
            unreadable.append(error)
            // The first few one by one; the batch's end error sums up the rest.
            if unreadable.count <= BatchRunner.moveWarningsShown {
                logger.warning("cannot read landing file; left in place, and named again at the batch's end (a single run then exits 74; a loop goes on)", metadata: ["file": "\(f.file.name)", "error": "\(error.cause)"])
            }
            return
        case .success(let summary):
            gz = summary
            f.held?.appliedBytes = summary.compressedBytes
        }
        if let failure = f.failure { return try quarantine(&f, reason: failure, sha: gz.sha256) }
        if f.deferred { return try leaveForNextBatch(&f) }
        if let original = try session.appliedFile(sha256: gz.sha256) ?? groupContent[gz.sha256] {
            if f.streaming { try abortStreaming(&f) }
            var e = entry(for: f, status: .duplicateContent, sha: gz.sha256)
            e.duplicateOf = original
            e.reason = "same content as ledger file \(original)"
            try session.record(e)
            planMove(f, to: e.location)
            summary.filesDuplicate += 1
            if options.dryRun { summary.files.append(.init(name: f.file.name, outcome: "duplicate content of ledger file \(original)", lines: 0, hours: [])) }
            logger.info("duplicate content, not applied again", metadata: ["file": "\(f.file.name)", "same_as": "\(original)"])
            filesInChunk += 1
            return
        }
        f.sha256 = gz.sha256
        f.decompressedBytes = gz.decompressedBytes
        if f.streaming {
            try applySlice(&f)
            if let failure = f.failure { return try quarantine(&f, reason: failure, sha: gz.sha256) }
            if f.deferred { return try leaveForNextBatch(&f) }
            try record(&f)
            return
        }
        // Guard against junk partitions before anything of the file is merged.
        switch reserveNewHours(for: f.deliveries, ofFile: &f.newHours) {
        case .reserved: break
        case .tooManyForOneBatch(let overCap): return try quarantine(&f, reason: overCap.description, sha: gz.sha256)
        case .batchFull: return try leaveForNextBatch(&f)
        }
        groupContent[gz.sha256] = f.fileID
        maxEventTime = f.maxEventTime
        groupLines += f.deliveries.count
        group.append(f)
        if groupLines >= BatchRunner.groupLines || group.count >= options.filesPerCommit { try flushGroup() }
    }

    enum HourReservation {
        /// The new hours fit in the batch's cap, and are now planned.
        case reserved
        /// The file alone needs more new hours than any batch may create: quarantined.
        case tooManyForOneBatch(PartitionLimitExceeded)
        /// The file fits in a batch of its own, but not in what is left of this one.
        case batchFull
    }

    /// Counts the partitions these deliveries (of a file whose new hours so far are
    /// `fileHours`) would create against the batch's cap. Checked before anything of them is
    /// merged, so no junk partition is ever created.
    private mutating func reserveNewHours(for deliveries: [PreparedDelivery], ofFile fileHours: inout Set<Int>) -> HourReservation {
        let newHours = session.writer.newHours(in: deliveries)
        fileHours.formUnion(newHours)
        if fileHours.count > options.maxNewPartitions {
            return .tooManyForOneBatch(PartitionLimitExceeded(limit: options.maxNewPartitions, newHours: fileHours))
        }
        let added = newHours.subtracting(plannedHours)
        if plannedHours.count + added.count > options.maxNewPartitions { return .batchFull }
        plannedHours.formUnion(added)
        return .reserved
    }

    /// Leaves a file in landing, out of the ledger, for the next batch (the cap is per batch).
    private mutating func leaveForNextBatch(_ f: inout InFlightFile) throws {
        if f.streaming {
            try abortStreaming(&f)
            logger.info("rolled back the slices of the file applied so far", metadata: ["file": "\(f.file.name)"])
        }
        deferred += 1
        if options.dryRun { summary.files.append(.init(name: f.file.name, outcome: "left for the next batch (--max-new-partitions)", lines: 0, hours: [])) }
        logger.info("left for the next batch: this batch reached --max-new-partitions", metadata: ["file": "\(f.file.name)"])
    }

    /// Undoes a large file's slices: its savepoint, and the hours it had planned.
    private mutating func abortStreaming(_ f: inout InFlightFile) throws {
        try session.abortFile(fileID: f.fileID)
        plannedHours = plannedHoursAtFileStart
    }

    /// Applies a large file's buffered deliveries (and writes its rejected lines) inside its savepoint.
    private mutating func applySlice(_ f: inout InFlightFile) throws {
        guard f.failure == nil && !f.deferred else { return }
        for r in f.rejected {
            try session.reject(fileID: f.fileID, fileName: f.file.name, line: r.line, reason: r.reason, raw: r.raw)
        }
        f.rejected.removeAll(keepingCapacity: true)
        guard !f.deliveries.isEmpty else { return }
        switch reserveNewHours(for: f.deliveries, ofFile: &f.newHours) {
        case .reserved:
            break
        case .tooManyForOneBatch(let overCap):
            f.failure = overCap.description
            f.deliveries.removeAll()
            return
        case .batchFull:
            f.deferred = true
            f.deliveries.removeAll()
            return
        }
        // The slice moves into the merge and is freed on another thread (`ReleaseElsewhere`);
        // the next slice fills a buffer of its own.
        let slice = f.deliveries
        f.deliveries = []
        f.deliveries.reserveCapacity(slice.count)
        let result = try session.writer.applyGroup([(f.fileID, slice)])
        ReleaseElsewhere.shared.release(consume slice)
        f.count(result.outcomes[0], lateFirstArrivals: result.lateFirstArrivals[0])
    }

    /// Merges the waiting group of whole files and records their ledger rows.
    private mutating func flushGroup() throws {
        guard !group.isEmpty else { return }
        try session.begin()
        // The deliveries move out of the group's files, into the merge: freed on another
        // thread once merged (`ReleaseElsewhere`).
        let files = group.map { ($0.fileID, $0.deliveries) }
        for index in group.indices { group[index].deliveries = [] }
        let result = try session.writer.applyGroup(files)
        ReleaseElsewhere.shared.release(consume files)
        for (index, var f) in group.enumerated() {
            f.count(result.outcomes[index], lateFirstArrivals: result.lateFirstArrivals[index])
            try record(&f)
        }
        group.removeAll()
        groupContent.removeAll()
        groupLines = 0
    }

    /// Writes an applied file's ledger row, rejected lines and hours; plans its move.
    private mutating func record(_ f: inout InFlightFile) throws {
        if f.counts.rejected > 0 {
            filesWithRejections += 1
            if f.counts.rejected >= f.counts.read { filesAllRejected += 1 }
            if firstRejection == nil, let r = f.firstRejected { firstRejection = (f.file.name, r.line, r.reason) }
        }
        for r in f.rejected {
            try session.reject(fileID: f.fileID, fileName: f.file.name, line: r.line, reason: r.reason, raw: r.raw)
        }
        var e = entry(for: f, status: .applied, sha: f.sha256)
        e.counts = f.counts
        e.lateEvents = f.lateCount
        if options.dryRun {
            let hours = (session.writer.hoursByFile[f.fileID] ?? []).sorted().map { PartitionHour(hoursSinceEpoch: $0).label }
            summary.files.append(.init(name: f.file.name, outcome: "apply", lines: f.counts.read, hours: hours))
        }
        if f.streaming {
            try session.finishFile(e)
        } else {
            try session.writer.flushFileHours(fileID: e.fileID)
            try session.record(e)
        }
        planMove(f, to: e.location)
        summary.filesApplied += 1
        summary.lines = summary.lines + f.counts
        summary.lateEvents += f.lateCount
        if f.streaming { maxEventTime = f.maxEventTime }
        lags.merge(f.lags)
        delays.merge(f.delays)
        filesInChunk += 1
        bytesInChunk += f.decompressedBytes
    }

    private mutating func quarantine(_ f: inout InFlightFile, reason: String, sha: String?) throws {
        if f.streaming { try abortStreaming(&f) }
        // The content read when the file is held; by name only in a dry run, which holds none.
        let content = try sha ?? f.held.map { try $0.sha256() } ?? (try? FileSystem.sha256(ofFile: f.file.path))
        var e = entry(for: f, status: .quarantined, sha: content ?? "")
        e.reason = reason
        try session.record(e)
        planMove(f, to: e.location)
        summary.filesQuarantined += 1
        summary.quarantined.append(.init(name: f.file.name, reason: reason, location: e.location))
        if options.dryRun { summary.files.append(.init(name: f.file.name, outcome: "quarantine: \(reason)", lines: 0, hours: [])) }
        filesInChunk += 1
        if options.dryRun {
            logger.warning("dry run: would quarantine file", metadata: ["file": "\(f.file.name)", "reason": "\(reason)", "to": "\(e.location)"])
        } else {
            logger.warning("quarantined file: nothing of it was applied; to retry it once repaired, move it back into the landing folder",
                           metadata: ["file": "\(f.file.name)", "reason": "\(reason)", "to": "\(e.location)"])
        }
    }
}

/// A file being received from the decoder: its deliveries with arrival facts, its rejected
/// lines and its running counts.
struct InFlightFile {
    let file: LandingFile
    let fileID: Int64
    let watermarkBefore: Timestamp?
    var maxEventTime: Timestamp?
    var deliveries: [PreparedDelivery] = []
    var rejected: [(line: Int, reason: String, raw: String?)] = []
    /// The file's first rejected line (a sliced file's rejected lines are written and dropped).
    var firstRejected: (line: Int, reason: String)?
    var counts = LineCounts()
    var lateCount = 0
    var lags = DurationHistogram()
    var delays = DurationHistogram()
    var streaming = false
    /// Set when the file must be quarantined (partition cap) although it decoded.
    var failure: String?
    /// Set when the file must wait for the next batch (this batch reached the partition cap).
    var deferred = false
    /// The hours the file's deliveries create (it is quarantined when they exceed the cap).
    var newHours = Set<Int>()
    var sha256 = ""
    var decompressedBytes: Int64 = 0
    /// The file as read, held open until it is archived (set with its last piece).
    var held: HeldLandingFile?

    /// Lines held in memory (deliveries and rejected lines).
    var buffered: Int { deliveries.count + rejected.count }

    init(file: LandingFile, fileID: Int64, watermarkBefore: Timestamp?, maxEventTime: Timestamp?) {
        self.file = file
        self.fileID = fileID
        self.watermarkBefore = watermarkBefore
        self.maxEventTime = maxEventTime
    }

    mutating func absorb(_ lines: consuming [DecodedLine], now: Timestamp) {
        // Taken out of the array one by one (reversed, then popped), so each delivery moves
        // into `deliveries` instead of being copied and the original released.
        var lines = lines
        lines.reverse()
        while let line = lines.popLast() {
            counts.read += 1
            // Once the file is bound for quarantine or the next batch, only count what is left of it.
            if failure != nil || deferred { continue }
            switch consume line {
            case .rejected(let number, let reason, let raw):
                counts.rejected += 1
                if firstRejected == nil { firstRejected = (number, reason) }
                rejected.append((number, reason, raw))
            case .delivery(_, let delivery):
                var late = false
                if let (eventTime, receivedTime) = delivery.recordTimes {
                    if let watermarkBefore, eventTime < watermarkBefore { late = true }
                    // The watermark follows event time up to the ingest clock only: one record
                    // from the future must not make everything after it late.
                    let bounded = min(eventTime, now)
                    if maxEventTime == nil || bounded > maxEventTime! { maxEventTime = bounded }
                    if let received = receivedTime {
                        lags.add(now.secondsSinceEpoch - received.secondsSinceEpoch)
                        delays.add(received.secondsSinceEpoch - eventTime.secondsSinceEpoch)
                    }
                }
                deliveries.append(PreparedDelivery(delivery: delivery, late: late))
            }
        }
    }

    /// Counts the outcomes of the deliveries just merged (same order as `deliveries`), and the
    /// events whose first arrival was late (what `hourly_summary.late_events` counts).
    mutating func count(_ outcomes: [MergeOutcome], lateFirstArrivals: Int) {
        for outcome in outcomes { counts.count(outcome) }
        lateCount += lateFirstArrivals
    }
}
