import Foundation

/// A data folder's identity: `DATA/.tidemark-id`, a random id written by the first ingest, also
/// kept in the database. It stays with the folder when it is moved, copied or has its database
/// restored or rebuilt in place; a folder without it (a new one, an empty mount point whose disk
/// did not mount) is not the one a landing folder feeds. A database whose id differs is
/// another data folder's (copied in by mistake) and is refused.
enum DataFolderIdentity {
    static let fileName = ".tidemark-id"

    static func read(dataFolder: String) -> String? {
        (try? String(contentsOfFile: (dataFolder as NSString).appendingPathComponent(fileName), encoding: .utf8))
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Throws when the database's id (`databaseID`) is not the folder's: another data
    /// folder's database, copied in by mistake.
    static func verify(dataFolder: String, databaseID: String) throws {
        guard let id = read(dataFolder: dataFolder), id != databaseID else { return }
        let path = Warehouse.databasePath(of: dataFolder)
        throw TidemarkError("open database", path, cause: "belongs to another data folder (its id \(databaseID) is not \(id), the one in \(fileName)): copied here from elsewhere?",
                            hint: "put back this data folder's own database (from its backup); if this database is meant to be the folder's from now on, remove \((dataFolder as NSString).appendingPathComponent(fileName))",
                            exit: .usage)
    }

    static func write(_ id: String, dataFolder: String) throws {
        try FileSystem.writeAtomically(Array("\(id)\n".utf8), to: (dataFolder as NSString).appendingPathComponent(fileName))
    }
}

/// Which data folder a landing folder feeds: `LANDING/.tidemark-data-folder` names the data
/// folder's id (`DataFolderIdentity`) and, for people, its path. Written by the first ingest
/// from the landing folder. A later ingest into another data folder (a mistyped `--data`, an
/// unset `TIDEMARK_DATA` under cron, an empty mount point whose disk did not mount: each would
/// start a new warehouse and move every waiting file into it), or into a copy of the data
/// folder while the original still exists, is refused. A moved data folder goes on.
/// Scans skip dot-files, so the file is never taken for data.
public enum LandingClaim {
    public static let fileName = ".tidemark-data-folder"

