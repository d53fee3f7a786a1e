import ArgumentParser
import TidemarkCore

struct FreshnessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "freshness", abstract: "Not built yet.")
    func run() throws { throw ExitCode(64) }
}
