import Foundation

/// One line of a landing file after decoding.
enum DecodedLine {
    case delivery(line: Int, Delivery)
    case rejected(line: Int, reason: String, raw: String?)
}

/// Why a file could not be decoded as a whole (it is then quarantined).
enum DecodeFailure: Error {
    case gzip(GzipError)
    case io(FileSystemError)
}

/// A run of decoded lines of one file; the last piece of a file carries how the file ended.
struct DecodedPiece {
    var fileIndex: Int
    var lines: [DecodedLine]
    /// nil until the file's last piece: its digest and sizes, or why it failed.
    var end: Result<GzipFileSummary, DecodeFailure>?
    /// With `holdingFiles`, on the file's last piece: the file as read, still open (nil when
    /// it could not be opened).
    var held: HeldLandingFile? = nil
}

/// Decodes gzip NDJSON files (gunzip, split, parse) on a background thread while the caller
/// writes to SQLite on its own: the two halves of ingest (and of rebuild, reading the archive)
/// overlap on two cores. Pieces hold at
/// most `linesPerPiece` lines, and decoding pauses once `linesAhead` lines wait in memory,
/// whatever the file sizes. The budget is in lines, not pieces: small files make small pieces,
/// and the decoder must be able to run a whole merge group ahead while SQLite works.
final class FileDecoder: @unchecked Sendable {
    /// The gzip files to read, in order (landing files for ingest, archived copies for rebuild).
    private let paths: [String]
    /// Instead of files: lines set aside earlier, each naming the file it came from.
    private let spill: LineSpill?
    private let parser: EventLineParser
    private let maxOutputBytes: Int64
    private let linesPerPiece: Int
    private let linesAhead: Int
    /// Sees each raw line (file index, line number, bytes) before it is parsed; a line it
    /// returns true for is taken away unparsed (rebuild sets aside the lines of later passes).
    /// nil for ingest.
    private let divert: Divert?
    /// With a number, each file's descriptor is handed over with its last piece (ingest holds
    /// landing files open until they are archived: `HeldLandingFile`), and decoding pauses
    /// while that many such files wait, which bounds the descriptors held. nil: none held.
    private let holdingFilesAhead: Int?
    /// The default bound on files held ahead.
    static let filesAhead = 256
    private var heldQueued = 0
    typealias Divert = @Sendable (_ fileIndex: Int, _ line: Int, _ bytes: UnsafeRawBufferPointer) throws -> Bool
    private let condition = NSCondition()
    private var queue: [DecodedPiece] = []
    private var queuedLines = 0
    private var finished = false
    private var cancelled = false

    init(paths: [String], parser: EventLineParser, maxOutputBytes: Int64, linesPerPiece: Int = 8192, linesAhead: Int = 65_536,
         divert: Divert? = nil, holdingFilesAhead: Int? = nil) {
        self.paths = paths
        self.spill = nil
        self.divert = divert
        self.holdingFilesAhead = holdingFilesAhead
        self.parser = parser
        self.maxOutputBytes = maxOutputBytes
        self.linesPerPiece = linesPerPiece
        self.linesAhead = linesAhead
        start()
    }

    /// Decodes the lines of a spill instead of files: pieces name the file index each line
    /// was set aside with, and carry no end (their files were verified when first read).
    init(spill: LineSpill, parser: EventLineParser, linesPerPiece: Int = 8192, linesAhead: Int = 65_536) {
        self.paths = []
        self.spill = spill
        self.divert = nil
        self.holdingFilesAhead = nil
        self.parser = parser
        self.maxOutputBytes = .max
        self.linesPerPiece = linesPerPiece
        self.linesAhead = linesAhead
        start()
    }

    private func start() {
        let thread = Thread { [self] in run() }
        thread.stackSize = 8 << 20 // deep JSON nesting is cut at 64 levels, but be generous
        thread.start()
    }

