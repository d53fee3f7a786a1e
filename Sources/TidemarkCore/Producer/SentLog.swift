import Foundation

/// The producer's record of every delivery it published: the source of truth that
/// `tidemark validate` checks the warehouse against.
///
/// The folder holds gzip NDJSON files named `sent-NNNNNNNNN.ndjson.gz` (nine digits, so name
/// order is write order); each is written once, atomically (temporary name, fsync, rename),
/// and never rewritten. One line per landing-file line, in publish order:
///
///     {"file":"events-000000001-20250730T100000Z.ndjson.gz","line":1,"record":{"event_id":"…",…}}
///
/// `file` is the landing file's name, `line` its 1-based line number, and `record` is,
/// byte for byte, the text of that landing line. `record` is always the last key, so a reader
/// can hand the bytes between `"record":` and the final `}` straight to `EventLineParser`.
///
/// Ordering contract with the landing folder: the sent-log file that lists a landing file is
/// written before that landing file is published, so every line in the landing folder is in
/// the sent log. A crash (SIGKILL, power loss) between the two leaves sent-log entries whose
/// landing file was not published yet; the producer records this in an in-flight marker and
/// the next `tidemark produce` publishes those files before producing anything new (see
/// `Producer`). SIGINT and SIGTERM never leave such entries.
public enum SentLog {
    public static let filePrefix = "sent-"
    public static let fileSuffix = ".ndjson.gz"

    /// The hint of every error about a sent-log folder that holds no sent log.
    static let folderHint = "pass the folder given to tidemark produce --sent-log (tidemark produce writes one)"

    /// The sent-log files in `folder` (`sent-NNNNNNNNN.ndjson.gz`), in name order (which is
    /// write order).
    public static func files(in folder: String) throws -> [String] {
        guard FileSystem.isFolder(folder) else {
            throw TidemarkError("read sent log", folder, cause: FileSystem.exists(folder) ? "not a folder (a file is there)" : "no such folder",
                                hint: folderHint, exit: .noInput)
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            throw TidemarkError("read sent log", folder, cause: "cannot list the folder (\(error.localizedDescription))",
                                exit: .ioError)
        }
        return names.filter { sequence(ofFileName: $0) != nil }.sorted()
    }

    /// Calls `body` for every entry of every sent-log file in name order, with the raw bytes
    /// of the record (valid only during the call).
    public static func forEachEntry(
        in folder: String,
        _ body: (_ file: String, _ line: Int, _ record: UnsafeRawBufferPointer) throws -> Void
    ) throws {
        for name in try files(in: folder) {
            try forEachEntry(ofFile: folder + "/" + name, body)
        }
    }

    /// Calls `body` for every delivery in the sent log, in the order it was published.
    /// Throws a `TidemarkError` (exit 65) naming the file and line of a malformed entry.
    /// `divert` sees each record first, with the index of its sent-log file (in `files(in:)`
    /// order) and its entry number, and may take it away unparsed (validate sets aside the
    /// records of its later passes).
    /// `skipping`: entries left out before anything else (validate leaves out the lines ingest
    /// rejected), by landing file name, line number and record.
    public static func forEachDelivery(
        in folder: String,
        skipping: (_ file: String, _ line: Int, _ record: UnsafeRawBufferPointer) -> Bool = { _, _, _ in false },
        divert: (_ fileIndex: Int, _ entry: Int, _ record: UnsafeRawBufferPointer) throws -> Bool = { _, _, _ in false },
        _ body: (_ file: String, _ line: Int, _ delivery: Delivery) throws -> Void
    ) throws {
        // The record was published in the past; only the future-skew check uses `now`.
        let parser = EventLineParser.forPublishedLines
        for (fileIndex, name) in try files(in: folder).enumerated() {
            let path = folder + "/" + name
            var entry = 0
            try forEachEntry(ofFile: path) { file, line, record in
                entry += 1
                if skipping(file, line, record) { return }
                if try divert(fileIndex, entry, record) { return }
                switch parser.parse(record) {
                case .success(let delivery):
                    try body(file, line, delivery)
                case .failure(let rejection):
                    throw malformed(path, entry, "record of \(file) line \(line): \(rejection.reason)")
                }
            }
        }
    }

