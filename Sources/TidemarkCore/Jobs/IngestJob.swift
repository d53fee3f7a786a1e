import Foundation
import GRDB
import Logging

/// Settings of one ingest (or backfill) run.
public struct IngestOptions: Sendable {
    public var landingFolder: String
    public var dataFolder: String
    /// Process at most this many files (the rest wait for the next run).
    public var maxFiles: Int?
    /// Decode and merge everything, report, then roll back and move nothing.
    public var dryRun = false
    /// Allowed lateness behind the watermark, in seconds.
    public var allowedLateness: Double = 30
    /// Decompression guard per file (gzip bombs).
    public var maxFileOutputBytes: Int64 = 1 << 30
    /// Partitions one batch may create; a file that would exceed it is quarantined.
    public var maxNewPartitions = 1000
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
    public static func run(_ options: IngestOptions, logger: Logger) throws -> BatchSummary {
        let lock = try JobLock(dataFolder: options.dataFolder, job: options.kind.rawValue)
        defer { withExtendedLifetime(lock) {} }
        let warehouse = try Warehouse(dataFolder: options.dataFolder, busyTimeout: options.busyTimeout)
        let scan = try LandingFolder.scan(options.landingFolder)
        for skipped in scan.skipped {
            logger.info("skipping landing entry", metadata: ["file": "\(skipped.name)", "reason": "\(skipped.reason)"])
        }
        var files = scan.files
        if let since = options.modifiedSince { files = files.filter { $0.modified >= since } }
        if let until = options.modifiedUntil { files = files.filter { $0.modified < until } }
        if let maxFiles = options.maxFiles, files.count > maxFiles { files = Array(files.prefix(maxFiles)) }
        let started = options.clock()
        let wallStart = Date()
        return try warehouse.withConnection { db in
            var runner = try BatchRunner(options: options, db: db, logger: logger, dataFolder: options.dataFolder, started: started)
            do {
                try runner.process(files)
                var summary = runner.summary
                summary.backlogFiles = scan.files.count - files.count
                summary.backlogBytes = scan.totalBytes - files.reduce(0) { $0 + $1.size }
                summary.finishedAt = options.clock().rfc3339
                summary.durationSeconds = Date().timeIntervalSince(wallStart)
                if !options.dryRun {
                    summary.partitionsTouched = runner.session.touchedHours.sorted().map { PartitionHour(hoursSinceEpoch: $0).label }
                    let recomputed = try BatchBookkeeping.finish(summary, db).map(\.label)
                    // A crashed earlier batch may have left more hours to recompute than this one touched.
                    summary.partitionsTouched = Array(Set(summary.partitionsTouched).union(recomputed)).sorted()
                }
                logger.info("\(summary.oneLine)")
                return summary
            } catch {
                runner.abandon(error)
                throw error
            }
        }
    }
}

/// The body of one batch; holds the session and the running counts.
struct BatchRunner {
    let options: IngestOptions
    let db: Database
    let logger: Logger
    let session: IngestSession
    let archiveFolder: String
    let quarantineFolder: String
    var summary = BatchSummary()
    var nextFileID: Int64
    var maxEventTime: Timestamp?
    var lags: [Float] = []
    var delays: [Float] = []
    /// Moves to do once the current transaction has committed.
    var pendingMoves: [(fileID: Int64, from: String, to: String)] = []
    var filesInChunk = 0
    var bytesInChunk: Int64 = 0
    let now: Timestamp
    let parser: EventLineParser

    init(options: IngestOptions, db: Database, logger: Logger, dataFolder: String, started: Timestamp) throws {
        self.options = options
        self.db = db
        self.logger = logger
        now = started
        parser = EventLineParser(now: started)
        archiveFolder = (dataFolder as NSString).appendingPathComponent("archive/" + String(started.rfc3339.prefix(10)))
        quarantineFolder = (dataFolder as NSString).appendingPathComponent("quarantine")
        let batchID: Int64
        if options.dryRun {
            try db.execute(sql: "BEGIN IMMEDIATE")
            batchID = try BatchLog.start(kind: options.kind.rawValue, startedAt: started, db)
        } else {
            batchID = try BatchBookkeeping.start(kind: options.kind.rawValue, at: started, db)
        }
        session = try IngestSession(db: db, batchID: batchID, maxNewPartitions: options.maxNewPartitions,
                                    alreadyInTransaction: options.dryRun)
        nextFileID = try Ledger.nextFileID(db)
        maxEventTime = try BatchBookkeeping.maxEventTime(db)
        summary.batchID = batchID
        summary.kind = options.kind.rawValue
        summary.dryRun = options.dryRun
        summary.startedAt = started.rfc3339
    }

