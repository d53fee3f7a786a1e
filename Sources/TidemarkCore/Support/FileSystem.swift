import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Error of a file-system operation, naming the operation and the path.
public struct FileSystemError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var path: String
    public var cause: String
    public var isNoSpace: Bool
    /// The errno behind it, nil for a failure of this process rather than of the path.
    public var code: Int32?

    public init(_ operation: String, _ path: String, errno code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.cause = String(cString: strerror(code))
        self.isNoSpace = code == ENOSPC || code == EDQUOT
        self.code = code
    }

    /// What to do about it, when the cause says.
    public var hint: String? {
        if isNoSpace { return "free space on that file system, then rerun" }
        switch code {
        case EACCES?, EPERM?:
            let user = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(geteuid())"
            return "tidemark runs as \(user): give it access to that path (owner or mode), or run it as the path's owner"
        case EROFS?:
            return "that file system is mounted read-only: remount it read-write, or point tidemark at another folder"
        case EIO?:
            return "the device reported an I/O error: check the kernel log (dmesg) and the disk"
        default:
            return nil
        }
    }

    /// A failure of this process rather than of the file (e.g. zlib could not allocate).
    public init(_ operation: String, _ path: String, cause: String) {
        self.operation = operation
        self.path = path
        self.cause = cause
        self.isNoSpace = false
        self.code = nil
    }

    public var description: String { "\(operation) \(path): \(cause)" }

    /// The folder sync after `written` was renamed into place failed (`FileSystem.publish`):
    /// the file is there under its name, but not known to survive a crash.
    static func folderNotSynced(after written: String, folder: String, errno code: Int32) -> FileSystemError {
        var error = FileSystemError("fsync folder", folder, errno: code)
        error.operation = "wrote \(written), but could not fsync its folder"
        error.isFolderNotSynced = true
        return error
    }
    public private(set) var isFolderNotSynced = false
}

