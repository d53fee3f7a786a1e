import Foundation

/// Partition rows formatted for binding ahead of the thread that writes them.
///
/// For many rows (a large ingest group, a rebuild pass) a second thread runs `PartitionRow.encode` (timestamps, text bytes,
/// content hash) and counts the rows into per-hour deltas while the writer binds and steps:
/// on the writer's core these cost about as much as SQLite's own insert. The values are
/// `encode`'s own, so a row written from here is the row `MergeWriter` writes directly. Rows
/// are taken in order; the encoder stays at most a few chunks ahead, so memory does not grow
/// with the group. The counts of every row are handed over once, after the last row
/// (`addDeltas(to:)`), so the writer merges one set of counts, not one per chunk.
final class EncodedRows: @unchecked Sendable {
    /// One column as `encode` handed it over.
    struct Cell {
        enum Kind: UInt8 { case null, int, bytes, text }
        var kind: Kind
        /// `.bytes`: the length.
        var count: Int32
        /// `.int`: the value; `.bytes`: the offset in the chunk's arena; `.text`: the index in its texts.
        var value: Int64
    }

    /// The formatted rows of one chunk.
    final class Chunk {
        /// Column bytes; one spare byte so that the base address always exists.
        var arena: [UInt8] = [0]
        /// `columns` cells per row.
        var cells: [Cell] = []
        /// Text too long for `encode`'s scratch, which SQLite copies when bound.
        var texts: [String] = []
    }

    /// The counts per hour (`HourDelta.count`, sign +1) of the rows encoded so far. Only the
    /// thread that encodes changes it; the writer reads it once every chunk was handed over.
    final class Counts: @unchecked Sendable {
        var deltas: [Int: HourDelta] = [:]
    }

    /// Parameters of a partition insert (`PartitionTable.columns`).
    static let columns = PartitionTable.columnNames.count
    static let rowsPerChunk = 2048
    /// Chunks the encoder may run ahead of the writer.
    static let chunksAhead = 4
    /// Below this many rows the caller's thread encodes them as it goes (a thread costs more).
    static let threadThreshold = 4096

    let count: Int
    /// Row `i` to format, with the hour whose delta it counts into.
    private let row: @Sendable (Int) -> (hour: Int, row: PartitionRow)
    /// The chunks, formatted on a second thread (for many rows), taken in order.
    private let chunks: PassesAhead<Chunk>?
    /// The writer's current chunk.
    private var current: (index: Int, chunk: Chunk)?
    private let counts = Counts()
    /// Chunks the writer has taken.
    private var chunksTaken = 0
    private var chunkCount: Int { (count + Self.rowsPerChunk - 1) / Self.rowsPerChunk }

    /// Starts formatting `count` rows, row `i` given by `row(i)` (called on the encoding
    /// thread, so it must only read what nobody changes meanwhile).
    init(count: Int, row: @escaping @Sendable (Int) -> (hour: Int, row: PartitionRow)) {
        self.row = row
        self.count = count
        guard count >= Self.threadThreshold else {
            chunks = nil
            return
        }
        let chunkCount = (count + Self.rowsPerChunk - 1) / Self.rowsPerChunk
        // The thread needs only the rows and the counts (holding this object would keep it
        // alive in a cycle).
        chunks = PassesAhead(count: chunkCount, ahead: Self.chunksAhead) { [counts] index, _ in
            Self.encode(chunk: index, of: count, row, countingInto: counts)
        }
    }

    /// Stops the encoder early. Callers cancel when done, whatever happened (and going away
    /// cancels too).
    func cancel() {
        chunks?.cancel()
    }

    deinit { chunks?.cancel() }

