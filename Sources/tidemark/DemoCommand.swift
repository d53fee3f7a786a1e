import ArgumentParser
import Foundation
import TidemarkCore

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the whole pipeline end to end: produce, ingest in micro-batches, validate, rebuild from raw files as a dry run, summarize.",
        discussion: "Exit codes: 0 validation passed and the rebuild from raw files changed nothing; 1 validation failed or the rebuild found an hour that differed; 64 usage; 65 or 66 an archived file changed or went missing under the rebuild; 74 I/O error; 75 another job or producer holds the folder.")

    @Option(help: ArgumentHelp("Folder for landing/, data/ and sent/ (default: a new temporary folder).", valueName: "DIR"))
    var dir: String?

    @Option(parsing: .unconditional, help: "Original events to produce.")
    var events: Int = 50_000

    @Option(parsing: .unconditional, help: "Events per simulated second.")
    var rate: Int = 5

    @Option(parsing: .unconditional, help: "Simulated seconds between ingest micro-batches.")
    var batchEvery: Int = 120

    @Option(help: "Random seed (same seed, same data).")
    var seed: UInt64 = 1

    @Option(help: "Also write Prometheus textfile metrics here.")
    var metricsFile: String?

    @Option(help: "Also write the HTML report here.")
    var html: String?

    @Option(name: .long, help: "Log format on stderr: text, logfmt or json.")
    var logFormat: LogFormat = .text

    func validate() throws {
        if events <= 0 { throw ValidationError("--events must be at least 1, got \(events)") }
        if rate <= 0 { throw ValidationError("--rate must be at least 1, got \(rate)") }
        if batchEvery <= 0 { throw ValidationError("--batch-every must be at least 1, got \(batchEvery)") }
    }

    func run() throws {
        LogSetup.bootstrap(format: logFormat, verbose: false)
        let folder = dir ?? (NSTemporaryDirectory() + "tidemark-demo-" + String(UInt32.random(in: 0...UInt32.max), radix: 16))
        var options = DemoOptions(folder: folder)
        options.events = events
        options.rate = rate
        options.batchEvery = batchEvery
        options.seed = seed
        options.mappedReadFault = mappedReadFault
        let interactive = isatty(2) == 1
        do { try DemoJob.checkFolder(options) } catch { throw fail(error) }
        for (flag, path) in [("--metrics-file", metricsFile), ("--html", html)] {
            if let path, let refusal = OutputFile.refusal(path, flag: flag, dataFolder: options.data) { throw fail(refusal) }
        }
        printErr("tidemark demo: \(events) events at \(rate)/s of simulated time, ingest every \(batchEvery) s, in \(folder)")
        do {
            let result = try DemoJob.run(options, logger: .init(label: "tidemark")) { line in
                if interactive { FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8)) }
            }
            if interactive { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            if let metricsFile { try MetricsExporter.write(dataFolder: options.data, to: metricsFile, last: result.lastBatch) }
            if let html { try HTMLReport.write(dataFolder: options.data, to: html) }
            print(result.validation.table)
            print(result.summary, terminator: "")
            print("\nnext: tidemark status --landing \(options.landing) --data \(options.data)   |   tidemark validate --landing \(options.landing) --data \(options.data) --sent-log \(options.sent)")
            if !result.ok { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }
}