    /// Reads one sent-log file; `body` gets the landing file name, its line number and the record bytes.
    static func forEachEntry(
        ofFile path: String,
        _ body: (_ file: String, _ line: Int, _ record: UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var cachedName: [UInt8] = []
        var cachedFile = ""
        do {
            _ = try GzipLineReader(path: path).forEachLine { number, content in
                guard case .bytes(let bytes) = content else {
                    throw malformed(path, number, "line is longer than 1 MiB")
                }
                let entry: Entry
                switch parse(bytes) {
                case .success(let parsed): entry = parsed
                case .failure(let rejection): throw malformed(path, number, rejection.reason)
                }
                // Consecutive entries name the same landing file: build its String once.
                let name = UnsafeRawBufferPointer(rebasing: bytes[entry.fileBytes])
                if entry.fileEscaped {
                    var reader = JSONReader(base: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: bytes.count)
                    reader.index = entry.fileBytes.lowerBound - 1
                    cachedFile = try reader.readString()
                    cachedName = []
                } else if !name.elementsEqual(cachedName) {
                    cachedName = Array(name)
                    cachedFile = String(decoding: name, as: UTF8.self)
                }
                try body(cachedFile, entry.line, UnsafeRawBufferPointer(rebasing: bytes[entry.record]))
            }
        } catch let error as FileSystemError where error.path == path {
            // Errors of the caller's own work (say, a scratch file it writes) pass unchanged.
            throw TidemarkError("read sent log", path, cause: error.cause, exit: .ioError)
        } catch let error as GzipError {
            throw TidemarkError("read sent log", path, cause: error.description,
                                hint: "sent-log files are written atomically; this one was damaged after it was written",
                                exit: .dataError)
        }
    }

    /// The error for a record set aside unparsed that turns out not to parse.
    static func malformedRecord(in folder: String, fileIndex: Int, entry: Int, _ reason: String) -> TidemarkError {
        let name = (try? files(in: folder)).flatMap { fileIndex < $0.count ? $0[fileIndex] : nil } ?? "file \(fileIndex + 1)"
        return malformed(folder + "/" + name, entry, "record: \(reason)")
    }

    private static func malformed(_ path: String, _ line: Int, _ cause: String) -> TidemarkError {
        TidemarkError("read sent log", "\(path) line \(line)", cause: cause,
                      hint: "sent-log lines look like {\"file\":\"NAME\",\"line\":N,\"record\":{…}}", exit: .dataError)
    }

    /// Where the parts of one sent-log line are, as byte ranges of the line.
    struct Entry {
        /// The file name's bytes between its quotes (still escaped when `fileEscaped`).
        var fileBytes: Range<Int>
        var fileEscaped: Bool
        var line: Int
        var record: Range<Int>
    }

    /// Splits `{"file":"…","line":N,"record":…}` (insignificant whitespace allowed) without
    /// building strings. The record range is everything after `"record":` up to the final `}`;
    /// whether it is a valid record is `EventLineParser`'s business.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<Entry, LineRejection> {
        let count = bytes.count
        var index = 0
        func skipWhitespace() {
            while index < count, bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0D || bytes[index] == 0x0A {
                index += 1
            }
        }
        func take(_ literal: StaticString) -> Bool {
            skipWhitespace()
            let length = literal.utf8CodeUnitCount
            guard count - index >= length else { return false }
            let start = literal.utf8Start
            for offset in 0..<length where bytes[index + offset] != start[offset] { return false }
            index += length
            return true
        }
        guard take("{") else { return .failure(LineRejection("expected '{' at the start of the line")) }
        guard take("\"file\""), take(":") else { return .failure(LineRejection("expected \"file\": as the first key")) }
        skipWhitespace()
        guard index < count, bytes[index] == UInt8(ascii: "\"") else {
            return .failure(LineRejection("\"file\" must be a string"))
        }
        index += 1
        let fileStart = index
        var escaped = false
        while index < count, bytes[index] != UInt8(ascii: "\"") {
            if bytes[index] == UInt8(ascii: "\\") {
                escaped = true
                index += 1
            }
            index += 1
        }
        guard index < count else { return .failure(LineRejection("unterminated \"file\" string")) }
        let fileBytes = fileStart..<index
        index += 1
        guard !fileBytes.isEmpty else { return .failure(LineRejection("\"file\" is empty")) }
        guard take(","), take("\"line\""), take(":") else {
            return .failure(LineRejection("expected \"line\": as the second key"))
        }
        skipWhitespace()
        var line = 0
        let digitsStart = index
        while index < count, bytes[index] >= 48, bytes[index] <= 57, index - digitsStart < 12 {
            line = line * 10 + Int(bytes[index] - 48)
            index += 1
        }
        guard index > digitsStart, line >= 1 else {
            return .failure(LineRejection("\"line\" must be a positive integer"))
        }
        guard take(","), take("\"record\""), take(":") else {
            return .failure(LineRejection("expected \"record\": as the third and last key"))
        }
        skipWhitespace()
        var end = count
        while end > index, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 || bytes[end - 1] == 0x0D {
            end -= 1
        }
        guard end > index, bytes[end - 1] == UInt8(ascii: "}") else {
            return .failure(LineRejection("expected '}' at the end of the line"))
        }
        end -= 1
        while end > index, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 || bytes[end - 1] == 0x0D || bytes[end - 1] == 0x0A {
            end -= 1
        }
        guard end > index else { return .failure(LineRejection("\"record\" is empty")) }
        return .success(Entry(fileBytes: fileBytes, fileEscaped: escaped, line: line, record: index..<end))
    }

    /// Appends one sent-log line (with its newline) for landing line `line` of `file`.
    static func appendLine(file: String, line: Int, record: String, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"file":"#.utf8)
        JSONValue.writeString(file, to: &out)
        out.append(contentsOf: #","line":"#.utf8)
        out.append(contentsOf: String(line).utf8)
        out.append(contentsOf: #","record":"#.utf8)
        out.append(contentsOf: record.utf8)
        out.append(contentsOf: "}\n".utf8)
    }

    /// `sent-000000042.ndjson.gz`
    static func fileName(sequence: Int) -> String {
        var bytes = Array(filePrefix.utf8)
        appendDigits(&bytes, sequence, width: max(9, String(sequence).utf8.count))
        bytes.append(contentsOf: fileSuffix.utf8)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The sequence number of a sent-log file name, or nil for other names.
    static func sequence(ofFileName name: String) -> Int? {
        guard name.hasPrefix(filePrefix), name.hasSuffix(fileSuffix) else { return nil }
        let digits = name.dropFirst(filePrefix.count).dropLast(fileSuffix.count)
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(digits)
    }
}
