/// Why a line was refused. The description is what an operator reads in `rejected_lines.reason`.
public struct LineRejection: Error, Equatable, Sendable, CustomStringConvertible {
    public var reason: String
    /// Nothing but whitespace: not a record, and not an error to report either.
    public var isBlank = false
    public init(_ reason: String) { self.reason = reason }
    static let blank: LineRejection = {
        var rejection = LineRejection("empty line")
        rejection.isBlank = true
        return rejection
    }()
    public var description: String { reason }
    /// A rejected line's text as `rejected_lines.raw_text` keeps it: its first 4 KiB, with a
    /// NUL byte written `\0` (text is bound as a C string, which would end there).
    static func rawText(_ bytes: UnsafeRawBufferPointer) -> String {
        let text = String(decoding: bytes.prefix(4096), as: UTF8.self)
        return text.utf8.contains(0) ? text.replacingOccurrences(of: "\u{0}", with: "\\0") : text
    }

    /// A line longer than `EventLineParser.maxLineBytes`.
    static func overlong(_ length: Int) -> LineRejection { LineRejection("line is longer than 1 MiB (\(length) bytes)") }
}

/// Parses one line of a landing file into a `Delivery`.
///
/// A purpose-built, strictly validating JSON reader for the flat event object: RFC 8259
/// grammar, UTF-8 checked, `\u` escapes with surrogate pairs, no duplicate keys (a line with
/// one is rejected: which value was meant is not knowable). Unknown fields are kept as a
/// canonical JSON object (keys in byte order, no insignificant whitespace) in `extra`.
public struct EventLineParser: Sendable {
    /// Lines longer than this are rejected without being parsed.
    public static let maxLineBytes = 1 << 20
    /// Nesting deeper than this inside an unknown field is rejected.
    public static let maxDepth = 64

    /// The ingest clock; event times more than `maxFutureSkew` past it are rejected.
    public var now: Timestamp
    public var maxFutureSkew: Int64 = 24 * Timestamp.nanosPerHour

    /// The rejection of a time more than `maxFutureSkew` past the ingest clock, if it is.
    private func tooFarAhead(_ time: Timestamp, _ field: String, _ text: String) -> LineRejection? {
        let (limit, overflow) = now.nanosecondsSinceEpoch.addingReportingOverflow(maxFutureSkew)
        guard !overflow, time.nanosecondsSinceEpoch > limit else { return nil }
        return LineRejection("\(field) \(quoted(text)) is more than \(maxFutureSkew / Timestamp.nanosPerHour) h ahead of the ingest clock (\(now.rfc3339))")
    }

    public init(now: Timestamp) { self.now = now }

