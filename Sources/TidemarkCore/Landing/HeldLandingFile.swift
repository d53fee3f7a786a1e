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
    /// Size and modification time when opened (the scan's may be older).
    let size: Int64
    let modified: Double
    /// How many bytes were read, hashed and applied (set once the file has been decoded):
    /// what the archive must hold, though a producer writing in place may have added more.
    var appliedBytes: Int64?

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
        size = Int64(info.st_size)
        modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
    }

    deinit { close(fd) }

    /// Whether `path` names this very file now (not another one put under its name).
    func isNamed(by path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    func sha256(ofFirst bytes: Int64? = nil) throws -> String { try FileSystem.sha256(descriptor: fd, named: path, bytes: bytes) }

    /// Writes the content held (the bytes applied, once known) to `destination` (published atomically).
    func copy(to destination: String) throws { try FileSystem.copy(descriptor: fd, named: path, to: destination, bytes: appliedBytes) }

    /// The file's size now, through the descriptor (which follows the file across renames).
    func currentSize() -> Int64? {
        var info = stat()
        return fstat(fd, &info) == 0 ? Int64(info.st_size) : nil
    }
}

/// Takes a file this run has read out of the landing folder (to the archive, the quarantine,
/// or away) without ever taking another file that was put under its name meanwhile, and
/// without a window in which a SIGKILL loses either file.
///
/// A file whose name no longer leads to it is not touched: the content read is written from the
/// held descriptor, and the other file stays for the next run. Otherwise the name is first
/// captured by a rename inside the landing folder to `captured-<fileID>-NAME` (a name the next
/// run reads, and heals by its file id), then checked to be the file read, then moved on. A
/// capture of another file (put there in the instant between the check and the rename) stays
/// under the capture name, which the next run ingests as the new file it is.
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
        /// The file had grown since it was read (a producer still writing it in place): the
        /// bytes applied were written to the archive from the held descriptor, and the whole
        /// file stays in landing (under `keptAs`) for a later run.
        case grew(appliedBytes: Int64, nowBytes: Int64, keptAs: String)
    }

    /// Moves the file read (`held`, ledger file `fileID`) from `source` to `destination`.
    /// With `keepingGrowth` (the archive; not the quarantine, which takes the file whole), a
    /// file that grew since it was read is not moved: the writer still holds it, and what it
    /// adds would go into the archive, never applied. The archive gets the bytes read instead,
    /// and the file stays in landing, whole, for a later run: untouched when it had grown
    /// before the capture, else back under its landing name (or, when a new file took that
    /// name, under its capture name). Should that copy fail, the next run writes it from the
    /// file's first bytes (`IngestJob`'s heal) before reading the file again.
    static func archive(_ held: HeldLandingFile, fileID: Int64, from source: String, to destination: String,
                        keepingGrowth: Bool = true) throws -> Outcome {
        func grown() -> (applied: Int64, now: Int64)? {
            guard keepingGrowth, let applied = held.appliedBytes, let now = held.currentSize(), now != applied else { return nil }
            return (applied, now)
        }
        if let (applied, now) = grown(), held.isNamed(by: source) {
            try held.copy(to: destination)
            return .grew(appliedBytes: applied, nowBytes: now, keptAs: source)
        }
        var grew: Outcome?
        let outcome = try retire(held, fileID: fileID, from: source) { captured in
            // Grown in the instant between the check above and the capture.
            if let (applied, now) = grown() {
                try held.copy(to: destination)
                let keptAs = FileSystem.renameWithoutReplacing(captured, to: source) ? source : captured
                grew = .grew(appliedBytes: applied, nowBytes: now, keptAs: keptAs)
                return
            }
            try FileSystem.move(captured, to: destination)
        } otherwise: {
            try held.copy(to: destination)
        }
        return grew ?? outcome
    }

    /// Removes the file read (`held`, whose content the archive already holds) from `source`;
    /// another file put there meanwhile stays.
    static func remove(_ held: HeldLandingFile, fileID: Int64, from source: String) throws -> Outcome {
        try retire(held, fileID: fileID, from: source) { captured in
            guard unlink(captured) == 0 else { throw FileSystemError("remove", captured) }
        } otherwise: {}
    }

    /// The capture name of a landing file: beside it, visible to the next run, naming its file
    /// id (`captured-<id>-NAME`; just `captured-<id>` and NAME's suffix when that would be longer
    /// than a file name may be).
    static func capturePath(for source: String, fileID: Int64) -> String {
        FileSystem.siblingPath(of: source) { name in
            let full = "captured-\(fileID)-\(name)"
            guard full.utf8.count > 255 else { return full }
            return "captured-\(fileID)" + (LandingFolder.suffixes.first { name.hasSuffix($0) } ?? LandingFolder.suffixes[0])
        }
    }

    /// The ledger file id a capture name carries, nil for any other name.
    static func capturedFileID(_ name: String) -> Int64? {
        guard name.hasPrefix("captured-") else { return nil }
        let rest = name.dropFirst("captured-".count)
        guard let end = rest.firstIndex(where: { $0 == "-" || $0 == "." }), end > rest.startIndex else { return nil }
        return Int64(rest[..<end])
    }

    /// Captures `source` when it still leads to the file read and hands the capture to `take`;
    /// otherwise runs `otherwise` (the content read is needed elsewhere) and leaves landing alone.
    private static func retire(_ held: HeldLandingFile, fileID: Int64, from source: String,
                               take: (String) throws -> Void, otherwise: () throws -> Void) throws -> Outcome {
        guard held.isNamed(by: source) else {
            try otherwise()
            return FileSystem.exists(source) ? .replaced(keptAs: source) : .vanished
        }
        let captured = capturePath(for: source, fileID: fileID)
        guard rename(source, captured) == 0 else {
            guard errno == ENOENT else { throw FileSystemError("move", source) }
            try otherwise()
            return .vanished
        }
        FaultPoint.hit("after-capture")
        guard held.isNamed(by: captured) else {
            // Another file took the name in the instant between the check and the rename: it
            // stays under the capture name for the next run.
            try otherwise()
            return .replaced(keptAs: captured)
        }
        do {
            try take(captured)
        } catch {
            // Back under its landing name (unless another file took it meanwhile; the next run
            // heals the capture name too), where the error's message says it stays.
            if !FileSystem.exists(source) { _ = rename(captured, source) }
            throw error
        }
        return .moved
    }
}
