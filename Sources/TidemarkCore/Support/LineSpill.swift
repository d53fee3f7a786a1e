#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Raw lines set aside in an uncompressed scratch file, each with the index of the file it
/// came from and its line number, and read back later in the order they were written.
/// Rebuild and validate use one per later pass: the first read of a source sets aside the
/// lines of the other passes, which then cost neither decompression nor hashing again.
///
/// The file is unlinked as soon as it is created, so nothing is left behind whatever happens
/// to the process. One thread writes, then (after a synchronising hand-over) one thread reads.
final class LineSpill: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let capacity = 1 << 20
    private let buffer: UnsafeMutableRawPointer
    private var used = 0
    private(set) var lines = 0
    /// Record header: file index, line number, length (UInt32 each, native order).
    private static let headerSize = 12

    /// Creates the scratch file at `path` (replacing one a crash may have left).
    init(path: String) throws {
        self.path = path
        unlink(path)
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystemError("create scratch file", path) }
        unlink(path)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        close(fd)
        buffer.deallocate()
    }

    /// Lines reach at most `EventLineParser.maxLineBytes` (longer ones are never handed out).
    func append(file: Int, line: Int, bytes: UnsafeRawBufferPointer) throws {
        precondition(bytes.count <= EventLineParser.maxLineBytes, "a line longer than the reader hands out")
        let size = LineSpill.headerSize + bytes.count
        if used + size > capacity { try flush() }
        guard size <= capacity else {
            // Longer than the buffer (lines may reach 1 MiB): header from the buffer, bytes direct.
            writeHeader(file: file, line: line, length: bytes.count)
            try flush()
            if let base = bytes.baseAddress { try write(base, bytes.count) }
            lines += 1
            return
        }
        writeHeader(file: file, line: line, length: bytes.count)
        if let base = bytes.baseAddress { (buffer + used).copyMemory(from: base, byteCount: bytes.count) }
        used += bytes.count
        lines += 1
    }

    private func writeHeader(file: Int, line: Int, length: Int) {
        buffer.storeBytes(of: UInt32(truncatingIfNeeded: file), toByteOffset: used, as: UInt32.self)
        buffer.storeBytes(of: UInt32(truncatingIfNeeded: line), toByteOffset: used + 4, as: UInt32.self)
        buffer.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: used + 8, as: UInt32.self)
        used += LineSpill.headerSize
    }

    /// Writes out what the buffer holds.
    func flush() throws {
        guard used > 0 else { return }
        try write(buffer, used)
        used = 0
    }

    /// A write that names what the scratch file is for when it fails (disk full, most likely).
    private func write(_ bytes: UnsafeRawPointer, _ count: Int) throws {
        try naming("set lines aside for a later pass in") { try FileSystem.writeAll(fd, bytes, count, path: path) }
    }

    /// Runs `body`, and has a failure name the scratch file's folder, with what was being done:
    /// the file itself was removed as soon as it was made and never shows in a listing.
    private func naming<R>(_ operation: String, _ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch var error as FileSystemError {
            // The cause (and whether the disk is full) stays; the place is the folder.
            let named = failure(operation, cause: error.cause)
            (error.operation, error.path) = (named.operation, named.path)
            throw error
        }
    }

    private func failure(_ operation: String, cause: String) -> FileSystemError {
        FileSystemError(operation + " a scratch file (deleted on creation) in", FileSystem.parentFolder(of: path) ?? ".", cause: cause)
    }

    /// Calls `body` with every line in the order appended (writing out what is buffered first).
    /// The lines are read once: having handed out the last one, the file gives its disk space
    /// back (`discard`).
    func forEachLine(_ body: (_ file: Int, _ line: Int, _ bytes: UnsafeRawBufferPointer) throws -> Void) throws {
        try flush()
        try naming("go back to the start of") { guard lseek(fd, 0, SEEK_SET) == 0 else { throw FileSystemError("seek", path) } }
        // Room for the largest record (a 1 MiB line) plus a buffer's worth of reading.
        let room = capacity + EventLineParser.maxLineBytes + LineSpill.headerSize
        let input = UnsafeMutableRawPointer.allocate(byteCount: room, alignment: 16)
        defer { input.deallocate() }
        var filled = 0
        var endOfFile = false
        while true {
            if !endOfFile && filled < room {
                let n = try naming("read back") { try FileSystem.readSome(fd, input + filled, room - filled, path: path) }
                if n == 0 { endOfFile = true }
                filled += n
            }
            var offset = 0
            while filled - offset >= LineSpill.headerSize {
                let length = Int(input.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self))
                guard filled - offset - LineSpill.headerSize >= length else { break }
                try body(Int(input.loadUnaligned(fromByteOffset: offset, as: UInt32.self)),
                         Int(input.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)),
                         UnsafeRawBufferPointer(start: input + offset + LineSpill.headerSize, count: length))
                offset += LineSpill.headerSize + length
            }
            if offset > 0 {
                memmove(input, input + offset, filled - offset)
                filled -= offset
            } else if filled == room {
                throw failure("read back", cause: "a set-aside record is longer than any line: rerun the command, and if it fails again, please report it as a tidemark bug")
            }
            if endOfFile {
                guard filled == 0 else {
                    throw failure("read back", cause: "it ends inside a record (the disk lost data, or a tidemark bug): rerun the command, and if it fails again, please report it")
                }
                discard()
                return
            }
        }
    }

    /// Drops every line, buffered or written, giving the file's disk space back (the file
    /// itself was unlinked on creation, so its space is otherwise held until it is closed).
    func discard() {
        used = 0
        lines = 0
        _ = ftruncate(fd, 0)
    }
}

