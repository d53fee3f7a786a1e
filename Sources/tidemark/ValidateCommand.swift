import ArgumentParser
import Foundation
import TidemarkCore

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Prove the target is complete and consistent (against the producer's sent log with --sent-log).",
        discussion: "Exit codes: 0 every check holds; 1 discrepancies found (listed); 64 usage, or a database copied in from another data folder; 65 a sent-log line that does not parse (named); 66 the database (or one lost beside a non-empty archive, or one whose first load was interrupted) or the sent log is missing (or holds no sent-log file); 74 I/O error or an unreadable database; 75 the database stayed locked (rare for a reader: WAL recovery after a crash), or its first load is running.")

    @OptionGroup var shared: SharedOptions
    @OptionGroup var hours: HourRangeOptions

    @Option(help: ArgumentHelp("The producer's sent-log folder: check the target against what was sent.", valueName: "DIR"))
    var sentLog: String?

    @Flag(help: "Also recompute the selected hours from the archived raw files and diff them with the target.")
    var replay = false

    @Flag(help: "Print the report as one JSON document.")
    var json = false

    @Option(parsing: .unconditional, help: "How many example findings to list per check.")
    var show: Int = 10

    @OptionGroup var passes: PassOptions

    func validate() throws {
        if show < 0 { throw ValidationError("--show must be 0 or more, got \(show)") }
    }

    func run() throws {
        let logger = shared.makeLogger()
        var options = ValidateOptions(dataFolder: shared.dataFolder)
        options.sentLogFolder = sentLog
        options.landingFolder = shared.landingFolder
        options.hours = hours.range
        options.replay = replay
        options.sampleLimit = show
        if let eventsPerPass = passes.eventsPerPass { options.eventsPerPass = eventsPerPass }
        let interactive = isatty(2) == 1
        do {
            let report = try ValidateJob.run(options, logger: logger, progress: interactive ? { printErr("… \($0)") } : nil)
            if json {
                printJSON(try report.jsonText())
            } else {
                print(report.table, terminator: "")
            }
            if !report.ok { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }
}
