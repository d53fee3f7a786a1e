import Foundation

/// Files written on request (`report --html`, `--metrics-file`, `demo --html`): never one of
/// the files tidemark keeps, however the path is spelled. A tab-completed
/// `--html DATA/tidemark.sqlite` would otherwise replace the database with a web page, exit 0.
public enum OutputFile {
    /// The marker and lock files tidemark keeps beside data (wherever they lie: the landing
    /// and sent-log folders have some): the data folder's id, the landing folder's claim, an
    /// archive or quarantine folder's mark, the producer's lock and its in-flight marker.
    static let markerNames: Set<String> = [DataFolderIdentity.fileName, LandingClaim.fileName, LandingClaim.partMarker,
                                           Producer.lockName, Producer.markerName]

    /// Why `path` must not be written for `flag` beside the data folder `dataFolder`, if so: it
    /// is the database (or its log, lock, id or first-load marker), lies in the archive or the
    /// quarantine, or is named like a landing file or a tidemark marker file, which no output
    /// of tidemark is.
    public static func refusal(_ path: String, flag: String, dataFolder: String) -> TidemarkError? {
        let target = FileSystem.canonicalPath(path)
        let data = FileSystem.canonicalPath(dataFolder)
        let name = (target as NSString).lastPathComponent
        let database = Warehouse.databasePath(of: data)
        // Where SQLite keeps its log: beside the database file itself, should that be a link.
        let realDatabase = FileSystem.canonicalPath(database)
        let kept = [database, realDatabase].flatMap(Warehouse.sqliteFiles(of:))
            + [(data as NSString).appendingPathComponent(JobLock.fileName), (data as NSString).appendingPathComponent(DataFolderIdentity.fileName),
               Warehouse.firstLoadMarker(of: data)]
        let why: String?
        if kept.contains(target) || FileSystem.sameFile(path, database) {
            why = "is a file tidemark keeps in the data folder (its database, the database's log, lock, id or first-load marker): writing it would destroy it"
        } else if FileSystem.isSameOrInside(target, Warehouse.archiveFolder(of: data))
                    || FileSystem.isSameOrInside(target, Warehouse.quarantineFolder(of: data)) {
            why = "lies in the data folder's archive or quarantine, which hold the raw files the ledger names: writing there would replace one"
        } else if LandingFolder.suffixes.contains(where: { name.hasSuffix($0) }) || OutputFile.markerNames.contains(name) {
            why = "is named like a landing file or a tidemark marker file, which no output of tidemark is: writing it could replace data not ingested yet"
        } else {
            why = nil
        }
        return why.map {
            TidemarkError(flag, path, cause: $0, hint: "nothing was written; pass a path outside the data folder's files, such as report.html or tidemark.prom", exit: .usage)
        }
    }
}