    /// The next piece in file order, or nil when every file has been decoded.
    func next() -> DecodedPiece? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty && !finished { condition.wait() }
        guard !queue.isEmpty else { return nil }
        let piece = queue.removeFirst()
        queuedLines -= piece.lines.count
        if piece.held != nil { heldQueued -= 1 }
        condition.broadcast()
        return piece
    }

    /// Stops decoding ahead (the caller stops early, e.g. on SIGTERM).
    func cancel() {
        condition.lock()
        cancelled = true
        queue.removeAll()
        queuedLines = 0
        heldQueued = 0
        condition.broadcast()
        condition.unlock()
    }

    private func push(_ piece: DecodedPiece) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !queue.isEmpty && (queuedLines + piece.lines.count > linesAhead || (piece.held != nil && heldQueued >= holdingFilesAhead ?? .max))
            && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        queue.append(piece)
        queuedLines += piece.lines.count
        if piece.held != nil { heldQueued += 1 }
        condition.broadcast()
        return true
    }

    private func run() {
        defer {
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        if let spill { return decode(spill) }
        // Each file's lines are reserved at the size of the file before (one source's files
        // are alike): a fixed 4,096 was four times what a producer's file holds, and with
        // some 70 files decoded ahead that unused room was the largest block of a 1M ingest's
        // memory (about 50 MB).
        var expectedLines = 1024
        for (index, path) in paths.enumerated() {
            var lines: [DecodedLine] = []
            lines.reserveCapacity(min(linesPerPiece, expectedLines))
            var linesPushed = 0
            let result: Result<GzipFileSummary, DecodeFailure>
            var held: HeldLandingFile?
            do {
                let reader = GzipLineReader(path: path, maxOutputBytes: maxOutputBytes)
                func body(_ number: Int, _ content: LineContent) throws {
                    switch content {
                    case .overlong(let length):
                        lines.append(.rejected(line: number, reason: LineRejection.overlong(length).reason, raw: nil))
                    case .bytes(let bytes):
                        if let divert, try divert(index, number, bytes) { return }
                        switch parser.parse(bytes) {
                        case .success(let delivery):
                            lines.append(.delivery(line: number, delivery))
                        case .failure(let rejection):
                            if rejection.isBlank { return } // blank lines are not records
                            lines.append(.rejected(line: number, reason: rejection.reason,
                                                   raw: LineRejection.rawText(bytes)))
                        }
                    }
                    if lines.count >= linesPerPiece {
                        linesPushed += lines.count
                        guard push(DecodedPiece(fileIndex: index, lines: lines, end: nil)) else { throw CancellationError() }
                        lines = []
                    }
                }
                if holdingFilesAhead != nil {
                    held = try HeldLandingFile(opening: path)
                    result = .success(try reader.forEachLine(readingFrom: held!.fd, body))
                } else {
                    result = .success(try reader.forEachLine(body))
                }
            } catch let error as GzipError {
                result = .failure(.gzip(error))
            } catch let error as FileSystemError {
                result = .failure(.io(error))
            } catch is CancellationError {
                return
            } catch {
                // Never a silent end of the stream: the caller would take it for the last file.
                result = .failure(Self.unexpected(error, reading: path))
            }
            expectedLines = linesPushed + lines.count + 16
            guard push(DecodedPiece(fileIndex: index, lines: lines, end: result, held: held)) else { return }
        }
    }

    private func decode(_ spill: LineSpill) {
        var lines: [DecodedLine] = []
        var fileIndex = 0
        do {
            try spill.forEachLine { index, number, bytes in
                if index != fileIndex || lines.count >= linesPerPiece {
                    if !lines.isEmpty {
                        guard push(DecodedPiece(fileIndex: fileIndex, lines: lines, end: nil)) else { throw CancellationError() }
                        lines = []
                    }
                    fileIndex = index
                }
                if case .success(let delivery) = parser.parse(bytes) { lines.append(.delivery(line: number, delivery)) }
            }
            if !lines.isEmpty { _ = push(DecodedPiece(fileIndex: fileIndex, lines: lines, end: nil)) }
        } catch let error as FileSystemError {
            _ = push(DecodedPiece(fileIndex: fileIndex, lines: [], end: .failure(.io(error))))
        } catch is CancellationError {
            return
        } catch {
            _ = push(DecodedPiece(fileIndex: fileIndex, lines: [], end: .failure(Self.unexpected(error, reading: spill.path))))
        }
    }

    /// An error no step of decoding throws, reported as a failure of the file (never taken for
    /// the end of the stream).
    private static func unexpected(_ error: Error, reading path: String) -> DecodeFailure {
        .io(FileSystemError("decode", path, cause: "unexpected error, a tidemark bug (please report it): \(error)"))
    }
}
