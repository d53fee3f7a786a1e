import ArgumentParser
import Foundation
import TidemarkCore

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Last runs with their counts, backlog, lag, reprocessed partitions, pending tombstones, quarantined files.",
        discussion: "Exit codes: 0 ok; 64 usage; 66 no database in --data; 74 I/O error.")

    @OptionGroup var shared: SharedOptions

    @Flag(help: "Print one JSON document.")
    var json = false

    @Option(help: "How many recent batches to show.")
    var batches: Int = 10

    func run() throws {
        do {
            let report = try StatusJob.run(dataFolder: shared.dataFolder, landingFolder: shared.landingFolder, batches: batches)
            if json { printJSON(try report.jsonText()) } else { print(report.text, terminator: "") }
        } catch {
            throw fail(error)
        }
    }
}
