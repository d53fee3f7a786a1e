import Foundation
import GRDB
import GRDBSQLite

/// One batch's writes: transactions in chunks of files, a savepoint per file (a file is
/// applied whole or not at all), the merge writer, the ledger row committed with the file's
/// effects.
final class IngestSession {
    let db: Database
    let batchID: Int64
    let writer: MergeWriter
    private var snapshot: MergeWriter.Snapshot?
    private(set) var touchedHours: Set<Int> = []
    private(set) var inTransaction = false

    /// The data folder this run was given: ledger locations are read relative to it.
    let dataFolder: String
    init(db: Database, dataFolder: String, batchID: Int64, maxNewPartitions: Int, alreadyInTransaction: Bool = false) throws {
        self.db = db
        self.dataFolder = dataFolder
        self.batchID = batchID
        self.writer = try MergeWriter(db: db, batchID: batchID, maxNewPartitions: maxNewPartitions)
        self.inTransaction = alreadyInTransaction
    }

    /// Opens a write transaction (`BEGIN IMMEDIATE`: fails fast with busy rather than
    /// deadlocking on upgrade).
    func begin() throws {
        guard !inTransaction else { return }
        try db.execute(sql: "BEGIN IMMEDIATE")
        inTransaction = true
    }

    func beginFile() throws {
        try begin()
        try db.execute(sql: "SAVEPOINT file")
        snapshot = writer.snapshot()
    }

    func reject(fileID: Int64, fileName: String, line: Int, reason: String, raw: String?) throws {
        try Ledger.insertRejected(fileID: fileID, fileName: fileName, line: line, reason: reason, raw: raw, batchID: batchID, db)
    }

    /// Undoes everything the current file did, in SQLite and in memory.
    func abortFile(fileID: Int64) throws {
        try db.execute(sql: "ROLLBACK TO file")
        try db.execute(sql: "RELEASE file")
        if let snapshot { writer.restore(snapshot, droppingFile: fileID) }
        snapshot = nil
    }

    /// Records the ledger row together with the file's effects.
    func finishFile(_ entry: LedgerEntry) throws {
        if entry.status == .applied { try writer.flushFileHours(fileID: entry.fileID) }
        try Ledger.insert(entry, db)
        try db.execute(sql: "RELEASE file")
        snapshot = nil
    }

    /// A ledger row for a file whose content was not applied (duplicate or quarantined).
    func record(_ entry: LedgerEntry) throws {
        try begin()
        try Ledger.insert(entry, db)
    }

    func appliedFile(sha256: String) throws -> Int64? { try Ledger.appliedFile(sha256: sha256, db) }
    /// The ledger rows of a name no larger than `size` (the `ingested_files_name` index).
    func ledgerEntries(name: String, sizeAtMost size: Int64) throws -> [Ledger.Recorded] {
        try Ledger.entries(name: name, sizeAtMost: size, dataFolder: dataFolder, db)
    }
    func noteGrown(fileID: Int64, appliedBytes: Int64, nowBytes: Int64, archived: Bool) throws {
        try Ledger.noteGrown(fileID: fileID, appliedBytes: appliedBytes, nowBytes: nowBytes, archived: archived, db)
    }
    func grewBefore(name: String, fileID: Int64?) throws -> Bool { try Ledger.grewBefore(name: name, fileID: fileID, db) }
    func ledgerNames(location: String) throws -> Bool { try Ledger.names(location: location, db) }
    func recentlyArchived(last: Int, since: String) throws -> [(name: String, recorded: Ledger.Recorded)] {
        try Ledger.recentlyArchived(last: last, since: since, db)
    }
    func ledgerEntries(fileID: Int64) throws -> [Ledger.Recorded] {
        try Ledger.entries(fileID: fileID, dataFolder: dataFolder, db)
    }
    /// Where the ledger says a file with this content lies, if it has one.
    func ledgerLocation(sha256: String) throws -> String? {
        try Ledger.location(sha256: sha256, dataFolder: dataFolder, db)
    }

    /// Whether the ledger records this content at `path` (of this data folder).
    func ledgerRecords(sha256: String, at path: String) throws -> Bool {
        let here = (Ledger.currentPath(of: path, dataFolder: dataFolder) as NSString).standardizingPath
        return try Ledger.locations(sha256: sha256, dataFolder: dataFolder, db).contains { ($0 as NSString).standardizingPath == here }
    }

    /// Commits; `beforeCommit` runs in the transaction, once the hours touched are counted.
    func commit(beforeCommit: () throws -> Void = {}) throws {
        guard inTransaction else { return }
        touchedHours.formUnion(try writer.flushPartitions())
        try beforeCommit()
        FaultPoint.hit("before-commit")
        try db.execute(sql: "COMMIT")
        inTransaction = false
    }

    func rollback() {
        guard inTransaction else { return }
        try? db.execute(sql: "ROLLBACK")
        inTransaction = false
    }

    /// Flushes partition counts without committing (dry runs).
    func flushWithoutCommit() throws {
        touchedHours.formUnion(try writer.flushPartitions())
    }

    var pendingTombstones: Int { writer.pendingTombstoneCount }
}

/// Batch bookkeeping outside the per-file transactions.
enum BatchBookkeeping {
    static func start(kind: String, at time: Timestamp, _ db: Database) throws -> Int64 {
        var id: Int64 = 0
        try db.inTransaction(.immediate) {
            try BatchLog.markAbandoned(db)
            id = try BatchLog.start(kind: kind, startedAt: time, db)
            return .commit
        }
        return id
    }

    /// Closes the batch row, then checkpoints the write-ahead log.
    static func finish(_ summary: BatchSummary, counted: [String: Int] = [:], _ db: Database) throws {
        try db.inTransaction(.immediate) {
            try BatchLog.finish(summary, counted: counted, db)
            return .commit
        }
        checkpoint(db)
    }

    /// Copies the write-ahead log into the database and empties it, so that the next run
    /// (and every reader) opens a small WAL instead of scanning a large one. If a reader
    /// holds an old snapshot the checkpoint does what it can; the next batch finishes it.
    static func checkpoint(_ db: Database) {
        // TRUNCATE waits for readers through the busy handler: without this, one `status` or
        // `validate` reading meanwhile would hold every batch up for the whole busy timeout.
        sqlite3_busy_timeout(db.sqliteConnection, 0)
        defer {
            if case .timeout(let seconds) = db.configuration.busyMode { sqlite3_busy_timeout(db.sqliteConnection, CInt(seconds * 1000)) }
        }
        _ = try? Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
    }

    static func fail(batchID: Int64, error: String, _ db: Database) {
        try? db.inTransaction(.immediate) {
            try BatchLog.fail(batchID: batchID, error: error, db)
            return .commit
        }
    }

    static func maxEventTime(_ db: Database) throws -> Timestamp? {
        guard let value = try BatchLog.state("max_event_time", db), let text = String.fromDatabaseValue(value) else { return nil }
        return try? Timestamp.parse(text).get()
    }

    static func setMaxEventTime(_ time: Timestamp, _ db: Database) throws {
        try BatchLog.setState("max_event_time", time.rfc3339, db)
    }
}
