import ArgumentParser
import TidemarkCore

struct BackfillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backfill", abstract: "Not built yet.")
    func run() throws { throw ExitCode(64) }
}
