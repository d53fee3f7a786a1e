import Foundation

/// How corrections are sent: as a re-sent record with `is_valid: false`, as a tombstone, or
/// about half of each.
public enum CorrectionMode: String, CaseIterable, Sendable {
    case flag
    case tombstone
    case mixed
}

/// A range of whole seconds written `A...B` on the command line (`30...60`).
public struct SecondsRange: Equatable, Sendable, CustomStringConvertible {
    public var lower: Int
    public var upper: Int

    public init(_ lower: Int, _ upper: Int) {
        precondition(lower <= upper, "SecondsRange lower bound above upper bound")
        self.lower = lower
        self.upper = upper
    }

    /// Parses `A...B` (whole seconds, `0 <= A <= B`); a single number `A` means `A...A`.
    public init?(parsing text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        let numbers: [Substring]
        if parts.count == 1 {
            numbers = [parts[0], parts[0]]
        } else if parts.count == 4, parts[1].isEmpty, parts[2].isEmpty {
            numbers = [parts[0], parts[3]]
        } else {
            return nil
        }
        guard numbers.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }),
              let lower = Int(numbers[0]), let upper = Int(numbers[1]), lower <= upper
        else { return nil }
        self.init(lower, upper)
    }

    public var description: String { "\(lower)...\(upper)" }

    var milliseconds: ClosedRange<Int64> { Int64(lower) * 1000...Int64(upper) * 1000 }
}

/// Everything that shapes a production run. Two runs with equal options (and empty folders)
/// write byte-identical landing files and sent logs.
public struct ProducerOptions: Sendable {
    /// Where landing files are published (created if missing).
    public var landingFolder: String
    /// Where the sent log is written (created if missing).
    public var sentLogFolder: String
    /// Original events per simulated second.
    public var rate: Int = 10
    /// Stop after this many original events (corrections and redeliveries not counted).
    public var count: Int?
    /// Stop after this many simulated seconds.
    public var duration: Int?
    /// Size of the user pool.
    public var users: Int = 1000
    /// Share of events held back and published `lateDelay` after their event time.
    public var lateFraction: Double = 0.10
    public var lateDelay = SecondsRange(30, 60)
    /// Share of events corrected once, `correctionDelay` after they were published.
    public var correctionFraction: Double = 0.07
    public var correctionDelay = SecondsRange(5, 120)
    public var corrections: CorrectionMode = .mixed
    /// Share of events published a second time, unchanged, `duplicateDelay` later.
    public var duplicateFraction: Double = 0.02
    public var duplicateDelay = SecondsRange(1, 30)
    public var seed: UInt64 = 1
    /// The first simulated second (sub-second digits are dropped).
    public var start: Timestamp
    /// Seconds covered by one landing file.
    public var fileSeconds: Int = 1

    public init(landingFolder: String, sentLogFolder: String, start: Timestamp) {
        self.landingFolder = landingFolder
        self.sentLogFolder = sentLogFolder
        self.start = start
    }

    static let maxRate = 10_000_000
    static let maxUsers = 10_000_000
    static let maxDuration = 10 * 365 * 86_400
    static let maxDelay = 30 * 86_400

    /// Checks values and combinations; the message names the command-line flag.
    public func validate() throws {
        func usage(_ message: String) -> TidemarkError {
            TidemarkError("produce", "", cause: message, exit: .usage)
        }
        // Bounded above too: beyond these the simulator's time and size arithmetic would
        // overflow, or its user table fill memory (they crashed before).
        guard (1...ProducerOptions.maxRate).contains(rate) else { throw usage("--rate must be 1 to \(ProducerOptions.maxRate), got \(rate)") }
        guard (1...ProducerOptions.maxUsers).contains(users) else { throw usage("--users must be 1 to \(ProducerOptions.maxUsers), got \(users)") }
        guard (1...86_400).contains(fileSeconds) else { throw usage("--file-seconds must be 1 to 86400 (a day), got \(fileSeconds)") }
        if let count, count < 0 { throw usage("--count must not be negative") }
        if let duration, !(0...ProducerOptions.maxDuration).contains(duration) {
            throw usage("--duration must be 0 to \(ProducerOptions.maxDuration) seconds (ten years), got \(duration)")
        }
        for (flag, value) in [("--late-fraction", lateFraction), ("--correction-fraction", correctionFraction),
                              ("--duplicate-fraction", duplicateFraction)] {
            guard value >= 0 && value <= 1 else { throw usage("\(flag) must be between 0 and 1, got \(value)") }
        }
        guard lateDelay.lower >= 1 else { throw usage("--late-delay must start at 1 second or more") }
        guard correctionDelay.lower >= 1 else { throw usage("--correction-delay must start at 1 second or more") }
        guard duplicateDelay.lower >= 1 else { throw usage("duplicate delay must start at 1 second or more") }
        for (flag, range) in [("--late-delay", lateDelay), ("--correction-delay", correctionDelay), ("duplicate delay", duplicateDelay)] {
            guard range.upper <= ProducerOptions.maxDelay else {
                throw usage("\(flag) must end at \(ProducerOptions.maxDelay) seconds (30 days) or less, got \(range)")
            }
        }
        // Every event must be one that ingest accepts: dated from 1970 to the end of 2261 (the
        // simulated clock ran past 2262 and crashed before). Without --count or --duration the
        // clock is the real one.
        let firstAccepted = Timestamp(nanosecondsSinceEpoch: 0)
        let lastAccepted = Timestamp(nanosecondsSinceEpoch: Timestamp.endSecond * Timestamp.nanosPerSecond - 1)
        guard start >= firstAccepted else { throw usage("--start must be 1970 or later (ingest rejects events dated before 1970), got \(start.rfc3339)") }
        let seconds = [duration.map(Double.init), count.map { Double($0) / Double(rate) }].compactMap { $0 }.min()
        if let seconds {
            let delays = Double(max(lateDelay.upper, correctionDelay.upper, duplicateDelay.upper, 0)) + Double(fileSeconds)
            guard start.secondsSinceEpoch + seconds + delays < lastAccepted.secondsSinceEpoch else {
                throw usage("the simulated clock would run past \(lastAccepted.rfc3339), the last time ingest accepts: start earlier than \(start.rfc3339), or produce fewer events")
            }
        }
        guard standardized(landingFolder) != standardized(sentLogFolder) else {
            throw usage("--landing and --sent-log must be different folders")
        }
    }
}

private func standardized(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.path
}
