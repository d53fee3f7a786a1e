import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file found in a landing folder, ready to be claimed.
public struct LandingFile: Sendable, Equatable {
    public var name: String
    public var path: String
    public var size: Int64
    public var modified: Double
}

/// Finds landing files. The contract: regular files named `*.ndjson.gz`, `*.jsonl.gz` or
/// `*.json.gz`; names starting with `.` or `_`, or ending in `.tmp` / `.partial`, are still
/// being written and are skipped silently; symlinks and other non-regular files are skipped
/// and reported.
public enum LandingFolder {
    public static let suffixes = [".ndjson.gz", ".jsonl.gz", ".json.gz"]

    public struct Scan: Sendable {
        /// Files to ingest, in name order (producers name files so that this is publish order).
        public var files: [LandingFile]
        /// Entries skipped with a reason (symlinks, folders, devices), for the log.
        public var skipped: [(name: String, reason: String, isFolder: Bool)]
        /// Subfolders that could not be read (recursive scans): their files are unknown.
        public var unreadable: [FileSystemError] = []
        public var totalBytes: Int64 { files.reduce(0) { $0 + $1.size } }
    }

    public static func isInProgressName(_ name: String) -> Bool {
        name.hasPrefix(".") || name.hasPrefix("_") || name.hasSuffix(".tmp") || name.hasSuffix(".partial")
    }

    /// Whether a name that is not a landing file's looks meant as one (another case, or a
    /// `.gz`, `.ndjson`, `.jsonl` or `.json` file): such entries are warned about, not just logged.
    public static func looksLikeData(_ name: String) -> Bool {
        let lower = name.lowercased()
        return [".gz", ".ndjson", ".jsonl", ".json"].contains { lower.hasSuffix($0) } // every landing suffix ends in .gz
    }

    public static func hasLandingSuffix(_ name: String) -> Bool {
        suffixes.contains { name.hasSuffix($0) }
    }

    /// Lists a folder. Throws exit 66, naming the folder as `role` with `missingHint`, when it
    /// does not exist (`notFolderHint`, when a file is there: nothing to create).
    /// With `recursive` (backfill: an archive keeps one folder per day), files in subfolders
    /// are found too, and taken in the order of their paths.
    public static func scan(_ folder: String, role: String = "landing folder",
                            missingHint: String = "create it, or pass --landing DIR (or set TIDEMARK_LANDING)",
                            notFolderHint: String = "pass the landing folder, not a file, as --landing DIR (or TIDEMARK_LANDING)",
                            recursive: Bool = false) throws -> Scan {
        guard FileSystem.isFolder(folder) else {
            guard !FileSystem.exists(folder) else {
                throw TidemarkError("scan \(role)", folder, cause: "not a folder (a file is there)", hint: notFolderHint, exit: .noInput)
            }
            throw TidemarkError("scan \(role)", folder, cause: "no such folder", hint: missingHint, exit: .noInput)
        }
        var scan = Scan(files: [], skipped: [])
        try list(folder, prefix: "", recursive: recursive, into: &scan)
        scan.files.sort { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
        return scan
    }

    /// Adds a folder's landing files (and, with `recursive`, its subfolders') to `scan`;
    /// skipped entries are named by their path below the scanned folder (`prefix`).
    private static func list(_ folder: String, prefix: String, recursive: Bool, into scan: inout Scan) throws {
        guard let dir = opendir(folder) else {
            // A subfolder that cannot be read: the others are still read, and the run ends
            // with exit 74 naming it (its files are not applied).
            guard prefix.isEmpty else {
                scan.unreadable.append(FileSystemError("open folder", folder))
                return
            }
            throw FileSystemError("open folder", folder)
        }
        defer { closedir(dir) }
        // A data folder given as the source: its quarantine holds files that were never applied.
        let isDataFolder = recursive && prefix.isEmpty && FileSystem.exists(folder + "/" + Warehouse.databaseName)
        var files: [LandingFile] = []
        var skipped: [(String, String, Bool)] = []
        var subfolders: [(String, String)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." || isInProgressName(name) { continue }
            let path = folder.hasSuffix("/") ? folder + name : folder + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            let type = info.st_mode & S_IFMT
            if recursive && type == S_IFDIR {
                if isDataFolder && name == Warehouse.quarantineName {
                    skipped.append((name, "a data folder's quarantine (files never applied): retry those through a landing folder", true))
                } else {
                    subfolders.append((path, prefix + name + "/"))
                }
                continue
            }
            if recursive && type == S_IFLNK && FileSystem.isFolder(path) {
                skipped.append((name, "symlink to a folder (not followed)", true))
                continue
            }
            guard hasLandingSuffix(name) else {
                if type == S_IFREG { skipped.append((name, "name does not end in \(suffixes.joined(separator: ", "))", false)) }
                continue
            }
            if type == S_IFLNK {
                skipped.append((name, "symlink (only regular files are ingested)", false))
                continue
            }
            guard type == S_IFREG else {
                skipped.append((name, "not a regular file", false))
                continue
            }
            let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
            files.append(LandingFile(name: name, path: path, size: Int64(info.st_size), modified: modified))
        }
        scan.files += files
        scan.skipped += skipped.map { (prefix + $0.0, $0.1, $0.2) }
        for (path, below) in subfolders { try list(path, prefix: below, recursive: true, into: &scan) }
    }
}

/// The data folder's exclusive job lock: a `flock` on the data folder itself, which nobody can
/// delete while it is in use, and on `DATA/tidemark.lock`, which names the holder. Held by
/// ingest, backfill and rebuild; a second job exits 75 at once. The kernel releases both when
/// the process dies, even by SIGKILL, so a crash never leaves a stale lock. (A lock on the file
/// alone would let a second job in once someone removed the file as "stale".)
public final class JobLock {
    private let fd: Int32
    /// The folder's descriptor, when the folder itself is locked too (-1: not).
    private let folderFD: Int32
    public let path: String

