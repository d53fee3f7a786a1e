import Foundation

/// `tidemark report --html FILE`: one self-contained page (inline SVG, no script, no network)
/// with the charts an operator looks at: events per hour (valid vs deleted), late events per
/// hour, ingestion lag per batch, partitions reprocessed per batch.
public enum HTMLReport {
    public static func write(dataFolder: String, to path: String, flag: String = "--html") throws {
        if let refusal = OutputFile.refusal(path, flag: flag, dataFolder: dataFolder) { throw refusal }
        let warehouse = try Warehouse(dataFolder: dataFolder, create: false, readOnly: true)
        let html = try warehouse.read { db in
            render(hours: try ReportQueries.hours(db), batches: try ReportQueries.batches(limit: nil, db).filter { $0.status == "succeeded" },
                   totals: try ReportQueries.totals(db))
        }
        try FileSystem.writeAtomically(Array(html.utf8), to: path)
    }

    static func render(hours: [ReportQueries.HourRow], batches: [ReportQueries.BatchRow],
                       totals: (events: Int, valid: Int, partitions: Int, pending: Int, files: Int)) -> String {
        let hourLabels = hours.map { String($0.hour.suffix(5)) }
        let eventsChart = barChart(title: "Events per hour (UTC): valid and deleted", labels: hourLabels,
                                   series: [("valid", "#2a7ab0", hours.map { Double($0.valid) }), ("deleted", "#d1495b", hours.map { Double($0.deleted) })])
        let lateChart = barChart(title: "Late events per hour", labels: hourLabels,
                                 series: [("late", "#edae49", hours.map { Double($0.late) })])
        let batchLabels = batches.map { String($0.batchID) }
        let lagChart = lineChart(title: "Ingestion lag per batch (seconds)", labels: batchLabels,
                                 series: [("p50", "#2a7ab0", batches.map { $0.lagP50 ?? 0 }), ("p95", "#edae49", batches.map { $0.lagP95 ?? 0 }),
                                          ("max", "#d1495b", batches.map { $0.lagMax ?? 0 })])
        let partitionsChart = barChart(title: "Partitions reprocessed per batch", labels: batchLabels,
                                       series: [("partitions", "#66a182", batches.map { Double($0.partitions) })])
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Tidemark report</title>
            <style>
            body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em; color: #222; background: #fff; }
            h1 { font-size: 1.6em; margin-bottom: 0.2em; } .kpis { display: flex; gap: 2em; margin: 1em 0 2em; }
            .kpi b { display: block; font-size: 1.6em; } .chart { margin-bottom: 2.5em; } svg text { font-size: 11px; fill: #444; }
            </style></head><body>
            <h1>Tidemark</h1>
            <div class="kpis">
            <div class="kpi"><b>\(totals.events)</b>events</div><div class="kpi"><b>\(totals.valid)</b>valid</div>
            <div class="kpi"><b>\(totals.events - totals.valid)</b>deleted</div><div class="kpi"><b>\(totals.partitions)</b>partitions</div>
            <div class="kpi"><b>\(batches.count)</b>batches</div><div class="kpi"><b>\(totals.files)</b>files</div>
            <div class="kpi"><b>\(totals.pending)</b>pending tombstones</div>
            </div>
            \(eventsChart)
            \(lateChart)
            \(lagChart)
            \(partitionsChart)
            </body></html>
            """
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static let width = 900.0, height = 260.0, left = 60.0, bottom = 40.0, top = 30.0

    static func frame(_ title: String, maxValue: Double, labels: [String], legend: [(String, String)], body: String) -> String {
        var out = "<div class=\"chart\"><svg width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        out += "<text x=\"\(left)\" y=\"16\" style=\"font-size:14px;font-weight:bold\">\(escape(title))</text>"
        let plotHeight = height - top - bottom
        for tick in 0...4 {
            let value = maxValue * Double(tick) / 4
            let y = top + plotHeight * (1 - Double(tick) / 4)
            out += "<line x1=\"\(left)\" x2=\"\(width - 10)\" y1=\"\(y)\" y2=\"\(y)\" stroke=\"#e4e4e4\"/>"
            out += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(formatTick(value))</text>"
        }
        let step = max(1, labels.count / 20)
        let slot = (width - left - 10) / Double(max(labels.count, 1))
        for (i, label) in labels.enumerated() where i % step == 0 {
            out += "<text x=\"\(left + slot * (Double(i) + 0.5))\" y=\"\(height - bottom + 16)\" text-anchor=\"middle\">\(escape(label))</text>"
        }
        for (n, (name, color)) in legend.enumerated() {
            let x = width - 10 - Double(legend.count - n) * 90
            out += "<rect x=\"\(x)\" y=\"6\" width=\"10\" height=\"10\" fill=\"\(color)\"/><text x=\"\(x + 14)\" y=\"15\">\(escape(name))</text>"
        }
        if labels.isEmpty { out += "<text x=\"\(width / 2)\" y=\"\(height / 2)\" text-anchor=\"middle\">no data yet</text>" }
        return out + body + "</svg></div>"
    }

    static func formatTick(_ v: Double) -> String {
        v >= 10 || v == 0 ? String(Int(v.rounded())) : String(format: "%.1f", v)
    }

    static func barChart(title: String, labels: [String], series: [(String, String, [Double])]) -> String {
        let totals = labels.indices.map { i in series.reduce(0) { $0 + $1.2[i] } }
        let maxValue = max(1, totals.max() ?? 1)
        let plotHeight = height - top - bottom
        let slot = (width - left - 10) / Double(max(labels.count, 1))
        var body = ""
        for i in labels.indices {
            var base = 0.0
            for (_, color, values) in series {
                let h = plotHeight * values[i] / maxValue
                let y = top + plotHeight * (1 - (base + values[i]) / maxValue)
                body += "<rect x=\"\(left + slot * Double(i) + slot * 0.1)\" y=\"\(y)\" width=\"\(slot * 0.8)\" height=\"\(h)\" fill=\"\(color)\"><title>\(escape(labels[i])): \(Int(values[i]))</title></rect>"
                base += values[i]
            }
        }
        return frame(title, maxValue: maxValue, labels: labels, legend: series.map { ($0.0, $0.1) }, body: body)
    }

    static func lineChart(title: String, labels: [String], series: [(String, String, [Double])]) -> String {
        let maxValue = max(1, series.flatMap(\.2).max() ?? 1)
        let plotHeight = height - top - bottom
        let slot = (width - left - 10) / Double(max(labels.count, 1))
        var body = ""
        for (_, color, values) in series where !values.isEmpty {
            let points = values.enumerated().map { i, v in "\(left + slot * (Double(i) + 0.5)),\(top + plotHeight * (1 - v / maxValue))" }
            body += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>"
        }
        return frame(title, maxValue: maxValue, labels: labels, legend: series.map { ($0.0, $0.1) }, body: body)
    }
}
