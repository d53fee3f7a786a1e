/// One row of an hourly partition table: the stored form of an `EventState` that has a record.
struct PartitionRow: Equatable, Sendable {
    var state: EventState
    var firstBatch: Int64
    var lastBatch: Int64

    var record: EventRecord { state.record! }

    /// Deterministic 64-bit hash of the row's data columns (everything the merge rule decides;
    /// not the arrival metadata `is_late`, `first_batch`, `last_batch`): FNV-1a over the
    /// columns' stored text with separators, then a final mix. Summed with wrap-around over a
    /// partition it gives an order-independent checksum that rebuild and validate compare.
    var contentHash: UInt64 {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: PartitionRow.scratchCapacity) { buffer in
            // The callback never throws, so neither does encode here.
            try! encode(into: buffer) { _, _ in }
        }
    }

    /// Bytes `encode` formats a row into: the three timestamps, then text columns while they fit.
    static let scratchCapacity = 4096

    /// Formats the row's columns into `scratch` and hands each of an insert's columns (in
    /// `PartitionTable.columns` order, 1-based) to `bind`, then returns the content hash of the
    /// same bytes. Values point into `scratch` (`.bytes`), so SQLite reads them in place; they
    /// stay valid until the next `encode` into the same scratch. A text column that no longer
    /// fits is handed over as `.text`, which SQLite copies.
    @inline(__always)
    func encode(into scratch: UnsafeMutableBufferPointer<UInt8>, _ bind: (Int32, ColumnValue) throws -> Void) throws -> UInt64 {
        precondition(scratch.count >= PartitionRow.scratchCapacity)
        let base = scratch.baseAddress!
        let r = record
        var hasher = RowHasher()
        var used = 3 * Timestamp.canonicalLength // the timestamps' fixed places
        func text(_ index: Int32, _ value: String?) throws {
            guard let value else {
                hasher.field(nil as String?)
                try bind(index, .null)
                return
            }
            let at = base + used
            let copied = withUTF8(of: value) { bytes -> Int? in
                guard bytes.count <= PartitionRow.scratchCapacity - used else { return nil }
                if let source = bytes.baseAddress { at.update(from: source, count: bytes.count) }
                return bytes.count
            }
            if let count = copied {
                used += count
                hasher.field(bytes: at, count: count)
                try bind(index, .bytes(at, count))
            } else {
                hasher.field(value)
                try bind(index, .text(value))
            }
        }
        func time(_ index: Int32, _ value: Timestamp?, _ slot: Int) throws {
            guard let value else {
                hasher.field(nil as String?)
                try bind(index, .null)
                return
            }
            let at = base + slot * Timestamp.canonicalLength
            value.writeCanonical(to: at)
            hasher.field(bytes: at, count: Timestamp.canonicalLength)
            try bind(index, .bytes(at, Timestamp.canonicalLength))
        }
        try text(1, r.eventID)
        try text(2, r.userID)
        try text(3, r.eventType)
        try time(4, r.eventTime, 0)
        try time(5, r.receivedTime, 1)
        hasher.field(state.isValid ? "1" : "0")
        try bind(6, .int(state.isValid ? 1 : 0))
        try text(7, state.deletion?.kind)
        try time(8, state.deletion?.deletedAt, 2)
        try bind(9, .int(state.late ? 1 : 0))
        try text(10, r.extra)
        try bind(11, .int(firstBatch))
        try bind(12, .int(lastBatch))
        return hasher.finish()
    }
}

/// A column value handed to a statement without boxing.
enum ColumnValue {
    /// Text SQLite copies when it is bound.
    case text(String)
    /// UTF-8 text SQLite reads in place: the caller keeps the bytes unchanged until the
    /// statement has run.
    case bytes(UnsafePointer<UInt8>, Int)
    case int(Int64)
    case null
}

/// FNV-1a over column texts, each followed by 0x1F (or 0x1E for NULL), with a final mix.
struct RowHasher {
    private var hash: UInt64 = 0xcbf2_9ce4_8422_2325

    @inline(__always)
    private mutating func mix(_ byte: UInt8) {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }

    @inline(__always)
    mutating func field(_ text: String?) {
        guard let text else { mix(0x1E); return }
        for byte in text.utf8 { mix(byte) }
        mix(0x1F)
    }

    @inline(__always)
    mutating func field(bytes: UnsafePointer<UInt8>, count: Int) {
        for i in 0..<count { mix(bytes[i]) }
        mix(0x1F)
    }

    func finish() -> UInt64 {
        var h = hash
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }
}

/// Formats an order-independent partition checksum.
func checksumText(_ value: UInt64) -> String {
    let hex = String(value, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}

func checksumValue(_ text: String) -> UInt64 {
    UInt64(text, radix: 16) ?? 0
}

extension PartitionRow {
    /// The columns `decode` reads, in its order (event_id last).
    static let selectColumns = "user_id, event_type, event_time, received_time, is_valid, deleted_by, deleted_at, is_late, extra, first_batch, last_batch, event_id"

    /// Decodes the current row of a statement selecting `selectColumns`; nil when its
    /// event_time does not parse.
    static func decode(id: String, _ statement: FastStatement) -> PartitionRow? {
        guard let eventTime = statement.timestamp(2) else { return nil }
        let deletion = Deletion(kind: statement.text(5), deletedAt: statement.timestamp(6))
        let record = EventRecord(eventID: id, userID: statement.text(0) ?? "", eventType: statement.text(1) ?? "",
                                 eventTime: eventTime, receivedTime: statement.timestamp(3), isValid: true, extra: statement.text(8))
        return PartitionRow(state: EventState(record: record, deletion: deletion, late: statement.int64(7) == 1),
                            firstBatch: statement.int64(9), lastBatch: statement.int64(10))
    }
}
