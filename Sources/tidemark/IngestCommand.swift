import ArgumentParser
import Foundation
import TidemarkCore

struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Apply new landing files to the hourly partitions (one micro-batch, or --loop).",
        discussion: """
            Quiet on success unless -v (cron mails any output). Exit codes: 0 done or nothing to do; \
            64 usage, a data folder other than the one the landing folder feeds, a landing folder inside a data folder, or a database copied in from another data folder; 66 landing folder missing, or the database lost beside a non-empty archive; 74 I/O error (disk full, unreadable file, a file applied but not \
            archived, corrupt database); 75 another job holds the lock, another ingest takes files from the same \
            landing folder, or the database stayed locked (retry later). \
            SIGINT/SIGTERM: the batch stops after the current file, commits and exits 0. \
            The run that creates the database (its first load) writes it without a journal and moves no file until it is on disk; \
            killed before, it leaves an incomplete database that the next ingest removes before it loads again.
            """)

    @OptionGroup var shared: SharedOptions

    @Option(parsing: .unconditional, help: "Process at most N files in this run (the rest wait for the next).")
    var maxFiles: Int?

    @Flag(help: "Run a batch every --interval seconds until SIGINT/SIGTERM.")
    var loop = false

    static let defaultInterval = 5.0

    @Option(parsing: .unconditional, help: "Seconds between batches with --loop (default: \(Int(defaultInterval))).")
    var interval: Double?

    @Flag(help: "Decode and merge, report what would change, write nothing and move nothing.")
    var dryRun = false

    @Flag(help: "Print the batch summary as one JSON document on stdout (with --loop, one line per batch: JSON Lines).")
    var json = false

    @OptionGroup var apply: ApplyOptions

    @Option(parsing: .unconditional, help: "Partitions one batch may create: files that would exceed it wait for the next batch; a file that alone exceeds it is quarantined.")
    var maxNewPartitions: Int = 1000

    @Option(parsing: .unconditional, help: "A landing file that ends early (truncated or empty) and was modified less than this many seconds ago is left for the next run instead of being quarantined: it is probably still being written.")
    var settleSeconds: Double = 10

    @Option(help: "Write Prometheus textfile metrics here after each batch (atomically).")
    var metricsFile: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Commit after this many files (tests and tuning).", visibility: .hidden))
    var filesPerCommit: Int = 256

    func validate() throws {
        try SharedOptions.refuseEmpty("--landing", "TIDEMARK_LANDING", shared.landing)
        if let interval, !(interval > 0) || !interval.isFinite { throw ValidationError("--interval must be a number of seconds greater than 0, got \(interval)") }
        if maxNewPartitions < 1 { throw ValidationError("--max-new-partitions must be at least 1, got \(maxNewPartitions)") }
        if let maxFiles, maxFiles <= 0 { throw ValidationError("--max-files must be at least 1, got \(maxFiles)") }
        if filesPerCommit <= 0 { throw ValidationError("--files-per-commit must be at least 1, got \(filesPerCommit)") }
        if !(0...604_800).contains(settleSeconds) { throw ValidationError("--settle-seconds must be 0 to 604800 seconds (a week), got \(settleSeconds)") }
        // Even at the default: without --loop it would run one batch, not one every 5 s.
        if !loop && interval != nil { throw ValidationError("--interval only applies with --loop") }
        if loop && dryRun { throw ValidationError("--dry-run cannot be combined with --loop") }
    }

    func run() throws {
        let logger = shared.makeLogger()
        var options = IngestOptions(landingFolder: shared.landingFolder, dataFolder: shared.dataFolder)
        options.maxFiles = maxFiles
        options.mappedReadFault = mappedReadFault
        options.dryRun = dryRun
        apply.apply(to: &options)
        options.maxNewPartitions = maxNewPartitions
        options.settleSeconds = settleSeconds
        options.filesPerCommit = filesPerCommit
        // Refused before the batch, not after it: the metrics file would name one of tidemark's own.
        if let metricsFile, let refusal = OutputFile.refusal(metricsFile, flag: "--metrics-file", dataFolder: shared.dataFolder) { throw fail(refusal) }
        StopSignal.install()
        let report = { (summary: BatchSummary) in
            // A loop prints one document per batch, each on its own line (JSON Lines).
            if json { printJSON(try summary.jsonText(oneLine: loop)) } else if dryRun { printDryRunPlan(summary) }
            if let metricsFile, !dryRun { try MetricsExporter.write(dataFolder: shared.dataFolder, to: metricsFile, last: summary) }
        }
        do {
            if loop {
                try IngestJob.runLoop(options, interval: interval ?? Self.defaultInterval, logger: logger, afterBatch: { summary in
                    try report(summary)
                    // The file waits in landing, and every batch names it.
                    if let unreadable = summary.endError { logger.error("\(unreadable.description)") }
                }, skipped: { logger.warning("skipped a batch: \($0.description)") })
            } else {
                let summary = try IngestJob.run(options, logger: logger)
                try report(summary)
                if let unreadable = summary.endError { throw unreadable }
            }
        } catch {
            throw fail(error)
        }
    }
}
