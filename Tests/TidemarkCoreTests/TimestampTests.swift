import Testing
@testable import TidemarkCore

@Suite struct TimestampTests {
    func parse(_ s: String) -> Timestamp? { try? Timestamp.parse(s).get() }

    @Test func zuluAndOffsetsNormalizeToUTC() {
        #expect(parse("2025-07-30T10:00:00Z")?.rfc3339 == "2025-07-30T10:00:00.000000000Z")
        #expect(parse("2025-07-30T12:00:00+02:00")?.rfc3339 == "2025-07-30T10:00:00.000000000Z")
        #expect(parse("2025-07-30T05:30:00-04:30")?.rfc3339 == "2025-07-30T10:00:00.000000000Z")
        #expect(parse("2025-07-31T01:00:00+15:00")?.rfc3339 == "2025-07-30T10:00:00.000000000Z")
        #expect(parse("2025-07-30t10:00:00z")?.rfc3339 == "2025-07-30T10:00:00.000000000Z")
        // An offset that crosses midnight and a year boundary.
        #expect(parse("2025-01-01T00:30:00+01:00")?.rfc3339 == "2024-12-31T23:30:00.000000000Z")
    }

    @Test func fractionsFromZeroToNineDigits() {
        #expect(parse("2025-07-30T10:00:00.1Z")?.nanosecondsSinceEpoch == parse("2025-07-30T10:00:00Z")!.nanosecondsSinceEpoch + 100_000_000)
        #expect(parse("2025-07-30T10:00:00.123456789Z")?.rfc3339 == "2025-07-30T10:00:00.123456789Z")
        #expect(parse("2025-07-30T10:00:00.000001Z")?.rfc3339 == "2025-07-30T10:00:00.000001000Z")
        #expect(parse("2025-07-30T10:00:00.1234567891Z") == nil) // ten digits
        #expect(parse("2025-07-30T10:00:00.Z") == nil)
    }

    @Test func rejectsWithReasons() {
        #expect(Timestamp.parse("2025-07-30T10:00:00") == .failure(.missingZone))
        #expect(Timestamp.parse("2025-07-30 10:00:00Z") == .failure(.malformed))
        #expect(Timestamp.parse("2025-02-30T10:00:00Z") == .failure(.outOfRange("day 30 of 2025-02")))
        #expect(Timestamp.parse("2025-07-30T23:59:60Z") == .failure(.outOfRange("leap second :60 is not supported")))
        #expect(Timestamp.parse("2025-13-01T00:00:00Z") == .failure(.outOfRange("month 13")))
        #expect(Timestamp.parse("2025-07-30T24:00:00Z") == .failure(.outOfRange("hour 24")))
        #expect(Timestamp.parse("99999-01-01T00:00:00Z") == .failure(.malformed))
        #expect(Timestamp.parse("2025-07-30T10:00:00+24:00") == .failure(.outOfRange("offset")))
        #expect(Timestamp.parse("2025-07-30T10:00:00+0200") == .failure(.malformed))
        #expect(Timestamp.parse("") == .failure(.malformed))
        #expect(parse("2024-02-29T00:00:00Z") != nil) // leap year
        #expect(parse("2100-02-29T00:00:00Z") == nil) // not a leap year
        #expect(parse("2000-02-29T00:00:00Z") != nil)
    }

    @Test func yearsOutsideTheRepresentableRangeAreRejected() {
        #expect(Timestamp.parse("0000-01-01T00:00:00Z") == .failure(.outOfRange("year 0 is outside 1678...2261")))
        #expect(Timestamp.parse("9999-12-31T23:59:59Z") == .failure(.outOfRange("year 9999 is outside 1678...2261")))
        // The range holds for the UTC time, which is what is stored and read back.
        #expect(Timestamp.parse("2261-12-31T23:00:00-05:00") == .failure(.outOfRange("year 2262 in UTC is outside 1678...2261")))
        #expect(Timestamp.parse("1678-01-01T00:00:00+00:01") == .failure(.outOfRange("year 1677 in UTC is outside 1678...2261")))
        #expect(parse("2261-12-31T23:00:00+05:00")?.rfc3339 == "2261-12-31T18:00:00.000000000Z")
        #expect(parse("1678-01-01T00:00:00-00:01")?.rfc3339 == "1678-01-01T00:01:00.000000000Z")
        let t = parse("1900-01-01T00:00:00Z")
        #expect(t!.nanosecondsSinceEpoch < 0)
        #expect(t!.rfc3339 == "1900-01-01T00:00:00.000000000Z")
    }

    /// A clock or a duration beyond the representable range (a broken clock, a typo in a flag)
    /// saturates instead of trapping: ingest, status and freshness crashed with exit 132 under a
    /// clock in 2262 or 1677.
    @Test func arithmeticAtTheEndsOfTheRangeSaturates() {
        #expect(Timestamp(secondsSinceEpoch: 1e300).nanosecondsSinceEpoch == .max)
        #expect(Timestamp(secondsSinceEpoch: -1e300).nanosecondsSinceEpoch == .min)
        #expect(Timestamp(secondsSinceEpoch: .infinity).nanosecondsSinceEpoch == .max)
        #expect(Timestamp(secondsSinceEpoch: .nan).nanosecondsSinceEpoch == 0)
        #expect(Timestamp(secondsSinceEpoch: 1.5).nanosecondsSinceEpoch == 1_500_000_000)
        let late = Timestamp(nanosecondsSinceEpoch: .max - 10)
        #expect((late + 3600).nanosecondsSinceEpoch == .max)
        #expect((Timestamp(nanosecondsSinceEpoch: .min + 10) + -3600).nanosecondsSinceEpoch == .min)
        #expect((Timestamp(nanosecondsSinceEpoch: 0) + 2).nanosecondsSinceEpoch == 2_000_000_000)
        // The parser's "more than 24 h ahead" check with the clock within a day of the end.
        let parser = EventLineParser(now: late)
        let line = #"{"event_id":"e","user_id":"u","event_type":"t","event_time":"2261-12-31T23:00:00Z"}"#
        #expect((try? parser.parse(line).get()) != nil)
    }

    @Test func roundTripsOverManyInstants() {
        var random = SeededRandom(seed: 7)
        for _ in 0..<5000 {
            let nanos = Int64.random(in: 0...4_102_444_800_000_000_000, using: &random) // 1970...2100
            let t = Timestamp(nanosecondsSinceEpoch: nanos)
            #expect(parse(t.rfc3339) == t)
        }
    }

    @Test func hoursAndTableNames() {
        #expect(PartitionHour.fromTableName("events_2025073011")?.label == "2025-07-30T11")
        #expect(PartitionHour.fromTableName("events_2025073024") == nil && PartitionHour.fromTableName("events_20250730") == nil)
        let t = parse("2025-07-30T10:59:59.999Z")!
        #expect(t.hour.label == "2025-07-30T10")
        #expect(t.hour.tableName == "events_2025073010")
        #expect(PartitionHour.parse("2025-07-30T10") == t.hour)
        #expect(PartitionHour.parse("2025-07-30T10; DROP TABLE x") == nil)
        #expect(parse("1970-01-01T00:00:00Z")!.hour.hoursSinceEpoch == 0)
    }
}
