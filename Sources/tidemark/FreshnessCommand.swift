import ArgumentParser
import Foundation
import TidemarkCore

struct FreshnessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "freshness",
        abstract: "Alert on a stalled pipeline from the newest data ingested (its received_time, or event_time where a source sends none) and the last successful ingest or backfill.",
        discussion: "Exit codes: 0 fresh; 1 warning (older than --warn-after); 2 error (older than --error-after, or no data ingested yet); 64 usage, or a database copied in from another data folder; 66 no database (or one lost beside a non-empty archive, or one whose first load was interrupted); 74 the database cannot be read; 75 it is being created (its first load) or upgraded by a job running now (retry).")

    @OptionGroup var shared: SharedOptions

    @Option(help: "Warn when data or the last success is older than this (90s, 10m, 1h, 2d).")
    var warnAfter: String = "10m"

    @Option(help: "Error when data or the last success is older than this.")
    var errorAfter: String = "1h"

    @Option(help: ArgumentHelp("Evaluate as of this RFC 3339 time instead of now.", visibility: .hidden))
    var now: String?

    @Flag(help: "Print one JSON document.")
    var json = false

    func validate() throws {
        guard let warn = FreshnessReport.parseDuration(warnAfter) else { throw ValidationError("--warn-after \(warnAfter) is not a duration like 90s, 10m, 1h or 2d (ten years at most)") }
        guard let error = FreshnessReport.parseDuration(errorAfter) else { throw ValidationError("--error-after \(errorAfter) is not a duration like 90s, 10m, 1h or 2d (ten years at most)") }
        if warn > error { throw ValidationError("--warn-after must not exceed --error-after") }
        if let now, (try? Timestamp.parse(now).get()) == nil { throw ValidationError("--now \(now) is not an RFC 3339 time") }
    }

    func run() throws {
        _ = shared.makeLogger() // errors follow --log-format
        let clock = now.flatMap { try? Timestamp.parse($0).get() } ?? Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
        do {
            let report = try FreshnessReport.check(dataFolder: shared.dataFolder, warnAfter: FreshnessReport.parseDuration(warnAfter)!,
                                                   errorAfter: FreshnessReport.parseDuration(errorAfter)!, now: clock)
            if json { printJSON(try report.jsonText()) } else { print("\(report.status): \(report.reason)") }
            if report.exitCode != 0 { throw ExitCode(report.exitCode) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }
}
