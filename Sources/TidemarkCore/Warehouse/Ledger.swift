import GRDB

/// A row of `ingested_files`, the processed-files ledger.
public struct LedgerEntry: Sendable, Equatable {
    public enum Status: String, Sendable, Codable {
        case applied
        case duplicateContent = "duplicate_content"
        case quarantined
    }

    public var fileID: Int64
    public var name: String
    public var size: Int64
    public var sha256: String
    public var status: Status
    public var reason: String?
    public var duplicateOf: Int64?
    public var batchID: Int64
    public var counts: LineCounts
    public var lateEvents: Int
    public var watermarkBefore: Timestamp?
    public var ingestedAt: Timestamp
    public var sourcePath: String
    /// Where the file lies now (archive or quarantine path).
    public var location: String
}

/// What happened to the lines of one file. Read = new + updated + duplicate + stale + deleted + rejected.
public struct LineCounts: Sendable, Equatable, Codable {
    public var read = 0
    public var new = 0
    public var updated = 0
    public var duplicate = 0
    public var stale = 0
    public var deletedByFlag = 0
    public var deletedByTombstone = 0
    public var rejected = 0

    public init() {}

    public var deleted: Int { deletedByFlag + deletedByTombstone }
    public var accountedFor: Int { new + updated + duplicate + stale + deleted + rejected }

    mutating func count(_ outcome: MergeOutcome) {
        switch outcome {
        case .new: new += 1
        case .updated: updated += 1
        case .duplicate: duplicate += 1
        case .stale: stale += 1
        case .deletedByFlag: deletedByFlag += 1
        case .deletedByTombstone: deletedByTombstone += 1
        }
    }

    static func + (a: LineCounts, b: LineCounts) -> LineCounts {
        var c = LineCounts()
        c.read = a.read + b.read
        c.new = a.new + b.new
        c.updated = a.updated + b.updated
        c.duplicate = a.duplicate + b.duplicate
        c.stale = a.stale + b.stale
        c.deletedByFlag = a.deletedByFlag + b.deletedByFlag
        c.deletedByTombstone = a.deletedByTombstone + b.deletedByTombstone
        c.rejected = a.rejected + b.rejected
        return c
    }
}

/// SQL of the ledger.
enum Ledger {
    /// Every place the ledger records this content at (`currentPath` of each row).
    static func locations(sha256: String, dataFolder: String, _ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT location FROM ingested_files WHERE sha256 = ? ORDER BY file_id", arguments: [sha256])
            .map { currentPath(of: $0, dataFolder: dataFolder) }
    }

    /// Where the ledger says a file with this content lies, whatever its status (backfill's
    /// already-ingested check, once per source file: indexed by `ingested_files_content`). A
    /// rerun of a backfill must change nothing, quarantined content included; a quarantined file
    /// is retried by putting it back into the landing folder.
    static func location(sha256: String, dataFolder: String, _ db: Database) throws -> String? {
        try String.fetchOne(db, sql: "SELECT location FROM ingested_files WHERE sha256 = ? ORDER BY file_id LIMIT 1", arguments: [sha256])
            .map { currentPath(of: $0, dataFolder: dataFolder) }
    }

    /// Where a location the ledger recorded is now. Ingest records `DATA/archive/DAY/NAME` or
    /// `DATA/quarantine/NAME`, with DATA as that run named it: relative to the directory it ran
    /// from, perhaps, or before the data folder was moved or restored elsewhere. Readers take
    /// the part under the data folder and join it to `dataFolder`, the one this command was
    /// given. Only when no file is there, the location as recorded is used, if it is
    /// absolute, holds a file, and is not inside another data folder (an operator moved the
    /// archive to other storage and rewrote the rows; a copy of this data folder next to the
    /// original must not read the original's files). A location of any other shape is
    /// returned as it is.
    static func currentPath(of location: String, dataFolder: String) -> String {
        let parts = location.split(separator: "/")
        let tail: ArraySlice<Substring>
        if parts.count >= 3 && parts[parts.count - 3] == Warehouse.archiveName {
            tail = parts.suffix(3)
        } else if parts.count >= 2 && parts[parts.count - 2] == Warehouse.quarantineName {
            tail = parts.suffix(2)
        } else {
            return location
        }
        let folder = FileSystem.absolutePath(dataFolder)
        let joined = (folder == "/" ? "" : folder) + "/" + tail.joined(separator: "/")
        guard !FileSystem.exists(joined), location.hasPrefix("/"), FileSystem.exists(location) else { return joined }
        let recordedFolder = "/" + parts.dropLast(tail.count).joined(separator: "/")
        return FileSystem.exists(recordedFolder + "/" + Warehouse.databaseName) ? joined : location
    }

