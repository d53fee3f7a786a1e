/// An instant in UTC with nanosecond precision, parsed from and printed as RFC 3339.
///
/// Parsing is by hand: Foundation's `ISO8601DateFormatter` costs tens of microseconds per
/// call, which is more than the rest of a line's work together. The grammar accepted is
/// RFC 3339 section 5.6 `date-time`:
/// `YYYY-MM-DD ("T" / "t") HH:MM:SS [ "." 1*9DIGIT ] ("Z" / "z" / ("+" / "-") HH:MM)`.
/// Leap seconds (`:60`) are rejected: SQLite and most readers cannot represent them.
public struct Timestamp: Comparable, Hashable, Sendable {
    /// Nanoseconds since 1970-01-01T00:00:00Z.
    public var nanosecondsSinceEpoch: Int64

    public init(nanosecondsSinceEpoch: Int64) {
        self.nanosecondsSinceEpoch = nanosecondsSinceEpoch
    }

    /// Saturates at the ends of the representable range (about 1677 to 2262): a clock or a
    /// duration beyond them is a broken clock or a typo, not a reason to crash.
    public init(secondsSinceEpoch: Double) {
        self.nanosecondsSinceEpoch = Timestamp.saturatingNanoseconds(secondsSinceEpoch * 1e9)
    }

    static func saturatingNanoseconds(_ nanoseconds: Double) -> Int64 {
        guard !nanoseconds.isNaN else { return 0 }
        if nanoseconds >= 0x1p63 { return .max }
        if nanoseconds < -0x1p63 { return .min }
        return Int64(nanoseconds.rounded())
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch
    }

    public static let nanosPerSecond: Int64 = 1_000_000_000
    /// The seconds (since 1970) of 1678-01-01T00:00:00Z and of 2262-01-01T00:00:00Z: the UTC
    /// times accepted are in between, so that every stored text parses again.
    static let firstSecond = Int64(CivilDate.toDays(year: 1678, month: 1, day: 1)) * 86_400
    static let endSecond = Int64(CivilDate.toDays(year: 2262, month: 1, day: 1)) * 86_400
    public static let nanosPerHour: Int64 = 3_600 * nanosPerSecond

    public var secondsSinceEpoch: Double { Double(nanosecondsSinceEpoch) / 1e9 }

    /// The hour this instant falls in.
    public var hour: PartitionHour {
        PartitionHour(hoursSinceEpoch: Int(floorDiv(nanosecondsSinceEpoch, Timestamp.nanosPerHour)))
    }

    /// Saturates, as `init(secondsSinceEpoch:)` does.
    public static func + (lhs: Timestamp, seconds: Double) -> Timestamp {
        let (sum, overflow) = lhs.nanosecondsSinceEpoch.addingReportingOverflow(saturatingNanoseconds(seconds * 1e9))
        return Timestamp(nanosecondsSinceEpoch: overflow ? (seconds > 0 ? .max : .min) : sum)
    }

    /// Length of the canonical text (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`).
    public static let canonicalLength = 30

    /// Writes the canonical text into `out` (30 bytes) without allocating.
    @inline(__always)
    public func writeCanonical(to out: UnsafeMutablePointer<UInt8>) {
        let days = floorDiv(nanosecondsSinceEpoch, 86_400 * Timestamp.nanosPerSecond)
        let nanosOfDay = nanosecondsSinceEpoch - days * 86_400 * Timestamp.nanosPerSecond
        let (year, month, day) = CivilDate.fromDays(days)
        let secondsOfDay = Int(nanosOfDay / Timestamp.nanosPerSecond)
        var fraction = Int(nanosOfDay % Timestamp.nanosPerSecond)
        @inline(__always) func two(_ at: Int, _ v: Int) { out[at] = UInt8(48 + v / 10); out[at + 1] = UInt8(48 + v % 10) }
        out[0] = UInt8(48 + (year / 1000) % 10); out[1] = UInt8(48 + (year / 100) % 10)
        two(2, year % 100); out[4] = 45; two(5, month); out[7] = 45; two(8, day); out[10] = 84
        two(11, secondsOfDay / 3600); out[13] = 58; two(14, (secondsOfDay / 60) % 60); out[16] = 58; two(17, secondsOfDay % 60)
        out[19] = 46
        for i in stride(from: 28, through: 20, by: -1) {
            out[i] = UInt8(48 + fraction % 10)
            fraction /= 10
        }
        out[29] = 90
    }

