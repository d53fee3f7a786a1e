import Foundation


/// Prometheus textfile output (the node_exporter textfile-collector convention for batch
/// jobs): counters `tidemark_*_total` cumulative across runs (kept in `pipeline_state`),
/// gauges of the last batch in base units, and `tidemark_last_success_timestamp_seconds`.
/// Written atomically: temp file in the same folder, fsync, rename.
public enum MetricsExporter {
    /// `latestTimings` is the lag and delay of the newest batch that read events: an idle batch
    /// has none of its own, and the gauges stay in the file with those values instead of
    /// vanishing (a series that comes and goes breaks `absent()` alerts and graphs).
    public static func render(counters: [String: Int64], last: BatchSummary?, lastSuccess: Timestamp?,
                              latestTimings: StoredTimings? = nil, landingBacklog: (files: Int, bytes: Int64)? = nil) -> String {
        var out = ""
        for (key, value) in counters.sorted(by: { $0.key < $1.key }) {
            let name = "tidemark_" + key
            out += "# HELP \(name) Cumulative count over all runs (\(key.replacingOccurrences(of: "_", with: " ").replacingOccurrences(of: " total", with: ""))).\n"
            out += "# TYPE \(name) counter\n\(name) \(value)\n"
        }
        func gauge(_ name: String, _ help: String, _ value: Double?) {
            guard let value else { return }
            out += "# HELP tidemark_\(name) \(help)\n# TYPE tidemark_\(name) gauge\ntidemark_\(name) \(format(value))\n"
        }
        if let lastSuccess {
            gauge("last_success_timestamp_seconds", "Unix time of the last successful batch.", lastSuccess.secondsSinceEpoch)
        }
        if let s = last {
            gauge("last_batch_duration_seconds", "Wall time of the last batch.", s.durationSeconds)
            gauge("last_batch_files", "Files applied by the last batch.", Double(s.filesApplied))
            gauge("last_batch_lines", "Lines read by the last batch.", Double(s.lines.read))
            gauge("last_batch_partitions_touched", "Partitions (hours) whose rows and summaries the last batch changed.", Double(s.partitionsTouched.count))
            gauge("tombstones_pending", "Tombstones still waiting for their event.", Double(s.tombstonesPending))
            // A backfill's own backlog is its source folder's: the landing folder's is the last ingest's.
            let backlog = s.kind == "ingest" ? (files: s.backlogFiles, bytes: s.backlogBytes) : landingBacklog
            if let backlog {
                gauge("backlog_files", "Files left in the landing folder after the last ingest.", Double(backlog.files))
                gauge("backlog_bytes", "Bytes left in the landing folder after the last ingest.", Double(backlog.bytes))
            }
        }
        // Ingest's: a backfill of old files has a lag of days that says nothing of the pipeline.
        let timings = last.flatMap { $0.kind == "ingest" && $0.lag.count > 0 ? StoredTimings(lag: $0.lag, eventDelay: $0.eventDelay) : nil } ?? latestTimings
        if let t = timings {
            gauge("ingestion_lag_p50_seconds", "Median ingest time minus received_time in the last ingest batch that read events.", t.lag.p50)
            gauge("ingestion_lag_p95_seconds", "95th percentile ingest time minus received_time in the last ingest batch that read events.", t.lag.p95)
            gauge("ingestion_lag_max_seconds", "Largest ingest time minus received_time in the last ingest batch that read events.", t.lag.max)
            gauge("event_delay_p50_seconds", "Median received_time minus event_time in the last ingest batch that read events.", t.eventDelay.p50)
            gauge("event_delay_p95_seconds", "95th percentile received_time minus event_time in the last ingest batch that read events.", t.eventDelay.p95)
            gauge("event_delay_max_seconds", "Largest received_time minus event_time in the last ingest batch that read events.", t.eventDelay.max)
        }
        return out
    }

    /// The lag and delay percentiles one batch recorded (`batches`).
    public struct StoredTimings: Sendable {
        public var lag: BatchSummary.Percentiles
        public var eventDelay: BatchSummary.Percentiles
    }

    private static func format(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// Reads the cumulative counters from the warehouse and writes the textfile.
    public static func write(dataFolder: String, to path: String, last: BatchSummary?) throws {
        if let refusal = OutputFile.refusal(path, flag: "--metrics-file", dataFolder: dataFolder) { throw refusal }
        let warehouse = try Warehouse(dataFolder: dataFolder, create: false)
        let (counters, lastSuccess, timings, backlog) = try warehouse.read { db in
            (try StatusQueries.counters(db), try StatusQueries.lastSuccess(db), try StatusQueries.latestTimings(db), try StatusQueries.lastIngestBacklog(db))
        }
        let text = render(counters: counters, last: last, lastSuccess: lastSuccess, latestTimings: timings, landingBacklog: backlog)
        try FileSystem.writeAtomically(Array(text.utf8), to: path)
    }
}
