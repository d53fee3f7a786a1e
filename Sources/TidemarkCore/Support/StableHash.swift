/// FNV-1a over UTF-8 bytes: the same in every process and run, for splitting work into passes
/// by event_id (rebuild, validate).
func stableHash(_ text: String) -> UInt64 {
    var hasher = StableHasher()
    for byte in text.utf8 { hasher.add(byte) }
    return hasher.value
}

struct StableHasher {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    @inline(__always)
    mutating func add(_ byte: UInt8) {
        value ^= UInt64(byte)
        value = value &* 0x100_0000_01b3
    }
}

/// One pass of a split of event ids into `count` passes by `stableHash` (rebuild and validate
/// hold one pass of events in memory at a time).
struct PassSplit {
    let index: Int
    let count: Int

    /// How many passes keep `total` events under `perPass` each (at least one event per pass).
    static func passes(for total: Int, perPass: Int) -> Int {
        let perPass = max(1, perPass)
        return max(1, (total + perPass - 1) / perPass)
    }

    /// The pass, of `count`, that an event whose id has this `stableHash` belongs to.
    static func pass(ofHash hash: UInt64, count: Int) -> Int { Int(hash % UInt64(count)) }

    /// The pass, of `count`, of a raw line's event: read off the line's start when the
    /// event_id is exactly there, else parsed; nil for a line that does not parse.
    static func pass(ofLine line: UnsafeRawBufferPointer, count: Int, parser: EventLineParser) -> Int? {
        if let hash = EventLineParser.leadingEventIDHash(line) { return pass(ofHash: hash, count: count) }
        guard case .success(let delivery) = parser.parse(line) else { return nil }
        return pass(ofHash: stableHash(delivery.eventID), count: count)
    }

    func contains(_ eventID: String) -> Bool {
        count == 1 || PassSplit.pass(ofHash: stableHash(eventID), count: count) == index
    }

    /// Whether a raw line certainly belongs to another pass, decided before parsing it (only
    /// for lines whose event_id can be read off their start exactly).
    func excludes(line: UnsafeRawBufferPointer) -> Bool {
        guard count > 1, let hash = EventLineParser.leadingEventIDHash(line) else { return false }
        return PassSplit.pass(ofHash: hash, count: count) != index
    }
}