    mutating func process(_ files: [LandingFile]) throws {
        var filesDone = 0
        var bytesDone: Int64 = 0
        let totalBytes = files.reduce(0) { $0 + $1.size }
        for file in files {
            if StopSignal.requested {
                logger.notice("stop requested: ending the batch after the files already applied")
                break
            }
            try processFile(file)
            filesDone += 1
            bytesDone += file.size
            options.progress?(IngestProgress(filesDone: filesDone, filesTotal: files.count, bytesDone: bytesDone,
                                             bytesTotal: totalBytes, events: summary.lines.read))
            if filesInChunk >= options.filesPerCommit || bytesInChunk >= options.bytesPerCommit {
                try commitChunk()
            }
        }
        if options.dryRun {
            try session.flushWithoutCommit()
            summary.partitionsTouched = session.touchedHours.sorted().map { PartitionHour(hoursSinceEpoch: $0).label }
            session.rollback()
            pendingMoves.removeAll()
        } else {
            try commitChunk()
        }
        summary.tombstonesPending = session.pendingTombstones
        summary.partitionsCreated = session.writer.createdHours.count
        summary.lag = BatchSummary.Percentiles(lags)
        summary.eventDelay = BatchSummary.Percentiles(delays)
        summary.watermark = maxEventTime.map { ($0 + -options.allowedLateness).rfc3339 }
        summary.status = options.dryRun ? "dry-run" : "succeeded"
    }

    mutating func commitChunk() throws {
        if let maxEventTime, session.inTransaction { try BatchBookkeeping.setMaxEventTime(maxEventTime, db) }
        try session.commit()
        filesInChunk = 0
        bytesInChunk = 0
        FaultPoint.hit("after-commit")
        for move in pendingMoves {
            do {
                try place(from: move.from, to: move.to)
            } catch {
                // The ledger already says where the file belongs; the next run finishes the move.
                logger.warning("could not move file after commit; the next run will retry",
                               metadata: ["file": "\(move.from)", "error": "\(error)"])
            }
        }
        pendingMoves.removeAll()
    }

    func abandon(_ error: Error) {
        session.rollback()
        if options.dryRun { return }
        BatchBookkeeping.fail(batchID: summary.batchID, error: "\(error)", db)
    }

    /// Moves (ingest) or copies (backfill) a file to its archive or quarantine place.
    private func place(from source: String, to destination: String) throws {
        try FileSystem.makeFolder((destination as NSString).deletingLastPathComponent)
        if options.kind == .backfill {
            if !FileSystem.exists(destination) { try FileSystem.copy(source, to: destination) }
        } else {
            try FileSystem.move(source, to: destination)
        }
    }

    private func destination(in folder: String, name: String, fileID: Int64) -> String {
        let plain = (folder as NSString).appendingPathComponent(name)
        if !FileSystem.exists(plain) && !pendingMoves.contains(where: { $0.to == plain }) { return plain }
        return (folder as NSString).appendingPathComponent("\(fileID)-\(name)")
    }

    /// A landing file whose ledger row committed but whose move did not happen (crash in
    /// between): finish the move. Returns true when the file was such a leftover.
    private mutating func healLeftover(_ file: LandingFile) throws -> Bool {
        let candidates = try session.ledgerEntries(name: file.name, size: file.size)
        guard !candidates.isEmpty else { return false }
        let sha = try FileSystem.sha256(ofFile: file.path)
        guard let match = candidates.first(where: { $0.sha256 == sha }) else { return false }
        if options.kind == .backfill { return true }
        if options.dryRun { return true }
        if FileSystem.exists(match.location), (try? FileSystem.sha256(ofFile: match.location)) == sha {
            guard unlink(file.path) == 0 else { throw FileSystemError("remove", file.path) }
        } else {
            try place(from: file.path, to: match.location)
        }
        summary.filesHealed += 1
        logger.info("finished an interrupted archive move", metadata: ["file": "\(file.name)", "to": "\(match.location)"])
        return true
    }

