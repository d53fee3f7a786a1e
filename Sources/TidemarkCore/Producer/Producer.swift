import Foundation
import Logging

/// Generates synthetic user-activity events and publishes them as gzipped NDJSON landing
/// files, keeping a sent log of every delivery (see `SentLog`).
///
/// Time is simulated: slot `k` covers the `fileSeconds` seconds from `start + k * fileSeconds`
/// and becomes one landing file, named by a sequence number and the slot's first second
/// (`events-000000001-20250730T100000Z.ndjson.gz`), so that name order is publish order. A slot's
/// file holds the deliveries *received* during the slot, sorted by `received_time`:
/// - normal records: `received_time` uniform in the second, `event_time` 0–900 ms before it;
/// - late records (`lateFraction`): `received_time = event_time + lateDelay`, so they land in
///   a later file than their event time suggests;
/// - corrections (`correctionFraction`, each event at most once): `correctionDelay` after the
///   record was published, the record again with `is_valid: false`, or a tombstone
///   `{"event_id":…,"received_time":…}`; both carry the publish time as `received_time`;
/// - redeliveries (`duplicateFraction`): the record's line again, byte for byte, in a file
///   `duplicateDelay` seconds later (always a later file).
///
/// Every random choice comes from one seeded generator, drawn in a fixed order per event
/// (whatever the fractions), so equal options give byte-identical output.
///
/// Publish protocol, per batch (up to 100 landing files with `advance`, the next five
/// seconds' files in real time):
/// 1. an in-flight marker `.inflight` naming the next sent-log file is written to the
///    sent-log folder;
/// 2. the sent-log file listing every line of the batch is written;
/// 3. the landing files are published, in order;
/// 4. the marker is removed.
/// Every write is atomic (`FileSystem.writeAtomically`), so a landing line is never visible
/// before its sent-log entry. If the process dies between 2 and 4, the next `Producer` finds
/// the marker and republishes, from the sent log, the landing files of that batch that are
/// not in the landing folder; one that was published and already taken away by ingest is
/// then delivered a second time, identical, which the merge rule absorbs. Temporary files a
/// killed producer left behind are removed. One producer at a time per folder: a producer
/// holds a lock (`.producer.lock`; readers skip dot-files) in its landing and its sent-log
/// folder, and a second one stops with exit 75 before writing or removing any file.
///
/// A restarted producer never reuses names: sent-log numbering continues after the highest
/// existing file, landing numbering after the highest number in the last sent-log file and in
/// the landing folder, and its events are new ones (its generator is seeded from the seed and
/// the sent log's next number), as a real source's are after a restart.
public final class Producer {
    public let options: ProducerOptions
    public private(set) var summary = ProducerSummary()
    /// True once production has ended and everything held back has been published.
    public private(set) var isFinished = false

    /// Landing files per sent-log file, and a cap on a batch's sent-log text.
    static let batchFiles = 100
    static let batchBytes = 32 << 20
    static let markerName = ".inflight"
    /// zlib levels: 3 compresses landing files within about 10% of the default level 6 at
    /// twice its speed; the sent log is read by tidemark only, so speed wins outright. A
    /// republished file (recovery) must use the same level to come out byte-identical.
    static let landingLevel: Int32 = 3
    static let sentLogLevel: Int32 = 1

    private let logger: Logger
    private var rng: SeededGenerator
    private let mix: EventMix
    private let startNanos: Int64
    private let slotNanos: Int64
    private let lateDelay: ClosedRange<Int64>
    private let correctionDelay: ClosedRange<Int64>
    private let duplicateDelay: ClosedRange<Int64>

    /// The next slot to build.
    private var nextSlot = 0
    /// Simulated seconds asked for through `advance(seconds:)`.
    private var requestedSeconds = 0
    /// No more original events will be generated.
    private var productionEnded = false
    /// Deliveries held back, by the slot that will publish them.
    private var pending: [Int: [Pending]] = [:]
    private var pendingCount = 0

