import ArgumentParser
import TidemarkCore

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", abstract: "Not built yet.")
    func run() throws { throw ExitCode(64) }
}
