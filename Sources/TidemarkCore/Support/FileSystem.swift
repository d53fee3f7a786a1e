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

    public init(_ operation: String, _ path: String, errno code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.cause = String(cString: strerror(code))
        self.isNoSpace = code == ENOSPC || code == EDQUOT
    }

    public var description: String { "\(operation) \(path): \(cause)" }
}

/// Small POSIX helpers with checked return codes.
public enum FileSystem {
    /// Publishes `bytes` at `path` atomically: a temporary name in the same folder that readers
    /// ignore (`.NAME.tmp`), fsync, rename, fsync the folder. A reader sees the whole file or none.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temporary = folder + "/." + url.lastPathComponent + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystemError("create", temporary) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let error = FileSystemError("write", temporary)
                close(fd)
                unlink(temporary)
                throw error
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            let error = FileSystemError("fsync", temporary)
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
        syncFolder(folder)
    }

    public static func syncFolder(_ folder: String) {
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    public static func makeFolder(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw FileSystemError("create folder", path, errno: EACCES)
        }
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
        guard errno == EXDEV else { throw FileSystemError("move", source) }
        try copy(source, to: destination)
        guard unlink(source) == 0 else { throw FileSystemError("remove", source) }
    }

    /// Copies a file (temp name, fsync, rename), leaving the source untouched.
    public static func copy(_ source: String, to destination: String) throws {
        guard let data = FileManager.default.contents(atPath: source) else {
            throw FileSystemError("read", source, errno: ENOENT)
        }
        try writeAtomically([UInt8](data), to: destination)
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
        var hasher = SHA256()
        let size = 256 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer, size)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystemError("read", path)
            }
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(start: buffer, count: n))
        }
        return hasher.finalizeHex()
    }
}
