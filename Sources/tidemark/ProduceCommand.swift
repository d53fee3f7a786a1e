import ArgumentParser
import TidemarkCore

struct ProduceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "produce", abstract: "Not built yet.")
    func run() throws { throw ExitCode(64) }
}
