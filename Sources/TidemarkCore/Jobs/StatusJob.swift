import Foundation

/// `tidemark status`: what an operator wants to see first.
public struct StatusReport: Codable, Sendable, JSONDocument {
    public struct Batch: Codable, Sendable {
        public var batchID: Int64
        public var kind: String
        public var status: String
        public var startedAt: String
        public var durationSeconds: Double?
        public var filesApplied: Int
        public var filesDuplicate: Int
        public var filesQuarantined: Int
        public var linesRead: Int
        public var eventsNew: Int
        public var eventsUpdated: Int
        public var duplicates: Int
        public var deletedByFlag: Int
        public var deletedByTombstone: Int
        public var lateEvents: Int
        public var rejectedLines: Int
        public var partitionsTouched: Int
        public var lagP50Seconds: Double?
        public var lagP95Seconds: Double?
        public var lagMaxSeconds: Double?
        public var error: String?
    }

    public struct Quarantined: Codable, Sendable { public var name: String; public var reason: String; public var location: String }
    public struct Reprocessed: Codable, Sendable { public var hour: String; public var batchID: Int64 }
    /// A rejected line (`--rejected`): where it was, why, and its text (cut for the terminal).
    public struct Rejected: Codable, Sendable {
        public var batchID: Int64; public var file: String; public var line: Int; public var reason: String; public var rawText: String?
    }

    public var events: Int
    public var validEvents: Int
    public var partitions: Int
    public var pendingTombstones: Int
    public var ledgerFiles: Int
    /// nil (left out of `--json`) when the landing folder cannot be read: unknown, not zero.
    public var backlogFiles: Int?
    public var backlogBytes: Int64?
    /// Hours whose partition table is missing (rebuild restores them).
    public var hoursWithoutTable: [String] = []
    /// Landing entries that are not landing files (wrong name, symlink, folder), never ingested.
    public var ignoredEntries: [Ignored] = []
    public struct Ignored: Codable, Sendable { public var name: String; public var reason: String }
    /// Why the landing folder could not be read (then the backlog is unknown, not zero).
    public var landingError: String?
    /// What to do about it.
    public var landingHint: String?
    public var newestReceivedTime: String?
    public var lastSuccessAt: String?
    public var recentBatches: [Batch]
    public var recentlyReprocessed: [Reprocessed]
    public var quarantined: [Quarantined]
    /// The most recent rejected lines, newest first (only with `--rejected N`).
    public var rejectedLines: [Rejected]? = nil

    /// What the batch table's short column names stand for.
    static let batchColumns = """
        (files: applied; dup: files whose content was applied before; quar: quarantined; lines: read; new, upd: events \
        added, updated; dupl: duplicate deliveries; del: deleting deliveries, a tombstone still waiting for its \
        event too; late: behind the watermark; rej: rejected lines; parts: partitions touched; lag p95: ingestion lag)

        """

    public var text: String {
        var out = "events \(events) (\(validEvents) valid, \(events - validEvents) deleted) in \(partitions) partitions; \(ledgerFiles) files in the ledger; \(pendingTombstones) tombstones pending\n"
        if let landingError {
            out += "backlog: unknown, the landing folder cannot be read: \(landingError)\n"
            if let landingHint { out += "hint: \(landingHint)\n" }
        } else {
            out += "backlog: \(backlogFiles ?? 0) files, \(backlogBytes ?? 0) bytes waiting in landing\n"
            if !ignoredEntries.isEmpty {
                let named = TextTable.firstFew(ignoredEntries.map { "\($0.name) (\($0.reason))" }, separator: "; ")
                out += "ignored in landing, never ingested: \(ignoredEntries.count) entries: \(named)\n"
            }
        }
        if !hoursWithoutTable.isEmpty {
            let tables = hoursWithoutTable.count == 1 ? "partition table missing for 1 hour" : "partition tables missing for \(hoursWithoutTable.count) hours"
            out += "\(tables): \(TextTable.firstFew(hoursWithoutTable)) (run: tidemark rebuild --hour H for each, or rebuild --all)\n"
        }
        out += "newest data ingested (received_time, else event_time): \(newestReceivedTime ?? "-"); last successful batch: \(lastSuccessAt ?? "never")\n\n"
        var rows = [["batch", "kind", "status", "started", "secs", "files", "dup", "quar", "lines", "new", "upd", "dupl", "del", "late", "rej", "parts", "lag p95"]]
        for b in recentBatches {
            rows.append([String(b.batchID), b.kind, b.status, String(b.startedAt.prefix(19)), b.durationSeconds.map { String(format: "%.2f", $0) } ?? "-",
                         String(b.filesApplied), String(b.filesDuplicate), String(b.filesQuarantined), String(b.linesRead), String(b.eventsNew),
                         String(b.eventsUpdated), String(b.duplicates), String(b.deletedByFlag + b.deletedByTombstone), String(b.lateEvents),
                         String(b.rejectedLines), String(b.partitionsTouched),
                         b.lagP95Seconds.map { $0 < 60 ? String(format: "%.1f s", $0) : Durations.text($0) } ?? "-"])
        }
        if recentBatches.isEmpty {
            out += "recent batches: none to show\n"
        } else {
            out += "recent batches (runs that found nothing to do left out):\n" + TextTable.render(rows)
            out += StatusReport.batchColumns
        }
        if !recentlyReprocessed.isEmpty {
            out += "\npartitions recently reprocessed: " + recentlyReprocessed.map { "\($0.hour) (batch \($0.batchID))" }.joined(separator: ", ") + "\n"
        }
        if !quarantined.isEmpty {
            out += "\nquarantined files:\n" + TextTable.render([["file", "reason", "location"]] + quarantined.map { [$0.name, $0.reason, $0.location] })
        }
        if let rejectedLines {
            out += "\nrejected lines (newest first; rejected_lines holds their text up to 4 KiB):\n"
            out += rejectedLines.isEmpty ? "none\n" : TextTable.render([["batch", "file", "line", "reason", "text"]] + rejectedLines.map {
                [String($0.batchID), $0.file, String($0.line), $0.reason, $0.rawText.map { $0.count > 60 ? $0.prefix(60) + "…" : $0 } ?? "-"]
            })
        }
        return out
    }
}