    public func parse(_ line: UnsafeRawBufferPointer) -> Result<Delivery, LineRejection> {
        guard line.count <= EventLineParser.maxLineBytes else {
            return .failure(.overlong(line.count))
        }
        guard let base = line.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            return .failure(.blank)
        }
        var reader = JSONReader(base: base, count: line.count)
        do {
            let fields = try reader.readTopObject()
            return build(fields)
        } catch let error as LineRejection {
            return .failure(error)
        } catch {
            return .failure(LineRejection("\(error)"))
        }
    }

    /// `stableHash` of the event_id of a line that starts exactly `{"event_id":"` and whose
    /// value is printable ASCII without escapes; nil for any other line. For such a line that
    /// parses, the parsed event_id is these very bytes (a second event_id key is a rejection),
    /// so callers that split work by event_id hash can skip lines of other splits unparsed.
    static func leadingEventIDHash(_ line: UnsafeRawBufferPointer) -> UInt64? {
        let prefix = leadingEventIDPrefix
        guard line.count > prefix.count else { return nil }
        for i in 0..<prefix.count where line[i] != prefix[i] { return nil }
        var hasher = StableHasher()
        var index = prefix.count
        while index < line.count {
            let byte = line[index]
            if byte == UInt8(ascii: "\"") { return index > prefix.count ? hasher.value : nil }
            guard byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\") else { return nil }
            hasher.add(byte)
            index += 1
        }
        return nil
    }

    private static let leadingEventIDPrefix = Array("{\"event_id\":\"".utf8)

    /// For lines already published and accepted once (sent log, archive): a clock far in the
    /// future, so the future-skew check never rejects them on a later read.
    static let forPublishedLines = EventLineParser(now: Timestamp(nanosecondsSinceEpoch: Int64.max / 2))

    public func parse(_ text: String) -> Result<Delivery, LineRejection> {
        var copy = text
        return copy.withUTF8 { parse(UnsafeRawBufferPointer($0)) }
    }

    private func containsNUL(_ text: String, _ name: String) -> LineRejection? {
        text.utf8.contains(0) ? LineRejection("\(name) contains a NUL character (\\u0000), which SQLite tools and drivers cut text at") : nil
    }

    private func build(_ fields: JSONReader.TopFields) -> Result<Delivery, LineRejection> {
        guard let eventID = fields.eventID else {
            return .failure(LineRejection("missing field event_id"))
        }
        guard case .string(let id) = eventID else {
            return .failure(LineRejection("event_id must be a string, found \(eventID.kind)"))
        }
        guard !id.isEmpty else { return .failure(LineRejection("event_id is empty")) }
        // SQLite keeps a NUL in text, but C-string paths (GRDB's text binding among them)
        // end the text there: "a\u0000b" would be stored, bound or read back as "a".
        if let nul = containsNUL(id, "event_id") { return .failure(nul) }

        var receivedTime: Timestamp?
        switch fields.receivedTime {
        case nil, .null?: receivedTime = nil
        case .string(let text)?:
            switch Timestamp.parse(text) {
            case .success(let t):
                // A received_time far ahead (a producer's clock gone wrong) would win every
                // later correction of the event and hold freshness at "fresh": rejected as
                // event_time is.
                if let ahead = tooFarAhead(t, "received_time", text) { return .failure(ahead) }
                receivedTime = t
            case .failure(let e): return .failure(LineRejection("received_time \(quoted(text)): \(e)"))
            }
        case let other?:
            return .failure(LineRejection("received_time must be a string, found \(other.kind)"))
        }

        var isValid = true
        switch fields.isValid {
        case nil: isValid = true
        case .bool(let b)?: isValid = b
        case let other?: return .failure(LineRejection("is_valid must be true or false, found \(other.kind)"))
        }

        let hasRecordFields = fields.userID != nil || fields.eventType != nil || fields.eventTime != nil
        if !hasRecordFields && fields.extra.isEmpty && !isValid {
            return .success(.tombstone(eventID: id, receivedTime: receivedTime))
        }
        if !hasRecordFields && fields.extra.isEmpty && fields.isValid == nil {
            return .success(.tombstone(eventID: id, receivedTime: receivedTime))
        }

        // No record field but other keys: probably a deletion carrying more than a tombstone may.
        let tombstoneLike = !hasRecordFields && !fields.extra.isEmpty
        func requiredString(_ value: JSONValue?, _ name: String) -> Result<String, LineRejection> {
            switch value {
            case nil where tombstoneLike:
                let keys = fields.extra.prefix(3).map { "\"\($0.0)\"" }.joined(separator: ", ") + (fields.extra.count > 3 ? ", …" : "")
                return .failure(LineRejection("""
                    missing field \(name): a record needs user_id, event_type and event_time, and a tombstone may hold only \
                    event_id, received_time and "is_valid": false (this line also has \(keys))
                    """))
            case nil: return .failure(LineRejection("missing field \(name)"))
            case .string(let s)?: return .success(s)
            case let other?: return .failure(LineRejection("\(name) must be a string, found \(other.kind)"))
            }
        }
        let userID: String, eventType: String, eventTimeText: String
        switch requiredString(fields.userID, "user_id") {
        case .success(let s): userID = s
        case .failure(let e): return .failure(e)
        }
        switch requiredString(fields.eventType, "event_type") {
        case .success(let s): eventType = s
        case .failure(let e): return .failure(e)
        }
        if let nul = containsNUL(userID, "user_id") ?? containsNUL(eventType, "event_type") { return .failure(nul) }
        switch requiredString(fields.eventTime, "event_time") {
        case .success(let s): eventTimeText = s
        case .failure(let e): return .failure(e)
        }
        let eventTime: Timestamp
        switch Timestamp.parse(eventTimeText) {
        case .success(let t): eventTime = t
        case .failure(let e): return .failure(LineRejection("event_time \(quoted(eventTimeText)): \(e)"))
        }
        guard eventTime.nanosecondsSinceEpoch >= 0 else {
            return .failure(LineRejection("event_time \(quoted(eventTimeText)) is before 1970"))
        }
        if let ahead = tooFarAhead(eventTime, "event_time", eventTimeText) { return .failure(ahead) }
        let extra = fields.extra.isEmpty ? nil : JSONValue.object(fields.extra).canonicalText
        return .success(.record(EventRecord(
            eventID: id, userID: userID, eventType: eventType, eventTime: eventTime,
            receivedTime: receivedTime, isValid: isValid, extra: extra)))
    }
}

