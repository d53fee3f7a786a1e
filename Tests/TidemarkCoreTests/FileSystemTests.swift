import Foundation
import GRDB
import Testing
@testable import TidemarkCore

@Suite struct FileSystemTests {
    @Test func relativeFoldersWorkFromTheCommandLine() throws {
        // Cron jobs often run with relative --landing/--data from their working directory.
        let f = TestFolder()
        let run = try Binary.run(["ingest", "--landing", "landing", "--data", "data"], cwd: f.root)
        #expect(FileSystem.isFolder(f.root + "/data"))
        try FileManager.default.createDirectory(atPath: f.root + "/rel/landing", withIntermediateDirectories: true)
        let nested = try Binary.run(["ingest", "--landing", "rel/landing", "--data", "rel/data"], cwd: f.root)
        #expect(nested.status == 0, "\(nested.stderr)")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(FileSystem.isFolder(f.root + "/rel/data"))
        // Messages name folders in full, whatever the directory the command ran in.
        for command in [["status", "--data", "nowhere"], ["rebuild", "--all", "--data", "nowhere"], ["validate", "--data", "nowhere"]] {
            let missing = try Binary.run(command, cwd: f.root)
            #expect(missing.status == 66 && missing.stderr.contains("\(f.root)/nowhere"), "\(command[0]): \(missing.stderr)")
        }
    }

    /// The archive move never takes a file put under the name after it was read: the content
    /// read is written from the descriptor held open, and the other file stays. A file still
    /// under its name is captured inside landing first (`captured-<id>-NAME`, a name the next
    /// run heals by its id), then moved. Across file systems, too.
    @Test func retiringALandingFileNeverTakesTheFilePutUnderItsName() throws {
        let f = TestFolder()
        let path = f.land("1.ndjson.gz", [recordLine("read", time: "2025-07-30T10:00:00Z")])
        let readBytes = try FileSystem.readAll(path)
        let same = try HeldLandingFile(opening: path)
        #expect(same.isNamed(by: path) && same.size == Int64(readBytes.count))
        #expect(try LandingRetirement.archive(same, fileID: 7, from: path, to: f.root + "/moved.gz") == .moved)
        #expect(try FileSystem.readAll(f.root + "/moved.gz") == readBytes && !FileSystem.exists(path))
        #expect(!FileSystem.exists(LandingRetirement.capturePath(for: path, fileID: 7)))

        // Another file put under the name after the read: left alone, the content read archived.
        f.land("1.ndjson.gz", [recordLine("read", time: "2025-07-30T10:00:00Z")])
        let held = try HeldLandingFile(opening: path)
        let newer = f.land(".newer.tmp", [recordLine("newer", time: "2025-07-30T10:00:00Z")])
        let newerBytes = try FileSystem.readAll(newer)
        #expect(rename(newer, path) == 0)
        #expect(!held.isNamed(by: path))
        #expect(try LandingRetirement.archive(held, fileID: 8, from: path, to: f.root + "/archived.gz") == .replaced(keptAs: path))
        #expect(try FileSystem.readAll(f.root + "/archived.gz") == readBytes)
        #expect(try FileSystem.readAll(path) == newerBytes)

        // Removing (a leftover already archived) leaves the other file alone too.
        #expect(try LandingRetirement.remove(held, fileID: 8, from: path) == .replaced(keptAs: path))
        #expect(try FileSystem.readAll(path) == newerBytes)
        let newerHeld = try HeldLandingFile(opening: path)
        #expect(try LandingRetirement.remove(newerHeld, fileID: 9, from: path) == .moved && !FileSystem.exists(path))
        #expect(try LandingRetirement.remove(newerHeld, fileID: 9, from: path) == .vanished)
        #expect(try LandingRetirement.archive(held, fileID: 8, from: path, to: f.root + "/vanished.gz") == .vanished)
        #expect(try FileSystem.readAll(f.root + "/vanished.gz") == readBytes)

        // Capture names carry the file id; no other name does.
        #expect(LandingRetirement.capturePath(for: "/l/a.ndjson.gz", fileID: 12) == "/l/captured-12-a.ndjson.gz")
        #expect(LandingRetirement.capturedFileID("captured-12-a.ndjson.gz") == 12)
        #expect(LandingRetirement.capturedFileID("captured--a.ndjson.gz") == nil && LandingRetirement.capturedFileID("a.ndjson.gz") == nil)
        let longest = String(repeating: "n", count: 255 - ".jsonl.gz".count) + ".jsonl.gz"
        #expect(LandingRetirement.capturePath(for: "/l/" + longest, fileID: 12) == "/l/captured-12.jsonl.gz")
        #expect(LandingRetirement.capturedFileID("captured-12.jsonl.gz") == 12)

        // Across file systems (tmpfs), when this machine has one beside the temporary folder.
        var here = stat(), shm = stat()
        try #require(stat(f.root, &here) == 0)
        guard stat("/dev/shm", &shm) == 0, here.st_dev != shm.st_dev else { return }
        let elsewhere = "/dev/shm/tidemark-test-\(UUID().uuidString).gz"
        defer { unlink(elsewhere) }
        f.land("2.ndjson.gz", [recordLine("read", time: "2025-07-30T10:00:00Z")])
        let crossing = try HeldLandingFile(opening: f.landing + "/2.ndjson.gz")
        #expect(try LandingRetirement.archive(crossing, fileID: 10, from: f.landing + "/2.ndjson.gz", to: elsewhere) == .moved)
        #expect(try FileSystem.readAll(elsewhere) == readBytes && !FileSystem.exists(f.landing + "/2.ndjson.gz"))
        #expect(try f.landingEntries().isEmpty)
    }

