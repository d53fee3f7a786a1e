import CSQLiteTuning
import Foundation
import GRDB

/// The SQLite store: schema, ledger, partitions, summaries. All of Tidemark's SQL lives in
/// this folder, so that another warehouse (PostgreSQL) can replace it behind the same calls.
///
/// Durability: WAL with `synchronous = FULL`. A commit is on disk before `ingest` moves the
/// file out of the landing folder, so even a power loss right after the move cannot lose a
/// file's events (with `NORMAL`, the last commits could roll back after the file was archived).
///
/// A first load (the ingest or backfill that creates the database) is written without a
/// journal instead, and made durable once, at its end (`finishFirstLoad`): until then it moves
/// no file, and a marker beside the database (`firstLoadMarkerName`) says that the database is
/// not to be trusted, so that a crash costs the load's time and nothing else: the next run
/// removes the incomplete database and loads again. (PostgreSQL skips its WAL in the same case,
/// for a table created in the loading transaction.) The journal is what a large load spends
/// most on after decoding: WAL frames for every page written, then copied again by checkpoints.
public final class Warehouse {
    public static let databaseName = "tidemark.sqlite"
    /// Beside the database while a first load runs, and after it, should it be interrupted.
    static let firstLoadMarkerName = "tidemark.sqlite-loading"
    /// The data folder's folders for files read: applied (one folder per day inside), and
    /// quarantined.
    static let archiveName = "archive", quarantineName = "quarantine"

    static func databasePath(of dataFolder: String) -> String { (dataFolder as NSString).appendingPathComponent(databaseName) }
    /// The database's file and the files SQLite keeps beside it.
    static func sqliteFiles(of databasePath: String) -> [String] { ["", "-journal", "-wal", "-shm"].map { databasePath + $0 } }
    static func archiveFolder(of dataFolder: String) -> String { (dataFolder as NSString).appendingPathComponent(archiveName) }
    static func quarantineFolder(of dataFolder: String) -> String { (dataFolder as NSString).appendingPathComponent(quarantineName) }

    /// The command that applies a data folder's archived files to `target`: the data folder
    /// itself (files its ledger holds are skipped), or a new one (`newDataFolder`). Every
    /// recovery hint spells it through here.
    static func backfillCommand(from dataFolder: String, into target: String) -> String {
        "tidemark backfill --from-dir \(archiveFolder(of: dataFolder)) --data \(target)"
    }

    /// What a hint writes for a data folder the operator picks.
    static let newDataFolder = "NEW_DATA"

    /// Process-wide SQLite settings, applied before the first connection opens.
    private static let tuneSQLiteOnce: Void = {
        _ = tidemark_sqlite_disable_memstatus()
        _ = tidemark_sqlite_multithread()
    }()

    public let dataFolder: String
    public let databasePath: String
    let queue: DatabaseQueue
    private let allowsArchiveWithoutDatabase: Bool
    /// The data folder's id as the database keeps it (`DataFolderIdentity`), read at open.
    private(set) var dataFolderID: String?
    /// Set while this connection writes a first load, without a journal (`finishFirstLoad`).
    private(set) var isFirstLoad = false
    /// Set when opening removed the incomplete database of an interrupted first load.
    private(set) var restartedFirstLoad = false

    static func firstLoadMarker(of dataFolder: String) -> String { (dataFolder as NSString).appendingPathComponent(firstLoadMarkerName) }

    /// The page size of a new database: 32 KiB. A large load sweeps its random-key lookup
    /// tree (`event_index`) once per merge group, far beyond any affordable cache, so SQLite
    /// reads and writes pages all the time: larger pages do the same bytes in a quarter of the
    /// calls of 8 KiB ones. Measured on 1M events: 7 % faster than 8 KiB over five alternating
    /// rounds each (median 3.62 s against 3.90 s); 64 KiB gained a little more on one hour
    /// of data and lost on 28 hours, where the same 8 MiB cache holds fewer pages.
    static let pageSize = 32_768