/// A value quoted in a rejection reason: its first 64 characters, as a JSON string (control
/// characters and NUL escaped, so that the reason reads whole wherever it is stored).
private func quoted(_ text: String) -> String {
    var out: [UInt8] = []
    JSONValue.writeString(text.count > 64 ? String(text.prefix(64)) : text, to: &out)
    if text.count > 64 { out.insert(contentsOf: "…".utf8, at: out.count - 1) }
    return String(decoding: out, as: UTF8.self)
}

/// A parsed JSON value, used for the known fields and for unknown fields kept in `extra`.
public indirect enum JSONValue: Equatable, Sendable {
    case string(String)
    /// The number's text exactly as written (already checked against the JSON grammar).
    case number(String)
    case bool(Bool)
    case null
    case array([JSONValue])
    /// Members in byte order of their keys.
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.string(x), .string(y)): return x.utf8.elementsEqual(y.utf8)
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0.utf8.elementsEqual($1.0.utf8) && $0.1 == $1.1 }
        default: return false
        }
    }

    var kind: String {
        switch self {
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// Minimal JSON text: no whitespace, keys in byte order, strings escaped only where needed.
    public var canonicalText: String {
        var out = [UInt8]()
        write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    func write(to out: inout [UInt8]) {
        switch self {
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .number(let n): out.append(contentsOf: n.utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .null: out.append(contentsOf: "null".utf8)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                item.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Recursive-descent JSON reader over one line's bytes.
struct JSONReader {
    struct TopFields {
        var eventID: JSONValue?
        var userID: JSONValue?
        var eventType: JSONValue?
        var eventTime: JSONValue?
        var receivedTime: JSONValue?
        var isValid: JSONValue?
        var extra: [(String, JSONValue)] = []
    }

    let base: UnsafePointer<UInt8>
    let count: Int
    var index = 0

    init(base: UnsafePointer<UInt8>, count: Int) {
        self.base = base
        self.count = count
    }

    private func fail(_ what: String) -> LineRejection {
        LineRejection("invalid JSON at byte \(index + 1): \(what)")
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while index < count {
            let byte = base[index]
            guard byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D else { return }
            index += 1
        }
    }

    @inline(__always)
    mutating func expect(_ byte: UInt8, _ what: String) throws {
        skipWhitespace()
        guard index < count, base[index] == byte else {
            throw index < count ? fail("expected \(what)") : fail("unexpected end of line, expected \(what)")
        }
        index += 1
    }

    mutating func readTopObject() throws -> TopFields {
        skipWhitespace()
        guard index < count else { throw LineRejection.blank }
        guard base[index] == UInt8(ascii: "{") else {
            // Tell "valid JSON but not an object" apart from "not JSON". (Repeated keys in an
            // object inside are valid JSON: RFC 8259 only says they should be unique.)
            var probe = self
            if (try? probe.readValue(depth: 0, rejectingDuplicates: false)) != nil {
                probe.skipWhitespace()
                if probe.index == count { throw LineRejection("line is JSON but not an object") }
            }
            if count - index >= 3 && base[index] == 0xEF && base[index + 1] == 0xBB && base[index + 2] == 0xBF {
                throw fail("expected '{', found a UTF-8 byte order mark (BOM): write the file as UTF-8 without one")
            }
            throw fail("expected '{'")
        }
        index += 1
        var fields = TopFields()
        // Known keys are tracked in a bit set; unknown keys (rare) in a small array.
        var seen: UInt8 = 0
        func mark(_ bit: UInt8, _ key: String) throws {
            guard seen & bit == 0 else { throw LineRejection("duplicate key \"\(key)\" in one object") }
            seen |= bit
        }
        skipWhitespace()
        if index < count, base[index] == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                guard index < count, base[index] == UInt8(ascii: "\"") else { throw fail("expected a key string") }
                let key = try readString()
                try expect(UInt8(ascii: ":"), "':'")
                let value = try readValue(depth: 1)
                switch key {
                case "event_id": try mark(1, key); fields.eventID = value
                case "user_id": try mark(2, key); fields.userID = value
                case "event_type": try mark(4, key); fields.eventType = value
                case "event_time": try mark(8, key); fields.eventTime = value
                case "received_time": try mark(16, key); fields.receivedTime = value
                case "is_valid": try mark(32, key); fields.isValid = value
                default:
                    fields.extra.append((key, value))
                }
                skipWhitespace()
                guard index < count else { throw fail("unexpected end of line inside the object") }
                if base[index] == UInt8(ascii: ",") { index += 1; continue }
                if base[index] == UInt8(ascii: "}") { index += 1; break }
                throw fail("expected ',' or '}'")
            }
        }
        skipWhitespace()
        guard index == count else { throw fail("unexpected text after the object") }
        try sortRejectingDuplicates(&fields.extra)
        return fields
    }

    /// Sorts an object's members by key bytes and rejects a key that appears twice (found as
    /// equal neighbours: n log n, where checking each key against the earlier ones is n²).
    /// Byte comparison: distinct encodings of one text are distinct keys.
    private func sortRejectingDuplicates(_ members: inout [(String, JSONValue)]) throws {
        guard members.count > 1 else { return }
        members.sort { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
        for i in 1..<members.count where members[i - 1].0.utf8.elementsEqual(members[i].0.utf8) {
            throw LineRejection("duplicate key \"\(members[i].0)\" in one object")
        }
    }

    /// `rejectingDuplicates`: an object that repeats a key is rejected (Tidemark's rule for
    /// events; off where only the JSON grammar is checked).
    mutating func readValue(depth: Int, rejectingDuplicates: Bool = true) throws -> JSONValue {
        guard depth <= EventLineParser.maxDepth else {
            throw LineRejection("nesting deeper than \(EventLineParser.maxDepth) levels (a field's value is level 1)")
        }
        skipWhitespace()
        guard index < count else { throw fail("unexpected end of line, expected a value") }
        switch base[index] {
        case UInt8(ascii: "\""): return .string(try readString())
        case UInt8(ascii: "{"):
            index += 1
            var members: [(String, JSONValue)] = []
            skipWhitespace()
            if index < count, base[index] == UInt8(ascii: "}") { index += 1; return .object([]) }
            while true {
                skipWhitespace()
                guard index < count, base[index] == UInt8(ascii: "\"") else { throw fail("expected a key string") }
                let key = try readString()
                try expect(UInt8(ascii: ":"), "':'")
                let value = try readValue(depth: depth + 1, rejectingDuplicates: rejectingDuplicates)
                members.append((key, value))
                skipWhitespace()
                guard index < count else { throw fail("unexpected end of line inside an object") }
                if base[index] == UInt8(ascii: ",") { index += 1; continue }
                if base[index] == UInt8(ascii: "}") { index += 1; break }
                throw fail("expected ',' or '}'")
            }
            if rejectingDuplicates { try sortRejectingDuplicates(&members) }
            return .object(members)
        case UInt8(ascii: "["):
            index += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if index < count, base[index] == UInt8(ascii: "]") { index += 1; return .array([]) }
            while true {
                items.append(try readValue(depth: depth + 1, rejectingDuplicates: rejectingDuplicates))
                skipWhitespace()
                guard index < count else { throw fail("unexpected end of line inside an array") }
                if base[index] == UInt8(ascii: ",") { index += 1; continue }
                if base[index] == UInt8(ascii: "]") { index += 1; break }
                throw fail("expected ',' or ']'")
            }
            return .array(items)
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try readNumber())
        default: throw fail("unexpected character")
        }
    }

    mutating func literal(_ word: StaticString) throws {
        let length = word.utf8CodeUnitCount
        guard count - index >= length else { throw fail("invalid literal") }
        let bytes = word.utf8Start
        for offset in 0..<length where base[index + offset] != bytes[offset] { throw fail("invalid literal") }
        index += length
    }

    mutating func readNumber() throws -> String {
        let start = index
        @inline(__always) func isDigit(_ i: Int) -> Bool { i < count && base[i] >= 48 && base[i] <= 57 }
        if base[index] == UInt8(ascii: "-") { index += 1 }
        guard isDigit(index) else { throw fail("invalid number") }
        if base[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while isDigit(index) { index += 1 }
        }
        if index < count, base[index] == UInt8(ascii: ".") {
            index += 1
            guard isDigit(index) else { throw fail("invalid number") }
            while isDigit(index) { index += 1 }
        }
        if index < count, base[index] == UInt8(ascii: "e") || base[index] == UInt8(ascii: "E") {
            index += 1
            if index < count, base[index] == UInt8(ascii: "+") || base[index] == UInt8(ascii: "-") { index += 1 }
            guard isDigit(index) else { throw fail("invalid number") }
            while isDigit(index) { index += 1 }
        }
        return String(decoding: UnsafeBufferPointer(start: base + start, count: index - start), as: UTF8.self)
    }

    /// Reads a string starting at its opening quote; checks UTF-8 and escapes.
    mutating func readString() throws -> String {
        index += 1
        let start = index
        // Fast path: plain ASCII without escapes.
        while index < count {
            let byte = base[index]
            if byte == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeBufferPointer(start: base + start, count: index - start), as: UTF8.self)
                index += 1
                return s
            }
            if byte == UInt8(ascii: "\\") || byte >= 0x80 || byte < 0x20 { break }
            index += 1
        }
        var out = [UInt8](UnsafeBufferPointer(start: base + start, count: index - start))
        while index < count {
            let byte = base[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                index += 1
                guard index < count else { throw fail("unterminated escape") }
                let escape = base[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try readHex4()
                    if scalar >= 0xD800 && scalar <= 0xDBFF {
                        guard count - index >= 6, base[index] == UInt8(ascii: "\\"), base[index + 1] == UInt8(ascii: "u")
                        else { throw LineRejection("invalid JSON string: lone surrogate \\u\(hex4(scalar))") }
                        index += 2
                        let low = try readHex4()
                        guard low >= 0xDC00 && low <= 0xDFFF else {
                            throw LineRejection("invalid JSON string: lone surrogate \\u\(hex4(scalar))")
                        }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                        throw LineRejection("invalid JSON string: lone surrogate \\u\(hex4(scalar))")
                    }
                    appendUTF8(UInt32(scalar), to: &out)
                default:
                    throw fail("invalid escape")
                }
            case 0..<0x20:
                throw fail("control character in a string")
            case 0x80...:
                let length = try validUTF8Length(at: index)
                out.append(contentsOf: UnsafeBufferPointer(start: base + index, count: length))
                index += length
            default:
                out.append(byte)
                index += 1
            }
        }
        throw fail("unterminated string")
    }

    private func hex4(_ value: Int) -> String {
        let s = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    mutating func readHex4() throws -> Int {
        guard count - index >= 4 else { throw fail("invalid \\u escape") }
        var value = 0
        for _ in 0..<4 {
            let byte = base[index]
            let digit: Int
            switch byte {
            case 48...57: digit = Int(byte) - 48
            case 65...70: digit = Int(byte) - 55
            case 97...102: digit = Int(byte) - 87
            default: throw fail("invalid \\u escape")
            }
            value = value * 16 + digit
            index += 1
        }
        return value
    }

    /// Length of the well-formed UTF-8 sequence at `at` (RFC 3629: no overlongs, no surrogates).
    func validUTF8Length(at i: Int) throws -> Int {
        let invalid = LineRejection("invalid UTF-8 at byte \(i + 1)")
        let b0 = base[i]
        func cont(_ k: Int, _ low: UInt8 = 0x80, _ high: UInt8 = 0xBF) throws {
            guard i + k < count, base[i + k] >= low, base[i + k] <= high else { throw invalid }
        }
        switch b0 {
        case 0xC2...0xDF: try cont(1); return 2
        case 0xE0: try cont(1, 0xA0, 0xBF); try cont(2); return 3
        case 0xE1...0xEC, 0xEE...0xEF: try cont(1); try cont(2); return 3
        case 0xED: try cont(1, 0x80, 0x9F); try cont(2); return 3
        case 0xF0: try cont(1, 0x90, 0xBF); try cont(2); try cont(3); return 4
        case 0xF1...0xF3: try cont(1); try cont(2); try cont(3); return 4
        case 0xF4: try cont(1, 0x80, 0x8F); try cont(2); try cont(3); return 4
        default: throw invalid
        }
    }
}

@inline(__always)
func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    switch scalar {
    case 0..<0x80: out.append(UInt8(scalar))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | (scalar >> 6)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | (scalar >> 12)))
        out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    default:
        out.append(UInt8(0xF0 | (scalar >> 18)))
        out.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    }
}
