import Foundation
/// The metrics of one batch (ingest, backfill or rebuild), stored in `batches` and printed
/// with `--json`.
public struct BatchSummary: Codable, Sendable, Equatable, JSONDocument {
    public var batchID: Int64 = 0
    public var kind = "ingest"
    public var status = "succeeded"
    public var dryRun = false
    public var startedAt = ""
    public var finishedAt = ""
    public var durationSeconds = 0.0
    public var filesApplied = 0
    public var filesDuplicate = 0
    public var filesQuarantined = 0
    public var filesHealed = 0
    /// Files left in landing for the next batch: this one reached `--max-new-partitions`, or
    /// they end early and were modified just now (still being written).
    public var filesDeferred = 0
    /// Backfill: files whose content is already in the ledger.
    public var filesSkipped = 0
    /// Dry runs: what each file would do.
    public var files: [FilePlan] = []
    public var lines = LineCounts()
    public var tombstonesPending = 0
    public var lateEvents = 0
    public var partitionsTouched: [String] = []
    public var partitionsCreated = 0
    public var lag = Percentiles()
    /// Every event's lag in this batch (not part of the JSON): lets callers combine batches.
    var lagHistogram = DurationHistogram()
    public var eventDelay = Percentiles()
    public var backlogFiles = 0
    public var backlogBytes: Int64 = 0
    public var watermark: String?
    public var quarantined: [QuarantinedFile] = []
    /// Files the batch could not read (permissions, I/O): left where they are, out of the
    /// ledger, for the next run; the batch itself committed everything else.
    public var unreadable: [UnreadableFile] = []
    /// Files applied and committed that could not be moved to the archive or the quarantine
    /// (disk full, permissions): they stay in landing, and the next run finishes the move.
    public var unarchived: [UnreadableFile] = []
    /// What the run exits with for this batch: 0, or 74 (`endError`) when files were left
    /// unread or unarchived while the batch itself succeeded. In `--json`, so that a script
    /// reading `status` alone does not miss it.
    public var exitCode: Int32 = 0

    public init() {}

    public struct UnreadableFile: Codable, Sendable, Equatable {
        public var path: String
        public var cause: String
        /// What to do about the cause, when it says (`FileSystemError.hint`).
        public var hint: String? = nil
        /// Gone from its folder while the batch ran (renamed or removed: ENOENT), not kept
        /// from being read (not part of the JSON).
        public var gone = false

        enum CodingKeys: String, CodingKey { case path, cause, hint }
    }

    /// The error (exit 74) a batch with unreadable files ends with: the first file, then the
    /// others with their causes (up to five in all; `--json` lists every one).
    public var unreadableError: TidemarkError? {
        guard let first = unreadable.first else { return nil }
        // Files gone from the folder while the batch ran (renamed or removed by someone else)
        // do not "stay": say what became of them.
        let gone = unreadable.filter(\.gone).count
        guard unreadable.count > 1 else {
            let stays = gone == 1 ? "it was renamed or removed while the batch ran; renamed within the folder, the next run takes it"
                : kind == "backfill" ? "it stays where it is and a rerun takes it" : "it stays in the landing folder and the next run takes it"
            let fix = gone == 1 ? "" : (first.hint.map { $0 + "; " } ?? "fix what the error says; ")
            return TidemarkError("read", first.path, cause: first.cause,
                                 hint: "nothing of it was applied (the other files were): \(fix)\(stays)", exit: .ioError)
        }
        let named = unreadable.dropFirst().prefix(4).map { "\($0.path): \($0.cause)" }
        let unnamed = unreadable.count - 1 - named.count
        let more = "; also " + named.joined(separator: "; ") + (unnamed > 0 ? "; and \(unnamed) more (see --json)" : "")
        let stay = kind == "backfill" ? "they stay where they are and a rerun takes them" : "they stay in the landing folder and the next run takes them"
        let goneNote = gone == unreadable.count ? "they were renamed or removed while the batch ran; those renamed within the folder are taken by the next run"
            : gone > 0 ? "\(gone) of them were renamed or removed while the batch ran; for the others, fix what the errors say; \(stay)"
            : "fix what the errors say; \(stay)"
        return TidemarkError("read", first.path, cause: first.cause + more,
                             hint: "none of these \(unreadable.count) files was applied (every other file was): \(goneNote)",
                             exit: .ioError)
    }