/// The scratch files of a split's later passes (rebuild and validate): the first pass reads
/// the source once and sets each later pass's raw lines aside in that pass's file.
///
/// Should writing a scratch file fail (the folder's disk fills up), a caller that can read
/// its source again (validate) may have the later passes do that instead (`onWriteFailure`):
/// from then on lines are no longer set aside, every scratch file is emptied (the disk that
/// filled up gets its space back), and every pass not read yet reads the source again.
/// Rebuild, whose scratch files sit beside the database, fails instead.
final class PassSpills: @unchecked Sendable {
    /// Passes in the split, the first included.
    let passes: Int
    private let spills: [LineSpill]
    /// Told of the first failed write, which makes the later passes read the source again;
    /// nil: a failed write throws.
    private let onWriteFailure: (@Sendable (FileSystemError) -> Void)?
    /// Whether a write failed (with `onWriteFailure`). Set and read on the one thread that
    /// sets lines aside and reads them back.
    private var failed = false

    /// Creates `"\(pathPrefix)N.spill"` for each later pass N (1 ..< passes).
    init(passes: Int, pathPrefix: String, onWriteFailure: (@Sendable (FileSystemError) -> Void)? = nil) throws {
        self.passes = passes
        self.onWriteFailure = onWriteFailure
        spills = try (1..<max(1, passes)).map { try LineSpill(path: "\(pathPrefix)\($0).spill") }
    }

    /// Sets a raw line aside when its event belongs to a later pass, and says so; a line of
    /// the first pass, or one that does not parse, stays with the caller. After a failed
    /// write (with `onWriteFailure`) a later pass's line is skipped, not set aside.
    func divert(file: Int, line: Int, bytes: UnsafeRawBufferPointer, parser: EventLineParser) throws -> Bool {
        guard let pass = PassSplit.pass(ofLine: bytes, count: passes, parser: parser), pass > 0 else { return false }
        guard !failed else { return true }
        try settingAside { try spills[pass - 1].append(file: file, line: line, bytes: bytes) }
        return true
    }

    /// The lines set aside for a later pass (1 ..< passes). With `onWriteFailure`, nil when a
    /// write failed (before, or now, writing out what is buffered): the pass then reads the
    /// source again.
    func lines(ofPass pass: Int) throws -> LineSpill? {
        let spill = spills[pass - 1]
        guard !failed else { return nil }
        try settingAside { try spill.flush() }
        return failed ? nil : spill
    }

    /// Runs a write; with `onWriteFailure`, a failure empties every scratch file and is told
    /// instead of thrown.
    private func settingAside(_ write: () throws -> Void) throws {
        do {
            try write()
        } catch let error as FileSystemError where onWriteFailure != nil {
            failed = true
            for spill in spills { spill.discard() }
            onWriteFailure?(error)
        }
    }
}
