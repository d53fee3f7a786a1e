import ArgumentParser
import Foundation
import TidemarkCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct ProduceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Simulate the event source: publish gzipped NDJSON files into the landing folder and keep a sent log.",
        discussion: """
            Real time (default): one file per second (--file-seconds) with --rate events per second, \
            until --count, --duration or SIGINT/SIGTERM; on a signal or at the end, what is held \
            back (late records, corrections, redeliveries) goes out one file a second, no file before \
            the time it is named for, then exit 0 (a second signal, a second or more after the first, \
            ends that wait and exits at once). \
            --fast: simulated clock from --start, no sleeping; at the end what is held back goes out \
            in the following simulated seconds' files (also on SIGINT/SIGTERM, which stop new \
            events). Same --seed and options, same bytes.
            About --late-fraction of events arrive --late-delay seconds after their event_time; \
            --correction-fraction are corrected once, --correction-delay after publication, by a \
            re-sent record with is_valid false or a tombstone (both carry the publish time as \
            received_time); --duplicate-fraction are published again unchanged 1-30 s later.
            The sent log (--sent-log, files sent-NNNNNNNNN.ndjson.gz) has one line per landing \
            line: {"file":NAME,"line":N,"record":<the landing line>}; it is written before the \
            landing files it lists are published.
            Exit codes: 0 done (also after SIGINT/SIGTERM); 64 usage; 74 I/O error; \
            75 another producer is writing to the same landing or sent-log folder.
            """)

    @OptionGroup var shared: SharedOptions

    @Option(help: ArgumentHelp("Folder for the sent log (created if missing).", valueName: "DIR"))
    var sentLog: String = "sent"

    @Option(parsing: .unconditional, help: "Original events per second.")
    var rate: Int = 10

    @Option(parsing: .unconditional, help: "Stop after N original events (corrections and redeliveries not counted).")
    var count: Int?

    @Option(parsing: .unconditional, help: "Stop after this many (simulated) seconds.")
    var duration: Int?

    @Option(parsing: .unconditional, help: "Number of distinct users (Zipf-distributed activity).")
    var users: Int = 1000

    @Option(parsing: .unconditional, help: "Share of events held back and published late.")
    var lateFraction: Double = 0.10

    @Option(help: ArgumentHelp("Seconds between event_time and publication of a late event.", valueName: "A...B"))
    var lateDelay: SecondsRange = SecondsRange(30, 60)

    @Option(parsing: .unconditional, help: "Share of events corrected (once each).")
    var correctionFraction: Double = 0.07

    @Option(help: ArgumentHelp("Seconds between an event's publication and its correction.", valueName: "A...B"))
    var correctionDelay: SecondsRange = SecondsRange(5, 120)

    @Option(help: "How corrections are sent: flag (is_valid false), tombstone, or mixed (about half each).")
    var corrections: CorrectionMode = .mixed

    @Option(parsing: .unconditional, help: "Share of events published a second time, unchanged, 1-30 s later.")
    var duplicateFraction: Double = 0.02

    @Option(help: "Random seed; same seed and options give byte-identical files.")
    var seed: UInt64 = 1

    @Flag(help: "Simulated clock: produce as fast as possible from --start, no sleeping.")
    var fast = false

    @Option(help: ArgumentHelp("First simulated second with --fast (RFC 3339; default 2025-07-30T10:00:00Z, so reruns repeat).", valueName: "TIME"))
    var start: String?

    @Option(parsing: .unconditional, help: "Seconds covered by one landing file.")
    var fileSeconds: Int = 1

    func validate() throws {
        try SharedOptions.refuseEmpty("--landing", "TIDEMARK_LANDING", shared.landing)
        if fast && count == nil && duration == nil {
            throw ValidationError("--fast needs --count or --duration, or it would never end")
        }
        if let start {
            guard fast else { throw ValidationError("--start only applies with --fast (real time starts now)") }
            if case .failure(let error) = Timestamp.parse(start) {
                throw ValidationError("--start \(start): \(error)")
            }
        }
        // The library's checks of values and combinations, reported as every usage error is
        // (with the usage line).
        do { try makeOptions().validate() } catch let error as TidemarkError where error.exitStatus == .usage {
            throw ValidationError(error.cause)
        }
    }

    func run() throws {
        let logger = shared.makeLogger()
        do {
            StopSignal.install() // also unblocks SIGINT/SIGTERM a parent may have left blocked

            let producer = try Producer(options: makeOptions(), logger: logger)
            let progress = isatty(2) == 1
            var lastProgress = 0.0
            func showProgress(_ summary: ProducerSummary) {
                guard progress else { return }
                let now = Date().timeIntervalSince1970
                guard now - lastProgress >= 0.2 else { return }
                lastProgress = now
                FileHandle.standardError.write(Data("\r\u{1B}[K\(summary.progressLine)".utf8))
            }
            if fast {
                try producer.runFast(shouldStop: { StopSignal.requested }, onProgress: showProgress)
            } else {
                try producer.runRealTime(
                    now: wallClock,
                    sleep: { until in StopSignal.sleep(seconds: secondsUntil(until)) },
                    // Not cut short by the stop request being served; a second one ends the wait.
                    sleepAfterStop: { until in
                        let seconds = secondsUntil(until)
                        if seconds > 0 { usleep(UInt32(min(seconds, 0.1) * 1_000_000)) }
                        return !StopSignal.insisted
                    },
                    shouldStop: { StopSignal.requested },
                    onPublish: { showProgress($0) })
            }
            if progress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            printErr(producer.summary.description)
        } catch {
            throw fail(error)
        }
    }

    private func makeOptions() -> ProducerOptions {
        let first: Timestamp
        if fast, case .success(let t) = Timestamp.parse(start ?? "2025-07-30T10:00:00Z") {
            first = t
        } else {
            first = wallClock()
        }
        var options = ProducerOptions(landingFolder: shared.landingFolder, sentLogFolder: sentLog, start: first)
        options.rate = rate
        options.count = count
        options.duration = duration
        options.users = users
        options.lateFraction = lateFraction
        options.lateDelay = lateDelay
        options.correctionFraction = correctionFraction
        options.correctionDelay = correctionDelay
        options.corrections = corrections
        options.duplicateFraction = duplicateFraction
        options.seed = seed
        options.fileSeconds = fileSeconds
        return options
    }
}

private func wallClock() -> Timestamp {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Timestamp(nanosecondsSinceEpoch: Int64(now.tv_sec) * Timestamp.nanosPerSecond + Int64(now.tv_nsec))
}

extension SecondsRange: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
}

extension CorrectionMode: ExpressibleByArgument {}

/// Seconds from now until `time` on the wall clock (negative once it has passed).
private func secondsUntil(_ time: Timestamp) -> Double {
    Double(time.nanosecondsSinceEpoch - wallClock().nanosecondsSinceEpoch) / 1e9
}
