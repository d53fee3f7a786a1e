#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Byte order of UTF-8 text (SQLite's BINARY collation), for the passes that walk event_ids in
// key order: ingest's merge groups and rebuild's passes.

/// The first eight bytes as a big-endian integer (zero-padded): integer order is byte order as
/// far as it goes.
@inline(__always)
func bigEndianPrefix(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
    var prefix: UInt64 = 0
    let taken = min(8, bytes.count)
    for i in 0..<taken { prefix = prefix << 8 | UInt64(bytes[i]) }
    return taken == 0 ? 0 : prefix << UInt64(8 * (8 - taken))
}

@inline(__always)
func bigEndianPrefix(_ string: String) -> UInt64 { withUTF8(of: string) { bigEndianPrefix($0) } }

/// The permutation that puts `strings` in byte order.
func byteOrder(_ strings: [String]) -> [Int] {
    byteOrder(count: strings.count, prefix: { bigEndianPrefix(strings[$0]) }, less: { utf8Less(strings[$0], strings[$1]) })
}

/// The permutation that puts `count` texts in byte order, from each text's `bigEndianPrefix`
/// and, for equal prefixes only, a whole comparison (`less`): sorting plain integer keys keeps
/// the texts themselves, and reference counting, out of most of the sort.
@inline(__always)
func byteOrder(count: Int, prefix: (Int) -> UInt64, less: (Int, Int) -> Bool) -> [Int] {
    var keys: [(prefix: UInt64, index: Int32)] = []
    keys.reserveCapacity(count)
    for index in 0..<count { keys.append((prefix(index), Int32(index))) }
    keys.sort { a, b in a.prefix != b.prefix ? a.prefix < b.prefix : less(Int(a.index), Int(b.index)) }
    return keys.map { Int($0.index) }
}

/// The UTF-8 bytes of a merge group's event_ids, one after another in one buffer, in the
/// order appended (the order the decoder allocated the strings): passes in byte order read
/// these instead of the strings, which lie all over memory in that order.
struct GroupIDBytes {
    private var bytes: [UInt8] = []
    /// Where each id ends in `bytes` (it starts where the one before ends).
    private var ends: [Int] = []

    init(capacity: Int) {
        bytes.reserveCapacity(capacity * 36)
        ends.reserveCapacity(capacity)
    }

    mutating func append(_ id: String) {
        withUTF8(of: id) { bytes.append(contentsOf: $0) }
        ends.append(bytes.count)
    }

    /// Where id `index` lies in `bytes`.
    @inline(__always)
    private func range(_ index: Int) -> Range<Int> { (index == 0 ? 0 : ends[index - 1])..<ends[index] }

    /// Calls `body` with id `index`'s bytes (valid during the call).
    @inline(__always)
    func withBytes<R>(_ index: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try bytes.withUnsafeBufferPointer { all in try body(UnsafeBufferPointer(rebasing: all[range(index)])) }
    }

    func same(_ a: Int, _ b: Int) -> Bool {
        withBytes(a) { x in withBytes(b) { y in sameBytes(x, y) } }
    }

    /// The permutation that puts the ids in byte order (as `byteOrder` does for strings).
    func byteOrder() -> [Int] {
        bytes.withUnsafeBufferPointer { all -> [Int] in
            func id(_ index: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: all[range(index)]) }
            return TidemarkCore.byteOrder(count: ends.count, prefix: { bigEndianPrefix(id($0)) },
                                          less: { compareBytes(id($0), id($1)) < 0 })
        }
    }
}