    /// Opens (and creates or migrates) the database in `dataFolder`.
    /// - Parameters:
    ///   - create: create the folder and database when missing; otherwise a missing database is exit 66.
    ///   - busyTimeout: how long to wait for another connection's write lock before giving up (exit 75).
    ///   - allowsArchiveWithoutDatabase: a missing or empty database beside a non-empty archive
    ///     is refused (the database was lost: a new one would forget those files) unless set,
    ///     as by a backfill of that archive, which is the recovery.
    ///   - firstLoad: a database created here is written without a journal until
    ///     `finishFirstLoad` (the caller moves no file before that, and calls `discardFirstLoad`
    ///     on failure); an interrupted first load's database is removed, to be loaded again.
    ///     Without it, an interrupted first load is refused (busy while it still runs).
    public init(dataFolder: String, create: Bool = true, readOnly: Bool = false, busyTimeout: Double = 5,
                cacheMebibytes: Int = 24, allowsArchiveWithoutDatabase: Bool = false, firstLoad: Bool = false) throws {
        _ = Warehouse.tuneSQLiteOnce
        self.dataFolder = dataFolder
        self.databasePath = Warehouse.databasePath(of: dataFolder)
        self.allowsArchiveWithoutDatabase = allowsArchiveWithoutDatabase
        restartedFirstLoad = try Warehouse.settleFirstLoadMarker(dataFolder, databasePath, writes: create && !readOnly, firstLoad: firstLoad,
                                                                 allowsArchiveWithoutDatabase: allowsArchiveWithoutDatabase)
        if !FileSystem.exists(databasePath) {
            guard create && !readOnly else {
                if FileSystem.exists(dataFolder) && !FileSystem.isFolder(dataFolder) {
                    throw TidemarkError("open data folder", dataFolder, cause: "not a folder (a file is there)",
                                        hint: "pass the data folder (the one holding tidemark.sqlite) as --data", exit: .noInput)
                }
                if Warehouse.archiveHoldsFiles(dataFolder) { throw Warehouse.lostDatabase(dataFolder, databasePath) }
                throw TidemarkError("open database", databasePath, cause: "no such file",
                                    hint: "run 'tidemark ingest --data \(dataFolder)' first, or pass the right --data", exit: .noInput)
            }
            // A missing database beside an archive was lost: a new one would forget every file.
            if Warehouse.archiveHoldsFiles(dataFolder) && !allowsArchiveWithoutDatabase { throw Warehouse.lostDatabase(dataFolder, databasePath) }
            try FileSystem.makeFolder(dataFolder)
            if firstLoad {
                // On disk before the database is: whatever a crash leaves is known for what it is.
                try FileSystem.writeAtomically(Array("""
                    tidemark: the first load into this data folder is running, or was interrupted. While this file is \
                    here, \(Warehouse.databaseName) beside it is incomplete; the next ingest or backfill removes both and loads again.

                    """.utf8), to: Warehouse.firstLoadMarker(of: dataFolder))
                isFirstLoad = true
            }
        }
        var config = Configuration()
        config.busyMode = .timeout(busyTimeout)
        config.readonly = readOnly
        config.label = "tidemark"
        let cacheKiB = cacheMebibytes * 1024
        // Test hook for the disk-full path: cap the database size (SQLite then fails with SQLITE_FULL).
        let maxPages = ProcessInfo.processInfo.environment["TIDEMARK_MAX_PAGE_COUNT"].flatMap(Int.init)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA cache_size = -\(cacheKiB)")
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
            if !db.configuration.readonly {
                try db.execute(sql: "PRAGMA synchronous = FULL")
            }
            if let maxPages { _ = try Int.fetchOne(db, sql: "PRAGMA max_page_count = \(maxPages)") }
        }
        do {
            queue = try DatabaseQueue(path: databasePath, configuration: config)
            if !readOnly {
                // Before anything is written: another program's database is left as it was.
                if let refusal = try queue.read({ try self.notTidemark($0) }) { throw refusal }
                try queue.writeWithoutTransaction { db in
                    // Large pages (`pageSize`). Only takes effect on a new, empty database: an
                    // older one keeps its pages.
                    try db.execute(sql: "PRAGMA page_size = \(Warehouse.pageSize)")
                    // SQLite sized the cache in pages of the old size: a new database's larger
                    // pages would get eight times the memory asked for. Size it again.
                    try db.execute(sql: "PRAGMA cache_size = -\(cacheKiB)")
                    if self.isFirstLoad {
                        // No journal from the start, and no fsync: the load is put on disk once,
                        // at its end. (Leaving WAL mode later would need the only connection to
                        // the file, which a script polling the new database can deny.) Whether
                        // WAL, which `finishFirstLoad` turns on, works here is tried now.
                        try self.probeWAL()
                        try self.setJournalMode("off", db)
                        try db.execute(sql: "PRAGMA synchronous = OFF")
                    } else {
                        try self.setJournalMode("wal", db)
                    }
                }
                try Schema.migrator.migrate(queue)
            } else if try !queue.read({ try Schema.migrator.hasCompletedMigrations($0) }) {
                if let refusal = try queue.read({ try self.notTidemark($0) }) { throw refusal }
                // The first ingest may be creating it (or an upgrade running) right now.
                if JobLock.isHeld(dataFolder: dataFolder) {
                    throw TidemarkError("open database", databasePath, cause: "is being created or upgraded by a job running now",
                                        hint: "retry in a moment", exit: .busy)
                }
                if try queue.read({ try $0.tableExists("grdb_migrations") == false && Int.fetchOne($0, sql: "SELECT COUNT(*) FROM sqlite_master") == 0 }) {
                    throw TidemarkError("open database", databasePath, cause: "is empty: it holds no tidemark table",
                                        hint: "pass the right --data; or restore \(Warehouse.databaseName) from backup", exit: .ioError)
                }
                // Readers never write, so they cannot upgrade an older database themselves.
                throw TidemarkError("open database", databasePath, cause: "written by an earlier version of tidemark and not upgraded yet",
                                    hint: "run 'tidemark ingest' (or backfill or rebuild) once: it upgrades the database before anything else", exit: .ioError)
            }
            // A database copied in from another data folder (its id is not the folder's) is
            // refused by every command: a backfill or rebuild would mix two warehouses.
            dataFolderID = try queue.read { try BatchLog.dataFolderID($0) }
            if let dataFolderID { try DataFolderIdentity.verify(dataFolder: dataFolder, databaseID: dataFolderID) }
        } catch {
            // A first load that could not even open (WAL refused, say) leaves nothing behind.
            if isFirstLoad { try? Warehouse.removeFirstLoad(dataFolder, withDatabase: true) }
            if let error = error as? DatabaseError { throw Warehouse.translate(error, operation: "open database", target: databasePath) }
            throw error
        }
    }

    private func setJournalMode(_ wanted: String, _ db: Database) throws {
        let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = \(wanted)")
        if mode?.lowercased() != wanted {
            if wanted == "wal" {
                throw TidemarkError("open database", databasePath, cause: "cannot switch to WAL journal mode (got \(mode ?? "nothing"))",
                                    hint: "put the data folder on a local, writable file system (WAL needs shared memory beside the file; network file systems often refuse it)", exit: .ioError)
            }
            throw TidemarkError("open database", databasePath, cause: "could not turn the journal off for the first load into this new database (SQLite answered \(mode ?? "nothing"))",
                                hint: "another program has the new database open: retry once it is gone (nothing was loaded)", exit: .ioError)
        }
    }

    /// Whether WAL works in the data folder (it needs shared memory beside the file; network
    /// file systems often refuse it), tried on a scratch database removed after.
    private func probeWAL() throws {
        let probe = (dataFolder as NSString).appendingPathComponent(".tidemark-wal-probe.sqlite")
        defer { for file in Warehouse.sqliteFiles(of: probe) { try? FileSystem.removeFile(file) } }
        let queue = try DatabaseQueue(path: probe)
        try queue.writeWithoutTransaction { db in
            try setJournalMode("wal", db)
            try db.execute(sql: "CREATE TABLE probe (x); INSERT INTO probe VALUES (1)")
        }
        try queue.close()
    }

    /// Whether the database file's header says WAL mode (bytes 18 and 19 are 2). A first
    /// load's database is not in WAL mode until `finishFirstLoad`; a missing or short file is
    /// not either. Read only where this process has no connection to the file yet (closing a
    /// descriptor of it would drop that connection's locks).
    static func isInWALMode(_ databasePath: String) -> Bool {
        let fd = open(databasePath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var versions: [UInt8] = [0, 0]
        return pread(fd, &versions, 2, 18) == 2 && versions == [2, 2]
    }

    /// Ends a first load: the database goes to WAL mode and onto the disk, and then its marker
    /// goes, after which files may leave landing. Outside any transaction; nothing to do for a
    /// database that was not a first load.
    func finishFirstLoad(_ db: Database) throws {
        guard isFirstLoad else { return }
        try db.execute(sql: "PRAGMA synchronous = FULL")
        // Synced here, before WAL mode: between transactions without a journal, SQLite holds no
        // lock on the file, which closing another descriptor of it would drop.
        try FileSystem.syncFile(databasePath)
        try setJournalMode("wal", db)
        try Warehouse.removeFirstLoad(dataFolder, withDatabase: false)
        isFirstLoad = false
    }

    /// Removes a first load that failed, then its marker (kept should the database stay: the
    /// next run removes both): the next run loads again. Closes the connection; the warehouse
    /// is not to be used after.
    func discardFirstLoad() {
        guard isFirstLoad else { return }
        try? queue.close()
        try? Warehouse.removeFirstLoad(dataFolder, withDatabase: true)
        isFirstLoad = false
    }

    /// Whether the data folder holds a first load that has not ended (running, or interrupted):
    /// its marker, beside a database not in WAL mode (`settleFirstLoadMarker` says why).
    static func hasUnfinishedFirstLoad(_ dataFolder: String) -> Bool {
        FileSystem.exists(firstLoadMarker(of: dataFolder)) && !isInWALMode(databasePath(of: dataFolder))
    }

    /// What a first load's marker beside the database means for this open, if there is one.
    /// Beside a database in WAL mode (a first load that ended, stopped before its marker went,
    /// or a marker someone else left), the database is whole: a writer removes the marker.
    /// Otherwise the first load is running or was interrupted: a first load's caller removes
    /// its database and loads again (true), other callers are refused. Beside archived files,
    /// which no first load has, nothing is removed.
    private static func settleFirstLoadMarker(_ dataFolder: String, _ databasePath: String, writes: Bool, firstLoad: Bool,
                                              allowsArchiveWithoutDatabase: Bool) throws -> Bool {
        let marker = firstLoadMarker(of: dataFolder)
        guard FileSystem.exists(marker) else { return false }
        if isInWALMode(databasePath) {
            if writes { try removeFirstLoad(dataFolder, withDatabase: false) }
            return false
        }
        guard writes && firstLoad else {
            if JobLock.isHeld(dataFolder: dataFolder) {
                throw TidemarkError("open database", databasePath, cause: "is being created by the first load into this data folder, running now",
                                    hint: "retry once it has ended (a first load is written in one go, and shows nothing before it ends)", exit: .busy)
            }
            throw TidemarkError("open database", databasePath, cause: "is incomplete: the first load into this data folder was interrupted (\(marker) says so)",
                                hint: "run the interrupted command again (tidemark ingest, or the backfill, with --data \(dataFolder)): it removes the incomplete database and loads again (the interrupted run had moved no file)", exit: .noInput)
        }
        if archiveHoldsFiles(dataFolder) && !allowsArchiveWithoutDatabase {
            throw TidemarkError("open database", databasePath, cause: "cannot tell whether it is complete: \(marker) marks it as an interrupted first load, but the archive holds files, which no first load has; nothing was removed",
                                hint: "move \(marker) aside and run tidemark validate --data \(dataFolder): if it passes, the database is whole; if not, " + recovery(dataFolder), exit: .ioError)
        }
        try removeFirstLoad(dataFolder, withDatabase: true)
        return true
    }

    /// Removes the first load's marker, after the database and SQLite's files beside it when
    /// `withDatabase` (the marker stays should they not go: the next run removes them all),
    /// and syncs the folder, so that the marker's absence lasts.
    private static func removeFirstLoad(_ dataFolder: String, withDatabase: Bool) throws {
        if withDatabase {
            for file in sqliteFiles(of: databasePath(of: dataFolder)) { try FileSystem.removeFile(file) }
        }
        try FileSystem.removeFile(firstLoadMarker(of: dataFolder))
        try FileSystem.syncFolderChecked(dataFolder)
    }

    /// Why this database cannot be tidemark's, if so: tables but none of tidemark's (another
    /// program's database), or no table at all while the archive holds files a database
    /// recorded (the database was lost and created anew, or emptied). A new data folder has no
    /// archive yet.
    private func notTidemark(_ db: Database) throws -> TidemarkError? {
        guard try !db.tableExists("grdb_migrations") else { return nil }
        if try (Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'") ?? 0) > 0 {
            return TidemarkError("open database", databasePath, cause: "holds tables, but none of tidemark's: another program's database?",
                                 hint: "pass the right --data; " + Warehouse.recovery(dataFolder), exit: .ioError)
        }
        return !allowsArchiveWithoutDatabase && Warehouse.archiveHoldsFiles(dataFolder) ? Warehouse.lostDatabase(dataFolder, databasePath) : nil
    }

    private static func lostDatabase(_ dataFolder: String, _ databasePath: String) -> TidemarkError {
        TidemarkError("open database", databasePath, cause: "is missing or empty, but \(dataFolder)/archive holds files a database recorded: the database was lost or replaced, and starting anew would forget them",
                      hint: Warehouse.recovery(dataFolder),
                      exit: .noInput)
    }

    /// How to get a database back: rebuilt in place from the archive (the landing folder goes
    /// on feeding this data folder), or restored from backup.
    /// Files in quarantine are named too: a ledger rebuilt from the archive does not know
    /// them, so status and validate no longer list them.
    static func recovery(_ dataFolder: String) -> String {
        var text = "rebuild it in place from the archive: \(backfillCommand(from: dataFolder, into: dataFolder)); or restore \(Warehouse.databaseName) from backup (validate then names archived files the backup had not recorded)"
        let quarantine = Warehouse.quarantineFolder(of: dataFolder)
        if let names = try? FileManager.default.contentsOfDirectory(atPath: quarantine), case let held = names.filter({ !$0.hasPrefix(".") }), !held.isEmpty {
            text += "; a ledger rebuilt from the archive does not know the \(plural(held.count, "file")) in \(quarantine): to retry \(held.count == 1 ? "it, move it" : "them, move them") back into landing"
        }
        return text
    }

    /// Whether the data folder's archive holds at least one file.
    static func archiveHoldsFiles(_ dataFolder: String) -> Bool {
        !archivedDataFiles(dataFolder).isEmpty
    }

    /// The files in the data folder's archive that hold data, at any depth: exactly what a
    /// backfill of it reads (`LandingFolder.scan`), not a note someone left there.
    static func archivedDataFiles(_ dataFolder: String) -> [String] {
        let archive = Warehouse.archiveFolder(of: FileSystem.absolutePath(dataFolder))
        guard FileSystem.isFolder(archive), let scan = try? LandingFolder.scan(archive, recursive: true) else { return [] }
        return scan.files.map(\.path)
    }

    /// The fewest gzip bytes a new event is taken to need when a batch's events are estimated
    /// from its landing bytes (`mapForReading`); the producer's files hold about 50.
    static let fewestGzipBytesPerEvent: Int64 = 8

    /// Has SQLite read the database through a memory map, instead of copying every page it
    /// reads into freshly allocated page-cache memory, and returns whether it does. A small
    /// batch into a large database reads about one lookup leaf per event (a 1,000-event batch
    /// into the 1M-event database: 825 pages, 27 MB), and those copies and page faults are most
    /// of what history costs it. Only a batch whose new events cannot fill the recent lookup
    /// tree (`recentEntries` now, one event per `fewestGzipBytesPerEvent` of `landingBytes`:
    /// at most 512 KiB into an empty recent tree, about ten of the producer's files) is mapped:
    /// a larger batch, or the fold of a full recent tree, sweeps the whole large tree, and every
    /// mapped page touched would count in the RSS. (Should more events fit in those bytes, a
    /// fold reads through the map: RSS, not correctness.) A mapped page that cannot be read is
    /// reported by the kernel as SIGBUS, which SQLite cannot catch: until `endMapping`, that
    /// fault ends this process with the report the caller prepared (`fault`), as a crash would
    /// (what was committed stays). Without one, nothing is mapped.
    public func mapForReading(_ db: Database, landingBytes: Int64, recentEntries: Int, fault: MappedReadFault?) throws -> Bool {
        guard let fault, recentEntries + Int(landingBytes / Warehouse.fewestGzipBytesPerEvent) < MergeWriter.recentIndexCapacity
        else { return false }
        guard fault.arm(database: databasePath, dataFolder: dataFolder) else { return false }
        do {
            // SQLite's own ceiling on Linux (SQLITE_MAX_MMAP_SIZE): a larger database maps its first 2 GiB.
            try db.execute(sql: "PRAGMA mmap_size = 2147418112")
        } catch {
            MappedReadFault.disarm()
            throw error
        }
        return true
    }

    /// Ends `mapForReading`: the map is released and SIGBUS has its action from before again.
    public func endMapping(_ db: Database) {
        try? db.execute(sql: "PRAGMA mmap_size = 0")
        MappedReadFault.disarm()
    }

    /// Runs `body` on the connection outside any transaction; the body manages transactions.
    public func withConnection<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try queue.writeWithoutTransaction(body)
        } catch let error as DatabaseError {
            throw Warehouse.translate(error, operation: "write database", target: databasePath)
        }
    }

    /// Reads in a deferred transaction (a consistent snapshot under WAL).
    public func read<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try queue.read(body)
        } catch let error as DatabaseError {
            throw Warehouse.translate(error, operation: "read database", target: databasePath)
        }
    }

    /// Turns SQLite errors into errors with the documented exit codes and a hint.
    /// (`TidemarkError.describing` does so for any error a job can throw.)
    public static func translate(_ error: DatabaseError, operation: String, target: String) -> TidemarkError {
        switch error.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return TidemarkError(operation, target, cause: "database is locked by another connection",
                                 hint: "another process holds a write lock; retry later", exit: .busy)
        case .SQLITE_CONSTRAINT:
            return TidemarkError(operation, target, cause: "the database contradicts itself: \(error.message ?? "constraint failed") (the transaction was rolled back)",
                                 hint: "run 'tidemark validate' to find the inconsistency, then 'tidemark rebuild' the hours it names", exit: .ioError)
        case .SQLITE_FULL:
            return TidemarkError(operation, target, cause: "disk full (the transaction was rolled back)",
                                 hint: "free space on the data folder's file system (not by deleting archive/: rebuild and validate need every file there), then rerun: nothing was half-applied", exit: .ioError)
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return TidemarkError(operation, target, cause: "database file is corrupt: \(error.message ?? "")",
                                 hint: "move the damaged file aside, then " + Warehouse.recovery(FileSystem.parentFolder(of: target) ?? "DATA"), exit: .ioError)
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_CANTOPEN:
            // Readers too write beside the database: SQLite's WAL keeps its index in a
            // shared-memory file (tidemark.sqlite-shm) that every connection maps read-write.
            return TidemarkError(operation, target, cause: error.message ?? "cannot open the database",
                                 hint: "every command, the readers too, needs write access to the data folder and its tidemark.sqlite* files (SQLite's WAL keeps a shared-memory file there): run as the user that runs ingest, or remount the file system read-write; a full disk gives this too",
                                 exit: .ioError)
        case .SQLITE_IOERR:
            return TidemarkError(operation, target, cause: error.message ?? "I/O error",
                                 hint: "check permissions and free space of the data folder", exit: .ioError)
        default:
            // A partition table dropped by hand: rebuild restores it from the archive.
            if let message = error.message, let range = message.range(of: "no such table: events_") {
                let table = String(message[range.lowerBound...].dropFirst("no such table: ".count).prefix(while: { $0.isNumber || $0 == "_" || $0.isLetter }))
                let hour = PartitionHour.fromTableName(table).map { " --hour \($0)" } ?? " --all"
                return TidemarkError(operation, target, cause: "\(message) (code \(error.resultCode.rawValue)): a partition table is missing",
                                     hint: "run 'tidemark rebuild\(hour)' to restore it from the archived files, then rerun", exit: .ioError)
            }
            return TidemarkError(operation, target, cause: "\(error.message ?? "SQLite error") (code \(error.resultCode.rawValue))", exit: .ioError)
        }
    }
}