public enum StatusJob {
    public static func run(dataFolder: String, landingFolder: String, batches: Int = 10, rejected: Int = 0) throws -> StatusReport {
        let warehouse = try Warehouse(dataFolder: dataFolder, create: false, readOnly: true)
        var scan: LandingFolder.Scan?
        var landingError: String?, landingHint: String?
        do {
            scan = try LandingFolder.scan(landingFolder)
        } catch {
            let (message, hint, _) = ErrorReport.describe(error)
            landingError = (error as? TidemarkError).map { "\($0.target): \($0.cause)" } ?? message
            landingHint = hint
        }
        return try warehouse.read { db in
            // A batch still marked running when no job holds the lock was killed (or its disk
            // was full when it tried to say it failed): shown as interrupted, which the next run
            // heals. Asked once the snapshot has begun (its first read), so that a batch it shows
            // was open before.
            let totals = try ReportQueries.totals(db)
            let jobRunning = JobLock.isHeld(dataFolder: dataFolder)
            var report = StatusReport(
                events: totals.events, validEvents: totals.valid, partitions: totals.partitions, pendingTombstones: totals.pending,
                ledgerFiles: totals.files, backlogFiles: scan?.files.count, backlogBytes: scan?.totalBytes, landingError: landingError, landingHint: landingHint,
                newestReceivedTime: try ReportQueries.newestReceivedTime(notAfter: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970) + FreshnessReport.clockSkew, db)?.rfc3339,
                lastSuccessAt: try ReportQueries.lastSuccessfulBatchEnd(db)?.rfc3339,
                recentBatches: try ReportQueries.batches(limit: batches, skippingIdle: true, db).map {
                    StatusReport.Batch(batchID: $0.batchID, kind: $0.kind, status: $0.status == "running" && !jobRunning ? "interrupted" : $0.status,
                                       startedAt: $0.startedAt, durationSeconds: $0.duration,
                                       filesApplied: $0.files, filesDuplicate: $0.duplicateFiles, filesQuarantined: $0.quarantined,
                                       linesRead: $0.lines, eventsNew: $0.new, eventsUpdated: $0.updated, duplicates: $0.duplicate,
                                       deletedByFlag: $0.deletedFlag, deletedByTombstone: $0.deletedTombstone, lateEvents: $0.late,
                                       rejectedLines: $0.rejected, partitionsTouched: $0.partitions, lagP50Seconds: $0.lagP50,
                                       lagP95Seconds: $0.lagP95, lagMaxSeconds: $0.lagMax, error: $0.error)
                },
                recentlyReprocessed: try ReportQueries.recentlyReprocessed(limit: 10, db).map { .init(hour: $0.hour, batchID: $0.batch) },
                quarantined: try ReportQueries.quarantined(limit: 20, dataFolder: dataFolder, db).map { .init(name: $0.name, reason: $0.reason, location: $0.location) })
            report.hoursWithoutTable = try ReportQueries.hoursWithoutTable(db)
            report.ignoredEntries = (scan?.skipped ?? []).sorted { $0.name < $1.name }.map { .init(name: $0.name, reason: $0.reason) }
            if rejected > 0 {
                report.rejectedLines = try ReportQueries.rejectedLines(limit: rejected, db).map {
                    .init(batchID: $0.batch, file: $0.file, line: $0.line, reason: $0.reason, rawText: $0.raw)
                }
            }
            return report
        }
    }
}

