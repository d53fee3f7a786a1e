import Foundation
import GRDB
import Testing
@testable import TidemarkCore

/// End-to-end tests of the built `tidemark ingest` binary: exit codes, messages, crash healing.
@Suite struct IngestCommandTests {
    func args(_ f: TestFolder, _ extra: [String] = []) -> [String] {
        ["ingest", "--landing", f.landing, "--data", f.data] + extra
    }

    @Test func quietOnSuccessAndJSONOnRequest() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        let quiet = try Binary.run(args(f))
        #expect(quiet.status == 0)
        #expect(quiet.stdout.isEmpty && quiet.stderr.isEmpty)
        f.land("2.ndjson.gz", [recordLine("e2", time: "2025-07-30T10:00:00Z")])
        let json = try Binary.run(args(f, ["--json"]))
        #expect(json.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["files_applied"] as? Int == 1)
        #expect((object?["lines"] as? [String: Any])?["new"] as? Int == 1)
    }

    @Test func missingLandingFolderExits66() throws {
        let f = TestFolder()
        let run = try Binary.run(["ingest", "--landing", f.root + "/nope", "--data", f.data])
        #expect(run.status == 66)
        #expect(run.stderr.hasPrefix("error: scan landing folder \(f.root)/nope: no such folder\nhint: "))
    }

    @Test func environmentVariablesNameTheFolders() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        let run = try Binary.run(["ingest"], environment: ["TIDEMARK_LANDING": f.landing, "TIDEMARK_DATA": f.data])
        #expect(run.status == 0)
        #expect(FileManager.default.fileExists(atPath: f.database))
    }

    @Test func usageErrorsExit64() throws {
        let run = try Binary.run(["ingest", "--interval", "3"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("--interval only applies with --loop"))
    }

    @Test func lockedRunExits75AndChangesNothing() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        let held = try JobLock(dataFolder: f.data, job: "test")
        let run = try Binary.run(args(f))
        #expect(run.status == 75)
        #expect(run.stderr.contains("another tidemark job is running"))
        #expect(run.stderr.split(separator: "\n").first?.hasPrefix("error: lock ") == true)
        #expect(FileManager.default.fileExists(atPath: f.landing + "/1.ndjson.gz"))
        withExtendedLifetime(held) {}
    }

    @Test func databaseBusyPastTimeoutExits75() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        #expect(try Binary.run(args(f)).status == 0)
        f.land("2.ndjson.gz", [recordLine("e2", time: "2025-07-30T10:00:00Z")])
        let other = try DatabaseQueue(path: f.database)
        try other.writeWithoutTransaction { db in
            try db.execute(sql: "BEGIN IMMEDIATE")
            let run = try Binary.run(args(f, ["--busy-timeout", "0.2"]))
            #expect(run.status == 75)
            #expect(run.stderr.contains("database is locked"))
            try db.execute(sql: "ROLLBACK")
        }
        let files = try f.query { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM ingested_files") }
        #expect(files == 1)
        #expect(try Binary.run(args(f)).status == 0)
    }

    @Test func crashBetweenCommitAndArchiveIsHealed() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z", received: "2025-07-30T10:00:00Z")])
        let crashed = try Binary.run(args(f), environment: ["TIDEMARK_FAULT": "after-commit"])
        #expect(crashed.status == SIGKILL) // killed at the fault point
        #expect(FileManager.default.fileExists(atPath: f.landing + "/1.ndjson.gz")) // committed, not yet moved
        #expect(try f.row("e") != nil)
        let rerun = try Binary.run(args(f, ["--json"]))
        #expect(rerun.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(rerun.stdout.utf8)) as? [String: Any]
        #expect(object?["files_healed"] as? Int == 1)
        #expect(object?["files_applied"] as? Int == 0)
        #expect(!FileManager.default.fileExists(atPath: f.landing + "/1.ndjson.gz"))
        let ledger = try f.query { try Row.fetchAll($0, sql: "SELECT status, location FROM ingested_files") }
        #expect(ledger.count == 1)
        #expect(FileManager.default.fileExists(atPath: ledger[0]["location"]))
    }

    @Test func crashBeforeCommitAppliesNothing() throws {
        let f = TestFolder()
        f.land("1.ndjson.gz", [recordLine("e", time: "2025-07-30T10:00:00Z")])
        let crashed = try Binary.run(args(f), environment: ["TIDEMARK_FAULT": "before-commit"])
        #expect(crashed.status == SIGKILL)
        let rows = try f.query { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM ingested_files") }
        #expect(rows == 0)
        #expect(try Binary.run(args(f)).status == 0)
        #expect(try f.row("e") != nil)
    }
}