    /// Built landing files not yet published; the first `loggedCount` are in the sent log.
    private var staged: [StagedFile] = []
    private var loggedCount = 0
    /// Sent-log text of `staged[loggedCount...]`.
    private var sentText: [UInt8] = []
    private var nextLandingSequence: Int
    private var nextSentSequence: Int
    private var markerWritten = false
    /// The latest slot end among published files, so that an early flush never goes back in time.
    private var publishedThrough: Int64

    private var content: [UInt8] = []
    private var entries: [Entry] = []

    /// The lock file in each of the producer's folders.
    static let lockName = ".producer.lock"
    /// Held while this producer lives.
    private var locks: [JobLock] = []

    /// Creates the folders if missing, takes their locks, finishes an interrupted earlier run
    /// (see the type's documentation), and picks up the file numbering where earlier runs left it.
    public init(options: ProducerOptions, logger: Logger = Logger(label: "tidemark.produce")) throws {
        try options.validate()
        self.options = options
        self.logger = logger
        rng = SeededGenerator(seed: options.seed)
        mix = EventMix(users: options.users)
        startNanos = floorDiv(options.start.nanosecondsSinceEpoch, Timestamp.nanosPerSecond) * Timestamp.nanosPerSecond
        slotNanos = Int64(options.fileSeconds) * Timestamp.nanosPerSecond
        lateDelay = options.lateDelay.milliseconds
        correctionDelay = options.correctionDelay.milliseconds
        duplicateDelay = Int64(options.duplicateDelay.lower)...Int64(options.duplicateDelay.upper)
        publishedThrough = startNanos
        productionEnded = options.count == 0 || options.duration == 0

        // makeFolder's own error names the folder that failed and why (exit 74, no-space hint).
        for folder in [options.landingFolder, options.sentLogFolder] { try FileSystem.makeFolder(folder) }
        // Two producers on one folder would overwrite each other's numbered files, and one
        // would remove the other's files mid-write as leftovers.
        var lockedFolders = Set<String>()
        for folder in [options.landingFolder, options.sentLogFolder]
        where lockedFolders.insert(URL(fileURLWithPath: folder).resolvingSymlinksInPath().standardizedFileURL.path).inserted {
            locks.append(try JobLock(folder: folder, file: Producer.lockName, job: "produce", busy: "another producer is writing to this folder",
                                     then: "this one wrote nothing", hint: "run one producer per landing folder and sent-log folder"))
        }
        nextSentSequence = 1
        nextLandingSequence = 1
        removeLeftoverTemporaryFiles()
        try recoverInterruptedBatch()
        try continueNumbering()
        // A restart (the sent log goes on from an earlier run) makes new events, as a real
        // source does after a restart, rather than the first run's ids again with new times
        // (which ingest would take for corrections). A fresh folder keeps "same seed, same bytes".
        if nextSentSequence > 1 {
            rng = SeededGenerator(seed: options.seed &+ UInt64(nextSentSequence) &* 0x9E37_79B9_7F4A_7C15)
        }
    }

    /// The simulated time up to which files have been built.
    public var simulatedTime: Timestamp {
        Timestamp(nanosecondsSinceEpoch: startNanos + Int64(nextSlot) * slotNanos)
    }

    /// Publishes the files of the next `seconds` simulated seconds (a file is due once its
    /// whole slot has passed). After production ends (`count` or `duration` reached) the
    /// following slots carry only what is still held back. Returns false once everything has
    /// been published; the producer is then finished.
    public func advance(seconds: Int) throws -> Bool {
        guard !isFinished else { return false }
        requestedSeconds += max(0, seconds)
        while (nextSlot + 1) * options.fileSeconds <= requestedSeconds, !(productionEnded && pendingCount == 0) {
            try buildNextSlot()
            if staged.count - loggedCount >= Producer.batchFiles || sentText.count >= Producer.batchBytes {
                try commit()
            }
        }
        try commit()
        if productionEnded && pendingCount == 0 { isFinished = true }
        return !isFinished
    }