    /// A permission, read-only, full-disk or device failure says what to do (tests run as root,
    /// so the causes are built here rather than met); other causes carry no hint.
    @Test func permissionAndReadOnlyFailuresCarryAHint() {
        let denied = FileSystemError("create folder", "/srv/data", errno: EACCES)
        #expect(denied.hint?.hasPrefix("tidemark runs as ") == true && denied.hint?.contains("give it access to that path") == true)
        #expect(ErrorReport.describe(denied).hint == denied.hint)
        #expect(FileSystemError("rename", "/srv/data/x", errno: EROFS).hint?.contains("mounted read-only") == true)
        #expect(FileSystemError("write", "/srv/data/x", errno: ENOSPC).hint == "free space on that file system, then rerun")
        #expect(FileSystemError("read", "/srv/data/x", errno: EIO).hint?.contains("dmesg") == true)
        #expect(FileSystemError("read", "/srv/data/x", errno: ENAMETOOLONG).hint == nil)
    }

    /// The archive is found wherever the data folder is named from: validate and rebuild run
    /// from another directory than ingest did (which gave a relative --data), and after the
    /// data folder was moved, and a ledger row recorded relative to another directory (as
    /// earlier versions did) still leads to its file.
    @Test func theArchiveIsFoundFromAnyDirectoryAndAfterTheDataFolderMoves() throws {
        let f = TestFolder()
        try FileManager.default.createDirectory(atPath: f.root + "/a/landing", withIntermediateDirectories: true)
        f.land("1.ndjson.gz", [recordLine("e1", time: "2025-07-30T10:00:00Z")], folder: f.root + "/a/landing")
        f.land("2.ndjson.gz", [recordLine("e2", time: "2025-07-30T11:00:00Z")], folder: f.root + "/a/landing")
        #expect(try Binary.run(["ingest", "--landing", "landing", "--data", "data"], cwd: f.root + "/a").status == 0)
        let elsewhere = try Binary.run(["validate", "--data", f.root + "/a/data", "--replay"], cwd: f.root)
        #expect(elsewhere.status == 0, "\(elsewhere.stdout)")
        // A copy of the data folder beside the live one never reads the live one's files: a file
        // missing from the copy is reported missing, though it still lies at the recorded path.
        try FileManager.default.copyItem(atPath: f.root + "/a/data", toPath: f.root + "/copy")
        let day = try #require(try FileManager.default.contentsOfDirectory(atPath: f.root + "/copy/archive").first)
        try FileManager.default.removeItem(atPath: f.root + "/copy/archive/\(day)/1.ndjson.gz")
        let copy = try Binary.run(["validate", "--data", f.root + "/copy"])
        #expect(copy.status == 1 && copy.stdout.contains("archived copy \(f.root)/copy/archive/\(day)/1.ndjson.gz is missing"), "\(copy.stdout)")
        try FileManager.default.moveItem(atPath: f.root + "/a", toPath: f.root + "/b")
        let moved = try Binary.run(["validate", "--data", f.root + "/b/data", "--replay"])
        #expect(moved.status == 0, "\(moved.stdout)")
        let rebuilt = try Binary.run(["rebuild", "--data", f.root + "/b/data", "--all"])
        #expect(rebuilt.status == 0 && rebuilt.stdout.contains("unchanged"), "\(rebuilt.stdout)\(rebuilt.stderr)")
        // A row recorded relative to the directory its ingest ran from.
        let database = f.root + "/b/data/tidemark.sqlite"
        let queue = try DatabaseQueue(path: database)
        try queue.write { db in
            try db.execute(sql: "UPDATE ingested_files SET location = 'data/archive/' || substr(location, length(location) - length(name) - 10)")
        }
        let old = try queue.read { try String.fetchAll($0, sql: "SELECT location FROM ingested_files ORDER BY file_id") }
        #expect(old.allSatisfy { $0.hasPrefix("data/archive/") }, "\(old)")
        try queue.close()
        let relative = try Binary.run(["validate", "--data", f.root + "/b/data", "--replay"])
        #expect(relative.status == 0, "\(relative.stdout)")
        // The database file elsewhere (a faster disk), symlinked into the data folder: the archive
        // is still found beside the link, in the data folder the command names.
        try FileManager.default.createDirectory(atPath: f.root + "/ssd", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: database, toPath: f.root + "/ssd/t.sqlite")
        try FileManager.default.createSymbolicLink(atPath: database, withDestinationPath: f.root + "/ssd/t.sqlite")
        let linked = try Binary.run(["validate", "--data", f.root + "/b/data", "--replay"])
        #expect(linked.status == 0, "\(linked.stdout)")
        #expect(try Binary.run(["rebuild", "--data", f.root + "/b/data", "--all", "--dry-run"]).status == 0)
        // The archive moved to other storage, outside any data folder, its rows rewritten: the
        // recorded paths are read there.
        try FileManager.default.moveItem(atPath: f.root + "/b/data/archive", toPath: f.root + "/cold")
        let cold = try DatabaseQueue(path: database)
        try cold.write { db in
            try db.execute(sql: "UPDATE ingested_files SET location = ? || substr(location, length('data/archive') + 1)", arguments: [f.root + "/cold"])
        }
        try cold.close()
        let coldRun = try Binary.run(["validate", "--data", f.root + "/b/data", "--replay"])
        #expect(coldRun.status == 0, "\(coldRun.stdout)")
    }

