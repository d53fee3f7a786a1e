import ArgumentParser
import Foundation
import Logging
import TidemarkCore

/// Flags every subcommand shares. `TIDEMARK_LANDING` and `TIDEMARK_DATA` are the fallbacks
/// for `--landing` and `--data`.
struct SharedOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Landing folder with incoming *.ndjson.gz, *.jsonl.gz or *.json.gz files (env TIDEMARK_LANDING; default: ./landing).", valueName: "DIR"))
    var landing: String?

    @Option(name: .long, help: ArgumentHelp("Data folder: tidemark.sqlite, archive/, quarantine/ (env TIDEMARK_DATA; default: ./data).", valueName: "DIR"))
    var data: String?

    @Option(name: .long, help: "Log format on stderr: text, logfmt or json.")
    var logFormat: LogFormat = .text

    @Flag(name: [.short, .long], help: "Log progress at info level (default: quiet unless something is wrong).")
    var verbose = false

    func validate() throws {
        // An empty value would put the database in the working directory. (Landing is checked
        // by ingest, which takes files from it: an empty TIDEMARK_LANDING in a unit file must
        // not stop the commands that never read it.)
        try SharedOptions.refuseEmpty("--data", "TIDEMARK_DATA", data)
    }

    /// Throws when the flag was given empty, or left out while its variable is set but empty.
    static func refuseEmpty(_ flag: String, _ variable: String, _ value: String?) throws {
        if value == "" { throw ValidationError("\(flag) is empty: give a folder") }
        if value == nil, ProcessInfo.processInfo.environment[variable] == "" {
            throw ValidationError("\(variable) is set but empty: unset it, or set it to a folder (or pass \(flag))")
        }
    }

    /// Absolute, so that every message names the folder whatever the directory the command
    /// ran in (a cron job's is not the operator's).
    var landingFolder: String {
        FileSystem.absolutePath(landing ?? ProcessInfo.processInfo.environment["TIDEMARK_LANDING"] ?? "landing")
    }

    var dataFolder: String {
        FileSystem.absolutePath(data ?? ProcessInfo.processInfo.environment["TIDEMARK_DATA"] ?? "data")
    }

    func makeLogger(label: String = "tidemark") -> Logger {
        LogSetup.bootstrap(format: logFormat, verbose: verbose)
        return Logger(label: label)
    }
}

extension LogFormat: ExpressibleByArgument {}

/// Flags shared by the commands that apply files (ingest, backfill).
struct ApplyOptions: ParsableArguments {
    static let maxAllowedLateness: Double = 365 * 86_400
    static let maxBusyTimeout: Double = 86_400

    @Option(parsing: .unconditional, help: "Allowed lateness in seconds: events older than (newest event_time so far, never past the ingest clock, − this) count as late.")
    var allowedLateness: Double = 30

    @Option(parsing: .unconditional, help: "Decompressed bytes allowed per file before it is quarantined as a gzip bomb.")
    var maxFileOutput: Int64 = 1 << 30

    @Option(parsing: .unconditional, help: "Seconds to wait for another connection's write lock before exiting 75.")
    var busyTimeout: Double = 5

    func validate() throws {
        // Bounded as well: a lateness beyond a year, or a wait beyond a day, means a typo, and
        // either would overflow the clock arithmetic behind it (nanoseconds, milliseconds).
        if !(0...ApplyOptions.maxAllowedLateness).contains(allowedLateness) {
            throw ValidationError("--allowed-lateness must be 0 to \(Int(ApplyOptions.maxAllowedLateness)) seconds (a year), got \(allowedLateness)")
        }
        if maxFileOutput <= 0 { throw ValidationError("--max-file-output must be positive, got \(maxFileOutput)") }
        if !(0...ApplyOptions.maxBusyTimeout).contains(busyTimeout) {
            throw ValidationError("--busy-timeout must be 0 to \(Int(ApplyOptions.maxBusyTimeout)) seconds (a day), got \(busyTimeout)")
        }
    }

    func apply(to options: inout IngestOptions) {
        options.allowedLateness = allowedLateness
        options.maxFileOutputBytes = maxFileOutput
        options.busyTimeout = busyTimeout
    }
}

/// validate's and rebuild's hidden `--events-per-pass` (tests and tuning).
struct PassOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: ArgumentHelp("Events held in memory per pass over the source (tests and tuning).", visibility: .hidden))
    var eventsPerPass: Int?

    func validate() throws {
        if let eventsPerPass, !(1...100_000_000).contains(eventsPerPass) {
            throw ValidationError("--events-per-pass must be 1 to 100000000, got \(eventsPerPass)")
        }
    }
}

/// Prints `error: …` and `hint: …` on stderr and turns the error into the documented exit code.
func fail(_ error: Error) -> ExitCode {
    let (text, status) = report(error)
    FileHandle.standardError.write(Data(text.utf8))
    return ExitCode(status.rawValue)
}

/// What `fail` writes for an error, and its exit code: `error: …` and `hint: …` lines, or one
/// record in the log's own format, so that a JSON or logfmt log stays parseable.
func report(_ error: Error) -> (text: String, status: ExitStatus) {
    let (message, hint, status) = ErrorReport.describe(error)
    guard LogSetup.format != .text else {
        return ("error: \(message)\n" + (hint.map { "hint: \($0)\n" } ?? ""), status)
    }
    var metadata: Logger.Metadata = ["exit_code": "\(status.rawValue)"]
    if let hint { metadata["hint"] = "\(hint)" }
    return (StderrLogHandler.line(level: .error, message: message, metadata: metadata, format: LogSetup.format) + "\n", status)
}

/// Ingest's report should a page of the database it reads through a memory map fail (SIGBUS),
/// rendered as `fail` would write it when the map is armed: the signal handler can only write
/// bytes prepared before. (A JSON or logfmt record carries the time it was prepared.)
let mappedReadFault = MappedReadFault { database, dataFolder in
    let (text, status) = report(TidemarkError(
        "read", database,
        cause: "a page of the memory-mapped database could not be read (SIGBUS): its device failed, or another program shortened the file",
        hint: "check the kernel log (dmesg) and the disk, then run 'tidemark validate --data \(dataFolder)'; what was committed is kept",
        exit: .ioError))
    return (text, status.rawValue)
}

func printJSON(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

func printErr(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// A dry run's plan, one line per file (name, what would happen, lines, hours), then the hours.
func printDryRunPlan(_ summary: BatchSummary) {
    for file in summary.files {
        print("\(file.name)\t\(file.outcome)\t\(file.lines) lines\t\(file.hours.joined(separator: ","))")
    }
    print("would touch \(summary.partitionsTouched.count) hours: \(summary.partitionsTouched.joined(separator: ", "))")
}