/// `tidemark freshness`: exit 0 fresh, 1 warning, 2 error, for alerting on a stalled pipeline.
public struct FreshnessReport: Codable, Sendable, JSONDocument {
    public var status: String
    public var exitCode: Int32
    public var newestReceivedTime: String?
    public var dataAgeSeconds: Double?
    public var lastSuccessAt: String?
    public var lastSuccessAgeSeconds: Double?
    public var warnAfterSeconds: Double
    public var errorAfterSeconds: Double
    public var reason: String

    /// How far ahead of this machine's clock a row may be dated and still count as data.
    static let clockSkew: Double = 5 * 60

    /// A duration like "90s", "10m" (or "10min"), "1h", "2d" or "90" (a bare number is
    /// seconds): a plain decimal number (ASCII digits, one optional point) and one unit, up to
    /// ten years. Not "inf", "1e9" or "0x10", which Swift's number parsing would take.
    public static func parseDuration(_ text: String) -> Double? {
        let units: [(suffix: String, seconds: Double)] = [("min", 60), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        var number = Substring(text), factor = 1.0
        if let unit = units.first(where: { text.hasSuffix($0.suffix) }) {
            number = number.dropLast(unit.suffix.count)
            factor = unit.seconds
        }
        let digits = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard !number.isEmpty, digits.allSatisfy({ $0.allSatisfy { ("0"..."9").contains($0) } }), digits.contains(where: { !$0.isEmpty }),
              let value = Double(number) else { return nil }
        let seconds = value * factor
        return seconds <= maxDuration ? seconds : nil
    }

    /// The longest duration `parseDuration` takes: ten years.
    static let maxDuration: Double = 10 * 365 * 86_400

    public static func check(dataFolder: String, warnAfter: Double, errorAfter: Double, now: Timestamp) throws -> FreshnessReport {
        let warehouse = try Warehouse(dataFolder: dataFolder, create: false, readOnly: true)
        let (newest, lastSuccess) = try warehouse.read { db in
            // A few minutes of clock skew between the source and this machine are allowed for;
            // rows dated further ahead are left out (they would hold the age at "fresh").
            (try ReportQueries.newestReceivedTime(notAfter: now + FreshnessReport.clockSkew, db), try StatusQueries.lastSuccess(db))
        }
        let dataAge = newest.map { max(0, now.secondsSinceEpoch - $0.secondsSinceEpoch) }
        let runAge = lastSuccess.map { now.secondsSinceEpoch - $0.secondsSinceEpoch }
        var report = FreshnessReport(status: "ok", exitCode: 0, newestReceivedTime: newest?.rfc3339, dataAgeSeconds: dataAge,
                                     lastSuccessAt: lastSuccess?.rfc3339, lastSuccessAgeSeconds: runAge,
                                     warnAfterSeconds: warnAfter, errorAfterSeconds: errorAfter, reason: "")
        let worst = max(dataAge ?? .infinity, runAge ?? .infinity)
        let facts = (dataAge.map { "newest data \(Durations.text($0)) old" } ?? "no data ingested yet")
            + ", " + (runAge.map { "last successful run \(Durations.text($0)) ago" } ?? "no successful run yet")
        if worst > errorAfter {
            report.status = "error"; report.exitCode = 2
            report.reason = "stalled: \(facts) (error after \(Durations.text(errorAfter)))"
        } else if worst > warnAfter {
            report.status = "warning"; report.exitCode = 1
            report.reason = "late: \(facts) (warning after \(Durations.text(warnAfter)))"
        } else {
            report.reason = "fresh: \(facts)"
        }
        return report
    }
}

/// Durations for people: "42 s", "12 min 5 s", "3 h 20 min", "485 d 13 h".
enum Durations {
    static func text(_ seconds: Double) -> String {
        // Beyond a million years (a flag's typo, a broken clock) there is nothing to count.
        guard seconds.isFinite, seconds.magnitude < 3e13 else { return seconds < 0 ? "minus forever" : "forever" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s) s" }
        if s < 3600 { return s % 60 == 0 ? "\(s / 60) min" : "\(s / 60) min \(s % 60) s" }
        if s < 86_400 { return s % 3600 / 60 == 0 ? "\(s / 3600) h" : "\(s / 3600) h \(s % 3600 / 60) min" }
        return s % 86_400 / 3600 == 0 ? "\(s / 86_400) d" : "\(s / 86_400) d \(s % 86_400 / 3600) h"
    }
}
