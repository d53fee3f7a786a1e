import ArgumentParser
import TidemarkCore

/// `--hour H | --from H --to H` (hours as YYYY-MM-DDTHH, UTC), shared by validate and rebuild.
struct HourRangeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("One hour, e.g. 2025-07-30T12 (UTC).", valueName: "HOUR"))
    var hour: String?

    @Option(help: ArgumentHelp("First hour of a range (inclusive).", valueName: "HOUR"))
    var from: String?

    @Option(help: ArgumentHelp("Last hour of a range (inclusive).", valueName: "HOUR"))
    var to: String?

    func validate() throws {
        if hour != nil && (from != nil || to != nil) { throw ValidationError("use --hour or --from/--to, not both") }
        if (from == nil) != (to == nil) { throw ValidationError("--from and --to go together") }
        for (flag, value) in [("--hour", hour), ("--from", from), ("--to", to)] {
            if let value, PartitionHour.parse(value) == nil {
                throw ValidationError("\(flag) \(value) is not an hour like 2025-07-30T12")
            }
        }
        if let from, let to, PartitionHour.parse(from)! > PartitionHour.parse(to)! {
            throw ValidationError("--from \(from) is after --to \(to)")
        }
    }

    var range: ClosedRange<PartitionHour>? {
        if let hour, let h = PartitionHour.parse(hour) { return h...h }
        if let from, let to, let a = PartitionHour.parse(from), let b = PartitionHour.parse(to) { return a...b }
        return nil
    }
}