    /// Ends production: no new events; what is held back is published in the following
    /// simulated slots, each at its planned time.
    public func finish() throws {
        guard !isFinished else { return }
        productionEnded = true
        while pendingCount > 0 {
            try buildNextSlot()
            if staged.count - loggedCount >= Producer.batchFiles || sentText.count >= Producer.batchBytes {
                try commit()
            }
        }
        try commit()
        isFinished = true
    }

    /// Ends production at once (real-time mode on SIGTERM or when `duration` is reached):
    /// files already built are published, then everything held back goes out in files dated
    /// `time` (or the end of the last published slot, if later), one second apart; late
    /// records and corrections get that time as `received_time`. `waitUntil` holds each file
    /// back until its time has come (real time: no file, and no received_time, from the future;
    /// a few seconds at most).
    public func finishNow(at time: Timestamp, waitUntil: (Timestamp) -> Void = { _ in }) throws {
        guard !isFinished else { return }
        productionEnded = true
        try commit(waitUntil: waitUntil)
        var fileTime = max(time.nanosecondsSinceEpoch, publishedThrough)
        while pendingCount > 0 {
            var items: [Pending] = []
            for slot in pending.keys.sorted() { items += pending[slot]! }
            pending.removeAll()
            pendingCount = 0
            entries.removeAll(keepingCapacity: true)
            // With no slot, follow-ups are scheduled rather than added to the same file.
            var unused: [Pending] = []
            for item in items {
                deliver(item, slot: nil, flushTime: fileTime, work: &unused)
            }
            stageFile(time: fileTime, publishAt: fileTime)
            try commit(waitUntil: waitUntil)
            fileTime += Timestamp.nanosPerSecond
        }
        isFinished = true
    }

    // MARK: Simulated time

    /// Produces on the simulated clock as fast as it can, about 100 files per sent-log file,
    /// until production ends. Once `shouldStop()` turns true no new events start, and what
    /// is held back goes out in the following simulated slots (`finish`).
    public func runFast(shouldStop: () -> Bool, onProgress: (ProducerSummary) -> Void = { _ in }) throws {
        while try advance(seconds: 100 * options.fileSeconds) {
            onProgress(summary)
            if shouldStop() {
                try finish()
                return
            }
        }
    }

    // MARK: Real time

    /// Produces in real time until `shouldStop()` or the end of production, then publishes
    /// everything held back at once (`finishNow`). `start` must be the wall-clock second to
    /// begin with. The sent log is written `sentLogSeconds` of files ahead, then each file is
    /// published when its slot has passed on the `now()` clock; `sleep(until:)` may return
    /// early (on a stop request). `sleepAfterStop` is how the final flush waits for each of its
    /// files' time (the files built ahead, up to `sentLogSeconds` of them, then a second per flush file);
    /// it must not return early for the first stop request, and returns false to stop waiting
    /// (a second request: the rest is then published at once).
    public func runRealTime(
        now: () -> Timestamp,
        sleep: (_ until: Timestamp) -> Void,
        sleepAfterStop: (_ until: Timestamp) -> Bool,
        shouldStop: () -> Bool,
        sentLogSeconds: Int = 5,
        onPublish: (ProducerSummary) -> Void = { _ in }
    ) throws {
        let batchSlots = max(1, sentLogSeconds / options.fileSeconds)
        while !isFinished && !shouldStop() {
            if loggedCount == 0 {
                if productionEnded { break }
                var built = 0
                while built < batchSlots && !productionEnded {
                    try buildNextSlot()
                    built += 1
                }
                try writeSentLog()
                if loggedCount == 0 { continue }
            }
            let due = Timestamp(nanosecondsSinceEpoch: staged[0].publishAt)
            if now() < due { sleep(due) }
            if shouldStop() { break }
            guard now() >= due else { continue }
            try publishNextLogged()
            onPublish(summary)
        }
        // Files built ahead, then the flush, each at its time (unless told to stop waiting).
        var waiting = true
        try finishNow(at: now()) { due in
            while waiting && now() < due { waiting = sleepAfterStop(due) }
        }
        onPublish(summary)
    }

    // MARK: Building files

    private enum CorrectionKind { case flag, tombstone }

