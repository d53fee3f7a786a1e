import ArgumentParser
import Foundation
import TidemarkCore

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Last runs with their counts, backlog, lag, reprocessed partitions, pending tombstones, quarantined files.",
        discussion: "Exit codes: 0 ok; 64 usage, or a database copied in from another data folder; 66 no database in --data (or one lost beside a non-empty archive, or one whose first load was interrupted); 74 I/O error; 75 the database is being created (its first load) or upgraded by a job running now (retry).")

    @OptionGroup var shared: SharedOptions

    @Flag(help: "Print one JSON document.")
    var json = false

    @Option(parsing: .unconditional, help: "How many recent batches to show.")
    var batches: Int = 10

    @Option(parsing: .unconditional, help: "Also list this many of the most recent rejected lines (file, line, reason, text).")
    var rejected: Int = 0

    func validate() throws {
        if batches < 0 { throw ValidationError("--batches must be 0 or more, got \(batches)") }
        if rejected < 0 { throw ValidationError("--rejected must be 0 or more, got \(rejected)") }
    }

    func run() throws {
        _ = shared.makeLogger() // errors follow --log-format
        do {
            let report = try StatusJob.run(dataFolder: shared.dataFolder, landingFolder: shared.landingFolder, batches: batches, rejected: rejected)
            if json { printJSON(try report.jsonText()) } else { print(report.text, terminator: "") }
        } catch {
            throw fail(error)
        }
    }
}