    /// Canonical text: UTC, `Z`, always nine fractional digits, so that text order is time order.
    public var rfc3339: String {
        String(unsafeUninitializedCapacity: Timestamp.canonicalLength) { buffer in
            writeCanonical(to: buffer.baseAddress!)
            return Timestamp.canonicalLength
        }
    }

    /// Why a timestamp was refused; the text goes into `rejected_lines.reason`.
    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        case malformed
        case missingZone
        case outOfRange(String)
        /// RFC 3339 allows any number of fractional digits; Tidemark keeps nanoseconds.
        case tooPrecise

        public var description: String {
            switch self {
            case .malformed: return "not an RFC 3339 date-time"
            case .missingZone: return "no time zone (add Z or an offset like +02:00)"
            case .outOfRange(let what): return "not a real date-time (\(what))"
            case .tooPrecise: return "more than 9 fractional digits (nanoseconds are the finest Tidemark keeps)"
            }
        }
    }

    public static func parse(_ text: String) -> Result<Timestamp, ParseError> {
        var copy = text
        return copy.withUTF8 { parse(UnsafeRawBufferPointer($0)) }
    }

    /// Parses RFC 3339 from raw UTF-8 bytes.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<Timestamp, ParseError> {
        let count = bytes.count
        // Shortest: 2025-07-30T10:00:00Z (20 bytes). Five-digit years do not fit the grammar.
        guard count >= 19 else { return .failure(.malformed) }
        func digit(_ index: Int) -> Int? {
            let byte = bytes[index]
            return byte >= 48 && byte <= 57 ? Int(byte - 48) : nil
        }
        func number(_ start: Int, _ width: Int) -> Int? {
            var value = 0
            for index in start..<(start + width) {
                guard let d = digit(index) else { return nil }
                value = value * 10 + d
            }
            return value
        }
        guard let year = number(0, 4), bytes[4] == UInt8(ascii: "-"),
              let month = number(5, 2), bytes[7] == UInt8(ascii: "-"),
              let day = number(8, 2),
              bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"),
              let hour = number(11, 2), bytes[13] == UInt8(ascii: ":"),
              let minute = number(14, 2), bytes[16] == UInt8(ascii: ":"),
              let second = number(17, 2)
        else { return .failure(.malformed) }
        var index = 19
        var nanos = 0
        if index < count && bytes[index] == UInt8(ascii: ".") {
            index += 1
            var digits = 0
            while index < count, let d = digit(index) {
                guard digits < 9 else { return .failure(.tooPrecise) }
                nanos = nanos * 10 + d
                digits += 1
                index += 1
            }
            guard digits > 0 else { return .failure(.malformed) }
            for _ in digits..<9 { nanos *= 10 }
        }
        guard index < count else { return .failure(.missingZone) }
        var offsetSeconds = 0
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            guard count - index == 6, let offsetHour = number(index + 1, 2),
                  bytes[index + 3] == UInt8(ascii: ":"), let offsetMinute = number(index + 4, 2)
            else { return .failure(.malformed) }
            guard offsetHour <= 23, offsetMinute <= 59 else { return .failure(.outOfRange("offset")) }
            offsetSeconds = sign * (offsetHour * 3600 + offsetMinute * 60)
            index += 6
        default:
            return .failure(.malformed)
        }
        guard index == count else { return .failure(.malformed) }
        guard month >= 1 && month <= 12 else { return .failure(.outOfRange("month \(month)")) }
        guard day >= 1 && day <= CivilDate.daysInMonth(year: year, month: month) else {
            return .failure(.outOfRange("day \(day) of \(year)-\(month < 10 ? "0" : "")\(month)"))
        }
        guard hour <= 23 else { return .failure(.outOfRange("hour \(hour)")) }
        guard minute <= 59 else { return .failure(.outOfRange("minute \(minute)")) }
        guard second <= 59 else {
            return .failure(.outOfRange(second == 60 ? "leap second :60 is not supported" : "second \(second)"))
        }
        // Nanoseconds since 1970 fit in 64 bits from 1677-09-21 to 2262-04-11.
        guard year >= 1678 && year <= 2261 else { return .failure(.outOfRange("year \(year) is outside 1678...2261")) }
        let days = Int64(CivilDate.toDays(year: year, month: month, day: day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second - offsetSeconds)
        // The offset applied, the UTC time must be in range too: it is what is stored, and
        // read back (2261-12-31T23:00:00-05:00 is 2262 in UTC).
        guard seconds >= Timestamp.firstSecond && seconds < Timestamp.endSecond else {
            let utcYear = CivilDate.fromDays(floorDiv(seconds, 86_400)).year
            return .failure(.outOfRange("year \(utcYear) in UTC is outside 1678...2261"))
        }
        return .success(Timestamp(nanosecondsSinceEpoch: seconds * nanosPerSecond + Int64(nanos)))
    }
}

