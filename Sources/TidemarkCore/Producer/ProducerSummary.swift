/// What a producer has published so far.
public struct ProducerSummary: Equatable, Sendable, CustomStringConvertible {
    /// Original events generated (what `--count` counts).
    public var events = 0
    /// Events held back and published after their natural second.
    public var late = 0
    /// Corrections published as the full record with `is_valid: false`.
    public var correctionsFlag = 0
    /// Corrections published as a tombstone.
    public var correctionsTombstone = 0
    /// Lines published a second time, byte for byte.
    public var duplicates = 0
    /// Landing files published.
    public var files = 0
    /// Landing lines published (events + corrections + duplicates, once all are out).
    public var lines = 0
    /// Sent-log files written.
    public var sentLogFiles = 0
    /// Landing files of an interrupted earlier run published again from its sent log.
    public var recoveredFiles = 0

    public init() {}

    public var corrections: Int { correctionsFlag + correctionsTombstone }

    /// One line for a progress display.
    public var progressLine: String {
        "\(events) events, \(files) files, \(late) late, \(corrections) corrections, \(duplicates) duplicates"
    }

    /// The closing summary, a few lines for stderr.
    public var description: String {
        var text = """
            produced \(events) events: \(lines) lines in \(files) landing files, \(sentLogFiles) sent-log files
              late:        \(late) (\(percent(late)))
              corrections: \(corrections) (\(percent(corrections))): \(correctionsFlag) flag, \(correctionsTombstone) tombstone
              duplicates:  \(duplicates) (\(percent(duplicates)))
            """
        if recoveredFiles > 0 {
            text += "\n  recovered:   \(recoveredFiles) landing files of an interrupted run republished from the sent log"
        }
        return text
    }

    private func percent(_ part: Int) -> String {
        guard events > 0 else { return "0%" }
        let tenths = (part * 1000 + events / 2) / events
        return "\(tenths / 10).\(tenths % 10)% of events"
    }
}
