import Foundation
import Logging

/// Settings of `tidemark demo`.
public struct DemoOptions: Sendable {
    /// Folder holding landing/, data/ and sent/.
    public var folder: String
    public var events = 50_000
    public var rate = 5
    /// Simulated seconds between two ingest micro-batches.
    public var batchEvery = 120
    public var seed: UInt64 = 1
    public var start = try! Timestamp.parse("2025-07-30T10:00:00Z").get()
    /// Passed on to each ingest (`IngestOptions.mappedReadFault`).
    public var mappedReadFault: MappedReadFault?

    public init(folder: String) { self.folder = folder }

    public var landing: String { folder + "/landing" }
    public var data: String { folder + "/data" }
    public var sent: String { folder + "/sent" }
}

/// What the demo did, for its closing summary.
public struct DemoResult: Sendable {
    public var produced: ProducerSummary
    public var batches = 0
    public var lines = LineCounts()
    public var lateEvents = 0
    public var filesDuplicate = 0
    public var partitions = 0
    public var partitionsReprocessed = 0
    public var partitionsResummarized = 0
    public var batchEvery = 0
    public var lag = BatchSummary.Percentiles()
    /// The last batch that applied something: its gauges go into `--metrics-file`, as an
    /// ingest's would.
    public var lastBatch: BatchSummary?
    public var validation: ValidationReport
    /// Every hour rebuilt from the archived raw files after validation, as a dry run (the
    /// demo's database, metrics and report stay what ingest made them).
    public var rebuild = RebuildReport(dryRun: false, hours: [])
    public var seconds = 0.0
    public var folder: String

    /// Hours whose rebuild from raw files found rows to write: none, when ingest is right.
    public var hoursRebuiltDifferently: [String] { rebuild.hours.filter { !$0.isUnchanged }.map(\.hour) }

    /// Validation passed and rebuilding from raw files changed nothing.
    public var ok: Bool { validation.ok && hoursRebuiltDifferently.isEmpty }

    public var summary: String {
        let rows: [[String]] = [
            ["what", "value"],
            ["events produced", "\(produced.events) (\(produced.lines) lines in \(produced.files) files, \(produced.duplicates) redelivered lines)"],
            ["micro-batches", "\(batches), one every \(batchEvery) simulated seconds"],
            ["rows", "\(lines.new) events in \(partitions) hourly partitions"],
            ["late events", "\(lateEvents) counted late by the ingest (producer held back \(produced.late))"],
            ["deleted", "\(lines.deletedByFlag) by is_valid=false, \(lines.deletedByTombstone) by tombstone (producer sent \(produced.correctionsFlag) + \(produced.correctionsTombstone))"],
            ["duplicates absorbed", "\(lines.duplicate) duplicate lines, \(lines.stale) stale, \(filesDuplicate) duplicate files"],
            ["partitions reprocessed", "\(partitionsReprocessed) hour summaries updated, \(partitionsResummarized) of them revisited for late or corrected data; untouched hours never rewritten"],
            ["ingestion lag", lag.p50.map { String(format: "p50 %.1f s, p95 %.1f s, max %.1f s (simulated clock)", $0, lag.p95 ?? 0, lag.max ?? 0) } ?? "-"],
            ["validation", validation.ok ? "PASSED (\(validation.checks.count) checks against the sent log and an archive replay)" : "FAILED"],
            ["rebuild from raw files", hoursRebuiltDifferently.isEmpty
                ? "\(rebuild.hours.count) of \(rebuild.hours.count) hours unchanged (every row recomputed and compared; a dry run, nothing written)"
                : "FAILED: \(hoursRebuiltDifferently.joined(separator: ", ")) differed from their raw files"],
            ["wall time", String(format: "%.1f s", seconds)],
            ["folder", folder],
        ]
        return TextTable.render(rows)
    }
}