    /// What an event will do after its first delivery (decided when it is generated).
    private struct FollowUps {
        var duplicateAfterSeconds: Int64?
        var correction: (kind: CorrectionKind, afterMillis: Int64)?
    }

    private enum Pending {
        /// A held-back record; its `receivedTime` is the planned publish time.
        case late(EventRecord, FollowUps)
        case duplicate(line: String, received: Int64)
        case correction(target: EventRecord, kind: CorrectionKind, received: Int64)
    }

    /// One line of the file being built; lines are ordered by received time, then by arrival.
    private struct Entry {
        var received: Int64
        var order: Int
        var line: String
    }

    private struct StagedFile {
        var name: String
        var gzip: [UInt8]
        var lines: Int
        /// When it may be published in real time: the end of its slot.
        var publishAt: Int64
    }

    private func slot(of nanos: Int64) -> Int {
        Int(floorDiv(nanos - startNanos, slotNanos))
    }

    private func schedule(_ item: Pending, slot: Int) {
        pending[slot, default: []].append(item)
        pendingCount += 1
    }

    /// Builds slot `nextSlot`: its new events plus what was held back for it.
    private func buildNextSlot() throws {
        let k = nextSlot
        nextSlot += 1
        let slotStart = startNanos + Int64(k) * slotNanos
        entries.removeAll(keepingCapacity: true)
        var work = pending.removeValue(forKey: k) ?? []
        pendingCount -= work.count
        if !productionEnded {
            for second in 0..<options.fileSeconds {
                let simulatedSecond = k * options.fileSeconds + second
                if let duration = options.duration, simulatedSecond >= duration {
                    productionEnded = true
                    break
                }
                var n = options.rate
                if let count = options.count { n = min(n, count - summary.events) }
                let secondStart = slotStart + Int64(second) * Timestamp.nanosPerSecond
                for _ in 0..<n { generateEvent(secondStart: secondStart, slot: k, work: &work) }
                if let count = options.count, summary.events >= count {
                    productionEnded = true
                    break
                }
            }
            if let duration = options.duration, nextSlot * options.fileSeconds >= duration { productionEnded = true }
        }
        var index = 0
        while index < work.count {
            deliver(work[index], slot: k, flushTime: nil, work: &work)
            index += 1
        }
        stageFile(time: slotStart, publishAt: slotStart + slotNanos)
    }

    private func generateEvent(secondStart: Int64, slot k: Int, work: inout [Pending]) {
        // Always the same draws in the same order, whatever the options' fractions.
        let id = EventMix.uuid(&rng)
        let user = mix.user(&rng)
        let type = mix.eventType(&rng)
        let receivedMillis = Int64(rng.below(1000))
        let jitterMillis = Int64(rng.below(901))
        let isLate = rng.chance(options.lateFraction)
        let lateMillis = rng.inRange(lateDelay)
        let isDuplicated = rng.chance(options.duplicateFraction)
        let duplicateSeconds = rng.inRange(duplicateDelay)
        let isCorrected = rng.chance(options.correctionFraction)
        let kindDraw = rng.unit()
        let correctionMillis = rng.inRange(correctionDelay)

        let received = secondStart + receivedMillis * 1_000_000
        let eventTime = received - jitterMillis * 1_000_000
        var followUps = FollowUps()
        if isDuplicated { followUps.duplicateAfterSeconds = duplicateSeconds }
        if isCorrected {
            let kind: CorrectionKind
            switch options.corrections {
            case .flag: kind = .flag
            case .tombstone: kind = .tombstone
            case .mixed: kind = kindDraw < 0.5 ? .flag : .tombstone
            }
            followUps.correction = (kind, correctionMillis)
        }
        summary.events += 1
        var record = EventRecord(
            eventID: id, userID: user, eventType: type,
            eventTime: Timestamp(nanosecondsSinceEpoch: eventTime),
            receivedTime: Timestamp(nanosecondsSinceEpoch: received), isValid: true)
        if isLate {
            summary.late += 1
            let lateReceived = eventTime + lateMillis * 1_000_000
            record.receivedTime = Timestamp(nanosecondsSinceEpoch: lateReceived)
            let target = slot(of: lateReceived)
            if target <= k {
                work.append(.late(record, followUps))
            } else {
                schedule(.late(record, followUps), slot: target)
            }
        } else {
            deliverRecord(record, followUps, slot: k, work: &work)
        }
    }