    private mutating func processFile(_ file: LandingFile) throws {
        if options.kind == .backfill {
            // Backfill leaves its source alone and identifies files by content only: a file
            // already in the ledger is skipped (a rerun changes nothing), after finishing its
            // archive copy if a killed run left that undone.
            if let known = try session.ledgerLocation(sha256: FileSystem.sha256(ofFile: file.path)) {
                if !options.dryRun && !FileSystem.exists(known) { try place(from: file.path, to: known) }
                summary.filesSkipped += 1
                return
            }
        } else if try healLeftover(file) {
            return
        }
        let fileID = nextFileID
        nextFileID += 1
        let watermarkBefore = maxEventTime.map { $0 + -options.allowedLateness }
        var counts = LineCounts()
        var lateCount = 0
        var fileMaxEventTime = maxEventTime
        var fileLags: [Float] = []
        var fileDelays: [Float] = []
        try session.beginFile()
        let reader = GzipLineReader(path: file.path, maxOutputBytes: options.maxFileOutputBytes)
        let session = self.session
        let parser = self.parser
        let now = self.now
        var entry = LedgerEntry(
            fileID: fileID, name: file.name, size: file.size, sha256: "", status: .applied, reason: nil,
            duplicateOf: nil, batchID: summary.batchID, counts: counts, lateEvents: 0, watermarkBefore: watermarkBefore,
            ingestedAt: now, sourcePath: file.path, location: "")
        do {
            let gz = try reader.forEachLine { number, content in
                counts.read += 1
                switch content {
                case .overlong(let length):
                    counts.rejected += 1
                    try session.reject(fileID: fileID, fileName: file.name, line: number,
                                       reason: "line is longer than 1 MiB (\(length) bytes)", raw: nil)
                case .bytes(let bytes):
                    switch parser.parse(bytes) {
                    case .failure(let rejection):
                        if rejection.reason == "empty line" {
                            counts.read -= 1 // blank lines are not records
                            return
                        }
                        counts.rejected += 1
                        let raw = String(decoding: bytes.prefix(4096), as: UTF8.self)
                        try session.reject(fileID: fileID, fileName: file.name, line: number, reason: rejection.reason, raw: raw)
                    case .success(let delivery):
                        var late = false
                        if case .record(let record) = delivery {
                            if let watermarkBefore, record.eventTime < watermarkBefore { late = true }
                            if fileMaxEventTime == nil || record.eventTime > fileMaxEventTime! { fileMaxEventTime = record.eventTime }
                            if let received = record.receivedTime {
                                fileLags.append(Float(now.secondsSinceEpoch - received.secondsSinceEpoch))
                                fileDelays.append(Float(received.secondsSinceEpoch - record.eventTime.secondsSinceEpoch))
                            }
                        }
                        let outcome = try session.apply(delivery, late: late, fileID: fileID)
                        if late && (outcome == .new || outcome == .updated) { lateCount += 1 }
                        counts.count(outcome)
                    }
                }
                if number == 1 { FaultPoint.hit("mid-file") }
            }
            entry.sha256 = gz.sha256
            if let original = try session.appliedFile(sha256: gz.sha256) {
                try session.abortFile(fileID: fileID)
                entry.status = .duplicateContent
                entry.duplicateOf = original
                entry.reason = "same content as ledger file \(original)"
                entry.counts = LineCounts()
                entry.watermarkBefore = nil
                entry.location = destination(in: archiveFolder, name: file.name, fileID: fileID)
                try session.record(entry)
                pendingMoves.append((fileID, file.path, entry.location))
                summary.filesDuplicate += 1
                if options.dryRun { summary.files.append(.init(name: file.name, outcome: "duplicate content of ledger file \(original)", lines: 0, hours: [])) }
                logger.info("duplicate content, not applied again", metadata: ["file": "\(file.name)", "same_as": "\(original)"])
            } else {
                entry.counts = counts
                entry.lateEvents = lateCount
                entry.location = destination(in: archiveFolder, name: file.name, fileID: fileID)
                try session.finishFile(entry)
                if options.dryRun {
                    let hours = (session.writer.hoursByFile[fileID] ?? []).sorted().map { PartitionHour(hoursSinceEpoch: $0).label }
                    summary.files.append(.init(name: file.name, outcome: "apply", lines: counts.read, hours: hours))
                }
                pendingMoves.append((fileID, file.path, entry.location))
                summary.filesApplied += 1
                summary.lines = summary.lines + counts
                summary.lateEvents += lateCount
                maxEventTime = fileMaxEventTime
                lags.append(contentsOf: fileLags)
                delays.append(contentsOf: fileDelays)
            }
            filesInChunk += 1
            bytesInChunk += gz.decompressedBytes
        } catch let error as GzipError {
            try quarantine(file, fileID: fileID, entry: entry, reason: error.description, sha: nil)
        } catch let error as PartitionLimitExceeded {
            try quarantine(file, fileID: fileID, entry: entry, reason: error.description, sha: nil)
        } catch let error as FileSystemError {
            try session.abortFile(fileID: fileID)
            throw TidemarkError("read", file.path, cause: error.cause, hint: "check the file's permissions", exit: .ioError)
        }
    }

    private mutating func quarantine(_ file: LandingFile, fileID: Int64, entry: LedgerEntry, reason: String, sha: String?) throws {
        try session.abortFile(fileID: fileID)
        var entry = entry
        entry.status = .quarantined
        entry.reason = reason
        entry.counts = LineCounts()
        entry.sha256 = (try? FileSystem.sha256(ofFile: file.path)) ?? ""
        entry.location = destination(in: quarantineFolder, name: file.name, fileID: fileID)
        try session.record(entry)
        pendingMoves.append((fileID, file.path, entry.location))
        summary.filesQuarantined += 1
        if options.dryRun { summary.files.append(.init(name: file.name, outcome: "quarantine: \(reason)", lines: 0, hours: [])) }
        summary.quarantined.append(.init(name: file.name, reason: reason, location: entry.location))
        filesInChunk += 1
        logger.warning("quarantined file", metadata: ["file": "\(file.name)", "reason": "\(reason)"])
    }
}