    /// The data folder's lock file.
    static let fileName = "tidemark.lock"

    /// The lock of a data folder: one ingest, backfill or rebuild at a time.
    public convenience init(dataFolder: String, job: String) throws {
        // One line, no hint: overlapping cron runs are normal and must not flood the mailbox.
        try self.init(folder: dataFolder, file: JobLock.fileName, job: job, busy: "another tidemark job is running", then: "nothing done, retry later",
                      hint: nil, lockingFolder: true)
    }

    /// Takes `folder/file` (creating the folder), and with `lockingFolder` the folder itself
    /// first, or throws exit 75: `busy`, the holder the file names, `then`, and `hint`.
    init(folder: String, file: String, job: String, busy: String, then: String, hint: String?, lockingFolder: Bool = false) throws {
        try FileSystem.makeFolder(folder)
        let path = (folder as NSString).appendingPathComponent(file)
        func refuse(_ descriptors: Int32...) -> TidemarkError {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            for descriptor in descriptors where descriptor >= 0 { close(descriptor) }
            return TidemarkError("lock", path, cause: "\(busy)\(holder.isEmpty ? "" : " (\(holder))"); \(then)",
                                 hint: holder.isEmpty ? hint ?? "no tidemark job names itself in the lock file: see which process holds it with `fuser -v \(folder) \(path)`" : hint,
                                 exit: .busy)
        }
        // Checked on local descriptors, so that a refusal never reaches `deinit` (which
        // releases and closes only a lock that was taken).
        var folderDescriptor: Int32 = -1
        if lockingFolder {
            folderDescriptor = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard folderDescriptor >= 0 else { throw FileSystemError("open", folder) }
            if flock(folderDescriptor, LOCK_EX | LOCK_NB) != 0 {
                let failure = errno
                guard failure == EWOULDBLOCK else {
                    close(folderDescriptor)
                    throw FileSystemError("lock", folder, errno: failure) // e.g. a file system without locks
                }
                throw refuse(folderDescriptor)
            }
        }
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            if folderDescriptor >= 0 { close(folderDescriptor) }
            throw FileSystemError("open lock", path)
        }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let failure = errno
            guard failure == EWOULDBLOCK else {
                close(descriptor)
                if folderDescriptor >= 0 { close(folderDescriptor) }
                throw FileSystemError("lock", path, errno: failure)
            }
            throw refuse(descriptor, folderDescriptor)
        }
        self.path = path
        fd = descriptor
        folderFD = folderDescriptor
        ftruncate(fd, 0)
        let note = "\(job) pid \(getpid())\n"
        _ = note.withCString { write(fd, $0, strlen($0)) }
    }

    /// Whether a job holds the data folder's lock, read from the kernel's table of locks
    /// (`/proc/locks`: a `FLOCK` on the folder's device and inode), so that asking takes no
    /// lock (a job starting then would exit 75) and does not trust the pid in the lock file
    /// (wrong across PID namespaces, or once reused). False where that table cannot be read.
    public static func isHeld(dataFolder: String) -> Bool {
        var info = stat()
        guard stat(dataFolder, &info) == 0, let table = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return false }
        // btrfs gives each subvolume an anonymous device (major 0) of its own; a disk's
        // device, whose number the lock table repeats, has a major of its own.
        return flockHolders(of: info, in: table, sameInodeElsewhere: deviceNumbers(info.st_dev).major == 0) { pid in processHasOpen(pid: pid, info) }
    }

    /// glibc's major() and minor(), which Swift does not import.
    static func deviceNumbers(_ dev: dev_t) -> (major: UInt64, minor: UInt64) {
        let dev = UInt64(dev)
        return (((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff)), (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff)))
    }

    /// Whether `table` (the text of `/proc/locks`) lists a `FLOCK` on the file `info` describes.
    /// The table names a file by its file system's device and the inode; on btrfs the device
    /// there is the whole file system's while `stat` gives the subvolume's, so on an anonymous
    /// device (`sameInodeElsewhere`) an entry with the same inode on another device counts when its
    /// holder has the file open (`holderHasFile`; nil: that cannot be seen, as for another
    /// user's process, and the inode alone decides). Every entry's holder is alive: the
    /// kernel drops a lock when its process ends.
    static func flockHolders(of info: stat, in table: String, sameInodeElsewhere: Bool, holderHasFile: (Int32) -> Bool?) -> Bool {
        let (major, minor) = deviceNumbers(info.st_dev)
        let device = String(format: "%02llx:%02llx:%llu", major, minor, UInt64(info.st_ino))
        let inode = ":\(UInt64(info.st_ino))"
        return table.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 5 && fields[1] == "FLOCK" else { return false }
            if fields[5] == device { return true }
            guard sameInodeElsewhere, fields[5].hasSuffix(inode), fields[5].filter({ $0 == ":" }).count == 2, let pid = Int32(fields[4]) else { return false }
            return holderHasFile(pid) ?? true
        }
    }

    /// Whether process `pid` has the file `info` describes open (a descriptor of its own that
    /// `stat` follows to the same device and inode); nil when its descriptors cannot be listed.
    static func processHasOpen(pid: Int32, _ info: stat) -> Bool? {
        let folder = "/proc/\(pid)/fd"
        guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return nil }
        return descriptors.contains { name in
            var target = stat()
            return stat("\(folder)/\(name)", &target) == 0 && target.st_dev == info.st_dev && target.st_ino == info.st_ino
        }
    }

    deinit {
        // Empty again before it is released: the next holder (not necessarily tidemark: an
        // operator's `flock`) must not be shown this process's pid.
        ftruncate(fd, 0)
        flock(fd, LOCK_UN)
        close(fd)
        if folderFD >= 0 {
            flock(folderFD, LOCK_UN)
            close(folderFD)
        }
    }
}

/// The lock of a landing folder: one ingest takes files out of it at a time, whatever its data
/// folder (two data folders fed from one landing folder would each apply every file, then race
/// to archive them). A `flock` on the folder itself, so that landing holds no file of ours;
/// taken after the data folder's lock.
public final class LandingLock {
    private let fd: Int32

    public init(landingFolder: String) throws {
        let descriptor = open(landingFolder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileSystemError("open", landingFolder) }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let failure = errno
            close(descriptor)
            // Only a lock held is "busy"; a file system without locks is an I/O error.
            guard failure == EWOULDBLOCK else { throw FileSystemError("lock", landingFolder, errno: failure) }
            throw TidemarkError("lock", landingFolder, cause: "another ingest is taking files from this landing folder; nothing done",
                                hint: "one landing folder feeds one data folder: if the other ingest (see `fuser -v \(landingFolder)`) uses another --data, give each its own landing folder",
                                exit: .busy)
        }
        fd = descriptor
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
