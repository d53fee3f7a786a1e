import Foundation

/// Which data folder a landing folder feeds: `LANDING/.tidemark-data-folder` names the data
/// folder's id (kept in its database) and, for people, its path. Written by the first ingest
/// from the landing folder; a later ingest into another data folder (a mistyped `--data`, an
/// unset `TIDEMARK_DATA` under cron, which would start a new warehouse and move every waiting
/// file into it) is refused. A copy, move or restore of the data folder keeps its id; a
/// database rebuilt in place keeps its path.
/// Scans skip dot-files, so the file is never taken for data.
public enum LandingClaim {
    public static let fileName = ".tidemark-data-folder"

    /// Checks the claim, and records it when there is none (or the data folder moved).
    /// `dataFolderID` is nil for a data folder with no database yet.
    static func check(landingFolder: String, dataFolder: String, dataFolderID: String?, record: Bool) throws {
        let path = (landingFolder as NSString).appendingPathComponent(fileName)
        let here = FileSystem.resolvedPath(dataFolder) ?? FileSystem.absolutePath(dataFolder)
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let claimedID = lines.first ?? "", claimedPath = lines.count > 1 ? lines[1] : "?"
            // The same data folder by id (moved, copied, restored) or by place (its database
            // rebuilt by a backfill of its archive, which makes a new id).
            guard claimedID == dataFolderID || claimedPath == here else {
                throw TidemarkError("ingest", landingFolder, cause: "this landing folder feeds the data folder \(claimedPath) (\(path)), not \(here): a second data folder would start anew and take the files",
                                    hint: "pass --data \(claimedPath) (or set TIDEMARK_DATA); to move ingestion to \(here) for good, remove \(path)",
                                    exit: .usage)
            }
            if (claimedPath == here && claimedID == dataFolderID) || !record { return }
        } else if !record {
            return
        }
        guard let dataFolderID else { return }
        try FileSystem.writeAtomically(Array("\(dataFolderID)\n\(here)\n".utf8), to: path)
    }
}