    private static func encode(chunk index: Int, of count: Int, _ row: (Int) -> (hour: Int, row: PartitionRow), countingInto counts: Counts) -> Chunk {
        let chunk = Chunk()
        let range = index * Self.rowsPerChunk ..< min(count, (index + 1) * Self.rowsPerChunk)
        chunk.cells.reserveCapacity(range.count * Self.columns)
        chunk.arena.reserveCapacity(range.count * 128)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: PartitionRow.scratchCapacity) { scratch in
            for i in range {
                let (hour, row) = row(i)
                var column: Int32 = 0
                // The callback never throws, so neither does encode here.
                let hash = try! row.encode(into: scratch) { index, value in
                    column += 1
                    precondition(index == column, "encode hands columns over in order")
                    switch value {
                    case .null:
                        chunk.cells.append(Cell(kind: .null, count: 0, value: 0))
                    case .int(let number):
                        chunk.cells.append(Cell(kind: .int, count: 0, value: number))
                    case .text(let text):
                        chunk.cells.append(Cell(kind: .text, count: 0, value: Int64(chunk.texts.count)))
                        chunk.texts.append(text)
                    case .bytes(let pointer, let count):
                        chunk.cells.append(Cell(kind: .bytes, count: Int32(count), value: Int64(chunk.arena.count)))
                        chunk.arena.append(contentsOf: UnsafeBufferPointer(start: pointer, count: count))
                    }
                }
                precondition(column == Int32(Self.columns), "a partition insert has \(Self.columns) parameters")
                counts.deltas[hour, default: HourDelta()].count(row, hash: hash, sign: 1)
            }
        }
        return chunk
    }

    /// The chunk holding row `index`; the writer takes chunks in order.
    private func chunk(_ index: Int) -> Chunk {
        if let current, current.index == index { return current.chunk }
        // Chunks are taken in order, so the next one from the encoder is chunk `index`
        // (formatting never throws).
        let chunk = chunks.map { try! $0.next() } ?? Self.encode(chunk: index, of: count, row, countingInto: counts)
        current = (index, chunk)
        chunksTaken += 1
        return chunk
    }

    /// Adds the counts of every row (with their content hashes) to `deltas`, once all rows
    /// were taken (by `write` or `compare`).
    func addDeltas(to deltas: inout [Int: HourDelta]) {
        precondition(chunksTaken == chunkCount, "the counts are complete once every row was taken")
        // The encoder appended the last chunk after counting it, under the lock `next` took.
        for (hour, delta) in counts.deltas { deltas[hour, default: HourDelta()].add(delta) }
    }

    /// Binds row `index` (rows are taken in order) to a statement whose parameters are the
    /// partition columns (an INSERT, or an UPDATE of every column), and `rowID` to its 13th
    /// parameter when given, and runs it.
    func write(_ index: Int, rowID: Int64? = nil, with statement: FastStatement) throws {
        try withCells(of: index) { cell in
            statement.reset()
            for column in 0..<Self.columns {
                try statement.bind(Int32(column + 1), cell(column))
            }
            if let rowID { try statement.bind(Int32(Self.columns + 1), rowID) }
            try statement.run()
        }
    }

    /// How a stored row compares with row `index`.
    enum StoredMatch {
        case same
        /// Another event_id.
        case otherEvent
        /// A data column differs (what rebuild reports as changed).
        case dataDiffers
        /// Only `first_batch` differs.
        case firstBatchDiffers
    }

    /// Compares row `index` (rows are taken in order, as by `write`) with the current row of
    /// `stored`, which selects the partition columns from `event_id` to `first_batch` in
    /// `PartitionTable.columns` order. `last_batch` is not compared: it names the batch that
    /// last wrote the row.
    func compare(_ index: Int, withStored stored: FastStatement) -> StoredMatch {
        withCells(of: index) { cell in
            guard stored.holds(0, cell(0)) else { return .otherEvent }
            for column in PartitionTable.dataColumns where !stored.holds(Int32(column), cell(column)) { return .dataDiffers }
            let firstBatch = PartitionTable.firstBatchColumn
            return stored.holds(Int32(firstBatch), cell(firstBatch)) ? .same : .firstBatchDiffers
        }
    }

    /// Calls `body` with a function giving row `index`'s value of each column (0-based), valid
    /// during the call.
    private func withCells<R>(of index: Int, _ body: ((Int) -> ColumnValue) throws -> R) rethrows -> R {
        let chunk = self.chunk(index / Self.rowsPerChunk)
        let first = (index % Self.rowsPerChunk) * Self.columns
        return try chunk.arena.withUnsafeBufferPointer { arena in
            let base = arena.baseAddress!
            return try body { column in
                let cell = chunk.cells[first + column]
                switch cell.kind {
                case .null: return .null
                case .int: return .int(cell.value)
                case .text: return .text(chunk.texts[Int(cell.value)])
                case .bytes: return .bytes(base + Int(cell.value), Int(cell.count))
                }
            }
        }
    }
}

extension HourDelta {
    /// Adds another delta's counts (deltas are sums, so the order of adding does not matter).
    mutating func add(_ other: HourDelta) {
        rows += other.rows
        valid += other.valid
        checksum = checksum &+ other.checksum
        for (type, counts) in other.types {
            types[type, default: SummaryCounts()].add(counts)
        }
        for (user, change) in other.users { users[user, default: 0] += change }
    }
}

extension SummaryCounts {
    mutating func add(_ other: SummaryCounts) {
        valid += other.valid
        deleted += other.deleted
        late += other.late
    }
}
