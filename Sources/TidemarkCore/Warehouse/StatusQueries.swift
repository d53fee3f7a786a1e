import GRDB

/// Read-only queries for status, freshness and metrics.
enum StatusQueries {
    static func counters(_ db: Database) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT key, value FROM pipeline_state WHERE key LIKE 'counter.%'") {
            let key: String = row[0]
            out[String(key.dropFirst("counter.".count))] = row[1]
        }
        return out
    }

    static func lastSuccess(_ db: Database) throws -> Timestamp? {
        guard let value = try BatchLog.state("last_success_at", db), let text = String.fromDatabaseValue(value) else { return nil }
        return try? Timestamp.parse(text).get()
    }
}