    private func deliver(_ item: Pending, slot k: Int?, flushTime: Int64?, work: inout [Pending]) {
        switch item {
        case .late(var record, let followUps):
            if let flushTime { record.receivedTime = Timestamp(nanosecondsSinceEpoch: flushTime) }
            deliverRecord(record, followUps, slot: k, work: &work)
        case .duplicate(let line, let received):
            summary.duplicates += 1
            entries.append(Entry(received: received, order: entries.count, line: line))
        case .correction(let target, let kind, var received):
            if let flushTime { received = flushTime + 1_000_000 }
            let stamp = Timestamp(nanosecondsSinceEpoch: received)
            let line: String
            switch kind {
            case .flag:
                summary.correctionsFlag += 1
                var record = target
                record.isValid = false
                record.receivedTime = stamp
                line = Delivery.record(record).jsonLine
            case .tombstone:
                summary.correctionsTombstone += 1
                line = Delivery.tombstone(eventID: target.eventID, receivedTime: stamp).jsonLine
            }
            entries.append(Entry(received: received, order: entries.count, line: line))
        }
    }

    /// Puts a record into the file being built and schedules its redelivery and correction.
    /// `k` is the slot being built, or nil while flushing (then follow-ups go to the next file).
    private func deliverRecord(_ record: EventRecord, _ followUps: FollowUps, slot k: Int?, work: inout [Pending]) {
        let received = record.receivedTime!.nanosecondsSinceEpoch
        let line = Delivery.record(record).jsonLine
        entries.append(Entry(received: received, order: entries.count, line: line))
        let current = k ?? slot(of: received)
        if let seconds = followUps.duplicateAfterSeconds {
            let receivedSecond = floorDiv(received, Timestamp.nanosPerSecond) * Timestamp.nanosPerSecond
            let target = max(current + 1, slot(of: receivedSecond + seconds * Timestamp.nanosPerSecond))
            schedule(.duplicate(line: line, received: received), slot: target)
        }
        if let correction = followUps.correction {
            let time = received + correction.afterMillis * 1_000_000
            let item = Pending.correction(target: record, kind: correction.kind, received: time)
            let target = slot(of: time)
            if let k, target <= k {
                work.append(item)
            } else {
                schedule(item, slot: max(target, current + 1))
            }
        }
    }

    /// Turns the lines gathered in `entries` into a staged landing file (none if empty).
    private func stageFile(time: Int64, publishAt: Int64) {
        guard !entries.isEmpty else { return }
        entries.sort { $0.received != $1.received ? $0.received < $1.received : $0.order < $1.order }
        let name = Producer.landingName(time: time, sequence: nextLandingSequence)
        nextLandingSequence += 1
        content.removeAll(keepingCapacity: true)
        for (index, entry) in entries.enumerated() {
            content.append(contentsOf: entry.line.utf8)
            content.append(0x0A)
            SentLog.appendLine(file: name, line: index + 1, record: entry.line, to: &sentText)
        }
        let writer = GzipWriter(level: Producer.landingLevel)
        writer.write(content)
        staged.append(StagedFile(name: name, gzip: writer.finish(), lines: entries.count, publishAt: publishAt))
        entries.removeAll(keepingCapacity: true)
    }

    // MARK: Publishing

    /// Writes the sent log for the staged files and publishes them all, each once `waitUntil`
    /// has waited for its publication time (real time: a file never appears before its date).
    private func commit(waitUntil: (Timestamp) -> Void = { _ in }) throws {
        func publishLogged() throws {
            while loggedCount > 0 {
                waitUntil(Timestamp(nanosecondsSinceEpoch: staged[0].publishAt))
                try publishNextLogged()
            }
        }
        try publishLogged() // files logged earlier (real time: built ahead), before the log moves on
        try writeSentLog()
        try publishLogged()
    }

