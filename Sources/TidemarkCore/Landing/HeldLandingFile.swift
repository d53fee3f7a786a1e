import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A landing file as this run read it: the descriptor it was read through, held open until the
/// file has been archived, and the file's identity (device and inode).
///
/// A producer may put a new file under a name this run has already read (an atomic rename over
/// it) before the run archives it. The name then leads to the new file, which this run never
/// read; the held descriptor still reads the content that was applied. Archiving through
/// `LandingRetirement` uses both: the content applied is what gets archived, and the new file
/// stays in landing for the next run.
final class HeldLandingFile: @unchecked Sendable {
    let path: String
    let fd: Int32
    private let device: UInt64
    private let inode: UInt64

    init(opening path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError("open", path) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = FileSystemError("stat", path)
            close(fd)
            throw error
        }
        self.path = path
        self.fd = fd
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }

    deinit { close(fd) }

    /// Whether `path` names this very file now (not another one put under its name).
    func isNamed(by path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    func sha256() throws -> String { try FileSystem.sha256(descriptor: fd, named: path) }

    /// Writes the content held to `destination` (published atomically).
    func copy(to destination: String) throws { try FileSystem.copy(descriptor: fd, named: path, to: destination) }
}

/// Takes a file this run has read out of the landing folder (to the archive, the quarantine,
/// or away) without ever taking another file that was put under its name meanwhile.
///
/// The file is first captured by a rename (atomic: whatever the name leads to at that instant),
/// then checked to be the file read. A capture of another file is given back to landing, and
/// the content read is written from the held descriptor instead.
enum LandingRetirement {
    /// What happened to the name in landing.
    enum Outcome: Equatable {
        /// The file read was moved (or, across file systems, copied and removed).
        case moved
        /// Another file had been put under the name; it stays in landing (under `keptAs`), and
        /// the content read was written from the held descriptor.
        case replaced(keptAs: String)
        /// Nothing was under the name any more; the content read was written from the held
        /// descriptor.
        case vanished
    }

    /// Moves the file read (`held`) from `source` to `destination`.
    static func archive(_ held: HeldLandingFile, from source: String, to destination: String) throws -> Outcome {
        if rename(source, destination) == 0 {
            if held.isNamed(by: destination) { return .moved }
            let kept = try giveBack(destination, to: source)
            try held.copy(to: destination)
            return .replaced(keptAs: kept)
        }
        switch errno {
        case ENOENT:
            try held.copy(to: destination)
            return .vanished
        case EXDEV:
            // Across file systems: copy what was read, then remove the name if it still leads
            // to the file read (captured beside it first, so that a file put there meanwhile
            // is never removed).
            try held.copy(to: destination)
            return try remove(held, from: source)
        default:
            throw FileSystemError("move", source)
        }
    }

    /// Removes the file read (`held`) from `source`; another file put there meanwhile stays.
    static func remove(_ held: HeldLandingFile, from source: String) throws -> Outcome {
        let captured = capturePath(for: source)
        guard rename(source, captured) == 0 else {
            if errno == ENOENT { return .vanished }
            throw FileSystemError("move", source)
        }
        guard held.isNamed(by: captured) else { return .replaced(keptAs: try giveBack(captured, to: source)) }
        guard unlink(captured) == 0 else { throw FileSystemError("remove", captured) }
        return .moved
    }

    /// Where `remove` captures a landing file: a name beside it that landing scans skip.
    static func capturePath(for source: String) -> String {
        let name = source.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? source
        return (FileSystem.parentFolder(of: source).map { $0 == "/" ? "/" : $0 + "/" } ?? "") + ".tidemark-removing-" + name
    }

    /// Puts a file captured by mistake back under its landing name, or, when yet another file
    /// took that name meanwhile, under a new name beside it that the next run also reads.
    /// Returns the name it is kept under.
    private static func giveBack(_ captured: String, to source: String) throws -> String {
        if link(captured, source) != 0 {
            guard errno == EEXIST else { throw FileSystemError("put back", source) }
            let folder = FileSystem.parentFolder(of: source).map { $0 == "/" ? "/" : $0 + "/" } ?? ""
            let name = source.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? source
            var attempt = 1
            while true {
                let other = "\(folder)returned-\(attempt)-\(name)"
                if link(captured, other) == 0 {
                    guard unlink(captured) == 0 else { throw FileSystemError("remove", captured) }
                    return other
                }
                guard errno == EEXIST else { throw FileSystemError("put back", other) }
                attempt += 1
            }
        }
        guard unlink(captured) == 0 else { throw FileSystemError("remove", captured) }
        return source
    }
}