    /// One rule names a file while it is written (`.NAME.tmp` beside it) and reads it back.
    @Test func temporaryNamesSitBesideTheFile() {
        #expect(FileSystem.temporaryPath(for: "/data/metrics.prom") == "/data/.metrics.prom.tmp")
        #expect(FileSystem.temporaryPath(for: "/m.prom") == "/.m.prom.tmp")
        #expect(FileSystem.temporaryPath(for: "rel/dir/f") == "rel/dir/.f.tmp")
        #expect(FileSystem.temporaryPath(for: "f") == ".f.tmp")
        #expect(FileSystem.publishedName(ofTemporary: ".events-1.ndjson.gz.tmp") == "events-1.ndjson.gz")
        #expect(FileSystem.publishedName(ofTemporary: "events-1.ndjson.gz") == nil)
        #expect(FileSystem.publishedName(ofTemporary: ".tmp") == nil)
    }

    @Test func makeFolderCreatesParentsAndNamesTheRealCause() throws {
        let f = TestFolder()
        try FileSystem.makeFolder(f.root + "/a/b//c/")
        #expect(FileSystem.isFolder(f.root + "/a/b/c"))
        try FileSystem.makeFolder(f.root + "/a/b/c") // already there: fine
        createTestFile(atPath: f.root + "/file", contents: Data("x".utf8))
        #expect {
            try FileSystem.makeFolder(f.root + "/file/sub")
        } throws: { error in
            let error = error as? FileSystemError
            return error?.path == f.root + "/file" && error?.cause == "something that is not a folder is in the way"
        }
    }

    @Test func parentFolders() {
        #expect(FileSystem.parentFolder(of: "a/b/c") == "a/b")
        #expect(FileSystem.parentFolder(of: "/c") == "/")
        #expect(FileSystem.parentFolder(of: "a/b/") == "a")
        #expect(FileSystem.parentFolder(of: "D") == nil)
        #expect(FileSystem.parentFolder(of: "m.prom") == nil)
    }

    @Test func copyStreamsTheBytesAndLeavesNoTemporaryFile() throws {
        let f = TestFolder()
        var random = SeededRandom(seed: 3)
        let bytes = (0..<3_000_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        createTestFile(atPath: f.root + "/source", contents: Data(bytes))
        try FileSystem.copy(f.root + "/source", to: f.root + "/copy")
        #expect(FileManager.default.contents(atPath: f.root + "/copy") == Data(bytes))
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.root).sorted() == ["copy", "landing", "source"])
    }
}

@Suite struct LineSpillTests {
    /// Lines come back in order, with their file index and line number, whatever their sizes:
    /// empty lines, lines that straddle the read buffer, and a 1 MiB line (larger than the
    /// write buffer). The scratch file leaves no name behind, and is read once: having handed
    /// out its last line it gives its disk space back, so a second read finds nothing.
    @Test func linesComeBackInOrderWithWhereTheyCameFrom() throws {
        let f = TestFolder()
        let spill = try LineSpill(path: f.root + "/scratch.spill")
        #expect(!FileSystem.exists(f.root + "/scratch.spill"))
        var rng = SeededGenerator(seed: 5)
        var written: [(Int, Int, [UInt8])] = []
        for n in 0..<30_000 {
            let length = n == 12_345 ? 1 << 20 : (n % 997 == 0 ? 0 : Int.random(in: 1...300, using: &rng))
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n) }
            written.append((n / 1000, n + 1, bytes))
            try bytes.withUnsafeBytes { try spill.append(file: n / 1000, line: n + 1, bytes: $0) }
        }
        #expect(spill.lines == 30_000)
        var read: [(Int, Int, [UInt8])] = []
        try spill.forEachLine { file, line, bytes in read.append((file, line, Array(bytes))) }
        #expect(read.count == written.count)
        #expect(zip(read, written).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 && $0.2 == $1.2 })
        var again = 0
        try spill.forEachLine { _, _, _ in again += 1 }
        #expect(again == 0 && spill.lines == 0)
    }
}