    private static func read(landingFolder: String) -> (id: String, path: String)? {
        guard let text = try? String(contentsOfFile: (landingFolder as NSString).appendingPathComponent(fileName), encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return (lines.first ?? "", lines.count > 1 ? lines[1] : "?")
    }

    /// Binds the landing folder to the data folder, reading each file once: the folder's id is
    /// its `.tidemark-id`, else `storedID` (its database's), else, for a folder with neither
    /// whose database exists (one from before ids were kept in a file, its database rebuilt in
    /// place), the id of a claim naming its place. Refusals come before anything is written;
    /// with `record`, the id file and the claim are then written where missing or moved.
    /// Returns the id for a database that has none yet (nil: nothing to store).
    static func bind(landingFolder: String, dataFolder: String, storedID: String?, databaseExists: Bool, record: Bool) throws -> String? {
        let here = FileSystem.canonicalPath(dataFolder)
        let claim = read(landingFolder: landingFolder)
        let fileID = DataFolderIdentity.read(dataFolder: dataFolder)
        let adopted = databaseExists && storedID == nil && fileID == nil && claim?.path == here ? claim?.id : nil
        let known = fileID ?? storedID ?? adopted
        let claimCurrent = try check(claim, landingFolder: landingFolder, here: here, dataFolderID: known)
        guard record else { return nil }
        let id = known ?? UUID().uuidString.lowercased()
        if fileID == nil { try DataFolderIdentity.write(id, dataFolder: dataFolder) }
        if !claimCurrent {
            try FileSystem.writeAtomically(Array("\(id)\n\(here)\n".utf8), to: (landingFolder as NSString).appendingPathComponent(fileName))
        }
        return storedID == nil ? id : nil
    }

    /// Refuses a claim naming another data folder (`dataFolderID` nil: one with no identity
    /// yet); returns whether the claim names this one as it is (nothing to write).
    private static func check(_ claim: (id: String, path: String)?, landingFolder: String, here: String, dataFolderID: String?) throws -> Bool {
        guard let (claimedID, claimedPath) = claim else { return false }
        let path = (landingFolder as NSString).appendingPathComponent(fileName)
        let move = "to move ingestion to \(here) for good, remove \(path)"
        guard claimedID == dataFolderID else {
            let unmounted = claimedPath == here && dataFolderID == nil
            let which = unmounted
                ? "but \(here) has no \(DataFolderIdentity.fileName) now: an empty folder where it was (its disk not mounted?), or the file removed"
                : "\(here) is another one (or that folder's disk is not mounted, or its \(DataFolderIdentity.fileName) is gone)"
            throw TidemarkError("ingest", landingFolder, cause: "this landing folder feeds the data folder \(claimedPath) (\(path)); \(which): a second data folder would start anew and take the files",
                                hint: unmounted
                                    ? "mount the data folder's disk (or put back its \(DataFolderIdentity.fileName)), then rerun; \(move)"
                                    : "pass --data \(claimedPath) (or set TIDEMARK_DATA); \(move)", exit: .usage)
        }
        if claimedPath == here { return true }
        // The same folder under another spelling (a bind mount, a symlink made later).
        let idFile = { (folder: String) in (folder as NSString).appendingPathComponent(DataFolderIdentity.fileName) }
        if FileSystem.sameFile(idFile(claimedPath), idFile(here)) { return true }
        // The same id somewhere else: a move (the old place is gone) or a copy (it is not).
        if DataFolderIdentity.read(dataFolder: claimedPath) == claimedID {
            throw TidemarkError("ingest", landingFolder, cause: "\(here) is a copy of the data folder \(claimedPath), which this landing folder feeds and which still exists: one landing folder feeds one data folder",
                                hint: "ingest into \(claimedPath); if the copy is to take over, remove or rename the original first (or \(move))", exit: .usage)
        }
        return false
    }

    /// The file that marks an archive day folder or the quarantine folder.
    static let partMarker = ".tidemark-archive-folder"

    /// Marks a folder of a data folder's archive or quarantine (once; a failure only loses the
    /// mark, which the path checks back up).
    static func markDataFolderPart(_ folder: String) {
        let path = (folder as NSString).appendingPathComponent(partMarker)
        guard !FileSystem.exists(path) else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        if fd >= 0 { close(fd) }
    }

    /// Refuses a landing folder that is a data folder, or lies in one's archive or quarantine
    /// (this one's or any other's: a mistyped `--landing`), before anything moves: ingest would
    /// take each archived file for a landed copy and remove it.
    static func refuseInsideDataFolder(landingFolder: String, dataFolder: String) throws {
        let landing = FileSystem.canonicalPath(landingFolder)
        if FileSystem.exists((landing as NSString).appendingPathComponent(partMarker)) {
            throw TidemarkError("ingest", landingFolder, cause: "the landing folder is a data folder's archive or quarantine folder (it holds \(partMarker)), reached under another path: ingest would move the files there onto themselves",
                                hint: "point --landing (or TIDEMARK_LANDING) at the folder the producer writes to; to apply archived files again use 'tidemark backfill'",
                                exit: .usage)
        }
        var candidates = [FileSystem.canonicalPath(dataFolder)]
        var ancestor = landing
        while true {
            if FileSystem.exists(Warehouse.databasePath(of: ancestor))
                || FileSystem.exists((ancestor as NSString).appendingPathComponent(DataFolderIdentity.fileName)) {
                candidates.append(ancestor)
            }
            if ancestor == "/" || ancestor.isEmpty { break }
            ancestor = (ancestor as NSString).deletingLastPathComponent
        }
        for data in candidates {
            let parts = [Warehouse.archiveFolder(of: data), Warehouse.quarantineFolder(of: data)]
            if landing == data || parts.contains(where: { FileSystem.isSameOrInside(landing, $0) }) {
                // Backfill is named only where there are archived files to apply again (not
                // for a new data folder given as --landing too).
                let archived = Warehouse.archiveHoldsFiles(data)
                throw TidemarkError("ingest", landingFolder, cause: "the landing folder is the data folder \(data) or lies in its archive or quarantine: ingest would move the files there onto themselves",
                                    hint: "point --landing (or TIDEMARK_LANDING) at the folder the producer writes to"
                                        + (archived ? "; to apply archived files again use '\(Warehouse.backfillCommand(from: data, into: data))'" : ""),
                                    exit: .usage)
            }
        }
    }
}
