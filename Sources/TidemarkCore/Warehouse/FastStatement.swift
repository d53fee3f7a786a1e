import Foundation
import GRDB
import GRDBSQLite

/// SQLite's `SQLITE_TRANSIENT`: SQLite copies bound bytes before the call returns.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
/// SQLite's `SQLITE_STATIC`: SQLite reads the bytes in place when the statement runs.
private let inPlace: sqlite3_destructor_type? = nil

/// A zero-length C string: binding a nil pointer would store NULL instead of ''.
nonisolated(unsafe) private let emptyText: UnsafePointer<CChar> = {
    let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    pointer.pointee = 0
    return UnsafePointer(pointer)
}()

/// UTF-8 bytes as the C pointer SQLite binds: an empty text is a valid zero-length pointer.
@inline(__always)
private func cText(_ bytes: UnsafeBufferPointer<UInt8>) -> UnsafePointer<CChar> {
    bytes.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) } ?? emptyText
}

/// A prepared statement driven through the C API on the ingest hot path. GRDB prepares it and
/// owns its lifetime; binding and stepping here avoid boxing every argument, which on a million
/// rows costs more than SQLite's own work. Every return code is checked.
final class FastStatement {
    private let statement: Statement
    private let handle: OpaquePointer
    private let db: Database

    init(_ db: Database, sql: String) throws {
        self.db = db
        statement = try db.makeStatement(sql: sql)
        handle = statement.sqliteStatement
    }

    @inline(__always)
    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    @inline(__always)
    func bind(_ index: Int32, _ text: String) throws {
        try withCText(of: text) { start, count in try check(sqlite3_bind_text(handle, index, start, count, transient)) }
    }

    /// Calls `body` with the text's UTF-8 bytes as a C pointer and length, read in place
    /// (`withUTF8(of:)`); an empty text is a valid zero-length pointer, not NULL.
    @inline(__always)
    private func withCText<R>(of text: String, _ body: (UnsafePointer<CChar>, Int32) throws -> R) rethrows -> R {
        try TidemarkCore.withUTF8(of: text) { buffer in
            let start = cText(buffer)
            return try body(start, Int32(buffer.count))
        }
    }

    /// Binds UTF-8 text that SQLite reads in place: the caller keeps the bytes unchanged until
    /// the statement has run (`reset` clears the binding).
    @inline(__always)
    func bind(_ index: Int32, bytesInPlace bytes: UnsafePointer<UInt8>, count: Int) throws {
        try check(sqlite3_bind_text(handle, index, UnsafeRawPointer(bytes).assumingMemoryBound(to: CChar.self), Int32(count), inPlace))
    }

    /// Binds UTF-8 `text` in place for the duration of `body`, saving SQLite the copy that a
    /// plain bind makes. `body` steps the statement and leaves it reset or done (`run` does),
    /// so that the text can be unbound: a statement holding a row cannot be rebound.
    @inline(__always)
    func withBytes<R>(_ text: UnsafeBufferPointer<UInt8>, at index: Int32, _ body: () throws -> R) throws -> R {
        let start = cText(text)
        try check(sqlite3_bind_text(handle, index, start, Int32(text.count), inPlace))
        defer { sqlite3_bind_null(handle, index) } // never left pointing at the bytes
        return try body()
    }

    @inline(__always)
    func bind(_ index: Int32, _ value: Int64) throws {
        try check(sqlite3_bind_int64(handle, index, value))
    }

    @inline(__always)
    func bindNull(_ index: Int32) throws {
        try check(sqlite3_bind_null(handle, index))
    }

    @inline(__always)
    func bind(_ index: Int32, _ value: ColumnValue) throws {
        switch value {
        case .text(let text): try bind(index, text)
        case .bytes(let pointer, let count): try bind(index, bytesInPlace: pointer, count: count)
        case .int(let number): try bind(index, number)
        case .null: try bindNull(index)
        }
    }

    /// Steps once: true when a row is available, false when done.
    @inline(__always)
    func step() throws -> Bool {
        let code = sqlite3_step(handle)
        if code == SQLITE_ROW { return true }
        if code == SQLITE_DONE { return false }
        try check(code)
        return false
    }

    /// Runs a statement that returns no rows.
    @inline(__always)
    func run() throws {
        _ = try step()
        sqlite3_reset(handle)
    }

    @inline(__always)
    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    /// Rows the connection's last INSERT, UPDATE or DELETE changed (0 for `DO NOTHING`).
    var changes: Int32 { sqlite3_changes(db.sqliteConnection) }

    /// The row id of the last successful INSERT on this connection.
    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(db.sqliteConnection) }


    @inline(__always)
    func text(_ column: Int32) -> String? {
        guard let pointer = sqlite3_column_text(handle, column) else { return nil }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    /// Whether the current row's column holds exactly this value: the same storage class and
    /// the same integer or bytes (text compares byte for byte, as SQLite's BINARY collation).
    @inline(__always)
    func holds(_ column: Int32, _ value: ColumnValue) -> Bool {
        let type = sqlite3_column_type(handle, column)
        switch value {
        case .null:
            return type == SQLITE_NULL
        case .int(let number):
            return type == SQLITE_INTEGER && sqlite3_column_int64(handle, column) == number
        case .bytes(let pointer, let count):
            return type == SQLITE_TEXT && sameBytes(textBytes(column), UnsafeBufferPointer(start: pointer, count: count))
        case .text(let text):
            return type == SQLITE_TEXT && TidemarkCore.withUTF8(of: text) { sameBytes(textBytes(column), $0) }
        }
    }

    /// The current row's column as UTF-8 bytes, valid until the statement steps or resets.
    @inline(__always)
    private func textBytes(_ column: Int32) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: sqlite3_column_text(handle, column), count: Int(sqlite3_column_bytes(handle, column)))
    }

    @inline(__always)
    func timestamp(_ column: Int32) -> Timestamp? {
        guard let pointer = sqlite3_column_text(handle, column) else { return nil }
        let count = Int(sqlite3_column_bytes(handle, column))
        return try? Timestamp.parse(UnsafeRawBufferPointer(start: pointer, count: count)).get()
    }

    @inline(__always)
    private func check(_ code: Int32) throws {
        guard code == SQLITE_OK || code == SQLITE_ROW || code == SQLITE_DONE else {
            let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
            sqlite3_reset(handle)
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: statement.sql)
        }
    }
}