    /// Where an applied file's bytes can be read: its archived copy, or, while its move is
    /// pending (a batch between commit and move, or one that died there), the original path
    /// when it still holds the same content. Nil when neither does.
    static func readablePath(location: String, sourcePath: String, sha256: String) -> String? {
        if FileSystem.exists(location) { return location }
        if FileSystem.exists(sourcePath), (try? FileSystem.sha256(ofFile: sourcePath)) == sha256 { return sourcePath }
        return nil
    }

    static func nextFileID(_ db: Database) throws -> Int64 {
        (try Int64.fetchOne(db, sql: "SELECT MAX(file_id) FROM ingested_files") ?? 0) + 1
    }

    static func insert(_ e: LedgerEntry, _ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO ingested_files (file_id, name, size, sha256, status, reason, duplicate_of, batch_id,
                lines_read, lines_new, lines_updated, lines_duplicate, lines_stale, lines_deleted, lines_rejected,
                late_events, watermark_before, ingested_at, source_path, location)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [
                e.fileID, e.name, e.size, e.sha256, e.status.rawValue, e.reason, e.duplicateOf, e.batchID,
                e.counts.read, e.counts.new, e.counts.updated, e.counts.duplicate, e.counts.stale, e.counts.deleted,
                e.counts.rejected, e.lateEvents, e.watermarkBefore?.rfc3339, e.ingestedAt.rfc3339, e.sourcePath, e.location,
            ])
    }

    /// The applied file with this content, if any.
    static func appliedFile(sha256: String, _ db: Database) throws -> Int64? {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT file_id FROM ingested_files WHERE sha256 = ? AND status = 'applied'"),
                           arguments: [sha256])
    }

    /// A ledger row as a landing file's leftover check needs it.
    struct Recorded {
        var fileID: Int64
        var sha256: String
        var location: String
        var status: String
        var size: Int64

        /// From a row of `Recorded.columns`, its location as given (`currentPath` maps a stored one).
        init(_ row: Row, location: String) {
            fileID = row[0]
            sha256 = row[1]
            self.location = location
            status = row[3]
            size = row[4]
        }

        static let columns = "file_id, sha256, location, status, size"
    }

    /// Ledger rows recorded under this name (candidates for a leftover whose move to the archive
    /// was interrupted, or for the start of a file that grew after it was read).
    static func entries(name: String, sizeAtMost size: Int64, dataFolder: String, _ db: Database) throws -> [Recorded] {
        try Row.fetchAll(db.cachedStatement(sql: "SELECT \(Recorded.columns) FROM ingested_files WHERE name = ? AND size <= ?"),
                         arguments: [name, size]).map { Recorded($0, location: currentPath(of: $0[2], dataFolder: dataFolder)) }
    }

    /// Applied files that wrote rows but that `file_hours` names for no hour (rows of it deleted
    /// by hand, say): rebuild reads an hour's files from that index, so it would take their rows
    /// for strays. A file whose deletions all wait for their events (pending tombstones) names no
    /// hour yet, rightly. Name order, at most `limit`, with how many there are.
    static func filesMissingFromHourIndex(limit: Int, _ db: Database) throws -> (count: Int, files: [(name: String, fileID: Int64)]) {
        let from = """
            FROM ingested_files f
            WHERE f.status = 'applied'
              AND (f.lines_new + f.lines_updated > 0
                   OR (f.lines_deleted > 0 AND f.file_id NOT IN (SELECT file_id FROM pending_tombstones)))
              AND f.file_id NOT IN (SELECT file_id FROM file_hours)
            """
        let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) \(from)") ?? 0
        guard count > 0 else { return (0, []) }
        return (count, try Row.fetchAll(db, sql: "SELECT f.name, f.file_id \(from) ORDER BY f.file_id LIMIT \(limit)").map { ($0[0], $0[1]) })
    }

    /// Hours the file index names that have no partition (in `scope` when given), with how many
    /// files name each: every hour a file's deliveries touched keeps its table and partition row,
    /// so such an hour was dropped (its table, partition row and summary deleted by hand).
    static func indexedHoursWithoutPartition(in scope: ClosedRange<PartitionHour>?, _ db: Database) throws -> [(hour: String, files: Int)] {
        let range = scope.map { " AND hour BETWEEN '\($0.lowerBound.label)' AND '\($0.upperBound.label)'" } ?? "" // labels are built from integers
        return try Row.fetchAll(db, sql: """
            SELECT hour, COUNT(*) FROM file_hours WHERE hour NOT IN (SELECT hour FROM partitions)\(range) GROUP BY hour ORDER BY hour
            """).map { ($0[0], $0[1]) }
    }

    /// Applied (or duplicate) files among the last `last` recorded, recorded at `since` or later,
    /// with their locations as stored: the ones whose archived copy may still grow (a producer
    /// writing in place, through a descriptor it kept, after the file was moved).
    static func recentlyArchived(last: Int, since: String, _ db: Database) throws -> [(name: String, recorded: Recorded)] {
        try Row.fetchAll(db, sql: """
            SELECT \(Recorded.columns), name FROM ingested_files
            WHERE file_id > (SELECT COALESCE(MAX(file_id), 0) FROM ingested_files) - ? AND ingested_at >= ?
              AND status IN ('applied', 'duplicate_content')
            """, arguments: [last, since]).map { ($0[5], Recorded($0, location: $0[2])) }
    }

    /// Whether a ledger row names this location (as stored: the path it was given).
    static func names(location: String, _ db: Database) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM ingested_files WHERE location = ?)"), arguments: [location]) ?? false
    }

    /// The start of the `reason` of an applied file that grew after it was read.
    static let grewReason = "grew while read"

    /// Notes on a file's ledger row (after any reason it has) that it grew after it was read (a
    /// producer still writing it in place): its archived copy holds the bytes read (or, when
    /// that copy could not be written, will: `archived` false), and the whole file stayed in
    /// landing.
    static func noteGrown(fileID: Int64, appliedBytes: Int64, nowBytes: Int64, archived: Bool, _ db: Database) throws {
        let copy = archived ? "the archive holds the \(appliedBytes) bytes read"
            : "the \(appliedBytes) bytes read could not be archived yet (a later run archives them from the file's start)"
        try db.execute(sql: "UPDATE ingested_files SET reason = COALESCE(reason || '; ', '') || ? WHERE file_id = ?", arguments: [
            "\(grewReason): \(copy); the file (\(nowBytes) bytes by then) stayed in landing", fileID,
        ])
    }

    /// Whether a file grew while an earlier run read it: the ledger file `fileID` (a capture
    /// name carries it), else the last file recorded under this name (once the file is read
    /// whole, a later file of that name is not held back).
    static func grewBefore(name: String, fileID: Int64?, _ db: Database) throws -> Bool {
        let pattern = "%" + grewReason + "%"
        if let fileID {
            return try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM ingested_files WHERE file_id = ? AND reason LIKE ?)",
                                     arguments: [fileID, pattern]) ?? false
        }
        return try Bool.fetchOne(db, sql: "SELECT COALESCE(reason LIKE ?, 0) FROM ingested_files WHERE name = ? ORDER BY file_id DESC LIMIT 1",
                                 arguments: [pattern, name]) ?? false
    }

    static func entries(fileID: Int64, dataFolder: String, _ db: Database) throws -> [Recorded] {
        try Row.fetchAll(db, sql: "SELECT \(Recorded.columns) FROM ingested_files WHERE file_id = ?",
                         arguments: [fileID]).map { Recorded($0, location: currentPath(of: $0[2], dataFolder: dataFolder)) }
    }

    /// Quarantined files that were retried: a later ledger row has their name (put back, as
    /// the README says, repaired or not), or their content was applied. Such a quarantine is
    /// settled once its quarantined copy is gone (`quarantineIsSettled`).
    static func retriedQuarantines(_ db: Database) throws -> Set<Int64> {
        Set(try Int64.fetchAll(db, sql: """
            SELECT q.file_id FROM ingested_files q WHERE q.status = 'quarantined' AND (
                EXISTS (SELECT 1 FROM ingested_files l WHERE l.name = q.name AND l.file_id > q.file_id)
                OR EXISTS (SELECT 1 FROM ingested_files a WHERE a.sha256 = q.sha256 AND a.status = 'applied'))
            """))
    }

    /// The one rule for a quarantine that needs no more attention: retried, and its quarantined
    /// copy taken away (a name merely used again by a later file does not settle it).
    static func quarantineIsSettled(fileID: Int64, location: String, retried: Set<Int64>) -> Bool {
        retried.contains(fileID) && !FileSystem.exists(location)
    }

    static func insertRejected(fileID: Int64, fileName: String, line: Int, reason: String, raw: String?, batchID: Int64, _ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO rejected_lines (file_id, file_name, line_number, reason, raw_text, batch_id) VALUES (?, ?, ?, ?, ?, ?)
            """).execute(arguments: [fileID, fileName, line, reason, raw, batchID])
    }

}
