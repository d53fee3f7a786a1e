import Testing
@testable import TidemarkCore

/// Byte order (SQLite's BINARY collation), which ingest's merge groups and rebuild's passes
/// walk event_ids in, from strings and from a group's byte buffer alike.
@Suite struct ByteOrderTests {
    /// Texts where byte order and Swift's String order part ways, or where the 8-byte prefix
    /// the sort keys on decides nothing: empty, a prefix of another, equal prefixes with
    /// different tails, NUL, non-ASCII, precomposed and decomposed é, duplicates.
    static func texts(_ count: Int, seed: UInt64) -> [String] {
        var random = SeededRandom(seed: seed)
        let fixed = ["", "a", "ab", "abcdefgh", "abcdefghi", "abcdefgh\u{0}", "abcdefgz", "\u{0}", "é", "e\u{301}",
                     "zzzzzzzz", "ÿ", "😀", "abcdefgh😀", "A", "Z", "~"]
        var texts = fixed
        let alphabet: [String] = ["a", "b", "-", "0", "f", "é", "\u{0}", "😀", "Z"]
        while texts.count < count {
            switch Int.random(in: 0..<4, using: &random) {
            case 0: texts.append(EventMix.uuid(&random))
            case 1: texts.append("abcdefgh" + (0..<Int.random(in: 0...4, using: &random)).map { _ in alphabet.randomElement(using: &random)! }.joined())
            case 2: texts.append(texts.randomElement(using: &random)!) // a duplicate
            default: texts.append((0..<Int.random(in: 0...12, using: &random)).map { _ in alphabet.randomElement(using: &random)! }.joined())
            }
        }
        return texts
    }

    @Test func stringsAndGroupBytesSortAsTheirBytes() {
        for seed in 1...20 as ClosedRange<UInt64> {
            let texts = Self.texts(400, seed: seed)
            let expected = texts.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
            #expect(byteOrder(texts).map { Array(texts[$0].utf8) } == expected, "seed \(seed)")
            var group = GroupIDBytes(capacity: 4)
            for text in texts { group.append(text) }
            let order = group.byteOrder()
            #expect(order.map { Array(texts[$0].utf8) } == expected, "seed \(seed)")
            for (a, b) in zip(order, order.dropFirst()) {
                #expect(group.same(a, b) == (Array(texts[a].utf8) == Array(texts[b].utf8)))
                group.withBytes(a) { #expect(Array($0) == Array(texts[a].utf8)) }
            }
        }
    }
}