extension Database {
    /// Whether a table exists (partition tables are created on demand).
    func tableExistsFast(_ name: String) throws -> Bool {
        try Int.fetchOne(self, sql: "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", arguments: [name]) != nil
    }
}

/// The event lookup is two B-trees keyed by event_id: `event_index_recent`, small, takes the
/// new events of small batches (a few dirty pages per batch), and `event_index`, large, holds
/// the rest. An event_id is in one of them, never both. Both have the same shape (migrations v3
/// and v4 create them), so that a fold moves entries as they are.
enum EventLookup {
    /// Moves every recent entry into `event_index`, in key order (inside the caller's
    /// transaction). `OR FAIL` spares SQLite a statement journal, which would copy every page
    /// the fold touches into memory: a conflict (an event in both trees) fails the whole
    /// transaction anyway. Rebuild, which is how such a contradiction is repaired, folds with
    /// `overwriting`: the recent entry replaces the other, and rebuilding the hours validate
    /// names sets the entry right whichever one was wrong.
    static func foldRecent(_ db: Database, overwriting: Bool = false) throws {
        let conflict = overwriting ? "ON CONFLICT (event_id) DO UPDATE SET hour = excluded.hour, row_id = excluded.row_id" : ""
        try db.execute(sql: """
            INSERT OR FAIL INTO event_index (event_id, hour, row_id) SELECT event_id, hour, row_id FROM event_index_recent WHERE true ORDER BY event_id \(conflict);
            DELETE FROM event_index_recent;
            """)
    }
}

extension TidemarkError {
    /// An error as a command reports it, when it is one of tidemark's own, the store's (named
    /// `operation` `database`) or the file system's; nil for any other.
    static func describing(_ error: Error, operation: String = "write database", database: String) -> TidemarkError? {
        switch error {
        case let e as TidemarkError: return e
        case let e as DatabaseError: return Warehouse.translate(e, operation: operation, target: database)
        case let e as FileSystemError: return TidemarkError(e.operation, e.path, cause: e.cause, hint: e.hint, exit: .ioError)
        default: return nil
        }
    }
}
