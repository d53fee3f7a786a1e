import CZlib
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a landing file cannot be read as gzip; the whole file is then quarantined.
public enum GzipError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case notGzip
    case truncated(afterBytes: Int64)
    case corrupt(String)
    case tooLarge(limit: Int64)

    /// Whether the file may simply not be written to its end yet.
    public var mayBeUnfinished: Bool {
        switch self {
        case .empty, .truncated: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .empty: return "empty file (zero bytes, not gzip)"
        case .notGzip: return "not a gzip file (bad header)"
        case .truncated(let n): return "truncated gzip: the stream ends after \(n) compressed bytes without its trailer"
        case .corrupt(let message): return "corrupt gzip: \(message)"
        case .tooLarge(let limit): return "decompresses to more than \(limit) bytes (gzip bomb guard, see --max-file-output)"
        }
    }
}

/// One line handed out by `GzipLineReader`.
public enum LineContent {
    /// The line's bytes without the newline, valid only during the callback.
    case bytes(UnsafeRawBufferPointer)
    /// A line longer than `EventLineParser.maxLineBytes`; its bytes were skipped, not buffered.
    case overlong(length: Int)
}

/// What reading a whole file established.
public struct GzipFileSummary: Sendable {
    public var sha256: String
    public var compressedBytes: Int64
    public var decompressedBytes: Int64
    public var members: Int
}

/// Streams a gzip file (any number of concatenated members) as lines, in bounded memory,
/// hashing the compressed bytes on the way.
public struct GzipLineReader {
    public var path: String
    public var maxOutputBytes: Int64
    public var chunkSize = 256 * 1024

    public init(path: String, maxOutputBytes: Int64 = 1 << 30) {
        self.path = path
        self.maxOutputBytes = maxOutputBytes
    }

    /// Calls `body` for each line (1-based numbers) and returns the file's digest and sizes.
    /// Throws `GzipError` for a file that is not complete, valid gzip (lines already handed
    /// out must then be discarded by the caller), and `FileSystemError` when it cannot be read.
    public func forEachLine(_ body: (Int, LineContent) throws -> Void) throws -> GzipFileSummary {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError("open", path) }
        defer { close(fd) }
        return try forEachLine(readingFrom: fd, body)
    }

    /// As `forEachLine(_:)`, reading the file already open at `fd` from where it stands
    /// (`path` names it in errors); the caller keeps the descriptor.
    public func forEachLine(readingFrom fd: Int32, _ body: (Int, LineContent) throws -> Void) throws -> GzipFileSummary {
        // Heap-allocated: zlib keeps a pointer back to the stream and rejects a moved one.
        let streamPointer = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        streamPointer.initialize(to: z_stream())
        defer { streamPointer.deallocate() }
        // A zlib set-up failure is this process's problem, not the file's: not a quarantine.
        guard tidemark_inflate_init_gzip(streamPointer) == Z_OK else { throw FileSystemError("decompress", path, cause: "zlib could not start (out of memory?)") }
        defer { inflateEnd(streamPointer) }

        let input = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
        defer { input.deallocate() }
        let output = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
        defer { output.deallocate() }

        var hasher = SHA256()
        var compressed: Int64 = 0
        var decompressed: Int64 = 0
        var members = 0
        var inMember = false
        var splitter = LineSplitter()
        var endOfFile = false
        // zlib may hold more output than fitted in the buffer even with no input left.
        var outputFull = false

        while true {
            if streamPointer.pointee.avail_in == 0 && !endOfFile {
                let n = try FileSystem.readSome(fd, input, chunkSize, path: path)
                if n == 0 {
                    endOfFile = true
                } else {
                    hasher.update(UnsafeRawBufferPointer(start: input, count: n))
                    compressed += Int64(n)
                    streamPointer.pointee.next_in = input
                    streamPointer.pointee.avail_in = uInt(n)
                }
            }
            if streamPointer.pointee.avail_in == 0 && endOfFile && !outputFull {
                if compressed == 0 { throw GzipError.empty }
                if inMember { throw GzipError.truncated(afterBytes: compressed) }
                break
            }
            if !inMember {
                // Like gzip(1), zero bytes after the last member (tape or block padding) are
                // ignored; anything else there must be another member.
                if members > 0, streamPointer.pointee.avail_in > 0, streamPointer.pointee.next_in[0] == 0 {
                    var zeros = true
                    for i in 0..<Int(streamPointer.pointee.avail_in) where streamPointer.pointee.next_in[i] != 0 { zeros = false; break }
                    if zeros {
                        while zeros {
                            let more = try FileSystem.readSome(fd, input, chunkSize, path: path)
                            if more == 0 { break }
                            hasher.update(UnsafeRawBufferPointer(start: input, count: more))
                            compressed += Int64(more)
                            for i in 0..<more where input[i] != 0 { zeros = false; break }
                        }
                        if zeros { break }
                        throw GzipError.corrupt("data after zero padding at the end of the file")
                    }
                }
                inMember = true
                members += 1
            }
            streamPointer.pointee.next_out = output
            streamPointer.pointee.avail_out = uInt(chunkSize)
            let status = inflate(streamPointer, Z_NO_FLUSH)
            let produced = chunkSize - Int(streamPointer.pointee.avail_out)
            outputFull = streamPointer.pointee.avail_out == 0
            if produced > 0 {
                decompressed += Int64(produced)
                if decompressed > maxOutputBytes { throw GzipError.tooLarge(limit: maxOutputBytes) }
                try splitter.feed(UnsafeRawBufferPointer(start: output, count: produced), body)
            }
            switch status {
            case Z_OK, Z_BUF_ERROR:
                if status == Z_BUF_ERROR && streamPointer.pointee.avail_in == 0 && endOfFile && !outputFull {
                    throw GzipError.truncated(afterBytes: compressed)
                }
            case Z_STREAM_END:
                inMember = false
                // A member that ends exactly at a full buffer has nothing more to give.
                outputFull = false
                guard inflateReset(streamPointer) == Z_OK else { throw FileSystemError("decompress", path, cause: "zlib could not reset its stream") }
            case Z_DATA_ERROR:
                let message = streamPointer.pointee.msg.map { String(cString: $0) } ?? "data error"
                if members == 1 && decompressed == 0 && message.contains("header") { throw GzipError.notGzip }
                // Where: the compressed bytes zlib had taken when it stopped.
                let offset = compressed - Int64(streamPointer.pointee.avail_in)
                if members > 1 && message.contains("header") {
                    throw GzipError.corrupt("what follows gzip member \(members - 1) is not gzip (\(message), near byte \(offset) of \(compressed) read)")
                }
                throw GzipError.corrupt("\(message) in gzip member \(members), near byte \(offset)")
            case Z_MEM_ERROR:
                throw FileSystemError("decompress", path, cause: "zlib ran out of memory")
            default:
                throw GzipError.corrupt("zlib status \(status)")
            }
        }
        try splitter.finish(body)
        return GzipFileSummary(
            sha256: hasher.finalizeHex(), compressedBytes: compressed,
            decompressedBytes: decompressed, members: members)
    }
}

