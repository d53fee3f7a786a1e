import ArgumentParser
import TidemarkCore

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Not built yet.")
    func run() throws { throw ExitCode(64) }
}
