import ArgumentParser
import TidemarkCore

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", abstract: "Not built yet.")
    func run() throws { throw ExitCode(64) }
}