    /// Steps (1) and (2) of the publish protocol for the staged files not yet logged.
    private func writeSentLog() throws {
        guard staged.count > loggedCount else { return }
        while loggedCount > 0 { try publishNextLogged() }
        let name = SentLog.fileName(sequence: nextSentSequence)
        try write(Array((name + "\n").utf8), to: markerPath, what: "write in-flight marker")
        markerWritten = true
        let writer = GzipWriter(level: Producer.sentLogLevel)
        writer.write(sentText)
        try write(writer.finish(), to: options.sentLogFolder + "/" + name, what: "write sent log")
        nextSentSequence += 1
        summary.sentLogFiles += 1
        sentText.removeAll(keepingCapacity: true)
        loggedCount = staged.count
        logger.debug("sent log written", metadata: ["file": "\(name)", "landing_files": "\(loggedCount)"])
    }

    /// Step (3) for the first logged file, and step (4) after the last one.
    private func publishNextLogged() throws {
        precondition(loggedCount > 0)
        let file = staged.removeFirst()
        loggedCount -= 1
        FaultPoint.hit("produce-before-landing")
        try write(file.gzip, to: options.landingFolder + "/" + file.name, what: "publish landing file")
        summary.files += 1
        summary.lines += file.lines
        publishedThrough = max(publishedThrough, file.publishAt)
        if loggedCount == 0 && markerWritten {
            guard unlink(markerPath) == 0 || errno == ENOENT else {
                throw TidemarkError("remove in-flight marker", markerPath, cause: String(cString: strerror(errno)),
                                    exit: .ioError)
            }
            FileSystem.syncFolder(options.sentLogFolder)
            markerWritten = false
        }
    }

    private var markerPath: String { options.sentLogFolder + "/" + Producer.markerName }

