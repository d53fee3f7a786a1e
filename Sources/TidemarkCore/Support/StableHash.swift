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
