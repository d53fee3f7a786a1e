import ArgumentParser
import TidemarkCore

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a self-contained HTML page of charts (events and late events per hour, lag and reprocessing per batch).",
        discussion: "Exit codes: 0 written; 64 usage, or a database copied in from another data folder; 66 no database (or one lost beside a non-empty archive, or one whose first load was interrupted); 74 I/O error; 75 the database is being created (its first load) or upgraded by a job running now (retry).")

    @OptionGroup var shared: SharedOptions

    @Option(help: ArgumentHelp("Where to write the page.", valueName: "FILE"))
    var html: String

    func run() throws {
        _ = shared.makeLogger() // errors follow --log-format
        do {
            try HTMLReport.write(dataFolder: shared.dataFolder, to: html)
        } catch {
            throw fail(error)
        }
    }
}