/// One UTC hour: the unit of partitioning. Table names are derived from this integer only,
/// never from input text.
public struct PartitionHour: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var hoursSinceEpoch: Int

    public init(hoursSinceEpoch: Int) { self.hoursSinceEpoch = hoursSinceEpoch }

    public static func < (lhs: PartitionHour, rhs: PartitionHour) -> Bool {
        lhs.hoursSinceEpoch < rhs.hoursSinceEpoch
    }

    public var start: Timestamp {
        Timestamp(nanosecondsSinceEpoch: Int64(hoursSinceEpoch) * Timestamp.nanosPerHour)
    }

    private var civil: (year: Int, month: Int, day: Int, hour: Int) {
        let days = floorDiv(Int64(hoursSinceEpoch), 24)
        let (year, month, day) = CivilDate.fromDays(days)
        return (year, month, day, hoursSinceEpoch - Int(days) * 24)
    }

    /// `YYYY-MM-DDTHH`, the key of the `partitions` table.
    public var label: String {
        let c = civil
        var bytes = [UInt8]()
        appendDigits(&bytes, c.year, width: 4)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(&bytes, c.month, width: 2)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(&bytes, c.day, width: 2)
        bytes.append(UInt8(ascii: "T"))
        appendDigits(&bytes, c.hour, width: 2)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `events_YYYYMMDDHH`.
    public var tableName: String {
        let c = civil
        var bytes = Array("events_".utf8)
        appendDigits(&bytes, c.year, width: 4)
        appendDigits(&bytes, c.month, width: 2)
        appendDigits(&bytes, c.day, width: 2)
        appendDigits(&bytes, c.hour, width: 2)
        return String(decoding: bytes, as: UTF8.self)
    }

    public var description: String { label }

    /// The hour a table name `events_YYYYMMDDHH` stands for.
    public static func fromTableName(_ name: String) -> PartitionHour? {
        let digits = Array(name.utf8.dropFirst("events_".count))
        guard name.hasPrefix("events_"), digits.count == 10, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        let d = String(decoding: digits, as: UTF8.self)
        func part(_ from: Int, _ length: Int) -> Substring { d.dropFirst(from).prefix(length) }
        return parse("\(part(0, 4))-\(part(4, 2))-\(part(6, 2))T\(part(8, 2))")
    }

    /// Parses `YYYY-MM-DDTHH` (as printed by `label`), also accepting a full RFC 3339 time.
    public static func parse(_ text: String) -> PartitionHour? {
        if case .success(let t) = Timestamp.parse(text) { return t.hour }
        let parts = Array(text.utf8)
        guard parts.count == 13 else { return nil }
        if case .success(let t) = Timestamp.parse(text + ":00:00Z") { return t.hour }
        return nil
    }
}

/// Proleptic Gregorian calendar arithmetic on day numbers (days since 1970-01-01).
/// The conversion is the classic era-based one (400-year cycles of 146,097 days).
enum CivilDate {
    static func isLeap(_ year: Int) -> Bool {
        (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
    }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func toDays(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let shiftedMonth = month > 2 ? month - 3 : month + 9
        let dayOfYear = (153 * shiftedMonth + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func fromDays(_ days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = Int(days) + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

@inline(__always)
func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

@inline(__always)
func appendDigits(_ bytes: inout [UInt8], _ value: Int, width: Int) {
    var divisor = 1
    for _ in 1..<width { divisor *= 10 }
    var rest = value
    while divisor > 0 {
        bytes.append(UInt8(48 + (rest / divisor) % 10))
        rest %= divisor
        divisor /= 10
    }
}
