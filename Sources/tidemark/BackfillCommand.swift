import ArgumentParser
import Foundation
import TidemarkCore

struct BackfillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backfill",
        abstract: "Ingest files from any folder (a restored backup, another landing area) through the same ledger and merge rule.",
        discussion: """
            Idempotent (files already in the ledger by content are skipped), resumable (rerun after a kill; a backfill that creates the database, its first load, starts over), \
            commits in chunks, and leaves the source folder as it was (files are copied into the archive). \
            Exit codes: 0 done; 64 usage, or a database copied in from another data folder; 66 --from-dir missing, or the database lost beside a non-empty archive (backfill that archive: --from-dir DATA/archive); 74 I/O error; 75 another job holds the lock.
            """)

    @OptionGroup var shared: SharedOptions

    @Option(help: ArgumentHelp("Folder to read *.ndjson.gz, *.jsonl.gz or *.json.gz files from, subfolders included (DATA/archive works).", valueName: "DIR"))
    var fromDir: String

    @Option(help: ArgumentHelp("Only files modified at or after this RFC 3339 time.", valueName: "T"))
    var since: String?

    @Option(help: ArgumentHelp("Only files modified before this RFC 3339 time.", valueName: "T"))
    var until: String?

    @Flag(help: "List the files and the hours they would touch; write nothing.")
    var dryRun = false

    @Flag(help: "Print the summary as one JSON document.")
    var json = false

    @Option(parsing: .unconditional, help: "Partitions this backfill may create (history can span many hours).")
    var maxNewPartitions: Int = 100_000

    @OptionGroup var apply: ApplyOptions

    @Option(help: "Write Prometheus textfile metrics here after the backfill (atomically): the cumulative counters, and the backfill as the last batch.")
    var metricsFile: String?

    func validate() throws {
        if maxNewPartitions < 1 { throw ValidationError("--max-new-partitions must be at least 1, got \(maxNewPartitions)") }
        for (flag, value) in [("--since", since), ("--until", until)] {
            if let value, (try? Timestamp.parse(value).get()) == nil { throw ValidationError("\(flag) \(value) is not an RFC 3339 time") }
        }
        if let since, let until, let from = try? Timestamp.parse(since).get(), let to = try? Timestamp.parse(until).get(), from >= to {
            throw ValidationError("--since \(since) is not before --until \(until): no file could match")
        }
    }

    func run() throws {
        let logger = shared.makeLogger()
        var options = IngestOptions(landingFolder: fromDir, dataFolder: shared.dataFolder)
        options.kind = .backfill
        options.mappedReadFault = mappedReadFault
        options.dryRun = dryRun
        options.maxNewPartitions = maxNewPartitions
        apply.apply(to: &options)
        options.modifiedSince = since.flatMap { try? Timestamp.parse($0).get().secondsSinceEpoch }
        options.modifiedUntil = until.flatMap { try? Timestamp.parse($0).get().secondsSinceEpoch }
        if isatty(2) == 1 { options.progress = ProgressBar.ingest() }
        if let metricsFile, let refusal = OutputFile.refusal(metricsFile, flag: "--metrics-file", dataFolder: shared.dataFolder) { throw fail(refusal) }
        StopSignal.install()
        do {
            let summary = try IngestJob.run(options, logger: logger)
            if isatty(2) == 1 { ProgressBar.clear() }
            if json {
                printJSON(try summary.jsonText())
            } else if dryRun {
                printDryRunPlan(summary)
            } else if shared.verbose || isatty(1) == 1 {
                print(summary.oneLine + (summary.filesSkipped > 0 ? ", \(summary.filesSkipped) files already ingested" : ""))
            }
            if let metricsFile, !dryRun { try MetricsExporter.write(dataFolder: shared.dataFolder, to: metricsFile, last: summary) }
            if let unreadable = summary.endError { throw unreadable }
        } catch {
            throw fail(error)
        }
    }
}

/// A one-line progress display on stderr, only when stderr is a terminal.
enum ProgressBar {
    static func ingest() -> @Sendable (IngestProgress) -> Void {
        let start = Date()
        return { p in
            let elapsed = Date().timeIntervalSince(start)
            let fraction = p.bytesTotal > 0 ? Double(p.bytesDone) / Double(p.bytesTotal) : 1
            let eta = fraction > 0 ? elapsed / fraction - elapsed : 0
            let width = 24
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            let line = String(format: "[%@] %d/%d files  %.1f/%.1f MB  %d events  ETA %.0fs",
                              bar, p.filesDone, p.filesTotal, Double(p.bytesDone) / 1e6, Double(p.bytesTotal) / 1e6, p.events, eta)
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
        }
    }

    static func clear() {
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