/// `tidemark demo`: the producer in simulated time, ingest micro-batches interleaved with it
/// (so late events and corrections cross batch boundaries), then `validate` against the sent
/// log with a replay of the archive, and a rebuild of every hour from the archived raw files
/// (which must find nothing to change).
public enum DemoJob {
    /// The demo wants a folder of its own: one holding an earlier run (even one killed before its
    /// first ingest) would have it meet its own events again, as duplicates.
    public static func checkFolder(_ options: DemoOptions) throws {
        for sub in [options.landing, options.data, options.sent] {
            if let entries = try? FileManager.default.contentsOfDirectory(atPath: sub), !entries.isEmpty {
                throw TidemarkError("demo", options.folder, cause: "already holds a demo run (\(sub) is not empty): the demo needs a folder of its own",
                                    hint: "choose another --dir, or remove that folder first", exit: .usage)
            }
        }
    }

    public static func run(_ options: DemoOptions, logger: Logger, progress: (String) -> Void = { _ in }) throws -> DemoResult {
        // A second run into the same folder would meet its own events again, as duplicates, and
        // summarize nothing: the demo wants a folder of its own.
        try checkFolder(options)
        let wall = Date()
        var producerOptions = ProducerOptions(landingFolder: options.landing, sentLogFolder: options.sent, start: options.start)
        producerOptions.count = options.events
        producerOptions.rate = options.rate
        producerOptions.seed = options.seed
        let quiet = Logger(label: "tidemark.demo", factory: { _ in SwiftLogNoOpLogHandler() })
        let producer = try Producer(options: producerOptions, logger: quiet)
        var result = DemoResult(produced: producer.summary, validation: ValidationReport(), folder: options.folder)
        result.batchEvery = options.batchEvery
        var lags = DurationHistogram() // every event's lag, over all batches
        var summarizedHours = Set<String>()
        func ingest() throws {
            var ingestOptions = IngestOptions(landingFolder: options.landing, dataFolder: options.data)
            ingestOptions.mappedReadFault = options.mappedReadFault
            // The ingest runs on the simulated clock, so lag means what it would in real time.
            let now = producer.simulatedTime
            ingestOptions.clock = { now }
            let s = try IngestJob.run(ingestOptions, logger: logger)
            if let unreadable = s.endError { throw unreadable }
            guard s.filesApplied + s.filesDuplicate + s.filesQuarantined > 0 else { return }
            result.batches += 1
            result.lastBatch = s
            result.lines = result.lines + s.lines
            result.lateEvents += s.lateEvents
            lags.merge(s.lagHistogram)
            result.filesDuplicate += s.filesDuplicate
            result.partitionsReprocessed += s.partitionsTouched.count
            // An hour summarized by an earlier batch and updated again now: late or corrected
            // data crossed a batch boundary, and only that hour was revisited.
            result.partitionsResummarized += s.partitionsTouched.filter { summarizedHours.contains($0) }.count
            summarizedHours.formUnion(s.partitionsTouched)
            progress("batch \(s.batchID): \(s.filesApplied) files, \(s.lines.read) lines, \(s.partitionsTouched.count) partitions, simulated time \(now.rfc3339Millis)")
        }
        while try producer.advance(seconds: options.batchEvery) {
            try ingest()
        }
        try ingest()
        result.produced = producer.summary
        result.lag = BatchSummary.Percentiles(lags)
        progress("validating against the sent log and replaying the archive")
        var validate = ValidateOptions(dataFolder: options.data)
        validate.sentLogFolder = options.sent
        validate.replay = true
        result.validation = try ValidateJob.run(validate, logger: logger)
        progress("rebuilding every hour from the archived raw files")
        var rebuild = RebuildOptions(dataFolder: options.data)
        rebuild.dryRun = true
        result.rebuild = try RebuildJob.run(rebuild, logger: logger)
        result.partitions = try Warehouse(dataFolder: options.data, create: false, readOnly: true)
            .read { try ReportQueries.totals($0).partitions }
        result.seconds = Date().timeIntervalSince(wall)
        return result
    }
}