    /// The error (exit 74) a batch ends with: its unreadable files (`unreadableError`), else
    /// the files it applied but could not archive.
    public var endError: TidemarkError? {
        if let unreadableError { return unreadableError }
        guard let first = unarchived.first else { return nil }
        let others = unarchived.count > 1 ? "; and \(unarchived.count - 1) more files (see --json)" : ""
        let fix = first.hint.map { $0 + "; " } ?? "fix what the error says; "
        return TidemarkError("archive", first.path, cause: first.cause + others,
                             hint: "the file was applied and committed (\(unarchived.count) in all), but it stays in the landing folder: \(fix)the next run finishes the move without applying it again",
                             exit: .ioError)
    }

    public struct FilePlan: Codable, Sendable, Equatable {
        public var name: String
        public var outcome: String
        public var lines: Int
        public var hours: [String]
    }

    public struct QuarantinedFile: Codable, Sendable, Equatable {
        public var name: String
        public var reason: String
        public var location: String
    }

    /// Distribution of a duration in seconds.
    public struct Percentiles: Codable, Sendable, Equatable {
        public var p50: Double?
        public var p95: Double?
        public var max: Double?
        public var count = 0

        public init() {}

        init(_ histogram: DurationHistogram) {
            count = histogram.count
            guard count > 0 else { return }
            p50 = histogram.quantile(0.5)
            p95 = histogram.quantile(0.95)
            self.max = histogram.maximum
        }
    }

    enum CodingKeys: String, CodingKey {
        case batchID = "batch_id", kind, status, dryRun = "dry_run", startedAt = "started_at", finishedAt = "finished_at"
        case durationSeconds = "duration_seconds", filesApplied = "files_applied", filesDuplicate = "files_duplicate_content"
        case filesQuarantined = "files_quarantined", filesHealed = "files_healed", filesDeferred = "files_left_for_next_batch", filesSkipped = "files_already_ingested", files, lines
        case tombstonesPending = "tombstones_pending", lateEvents = "late_events"
        case partitionsTouched = "partitions_touched", partitionsCreated = "partitions_created"
        case lag = "ingestion_lag_seconds", eventDelay = "event_delay_seconds"
        case backlogFiles = "backlog_files", backlogBytes = "backlog_bytes", watermark, quarantined
        case unreadable = "unreadable_files", unarchived = "unarchived_files", exitCode = "exit_code"
    }

    /// One line for humans (`-v`, the demo, logs).
    public var oneLine: String {
        var parts = ["batch \(batchID) \(kind)\(dryRun ? " (dry run)" : ""): \(filesApplied) files applied"]
        if filesDuplicate > 0 { parts.append("\(filesDuplicate) duplicate content") }
        if filesQuarantined > 0 { parts.append("\(filesQuarantined) quarantined") }
        if filesDeferred > 0 { parts.append("\(filesDeferred) left for the next batch") }
        parts.append("\(lines.read) lines: \(lines.new) new, \(lines.updated) updated, \(lines.duplicate) duplicate, \(lines.stale) stale, \(lines.deletedByFlag) deleted by flag, \(lines.deletedByTombstone) by tombstone, \(lines.rejected) rejected")
        parts.append("\(lateEvents) late")
        parts.append("\(partitionsTouched.count) partitions touched")
        return parts.joined(separator: ", ")
    }
}

extension LineCounts {
    enum CodingKeys: String, CodingKey {
        case read, new, updated, duplicate, stale, deletedByFlag = "deleted_by_flag"
        case deletedByTombstone = "deleted_by_tombstone", rejected
    }
}
