import ArgumentParser
import TidemarkCore

@main
struct Tidemark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tidemark",
        abstract: "Land user-activity events into hourly SQLite partitions, exactly, from gzipped NDJSON files.",
        discussion: """
            Exit codes: 0 ok or nothing to do; 1 validate found discrepancies (freshness: warning); \
            2 freshness error; 64 usage; 65 bad data; 66 missing input; 74 I/O error (disk full, \
            unreadable file); 75 busy (another job holds the lock, or the database stayed locked).
            """,
        version: TidemarkVersion.current,
        subcommands: [
            DemoCommand.self, IngestCommand.self, ProduceCommand.self, ValidateCommand.self,
            BackfillCommand.self, RebuildCommand.self, StatusCommand.self, FreshnessCommand.self, ReportCommand.self,
        ]
    )
}
