import Foundation
import GRDB
import Logging
import Testing
@testable import TidemarkCore

/// Hostile files: each gives a clear reason in the ledger or `rejected_lines`, whole-file
/// problems are quarantined, and nothing else is lost.
@Suite struct HostileInputTests {
    let good = recordLine("good", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")

    func quarantineReason(_ f: TestFolder, _ name: String) throws -> String? {
        try f.query { try String.fetchOne($0, sql: "SELECT reason FROM ingested_files WHERE name = ? AND status = 'quarantined'", arguments: [name]) }
    }

    func rejections(_ f: TestFolder) throws -> [Int: String] {
        Dictionary(uniqueKeysWithValues: try f.query {
            try Row.fetchAll($0, sql: "SELECT line_number, reason FROM rejected_lines").map { ($0[0] as Int, $0[1] as String) }
        })
    }

    /// (In a new data folder, as here, the first load ends before the large file: rolling back
    /// to its savepoint takes a journal.)
    @Test func aLargeFileBrokenAtItsEndIsRolledBackWhole() throws {
        // Over 100,000 lines, the file is applied in slices inside its own savepoint; a
        // truncation found at the end must undo every slice, and the next file still applies.
        let f = TestFolder()
        var text = ""
        for n in 0..<210_000 {
            text += recordLine("big\(n)", user: "u\(n % 50)", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z") + "\n"
        }
        let gzip = GzipWriter.gzip(text)
        f.landBytes("1-big.ndjson.gz", Array(gzip.dropLast(6)))
        f.land("2-good.ndjson.gz", [recordLine("good", time: "2025-07-30T11:00:00Z", received: "2025-07-30T11:00:00Z")])
        let s = try f.ingest()
        #expect(s.filesApplied == 1 && s.filesQuarantined == 1)
        #expect(try quarantineReason(f, "1-big.ndjson.gz")?.hasPrefix("truncated gzip") == true)
        #expect(try f.eventRows().count == 1)
        let lookups = try f.integer("SELECT (SELECT COUNT(*) FROM event_index) + (SELECT COUNT(*) FROM event_index_recent)")
        #expect(lookups == 1)
        let summaryRows = try f.integer("SELECT COUNT(*) FROM hourly_summary WHERE hour = '2025-07-30T10'")
        #expect(summaryRows == 0)
        let partitions = try f.query { try String.fetchAll($0, sql: "SELECT hour FROM partitions ORDER BY hour") }
        #expect(partitions == ["2025-07-30T11"])
    }

    @Test func brokenGzipFilesAreQuarantinedWholeAndOthersApplied() throws {
        let f = TestFolder()
        let text = (0..<300).map { recordLine("t\($0)", time: "2025-07-30T10:00:00Z") + "\n" }.joined()
        let full = GzipWriter.gzip(text)
        var expectedQuarantined = 0
        for (n, cut) in [10, full.count / 3, full.count / 2, full.count - 9, full.count - 4, full.count - 1].enumerated() {
            f.landBytes("cut-\(n).ndjson.gz", Array(full[0..<cut]))
            expectedQuarantined += 1
        }
        var flipped = full
        flipped[full.count / 2] ^= 0xFF
        f.landBytes("flip.ndjson.gz", flipped)
        f.landBytes("empty.ndjson.gz", [])
        f.landBytes("plain.ndjson.gz", Array(text.utf8))
        f.landBytes("random.ndjson.gz", (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) })
        f.land("z-good.ndjson.gz", [good])
        let s = try f.ingest()
        #expect(s.filesApplied == 1)
        #expect(s.filesQuarantined == expectedQuarantined + 4)
        #expect(try f.integer("SELECT (SELECT COUNT(*) FROM event_index) + (SELECT COUNT(*) FROM event_index_recent)") == 1) // only "good"
        #expect(try quarantineReason(f, "cut-4.ndjson.gz")?.hasPrefix("truncated gzip") == true) // inside the trailer
        #expect(try quarantineReason(f, "empty.ndjson.gz") == "empty file (zero bytes, not gzip)")
        #expect(try quarantineReason(f, "plain.ndjson.gz") == "not a gzip file (bad header)")
        #expect(try quarantineReason(f, "flip.ndjson.gz")?.hasPrefix("corrupt gzip") == true)
        for name in ["cut-0", "flip", "empty", "plain", "random"] {
            #expect(FileManager.default.fileExists(atPath: f.data + "/quarantine/\(name).ndjson.gz"))
        }
    }

    @Test func gzipBombIsQuarantinedByTheGuard() throws {
        let f = TestFolder()
        // The deep run (scripts/deep-tests.sh) uses a real bomb against the default 1 GiB guard.
        let deep = ProcessInfo.processInfo.environment["TIDEMARK_DEEP"] == "1"
        let writer = GzipWriter(level: 9)
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<(deep ? 3 * 1024 : 96) { writer.write(zeros) } // 96 MiB (or 3 GiB) of zeros
        f.landBytes("bomb.ndjson.gz", writer.finish())
        f.land("z-good.ndjson.gz", [good])
        let s = try f.ingest { if !deep { $0.maxFileOutputBytes = 32 << 20 } }
        #expect(s.filesQuarantined == 1 && s.filesApplied == 1)
        #expect(try quarantineReason(f, "bomb.ndjson.gz")?.contains("gzip bomb guard") == true)
    }

    @Test func hugeLineIsRejectedWithoutBufferingIt() throws {
        let f = TestFolder()
        let writer = GzipWriter(level: 1)
        writer.write(good + "\n")
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        for _ in 0..<200 { writer.write(chunk) } // a 200 MB line
        writer.write("\n" + recordLine("after", time: "2025-07-30T10:00:00Z") + "\n")
        f.landBytes("long.ndjson.gz", writer.finish())
        let s = try f.ingest()
        #expect(s.lines.new == 2 && s.lines.rejected == 1)
        #expect(try rejections(f)[2] == "line is longer than 1 MiB (209715200 bytes)")
    }

    @Test func badLinesGetTheirReasonsAndTheRestApplies() throws {
        let f = TestFolder()
        let base = #""user_id":"u","event_type":"view","event_time":"2025-07-30T10:00:00Z""#
        var lines = [
            good,                                                                     // 1
            #"{"event_id":"dup","event_id":"dup2",\#(base)}"#,                       // 2 duplicate key
            #"{"event_id":"sur\ud800",\#(base)}"#,                                   // 3 lone surrogate
            #"{"event_id":"deep",\#(base),"x":\#(String(repeating: "[", count: 500))\#(String(repeating: "]", count: 500))}"#, // 4
            recordLine("leap", time: "2025-07-30T23:59:60Z"),                         // 5
            recordLine("feb30", time: "2025-02-30T10:00:00Z"),                        // 6
            recordLine("year0", time: "0000-01-01T00:00:00Z"),                        // 7
            recordLine("year99999", time: "99999-01-01T00:00:00Z"),                   // 8
            recordLine("nozone", time: "2025-07-30T10:00:00"),                        // 9
            recordLine("future", time: "2030-01-01T00:00:00Z"),                       // 10
            "[1,2,3]",                                                                // 11
            "{\"event_id\":",                                                          // 12
        ]
        let evil = #"'); DROP TABLE partitions; -- \" OR 1=1"#
        lines.append(#"{"event_id":"\#(evil)","user_id":"\#(evil)","event_type":"\#(evil)","event_time":"2025-07-30T10:00:00Z","note":"\#(evil)"}"#) // 13
        var bytes = Array(lines.joined(separator: "\n").utf8) + [0x0A]
        bytes += Array(#"{"event_id":"bad-utf8","user_id":""#.utf8) + [0xC0, 0xAF] + Array(#"","event_type":"v","event_time":"2025-07-30T10:00:00Z"}"#.utf8) + [0x0A] // 14
        f.landBytes("bad.ndjson.gz", gzipBytes(bytes))
        let s = try f.ingest()
        let r = try rejections(f)
        #expect(s.lines.read == 14 && s.lines.new == 2 && s.lines.rejected == 12)
        #expect(r[2] == #"duplicate key "event_id" in one object"#)
        #expect(r[3] == #"invalid JSON string: lone surrogate \uD800"#)
        #expect(r[4] == "nesting deeper than 64 levels (a field's value is level 1)")
        #expect(r[5]?.contains("leap second") == true)
        #expect(r[6]?.contains("day 30 of 2025-02") == true)
        #expect(r[7]?.contains("year 0 is outside") == true)
        #expect(r[8]?.contains("not an RFC 3339 date-time") == true)
        #expect(r[9]?.contains("no time zone") == true)
        #expect(r[10]?.contains("more than 24 h ahead") == true)
        #expect(r[11] == "line is JSON but not an object")
        #expect(r[12]?.hasPrefix("invalid JSON") == true)
        #expect(r[14]?.hasPrefix("invalid UTF-8") == true)
        // JSON decodes the \" escape; what is stored is exactly the decoded text.
        let decoded = evil.replacingOccurrences(of: "\\\"", with: "\"")
        let stored = try f.query { try Row.fetchOne($0, sql: "SELECT event_id, user_id, event_type, extra FROM events_2025073010 WHERE user_id = ?", arguments: [decoded]) }
        #expect(stored?[0] == decoded && stored?[2] == decoded)
        #expect((stored?[3] as String?) == "{\"note\":\(jsonString(decoded))}")
        #expect(try f.query { try $0.tableExists("partitions") })
    }

    @Test func tenThousandHoursInOneFileAreQuarantined() throws {
        let f = TestFolder()
        let start: Int64 = 1_700_000_000
        let lines = (0..<10_000).map { recordLine("h\($0)", time: Timestamp(nanosecondsSinceEpoch: (start + Int64($0) * 3600) * 1_000_000_000).rfc3339Millis) }
        f.land("hours.ndjson.gz", lines)
        f.land("z-good.ndjson.gz", [good])
        let s = try f.ingest()
        #expect(s.filesQuarantined == 1 && s.filesApplied == 1)
        #expect(try quarantineReason(f, "hours.ndjson.gz")?.contains("more than 1000 new partitions") == true)
        #expect(try f.integer("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'events_%'") == 1)
    }

    @Test func awkwardFileNamesAreIngestedAndArchived() throws {
        let f = TestFolder()
        let names = ["with space.ndjson.gz", "new\nline.ndjson.gz", "x..dots...ndjson.gz",
                     String(repeating: "n", count: 255 - ".ndjson.gz".count) + ".ndjson.gz", "ünïcödé.jsonl.gz"]
        for (i, name) in names.enumerated() { f.land(name, [recordLine("n\(i)", time: "2025-07-30T10:00:00Z")]) }
        let s = try f.ingest()
        #expect(s.filesApplied == names.count)
        let locations = try f.query { try String.fetchAll($0, sql: "SELECT location FROM ingested_files ORDER BY file_id") }
        #expect(locations.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        #expect(try f.landingEntries().isEmpty)
        var options = ValidateOptions(dataFolder: f.data)
        options.replay = true
        #expect(try ValidateJob.run(options, logger: quietLogger).ok)
    }

    @Test func diskFullRollsBackCleanlyAndALaterRunCompletes() throws {
        let f = TestFolder()
        f.land("0-small.ndjson.gz", [good])
        #expect(try Binary.run(["ingest", "--landing", f.landing, "--data", f.data]).status == 0)
        let ledgerBefore = try f.integer("SELECT COUNT(*) FROM ingested_files")
        f.land("1-big.ndjson.gz", (0..<20_000).map { recordLine("big\($0)", user: String(repeating: "u", count: 100), time: "2025-07-30T10:00:00Z") })
        // A database of at most 1.6 MB: the big file's 20,000 rows (about 3 MB) cannot fit.
        let maxPages = 1_600_000 / Warehouse.pageSize
        let full = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data], environment: ["TIDEMARK_MAX_PAGE_COUNT": "\(maxPages)"])
        #expect(full.status == 74)
        #expect(full.stderr.contains("disk full"), "\(full.stderr)")
        #expect(full.stderr.contains("hint: "))
        #expect(try f.integer("SELECT COUNT(*) FROM ingested_files") == ledgerBefore)
        #expect(FileManager.default.fileExists(atPath: f.landing + "/1-big.ndjson.gz"))
        let later = try Binary.run(["ingest", "--landing", f.landing, "--data", f.data])
        #expect(later.status == 0)
        #expect(try f.integer("SELECT (SELECT COUNT(*) FROM event_index) + (SELECT COUNT(*) FROM event_index_recent)") == 20_001)
    }
}

func gzipBytes(_ bytes: [UInt8]) -> [UInt8] {
    let writer = GzipWriter()
    writer.write(bytes)
    return writer.finish()
}

func jsonString(_ s: String) -> String {
    var out: [UInt8] = []
    JSONValue.writeString(s, to: &out)
    return String(decoding: out, as: UTF8.self)
}