/// Small POSIX helpers with checked return codes.
public enum FileSystem {
    /// Writes `bytes` to `path` atomically (a temporary file beside it, renamed over it),
    /// creating its folder if need be. Errors name `path`, the file asked for, not the
    /// temporary one.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        do {
            if let folder = parentFolder(of: path) { try makeFolder(folder) }
            try publish(path) { fd, temporary in
                try bytes.withUnsafeBytes { if let base = $0.baseAddress { try writeAll(fd, base, $0.count, path: temporary) } }
            }
        } catch var error as FileSystemError where !error.isFolderNotSynced {
            error.operation = "write"
            error.path = path
            throw error
        }
    }

    /// The name a file is written under before it is published: `.NAME.tmp` beside it, which
    /// readers of landing and sent-log folders skip.
    public static func temporaryPath(for path: String) -> String {
        siblingPath(of: path) { "." + $0 + ".tmp" }
    }

    /// A path beside `path`, in the same folder, whose name is `name(last component of path)`.
    static func siblingPath(of path: String, _ name: (String) -> String) -> String {
        let last = path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
        return (parentFolder(of: path).map { $0 == "/" ? "/" : $0 + "/" } ?? "") + name(last)
    }

    /// `path` from the root: relative paths are taken from the current directory.
    public static func absolutePath(_ path: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        let here = FileManager.default.currentDirectoryPath
        let relative = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        return relative.isEmpty || relative == "." ? here : (here == "/" ? "" : here) + "/" + relative
    }

    /// The published name of a temporary file name (`.NAME.tmp` → `NAME`), nil for other names.
    public static func publishedName(ofTemporary name: String) -> String? {
        name.hasPrefix(".") && name.hasSuffix(".tmp") && name.count > 5 ? String(name.dropFirst().dropLast(4)) : nil
    }

    /// Writes a file under its temporary name (`fill` writes into the open descriptor), fsyncs
    /// it, renames it over `path` and fsyncs the folder. Any failure removes the temporary file.
    static func publish(_ path: String, _ fill: (_ fd: Int32, _ temporary: String) throws -> Void) throws {
        let temporary = temporaryPath(for: path)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystemError("create", temporary) }
        do {
            try fill(fd, temporary)
            guard fsync(fd) == 0 else { throw FileSystemError("fsync", temporary) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = FileSystemError("rename", temporary)
            unlink(temporary)
            throw error
        }
        let folder = parentFolder(of: path) ?? "."
        do {
            try syncFolderChecked(folder)
        } catch let error as FileSystemError {
            throw FileSystemError.folderNotSynced(after: path, folder: folder, errno: error.code ?? EIO)
        }
    }

    /// Flushes a file's data to disk.
    static func syncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError("open", path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileSystemError("fsync", path) }
    }

    /// Removes a file; one already gone is no error.
    static func removeFile(_ path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else { throw FileSystemError("remove", path) }
    }

    /// Puts a folder's entries (a file renamed or removed in it) on disk, failing when the
    /// device reports an error: a file published (`publish`) is then not known to survive a
    /// crash. A folder that cannot be synced at all is no error, since nothing more can be
    /// done there: a file system without folder syncs (EINVAL: some FUSE and network mounts),
    /// or a folder this process may write but not open (mode -wx).
    static func syncFolderChecked(_ folder: String) throws {
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == EACCES { return }
            throw FileSystemError("open folder", folder)
        }
        defer { close(fd) }
        let failure = fsync(fd) == 0 ? FaultPoint.folderSyncFailure : errno
        guard let failure, failure != EINVAL else { return }
        throw FileSystemError("fsync folder", folder, errno: failure)
    }

    /// `syncFolderChecked`, best effort: for a removal whose loss a crash would only undo (the
    /// producer's in-flight marker, which its next run finds and clears again).
    public static func syncFolder(_ folder: String) {
        try? syncFolderChecked(folder)
    }

    /// The folder part of a path ("a/b" of "a/b/c", "/" of "/c"), nil for a bare name. Plain
    /// byte work: Foundation's `deletingLastPathComponent` traps on one-character paths here.
    public static func parentFolder(of path: String) -> String? {
        var bytes = Array(path.utf8)
        while bytes.count > 1 && bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return nil }
        return slash == 0 ? "/" : String(decoding: bytes[..<slash], as: UTF8.self)
    }

    /// `mkdir -p`, reporting the real cause (no space, read-only, permission) of a failure.
    public static func makeFolder(_ path: String) throws {
        if isFolder(path) { return }
        // Every prefix ending before a "/", then the path itself, outermost first.
        let bytes = Array(path.utf8)
        var folders: [String] = []
        for (i, byte) in bytes.enumerated() where byte == UInt8(ascii: "/") && i > 0 {
            folders.append(String(decoding: bytes[..<i], as: UTF8.self))
        }
        folders.append(path)
        for folder in folders where !isFolder(folder) {
            guard mkdir(folder, 0o755) != 0 else { continue }
            if errno == EEXIST {
                if isFolder(folder) { continue } // made meanwhile by someone else
                throw FileSystemError("create folder", folder, cause: "something that is not a folder is in the way")
            }
            throw FileSystemError("create folder", folder)
        }
    }

    /// The path with every symlink resolved (nil when it does not exist).
    public static func resolvedPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// `path` from the root, with every symlink of the part that exists resolved and `.`,
    /// `..` and repeated or trailing slashes removed: one spelling per place.
    public static func canonicalPath(_ path: String) -> String {
        var head = (absolutePath(path) as NSString).standardizingPath, tail: [String] = []
        while resolvedPath(head) == nil, head != "/", !head.isEmpty {
            tail.insert((head as NSString).lastPathComponent, at: 0)
            head = (head as NSString).deletingLastPathComponent
        }
        let base = resolvedPath(head) ?? head
        return (tail.reduce(base) { ($0 as NSString).appendingPathComponent($1) } as NSString).standardizingPath
    }

    /// Whether `path` is `folder` or lies inside it (`canonicalPath` of both).
    public static func isSameOrInside(_ path: String, _ folder: String) -> Bool {
        let inner = canonicalPath(path), outer = canonicalPath(folder)
        return inner == outer || inner.hasPrefix(outer == "/" ? "/" : outer + "/")
    }

    /// Whether two paths name the same file (device and inode), whatever the mounts or links
    /// between them; false when either cannot be read.
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        var x = stat(), y = stat()
        return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    public static func isFolder(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Moves a file; falls back to copy and unlink across file systems.
    public static func move(_ source: String, to destination: String) throws {
        if rename(source, destination) == 0 { return }
        let code = errno
        guard code == EXDEV else {
            // Name the folder that refused when it is the destination's (an archive folder not
            // writable), not the file, whose own folder may be fine.
            if code == EACCES || code == EPERM || code == EROFS, let folder = parentFolder(of: destination), access(folder, W_OK) != 0 {
                throw FileSystemError("move \((source as NSString).lastPathComponent) into", folder, errno: code)
            }
            throw FileSystemError("move", source, errno: code)
        }
        try copy(source, to: destination)
        guard unlink(source) == 0 else { throw FileSystemError("remove", source) }
    }

    /// Copies a file (`publish`), streaming, leaving the source untouched.
    public static func copy(_ source: String, to destination: String) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw FileSystemError("open", source) }
        defer { close(input) }
        try copy(descriptor: input, named: source, to: destination)
    }

    /// Copies the whole file open at `input` (read from its start; `source` names it in
    /// errors) to `destination`, published atomically.
    static func copy(descriptor input: Int32, named source: String, to destination: String, bytes limit: Int64? = nil) throws {
        guard lseek(input, 0, SEEK_SET) == 0 else { throw FileSystemError("seek", source) }
        let size = 256 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        try publish(destination) { output, temporary in
            var left = limit ?? .max
            while left > 0 {
                let n = try readSome(input, buffer, Int(min(Int64(size), left)), path: source)
                if n == 0 { break }
                try writeAll(output, buffer, n, path: temporary)
                left -= Int64(n)
            }
        }
    }

    /// Renames `source` to `destination` unless something is there: a hard link, then the old
    /// name removed (Swift sees no `renameat2`). False when the name is taken or links are not
    /// supported; `source` is then left as it was.
    static func renameWithoutReplacing(_ source: String, to destination: String) -> Bool {
        guard link(source, destination) == 0 else { return false }
        if unlink(source) != 0 { _ = unlink(destination); return false }
        return true
    }

    /// `read(2)` that retries when a signal interrupts it; 0 at the end of the file.
    static func readSome(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, path: String) throws -> Int {
        while true {
            let n = read(fd, buffer, count)
            if n >= 0 { return n }
            if errno != EINTR { throw FileSystemError("read", path) }
        }
    }

    /// `write(2)` of all `count` bytes, retrying on interruption and short writes.
    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, path: String) throws {
        var written = 0
        while written < count {
            let n = write(fd, buffer + written, count - written)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystemError("write", path)
            }
            written += n
        }
    }

    public static func readAll(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileSystemError("read", path, errno: errno == 0 ? ENOENT : errno)
        }
        return [UInt8](data)
    }

    /// SHA-256 of a file's bytes, streamed.
    public static func sha256(ofFile path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError("open", path) }
        defer { close(fd) }
        return try sha256(descriptor: fd, named: path)
    }

    /// The SHA-256 of the file open at `fd`, read from its start (of its first `limit` bytes,
    /// when given; `path` names it in errors).
    static func sha256(descriptor fd: Int32, named path: String, bytes limit: Int64? = nil) throws -> String {
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw FileSystemError("seek", path) }
        var hasher = SHA256()
        let size = 256 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        var left = limit ?? .max
        while left > 0 {
            let n = try readSome(fd, buffer, Int(min(Int64(size), left)), path: path)
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(start: buffer, count: n))
            left -= Int64(n)
        }
        return hasher.finalizeHex()
    }
}

extension FileSystem {
    /// Raises this process's soft limit on open files to its hard limit (ingest holds each
    /// file it read open until it is archived) and returns the soft limit now in force.
    static func raiseOpenFilesLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: min(limit.rlim_cur, 1 << 30))
    }
}
