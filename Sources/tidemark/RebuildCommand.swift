import ArgumentParser
import TidemarkCore

struct RebuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rebuild", abstract: "Not built yet.")
    func run() throws { throw ExitCode(64) }
}
