import Foundation
import Logging
import Testing
@testable import TidemarkCore
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ProducerTests {
    // MARK: Helpers

    static let quiet = quietLogger
    static let start = Timestamp(nanosecondsSinceEpoch: 1_753_869_600 * Timestamp.nanosPerSecond) // 2025-07-30T10:00:00Z

    static func options(_ folder: TestFolder, count: Int, rate: Int, seed: UInt64 = 1) -> ProducerOptions {
        var options = ProducerOptions(landingFolder: folder.landing, sentLogFolder: folder.sent, start: start)
        options.count = count
        options.rate = rate
        options.seed = seed
        return options
    }

    /// An endless real-time production (20 events a second) on a virtual clock that `sleep`
    /// moves forward, stopped once `publications` files are out. The final flush waits on that
    /// clock too, unless `insist` (a second stop request: the wait ends, the clock stays put).
    static func runStopped(_ folder: TestFolder, after publications: Int, insist: Bool = false) throws
        -> (producer: Producer, now: Timestamp, publishTimes: [Timestamp], waitsAfterStop: Int) {
        var options = Self.options(folder, count: 0, rate: 20)
        options.count = nil
        let producer = try Producer(options: options, logger: quiet)
        var now = start + 0.25
        var publishTimes: [Timestamp] = []
        var waits = 0
        try producer.runRealTime(
            now: { now },
            sleep: { until in now = max(now, until) },
            sleepAfterStop: { until in
                waits += 1
                if !insist { now = max(now, until) }
                return !insist
            },
            shouldStop: { publishTimes.count >= publications },
            onPublish: { _ in publishTimes.append(now) })
        return (producer, now, publishTimes, waits)
    }

    /// Runs a fast production to the end through the steppable API.
    @discardableResult
    static func produce(_ options: ProducerOptions, step: Int = 100) throws -> ProducerSummary {
        let producer = try Producer(options: options, logger: quiet)
        var steps = 0
        while try producer.advance(seconds: step) {
            steps += 1
            try #require(steps < 1_000_000, "the producer never finished")
        }
        #expect(producer.isFinished)
        return producer.summary
    }

    /// A write the producer cannot make durable (a folder fsync the device fails, injected)
    /// stops it with 74, naming the file once, then the folder and the cause, with the hint.
    @Test func aFolderSyncTheDeviceFailsStopsTheProducer() throws {
        let f = TestFolder()
        let run = try Binary.run(["produce", "--landing", f.landing, "--sent-log", f.sent, "--fast", "--count", "5"],
                                 environment: ["TIDEMARK_FOLDER_SYNC_ERRNO": "\(EIO)"])
        #expect(run.status == 74, "\(run.stderr)")
        // Its first write is the in-flight marker in the sent-log folder.
        let marker = f.sent + "/" + Producer.markerName
        #expect(run.stderr.hasPrefix("""
            error: write in-flight marker \(marker): written, but its folder \(f.sent) could not be fsynced: Input/output error
            hint: the device reported an I/O error
            """), "\(run.stderr)")
    }

    /// One producer at a time per folder: a second one, on the same folders or sharing only
    /// the landing folder, exits 75 naming the holder and writes nothing; the lock files are
    /// invisible to ingest; once the first is gone the next one runs.
    @Test func aSecondProducerOnAFolderStops() throws {
        let f = TestFolder()
        var first: Producer? = try Producer(options: Self.options(f, count: 50, rate: 10), logger: Self.quiet)
        _ = try first!.advance(seconds: 3)
        let landed = try FileManager.default.contentsOfDirectory(atPath: f.landing).sorted()
        let same = try Binary.run(["produce", "--landing", f.landing, "--sent-log", f.sent, "--fast", "--count", "5"])
        #expect(same.status == 75)
        #expect(same.stderr.contains("another producer is writing to this folder (produce pid \(getpid()))"), "\(same.stderr)")
        let otherSent = f.root + "/other-sent"
        let sharedLanding = try Binary.run(["produce", "--landing", f.landing, "--sent-log", otherSent, "--fast", "--count", "5"])
        #expect(sharedLanding.status == 75)
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.landing).sorted() == landed)
        #expect(try FileManager.default.contentsOfDirectory(atPath: otherSent).filter { !$0.hasPrefix(".") } == [])
        let otherLanding = f.root + "/other-landing"
        let sharedSent = try Binary.run(["produce", "--landing", otherLanding, "--sent-log", f.sent, "--fast", "--count", "5"])
        #expect(sharedSent.status == 75)
        #expect(try FileManager.default.contentsOfDirectory(atPath: otherLanding).filter { !$0.hasPrefix(".") } == [])
        while try first!.advance(seconds: 100) {}
        first = nil
        let after = try Binary.run(["produce", "--landing", f.landing, "--sent-log", f.sent, "--fast", "--count", "5"])
        #expect(after.status == 0, "\(after.stderr)")
        let ingest = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(ingest.status == 0 && ingest.stderr.isEmpty, "\(ingest.stderr)")
        var validate = ValidateOptions(dataFolder: f.data)
        validate.sentLogFolder = f.sent
        #expect(try ValidateJob.run(validate, logger: Self.quiet).ok)
    }

    struct Line {
        var file: String
        var fileIndex: Int
        var number: Int
        var text: [UInt8]
        var delivery: Delivery
    }

    static let parser = EventLineParser(now: Timestamp(nanosecondsSinceEpoch: Int64.max / 2))

    /// A folder's entries but the producer's lock file.
    static func names(_ folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0 != Producer.lockName }.sorted()
    }

    /// Every landing line in name order; each file must be complete gzip and every line a valid delivery.
    static func readLanding(_ folder: String) throws -> [Line] {
        var lines: [Line] = []
        for (index, name) in try names(folder).enumerated() {
            #expect(name.hasSuffix(".ndjson.gz") && !name.hasPrefix("."), "unexpected entry \(name) in the landing folder")
            var last = 0
            _ = try GzipLineReader(path: folder + "/" + name).forEachLine { number, content in
                guard case .bytes(let bytes) = content else {
                    Issue.record("overlong line \(number) in \(name)")
                    return
                }
                last = number
                switch parser.parse(bytes) {
                case .success(let delivery):
                    lines.append(Line(file: name, fileIndex: index, number: number, text: Array(bytes), delivery: delivery))
                case .failure(let rejection):
                    Issue.record("\(name) line \(number) rejected: \(rejection)")
                }
            }
            #expect(last > 0, "\(name) is empty")
        }
        return lines
    }

    /// The sent log as (file, line, record bytes), in order.
    static func readSentLog(_ folder: String) throws -> [(file: String, line: Int, text: [UInt8])] {
        var entries: [(String, Int, [UInt8])] = []
        try SentLog.forEachEntry(in: folder) { file, line, record in entries.append((file, line, Array(record))) }
        return entries
    }

    /// The landing folder and the sent log agree line for line, and the typed reader agrees too.
    static func expectAgreement(_ folder: TestFolder, _ landing: [Line]) throws {
        let sent = try readSentLog(folder.sent)
        #expect(sent.count == landing.count)
        for (entry, line) in zip(sent, landing) {
            guard entry.file == line.file, entry.line == line.number, entry.text == line.text else {
                Issue.record("sent log \(entry.file):\(entry.line) differs from landing \(line.file):\(line.number)")
                return
            }
        }
        var index = 0
        try SentLog.forEachDelivery(in: folder.sent) { file, number, delivery in
            if index < landing.count, delivery != landing[index].delivery {
                Issue.record("typed sent-log delivery \(file):\(number) differs from the landing line")
            }
            index += 1
        }
        #expect(index == landing.count)
    }

    static func expectNoTemporaryFiles(_ folder: TestFolder) throws {
        for dir in [folder.landing, folder.sent] {
            let leftovers = try names(dir).filter { $0.hasPrefix(".") }
            #expect(leftovers.isEmpty, "left behind in \(dir): \(leftovers)")
        }
    }

    /// `events-000000001-20250730T100000Z.ndjson.gz` → seconds since the epoch of its time.
    static func fileSecond(_ name: String) throws -> Int64 {
        let parts = name.split(separator: "-")
        try #require(parts.count == 3 && parts[0] == "events", "unexpected landing name \(name)")
        let t = Array(parts[2].utf8.prefix(15)).map { Character(UnicodeScalar($0)) }
        let text = "\(String(t[0..<4]))-\(String(t[4..<6]))-\(String(t[6..<8]))T\(String(t[9..<11])):\(String(t[11..<13])):\(String(t[13..<15]))Z"
        return try Timestamp.parse(text).get().nanosecondsSinceEpoch / Timestamp.nanosPerSecond
    }

    struct Stats {
        var originals = 0
        var late = 0
        var flag = 0
        var tombstone = 0
        var duplicates = 0
        var lateDelays: ClosedRange<Int64>?
    }

    /// Checks what every line says about its event against the earlier lines, and counts.
    static func analyze(_ lines: [Line], lateDelay: ClosedRange<Int64>, checkDelays: Bool = true) throws -> Stats {
        var stats = Stats()
        var originals: [String: (line: Line, record: EventRecord)] = [:]
        var corrected = Set<String>()
        var previousReceived: (file: Int, time: Int64)?
        func nanos(_ t: Timestamp?) -> Int64 { t?.nanosecondsSinceEpoch ?? Int64.min }
        for line in lines {
            // Lines of a file are sorted by received_time.
            let received = nanos(line.delivery.receivedTime)
            #expect(line.delivery.receivedTime != nil, "\(line.file):\(line.number) has no received_time")
            if let previous = previousReceived, previous.file == line.fileIndex, previous.time > received {
                Issue.record("\(line.file):\(line.number) is out of received_time order")
            }
            previousReceived = (line.fileIndex, received)
            switch line.delivery {
            case .record(let record) where record.isValid:
                if let first = originals[record.eventID] {
                    stats.duplicates += 1
                    #expect(first.line.text == line.text, "redelivery of \(record.eventID) is not byte-identical")
                    #expect(first.line.fileIndex < line.fileIndex, "redelivery of \(record.eventID) is not in a later file")
                    let gap = try fileSecond(line.file) - fileSecond(first.line.file)
                    #expect(gap >= 1 && gap <= 30, "redelivery \(gap) s after the original")
                    continue
                }
                stats.originals += 1
                originals[record.eventID] = (line, record)
                let delay = received - record.eventTime.nanosecondsSinceEpoch
                #expect(delay >= 0, "received before its event time: \(record.eventID)")
                if delay > 900_000_000 {
                    stats.late += 1
                    stats.lateDelays = min(delay, stats.lateDelays?.lowerBound ?? delay)...max(delay, stats.lateDelays?.upperBound ?? delay)
                    if checkDelays {
                        #expect(lateDelay.contains(delay), "late delay \(delay) ns outside \(lateDelay)")
                    }
                }
            case .record(let record):
                stats.flag += 1
                guard let original = originals[record.eventID] else {
                    Issue.record("flag correction of \(record.eventID) before the event was sent")
                    continue
                }
                #expect(corrected.insert(record.eventID).inserted, "\(record.eventID) corrected twice")
                var expected = original.record
                expected.isValid = false
                expected.receivedTime = record.receivedTime
                #expect(record == expected, "flag correction changed more than is_valid and received_time")
                #expect(received > nanos(original.record.receivedTime))
            case .tombstone(let id, _):
                stats.tombstone += 1
                guard let original = originals[id] else {
                    Issue.record("tombstone of \(id) before the event was sent")
                    continue
                }
                #expect(corrected.insert(id).inserted, "\(id) corrected twice")
                #expect(received > nanos(original.record.receivedTime))
            }
        }
        return stats
    }

    // MARK: Tests

    @Test func reproducesReferenceRandomSequences() {
        // SplitMix64 (seed 1234567) and xoshiro256** (state 1, 2, 3, 4) reference outputs.
        var splitMix = SplitMix64(state: 1_234_567)
        #expect((0..<3).map { _ in splitMix.next() } == [6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423])
        var xoshiro = SeededGenerator(state: (1, 2, 3, 4))
        #expect((0..<6).map { _ in xoshiro.next() } == [11520, 0, 1_509_978_240, 1_215_971_899_390_074_240,
                                                          1_216_172_134_540_287_360, 607_988_272_756_665_600])
        var rng = SeededGenerator(seed: 9)
        for _ in 0..<10_000 {
            let value = rng.inRange(30_000...60_000)
            #expect(value >= 30_000 && value <= 60_000)
        }
    }

    @Test func hundredThousandEventsHaveTheAdvertisedShape() throws {
        let folder = TestFolder()
        let options = Self.options(folder, count: 100_000, rate: 1000)
        let summary = try Self.produce(options)

        let landing = try Self.readLanding(folder.landing)
        try Self.expectNoTemporaryFiles(folder)
        try Self.expectAgreement(folder, landing)
        let stats = try Self.analyze(landing, lateDelay: 30_000_000_000...60_000_000_000)

        #expect(stats.originals == 100_000)
        #expect(summary.events == 100_000)
        #expect(summary.lines == landing.count)
        #expect(summary.files == Set(landing.map(\.file)).count)
        #expect(summary.late == stats.late && summary.duplicates == stats.duplicates)
        #expect(summary.correctionsFlag == stats.flag && summary.correctionsTombstone == stats.tombstone)
        #expect(stats.late >= 8_000 && stats.late <= 12_000, "late: \(stats.late)")
        // Measured delays spread over the range, not just inside it.
        #expect(stats.lateDelays!.lowerBound < 32_000_000_000 && stats.lateDelays!.upperBound > 58_000_000_000)
        let corrections = stats.flag + stats.tombstone
        #expect(corrections >= 5_000 && corrections <= 10_000, "corrections: \(corrections)")
        #expect(stats.flag > corrections / 3 && stats.tombstone > corrections / 3, "flag \(stats.flag), tombstone \(stats.tombstone)")
        #expect(stats.duplicates >= 1_000 && stats.duplicates <= 3_000, "duplicates: \(stats.duplicates)")

        // Records look real: v4 lowercase ids, a skewed user pool, known event types.
        var users: [String: Int] = [:]
        var types: [String: Int] = [:]
        for line in landing {
            guard case .record(let r) = line.delivery, r.isValid else { continue }
            users[r.userID, default: 0] += 1
            types[r.eventType, default: 0] += 1
            let id = Array(r.eventID.utf8)
            let isUUID = id.count == 36 && id[14] == UInt8(ascii: "4") && [8, 13, 18, 23].allSatisfy { id[$0] == UInt8(ascii: "-") }
                && id.enumerated().allSatisfy { [8, 13, 18, 23].contains($0.offset) || (48...57).contains($0.element) || (97...102).contains($0.element) }
            if !isUUID { Issue.record("not a lowercase v4 UUID: \(r.eventID)") }
        }
        #expect(users.keys.allSatisfy { $0.utf8.count == 6 && $0.hasPrefix("u") })
        #expect(users.count > 900 && users.count <= 1000)
        let counts = users.values.sorted()
        #expect(counts.last! > 20 * counts[counts.count / 2], "user activity is not skewed: max \(counts.last!), median \(counts[counts.count / 2])")
        #expect(Set(types.keys) == Set(EventMix.eventTypes.map(\.name)))
        #expect(types["view"]! > types["purchase"]! * 5)

        // Event times span what the rate implies: 100 s of events at 1000 per second.
        let files = Set(landing.map(\.file)).sorted()
        #expect(try Self.fileSecond(files.first!) == 1_753_869_600)
        #expect(files.first! == "events-000000001-20250730T100000Z.ndjson.gz")
    }

    @Test func sameSeedGivesTheSameBytes() throws {
        let one = TestFolder(), two = TestFolder(), other = TestFolder()
        var options = Self.options(one, count: 3_000, rate: 100)
        try Self.produce(options)
        options.landingFolder = two.landing
        options.sentLogFolder = two.sent
        try Self.produce(options, step: 37) // stepping differently changes nothing but sent-log batching…
        // …so compare landing bytes across step sizes, and everything for equal steps.
        try Self.produce(Self.options(other, count: 3_000, rate: 100, seed: 2))

        func contents(_ dir: String) throws -> [String: [UInt8]] {
            var all: [String: [UInt8]] = [:]
            for name in try Self.names(dir) { all[name] = try FileSystem.readAll(dir + "/" + name) }
            return all
        }
        let landingOne = try contents(one.landing)
        #expect(!landingOne.isEmpty)
        #expect(landingOne == (try contents(two.landing)))
        #expect(try landingOne != contents(other.landing))

        let three = TestFolder()
        options.landingFolder = three.landing
        options.sentLogFolder = three.sent
        try Self.produce(options, step: 100)
        #expect(try contents(one.sent) == contents(three.sent))
        #expect(try contents(one.landing) == contents(three.landing))
        #expect(try Self.readSentLog(two.sent).map(\.text) == Self.readSentLog(one.sent).map(\.text))
    }

    @Test func restartContinuesNumberingWithoutTouchingOldFiles() throws {
        let folder = TestFolder()
        let options = Self.options(folder, count: 500, rate: 100)
        try Self.produce(options)
        let firstLanding = try Self.names(folder.landing)
        let firstSent = try Self.names(folder.sent)
        let firstSentBytes = try firstSent.map { try FileSystem.readAll(folder.sent + "/" + $0) }
        func eventIDs() throws -> Set<String> {
            Set(try Self.readSentLog(folder.sent).compactMap { entry in
                (try? JSONSerialization.jsonObject(with: Data(entry.text)) as? [String: Any])?["event_id"] as? String
            })
        }
        let firstIDs = try eventIDs()

        // Leftovers of a killed producer's writes go; other hidden files stay.
        for path in [folder.landing + "/.events-000000999-20250730T100000Z.ndjson.gz.tmp",
                     folder.sent + "/.sent-000000099.ndjson.gz.tmp", folder.landing + "/.someone-else.tmp"] {
            createTestFile(atPath: path, contents: Data("partial".utf8))
        }
        let again = try Self.produce(options)
        #expect(try Self.names(folder.landing).filter { $0.hasPrefix(".") } == [".someone-else.tmp"])
        #expect(try Self.names(folder.sent).filter { $0.hasPrefix(".") }.isEmpty)
        try FileManager.default.removeItem(atPath: folder.landing + "/.someone-else.tmp")
        let landing = try Self.names(folder.landing)
        let sent = try Self.names(folder.sent)
        #expect(landing.count == firstLanding.count + again.files)
        #expect(sent.count == firstSent.count + again.sentLogFiles)
        #expect(Array(sent.prefix(firstSent.count)) == firstSent, "new sent-log files must sort after the old ones")
        #expect(try firstSent.map { try FileSystem.readAll(folder.sent + "/" + $0) } == firstSentBytes)
        let highestFirst = firstLanding.compactMap(Producer.landingSequence).max()!
        let newNames = Set(landing).subtracting(firstLanding)
        #expect(newNames.count == again.files)
        #expect(newNames.allSatisfy { Producer.landingSequence(of: $0)! > highestFirst })
        try Self.expectAgreement(folder, try Self.readLanding(folder.landing))
        // The restarted run sends new events, as a real source does after a restart.
        let newIDs = try eventIDs().subtracting(firstIDs)
        #expect(newIDs.count == 500, "\(newIDs.count) new event ids")
    }

    @Test func fileSecondsGroupsSlotsAndKeepsCorrectionsAfterTheirEvent() throws {
        let folder = TestFolder()
        var options = Self.options(folder, count: 2_000, rate: 50)
        options.fileSeconds = 10
        options.correctionFraction = 0.3
        options.correctionDelay = SecondsRange(1, 12)
        options.duplicateDelay = SecondsRange(1, 3)
        let summary = try Self.produce(options, step: 7)
        let landing = try Self.readLanding(folder.landing)
        try Self.expectAgreement(folder, landing)
        let stats = try Self.analyze(landing, lateDelay: 30_000_000_000...60_000_000_000)
        #expect(stats.originals == 2_000 && summary.corrections == stats.flag + stats.tombstone)
        let seconds = try Set(landing.map(\.file)).map(Self.fileSecond)
        #expect(seconds.allSatisfy { ($0 - 1_753_869_600) % 10 == 0 })
        // Short delays put many corrections into the file of their event, always after it.
        var fileOfEvent: [String: Int] = [:]
        var sameFile = 0
        for line in landing {
            switch line.delivery {
            case .record(let r) where r.isValid:
                if fileOfEvent[r.eventID] == nil { fileOfEvent[r.eventID] = line.fileIndex }
            default:
                if fileOfEvent[line.delivery.eventID] == line.fileIndex { sameFile += 1 }
            }
        }
        #expect(sameFile > 50)
    }

    @Test func realTimeRunnerPublishesOnTimeAndFlushesOnStop() throws {
        let folder = TestFolder()
        let (producer, now, publishTimes, _) = try Self.runStopped(folder, after: 12)
        #expect(producer.isFinished)
        // The sent log runs five seconds ahead: slots 0-14 were built and logged when the stop
        // came after twelve publications; the rest of them went out each at its time, then the
        // flush, a file a second.
        let landing = try Self.readLanding(folder.landing)
        let files = Set(landing.map(\.file)).sorted()
        #expect(files.count >= 16)
        for (index, name) in files.prefix(15).enumerated() {
            #expect(try Self.fileSecond(name) == 1_753_869_600 + Int64(index))
        }
        for (index, time) in publishTimes.prefix(12).enumerated() {
            #expect(time.nanosecondsSinceEpoch == (1_753_869_601 + Int64(index)) * Timestamp.nanosPerSecond)
        }
        let flushFiles = Set(files.dropFirst(15))
        for name in flushFiles { #expect(try Self.fileSecond(name) >= 1_753_869_615) }
        // Each was published once its time had come: the clock waited for the last of them.
        let lastSecond = try files.map(Self.fileSecond).max() ?? 0
        #expect(now.nanosecondsSinceEpoch >= lastSecond * Timestamp.nanosPerSecond, "stopped at \(now.rfc3339)")
        try Self.expectAgreement(folder, landing)
        try Self.expectNoTemporaryFiles(folder)
        let stats = try Self.analyze(landing, lateDelay: 0...60_000_000_000, checkDelays: false)
        #expect(stats.originals == 300 && producer.summary.events == 300)
        #expect(stats.flag + stats.tombstone == producer.summary.corrections)
        #expect(stats.duplicates == producer.summary.duplicates)
        // No late delay (30 s or more) had passed: every late record came out in the flush,
        // with the flush time as received_time.
        var seen = Set<String>()
        var firstInFlush = 0
        for line in landing {
            guard case .record(let r) = line.delivery, r.isValid, seen.insert(r.eventID).inserted else { continue }
            if flushFiles.contains(line.file) {
                firstInFlush += 1
                #expect(try r.receivedTime!.nanosecondsSinceEpoch / Timestamp.nanosPerSecond == Self.fileSecond(line.file))
            }
        }
        #expect(firstInFlush == producer.summary.late && firstInFlush > 0)
    }

    /// A second stop request ends the wait: what is left goes out at once, nothing is lost.
    @Test func aSecondStopRequestPublishesTheRestAtOnce() throws {
        let folder = TestFolder()
        let (producer, now, _, waits) = try Self.runStopped(folder, after: 12, insist: true)
        #expect(producer.isFinished && waits == 1)
        let landing = try Self.readLanding(folder.landing)
        try Self.expectAgreement(folder, landing)
        let files = Set(landing.map(\.file))
        #expect(try files.map(Self.fileSecond).max()! > now.nanosecondsSinceEpoch / Timestamp.nanosPerSecond)
    }

    @Test func sentLogReaderNamesTheBadLine() throws {
        let folder = TestFolder()
        try FileManager.default.createDirectory(atPath: folder.sent, withIntermediateDirectories: true)
        let good = #"{"file":"events-000000001-20250730T100000Z.ndjson.gz","line":1,"record":{"event_id":"e1","received_time":"2025-07-30T10:00:00.000Z"}}"#
        let path = folder.sent + "/sent-000000001.ndjson.gz"
        for (bad, cause) in [
            (#"{"file":"x.ndjson.gz","line":0,"record":{"event_id":"e2"}}"#, "positive integer"),
            (#"{"line":2,"file":"x.ndjson.gz","record":{"event_id":"e2"}}"#, "\"file\""),
            (#"{"file":"x.ndjson.gz","line":2,"record":{"event_id":"e2"}"#, "invalid JSON"),
            (#"{"file":"x.ndjson.gz","line":2,"record":"#, "expected '}'"),
            (#"{"file":"x.ndjson.gz","line":2,"record":{"user_id":"u1"}}"#, "missing field event_id"),
        ] {
            try FileSystem.writeAtomically(GzipWriter.gzip(good + "\n" + bad + "\n"), to: path)
            do {
                try SentLog.forEachDelivery(in: folder.sent) { _, _, _ in }
                Issue.record("accepted \(bad)")
            } catch let error as TidemarkError {
                #expect(error.target == path + " line 2")
                #expect(error.exitStatus == .dataError)
                #expect(error.cause.contains(cause), "\(error.cause)")
            }
        }
        // A well-formed file reads back, escapes and whitespace included.
        let escaped = #"{ "file" : "a\"b.ndjson.gz" , "line" : 7 , "record" : {"event_id":"e3"} }"#
        try FileSystem.writeAtomically(GzipWriter.gzip(good + "\n" + escaped + "\n"), to: path)
        var seen: [String] = []
        try SentLog.forEachDelivery(in: folder.sent) { file, line, delivery in seen.append("\(file) \(line) \(delivery.eventID)") }
        #expect(seen == ["events-000000001-20250730T100000Z.ndjson.gz 1 e1", "a\"b.ndjson.gz 7 e3"])

        #expect(throws: TidemarkError.self) { try SentLog.forEachDelivery(in: folder.root + "/missing") { _, _, _ in } }
        do {
            try SentLog.forEachDelivery(in: folder.root + "/missing") { _, _, _ in }
        } catch let error as TidemarkError {
            #expect(error.exitStatus == .noInput)
        }
    }

    @Test func optionsAreChecked() throws {
        #expect(SecondsRange(parsing: "30...60") == SecondsRange(30, 60))
        #expect(SecondsRange(parsing: "5") == SecondsRange(5, 5))
        for bad in ["60...30", "30..60", "a...b", "30...", "-1...3", "1.5...3", ""] {
            #expect(SecondsRange(parsing: bad) == nil, "accepted \(bad)")
        }
        let folder = TestFolder()
        var options = Self.options(folder, count: 10, rate: 10)
        try options.validate()
        for (tweak, flag) in [
            ({ (o: inout ProducerOptions) in o.rate = 0 }, "--rate"),
            ({ (o: inout ProducerOptions) in o.lateFraction = 1.5 }, "--late-fraction"),
            ({ (o: inout ProducerOptions) in o.sentLogFolder = o.landingFolder + "/." }, "--sent-log"),
            ({ (o: inout ProducerOptions) in o.fileSeconds = 0 }, "--file-seconds"),
            // Values that overflowed the simulator's arithmetic or filled memory before.
            ({ (o: inout ProducerOptions) in o.fileSeconds = .max }, "--file-seconds"),
            ({ (o: inout ProducerOptions) in o.users = .max }, "--users"),
            ({ (o: inout ProducerOptions) in o.rate = ProducerOptions.maxRate + 1 }, "--rate"),
            ({ (o: inout ProducerOptions) in o.duration = .max }, "--duration"),
            ({ (o: inout ProducerOptions) in o.lateDelay = SecondsRange(1, .max) }, "--late-delay"),
            ({ (o: inout ProducerOptions) in o.correctionDelay = SecondsRange(1, ProducerOptions.maxDelay + 1) }, "--correction-delay"),
            // Events ingest would reject: before 1970, or past 2261 (the simulated clock crashed in 2262).
            ({ (o: inout ProducerOptions) in o.start = try! Timestamp.parse("1969-12-31T23:59:59Z").get() }, "--start"),
            ({ (o: inout ProducerOptions) in o.start = try! Timestamp.parse("2261-12-31T23:59:00Z").get(); o.duration = 9_000_000 }, "start earlier"),
            ({ (o: inout ProducerOptions) in o.start = try! Timestamp.parse("2261-12-31T23:00:00Z").get(); o.count = 1_000_000; o.rate = 10 }, "produce fewer"),
        ] {
            var broken = options
            tweak(&broken)
            do {
                try broken.validate()
                Issue.record("accepted a bad \(flag)")
            } catch let error as TidemarkError {
                #expect(error.exitStatus == .usage && error.cause.contains(flag), "\(error)")
            }
        }
        options.count = 0
        let summary = try Self.produce(options)
        #expect(summary.files == 0 && summary.events == 0)
        // From the command line, reported as every usage error is: with the usage line.
        let run = try Binary.run(["produce", "--landing", folder.landing, "--sent-log", folder.sent, "--rate", "0"])
        #expect(run.status == 64 && run.stderr.contains("Error: --rate must be 1 to 10000000, got 0\nUsage: tidemark produce"), "\(run.stderr)")
    }

    // MARK: The built binary

    static func binary() throws -> String {
        let path = Binary.path
        try #require(FileManager.default.isExecutableFile(atPath: path),
                     "the tidemark binary is missing at \(path): build it first (swift build)")
        return path
    }

    /// After SIGTERM the producer waits for its built-ahead file's time (300-second files here),
    /// also when the signal comes twice at once; a second SIGTERM, a second later, ends the
    /// wait: it exits at once, nothing lost. (With 30-second files, a suite run that held the
    /// producer up for half a minute before the signal let that file's time come meanwhile.)
    @Test func aSecondSigtermEndsTheWaitForFilesBuiltAhead() async throws {
        let folder = TestFolder()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.binary())
        // Files of 300 s: without the second signal it would wait minutes more, so a bound of
        // 10 s tells the two apart even on a busy machine.
        process.arguments = ["produce", "--landing", folder.landing, "--sent-log", folder.sent, "--rate", "20", "--file-seconds", "300"]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Running (its signal handlers installed) once it has written the sent log ahead.
        let started = Date()
        while (try? FileManager.default.contentsOfDirectory(atPath: folder.sent))?.contains(where: { $0.hasPrefix("sent-") }) != true
                && Date().timeIntervalSince(started) < 20 {
            try await Task.sleep(for: .milliseconds(20))
        }
        // One stop request delivered twice at once (terminal and supervisor): not insisting.
        kill(process.processIdentifier, SIGTERM)
        kill(process.processIdentifier, SIGTERM)
        try await Task.sleep(for: .seconds(1.3))
        #expect(process.isRunning, "the first SIGTERM (twice at once) should leave it waiting for the file built ahead")
        let second = Date()
        process.terminate()
        while process.isRunning && Date().timeIntervalSince(second) < 40 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!process.isRunning && Date().timeIntervalSince(second) < 10, "still waiting \(Date().timeIntervalSince(second)) s after the second SIGTERM")
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        try Self.expectAgreement(folder, try Self.readLanding(folder.landing))
    }

    @Test func sigtermPublishesEverythingHeldBackAndExitsZero() async throws {
        let folder = TestFolder()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.binary())
        process.arguments = ["produce", "--landing", folder.landing, "--sent-log", folder.sent, "--rate", "50"]
        let errPath = folder.root + "/stderr.txt"
        createTestFile(atPath: errPath, contents: nil)
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try await Task.sleep(for: .seconds(3))
        process.terminate() // SIGTERM
        var waited = 0
        while process.isRunning && waited < 200 {
            try await Task.sleep(for: .milliseconds(100))
            waited += 1
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            Issue.record("tidemark produce was still running 20 s after SIGTERM")
        }
        process.waitUntilExit()
        try err.close()
        let stderr = String(decoding: try FileSystem.readAll(errPath), as: UTF8.self)
        #expect(process.terminationReason == .exit, "killed by signal \(process.terminationStatus)")
        #expect(process.terminationStatus == 0, "stderr: \(stderr)")
        #expect(stderr.contains("produced"), "no summary on stderr: \(stderr)")

        let landing = try Self.readLanding(folder.landing)
        try Self.expectNoTemporaryFiles(folder)
        try Self.expectAgreement(folder, landing)
        let stats = try Self.analyze(landing, lateDelay: 0...60_000_000_000, checkDelays: false)
        #expect(stats.originals >= 100, "only \(stats.originals) events in about 3 s at 50/s")
        // Held back records made it out: about 10% late, in the flush.
        #expect(stats.late > 0)
        // No file appeared before the second it is named for (nor carries a later received_time).
        // File times come from the kernel's coarse clock, a few milliseconds behind: 20 ms of slack.
        for name in Set(landing.map(\.file)) {
            var info = stat()
            #expect(stat(folder.landing + "/" + name, &info) == 0)
            let written = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
            #expect(written >= Double(try Self.fileSecond(name)) - 0.02, "\(name) published at \(written)")
        }
    }

    @Test func killedProducerLeavesNoUnloggedLineAndTheNextRunRepublishes() throws {
        let folder = TestFolder()
        _ = try Self.binary()
        let arguments = ["produce", "--fast", "--landing", folder.landing, "--sent-log", folder.sent,
                         "--rate", "100", "--count", "2000"]
        let crashed = try Binary.run(arguments, environment: ["TIDEMARK_FAULT": "produce-before-landing", "TIDEMARK_FAULT_AFTER": "3"])
        #expect(crashed.status == SIGKILL, "the fault point did not fire: \(crashed.stderr)")
        // Killed after publishing three landing files: each of their lines is in the sent log,
        // which already lists the rest of the batch.
        let published = try Self.readLanding(folder.landing)
        #expect(Set(published.map(\.file)).count == 3)
        let sent = try Self.readSentLog(folder.sent)
        #expect(sent.count > published.count)
        for (entry, line) in zip(sent, published) {
            #expect(entry.file == line.file && entry.line == line.number && entry.text == line.text)
        }
        #expect(FileSystem.exists(folder.sent + "/" + Producer.markerName))

        // The next run finishes that batch from the sent log before anything else.
        let rerun = try Binary.run(["produce", "--fast", "--landing", folder.landing, "--sent-log", folder.sent, "--count", "0"])
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stderr.contains("recovered"), "\(rerun.stderr)")
        #expect(!FileSystem.exists(folder.sent + "/" + Producer.markerName))
        let landing = try Self.readLanding(folder.landing)
        try Self.expectAgreement(folder, landing)
        try Self.expectNoTemporaryFiles(folder)
    }
}