    private func write(_ bytes: [UInt8], to path: String, what: String) throws {
        do {
            try FileSystem.writeAtomically(bytes, to: path)
        } catch let error as FileSystemError {
            // The error's own path is this one (`writeAtomically` names the file asked for), or
            // for a folder not synced after the write, that folder.
            let cause = error.isFolderNotSynced ? "written, but its folder \(error.path) could not be fsynced: \(error.cause)" : error.cause
            throw TidemarkError(what, path, cause: cause,
                                hint: error.isNoSpace ? "free disk space; nothing sent so far is lost" : error.hint,
                                exit: .ioError)
        }
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case let error as FileSystemError: return error.description
        case let error as TidemarkError: return error.description
        default: return error.localizedDescription
        }
    }

    // MARK: Names and restart

    /// `events-000000001-20250730T100000Z.ndjson.gz`: the sequence number (nine digits or
    /// more), then the file's first second. The sequence comes first so that name order is
    /// publish order across runs too: a rerun from the same `--start`, or a restart within
    /// the seconds an earlier run published ahead, reuses times but never numbers.
    static func landingName(time: Int64, sequence: Int) -> String {
        let text = Timestamp(nanosecondsSinceEpoch: time).rfc3339.utf8 // 2025-07-30T10:00:00.000000000Z
        var bytes = Array("events-".utf8)
        appendDigits(&bytes, sequence, width: max(9, String(sequence).utf8.count))
        bytes.append(UInt8(ascii: "-"))
        for (index, byte) in text.prefix(19).enumerated() where index != 4 && index != 7 && index != 13 && index != 16 {
            bytes.append(byte)
        }
        bytes.append(UInt8(ascii: "Z"))
        bytes.append(contentsOf: ".ndjson.gz".utf8)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The sequence number of a landing name written by `landingName`, or nil.
    static func landingSequence(of name: String) -> Int? {
        guard name.hasPrefix("events-"), name.hasSuffix(".ndjson.gz") else { return nil }
        let middle = name.dropFirst("events-".count).dropLast(".ndjson.gz".count)
        guard let dash = middle.firstIndex(of: "-") else { return nil }
        let digits = middle[..<dash]
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(digits)
    }

    /// Deletes `.NAME.tmp` files that a killed producer left mid-write (only names this
    /// producer writes; nobody reads them).
    private func removeLeftoverTemporaryFiles() {
        let folders: [(String, (String) -> Bool)] = [
            (options.landingFolder, { Producer.landingSequence(of: $0) != nil }),
            (options.sentLogFolder, { SentLog.sequence(ofFileName: $0) != nil || $0 == Producer.markerName }),
        ]
        for (folder, isOurs) in folders {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { continue }
            for name in names where FileSystem.publishedName(ofTemporary: name).map(isOurs) == true {
                unlink(folder + "/" + name)
            }
        }
    }

    /// Republishes the landing files of a batch whose publishing was interrupted.
    private func recoverInterruptedBatch() throws {
        guard FileSystem.exists(markerPath) else { return }
        let markerText: [UInt8]
        do {
            markerText = try FileSystem.readAll(markerPath)
        } catch {
            throw TidemarkError("read in-flight marker", markerPath, cause: Producer.describe(error), exit: .ioError)
        }
        let name = String(decoding: markerText, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard SentLog.sequence(ofFileName: name) != nil else {
            throw TidemarkError("read in-flight marker", markerPath, cause: "does not name a sent-log file",
                                hint: "remove it if no producer crashed; otherwise it names sent-NNNNNNNNN.ndjson.gz",
                                exit: .dataError)
        }
        let sentPath = options.sentLogFolder + "/" + name
        if FileSystem.exists(sentPath) {
            var files: [(name: String, text: [UInt8], lines: Int)] = []
            try SentLog.forEachEntry(ofFile: sentPath) { file, line, record in
                if files.last?.name != file {
                    guard Producer.landingSequence(of: file) != nil, !file.contains("/") else {
                        throw TidemarkError("recover interrupted batch", sentPath,
                                            cause: "\(file) is not a landing file name this producer writes", exit: .dataError)
                    }
                    files.append((file, [], 0))
                }
                files[files.count - 1].lines += 1
                guard line == files[files.count - 1].lines else {
                    throw TidemarkError("recover interrupted batch", sentPath,
                                        cause: "lines of \(file) are not numbered 1, 2, 3, …", exit: .dataError)
                }
                files[files.count - 1].text.append(contentsOf: record)
                files[files.count - 1].text.append(0x0A)
            }
            for file in files where !FileSystem.exists(options.landingFolder + "/" + file.name) {
                let writer = GzipWriter(level: Producer.landingLevel)
                writer.write(file.text)
                try write(writer.finish(), to: options.landingFolder + "/" + file.name, what: "republish landing file")
                summary.recoveredFiles += 1
            }
            logger.info("finished a batch an earlier producer left half published",
                        metadata: ["sent_log": "\(name)", "republished": "\(summary.recoveredFiles)"])
        }
        guard unlink(markerPath) == 0 else {
            throw TidemarkError("remove in-flight marker", markerPath, cause: String(cString: strerror(errno)), exit: .ioError)
        }
        FileSystem.syncFolder(options.sentLogFolder)
    }

    /// Continues sent-log and landing numbering after earlier runs.
    private func continueNumbering() throws {
        let sentFiles = try SentLog.files(in: options.sentLogFolder)
        let numbered = sentFiles.compactMap { name in SentLog.sequence(ofFileName: name).map { ($0, name) } }
        var highestLanding = 0
        if let last = numbered.max(by: { $0.0 < $1.0 }) {
            nextSentSequence = last.0 + 1
            var lastFile = ""
            try SentLog.forEachEntry(ofFile: options.sentLogFolder + "/" + last.1) { file, _, _ in
                if file != lastFile {
                    lastFile = file
                    highestLanding = max(highestLanding, Producer.landingSequence(of: file) ?? 0)
                }
            }
        }
        if let names = try? FileManager.default.contentsOfDirectory(atPath: options.landingFolder) {
            for name in names {
                highestLanding = max(highestLanding, Producer.landingSequence(of: name) ?? 0)
            }
        }
        nextLandingSequence = highestLanding + 1
    }
}
