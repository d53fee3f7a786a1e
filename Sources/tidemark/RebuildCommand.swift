import ArgumentParser
import Foundation
import TidemarkCore

struct RebuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild",
        abstract: "Rebuild hourly partitions from the archived raw files (compared with the stored rows; what differs is written in one transaction per hour).",
        discussion: """
            Exit codes: 0 rebuilt (or nothing to do; or stopped by SIGINT/SIGTERM after the hour in hand, the hours not rebuilt named); 64 usage, or a database copied in from another data folder; 65 an archived file no longer matches its SHA-256, \
            or the hour's table has no row id left for new rows; 66 an archived file or the database is missing (or was lost beside a non-empty archive, or its first load was interrupted: ingest again); \
            74 I/O error (a full disk included); 75 another job holds the lock, or the data folder's first load is running.
            """)

    @OptionGroup var shared: SharedOptions
    @OptionGroup var hours: HourRangeOptions

    @Flag(help: "Rebuild every hour that has a partition, a table, archived files or lookup entries.")
    var all = false

    @Flag(help: "Show per hour the rows that would be added, changed or removed; write nothing.")
    var dryRun = false

    @Flag(help: "Print the report as one JSON document.")
    var json = false

    @OptionGroup var passes: PassOptions

    func validate() throws {
        if all && hours.range != nil { throw ValidationError("--all rebuilds every hour: it cannot be combined with --hour or --from/--to") }
        if !all && hours.range == nil { throw ValidationError("choose what to rebuild: --hour H, --from H --to H, or --all") }
    }

    func run() throws {
        let logger = shared.makeLogger()
        var options = RebuildOptions(dataFolder: shared.dataFolder)
        options.hours = hours.range
        options.dryRun = dryRun
        if let eventsPerPass = passes.eventsPerPass { options.eventsPerPass = eventsPerPass }
        // SIGINT/SIGTERM: the hour in hand finishes (or a second signal rolls it back at once).
        StopSignal.installStoppingOnce()
        do {
            let report = try RebuildJob.run(options, logger: logger)
            if json { printJSON(try report.jsonText()) } else { print(report.text, terminator: "") }
        } catch {
            throw fail(error)
        }
    }
}