/// Cuts a byte stream into lines without holding more than one line (up to the limit).
struct LineSplitter {
    private var carry: [UInt8] = []
    private var overlongLength = 0
    private var lineNumber = 0
    private let limit = EventLineParser.maxLineBytes

    mutating func feed(_ chunk: UnsafeRawBufferPointer, _ body: (Int, LineContent) throws -> Void) throws {
        let bytes = chunk.bindMemory(to: UInt8.self)
        var start = 0
        while start < bytes.count {
            let rest = UnsafeBufferPointer(rebasing: bytes[start...])
            guard let newline = rest.firstIndex(of: 0x0A) else {
                append(UnsafeBufferPointer(rebasing: rest[...]))
                return
            }
            let piece = UnsafeBufferPointer(rebasing: rest[..<newline])
            lineNumber += 1
            if overlongLength > 0 {
                let total = overlongLength + piece.count
                overlongLength = 0
                try body(lineNumber, .overlong(length: total))
            } else if carry.isEmpty {
                if piece.count > limit {
                    try body(lineNumber, .overlong(length: piece.count))
                } else {
                    try emit(UnsafeRawBufferPointer(piece), body)
                }
            } else {
                if carry.count + piece.count > limit {
                    let total = carry.count + piece.count
                    carry.removeAll(keepingCapacity: true)
                    try body(lineNumber, .overlong(length: total))
                } else {
                    carry.append(contentsOf: piece)
                    try carry.withUnsafeBytes { try emit($0, body) }
                    carry.removeAll(keepingCapacity: true)
                }
            }
            start += newline - rest.startIndex + 1
        }
    }

    /// Hands out a line's bytes. A UTF-8 byte order mark that opens the stream (some Windows
    /// tools write one) is skipped, as RFC 8259 (section 8.1) lets a parser do: otherwise the
    /// file's first event would be rejected. One that opens a later line is left to the parser,
    /// which rejects that line and says why.
    private func emit(_ bytes: UnsafeRawBufferPointer, _ body: (Int, LineContent) throws -> Void) throws {
        if lineNumber == 1, bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
            try body(lineNumber, .bytes(UnsafeRawBufferPointer(rebasing: bytes[3...])))
        } else {
            try body(lineNumber, .bytes(bytes))
        }
    }

    private mutating func append(_ piece: UnsafeBufferPointer<UInt8>) {
        if overlongLength > 0 {
            overlongLength += piece.count
        } else if carry.count + piece.count > limit {
            overlongLength = carry.count + piece.count
            carry = []
        } else {
            carry.append(contentsOf: piece)
        }
    }

    /// Hands out a last line that had no newline.
    mutating func finish(_ body: (Int, LineContent) throws -> Void) throws {
        if overlongLength > 0 {
            lineNumber += 1
            try body(lineNumber, .overlong(length: overlongLength))
            overlongLength = 0
        } else if !carry.isEmpty {
            lineNumber += 1
            try carry.withUnsafeBytes { try emit($0, body) }
            carry = []
        }
    }
}
