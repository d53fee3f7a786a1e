import ArgumentParser
import Foundation
import TidemarkCore

@main
struct Tidemark: ParsableCommand {
    /// As `ParsableCommand.main`, except that a usage error follows `--log-format json|logfmt`
    /// when it was given (and parsed far enough to be known): one record, like other errors.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            // Only errors the parser raised: a command's own refusal (an ExitCode) is logged already.
            if !(error is ExitCode), code == .validationFailure || code.rawValue == 64, let format = requestedLogFormat, format != .text {
                LogSetup.bootstrap(format: format, verbose: false)
                _ = fail(TidemarkError("usage", "", cause: message(for: error), hint: "see tidemark --help", exit: .usage))
                Foundation.exit(code.rawValue)
            }
            exit(withError: error)
        }
    }

    /// `--log-format F` or `--log-format=F` on the command line, when F is a known format.
    private static var requestedLogFormat: LogFormat? {
        let arguments = CommandLine.arguments
        for (n, argument) in arguments.enumerated() {
            if argument == "--log-format", n + 1 < arguments.count { return LogFormat(rawValue: arguments[n + 1]) }
            if argument.hasPrefix("--log-format=") { return LogFormat(rawValue: String(argument.dropFirst("--log-format=".count))) }
        }
        return nil
    }

    static let configuration = CommandConfiguration(
        commandName: "tidemark",
        abstract: "Land user-activity events into hourly SQLite partitions, exactly, from gzipped NDJSON files.",
        discussion: """
            Exit codes: 0 ok or nothing to do; 1 validate found discrepancies (freshness: warning); \
            2 freshness error; 64 usage; 65 bad data; 66 missing input; 74 I/O error (disk full, \
            unreadable file); 75 busy (another job holds the lock, the data folder's first load is running, or the database stayed locked).
            """,
        version: TidemarkVersion.current,
        subcommands: [
            DemoCommand.self, IngestCommand.self, ProduceCommand.self, ValidateCommand.self,
            BackfillCommand.self, RebuildCommand.self, StatusCommand.self, FreshnessCommand.self, ReportCommand.self,
        ]
    )
}
