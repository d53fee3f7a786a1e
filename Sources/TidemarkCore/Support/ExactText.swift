#if canImport(Glibc)
import Glibc
#endif

/// Text compared and hashed byte for byte, as SQLite's BINARY collation compares it.
///
/// Swift's `String` compares and hashes by Unicode canonical equivalence: "é" as one code point
/// and "e" followed by U+0301 are one key to it, while SQLite stores, keys and groups them as
/// two values. Every dictionary or set keyed by stored text (event_id, event_type, user_id)
/// uses this key, so that two events SQLite tells apart are never merged into one.
struct ExactText: Hashable, Sendable, CustomStringConvertible {
    let text: String

    init(_ text: String) { self.text = text }

    static func == (a: ExactText, b: ExactText) -> Bool { sameBytes(a.text, b.text) }

    func hash(into hasher: inout Hasher) {
        hasher.combine(text.utf8.count) // so that ("ab", "c") and ("a", "bc") hash apart in pairs
        withUTF8(of: text) { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    var description: String { text }
}

/// Calls `body` with the text's UTF-8 bytes, read in place when the string is stored
/// contiguously (native strings are): the byte comparisons, hashes and bindings below run on
/// hot paths, where copying a string would touch its reference count, a cache miss on each of
/// a million random strings.
@inline(__always)
func withUTF8<R>(of text: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
    if let result = try text.utf8.withContiguousStorageIfAvailable(body) { return result }
    var copy = text
    return try copy.withUTF8(body)
}

/// Whether two texts are the same UTF-8 bytes (SQLite's BINARY equality).
@inline(__always)
func sameBytes(_ a: String, _ b: String) -> Bool {
    withUTF8(of: a) { x in withUTF8(of: b) { y in sameBytes(x, y) } }
}

@inline(__always)
func sameBytes(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Bool {
    x.count == y.count && (x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
}

/// Byte order of UTF-8 text (SQLite's BINARY collation): negative, zero or positive. Swift's
/// `String` order follows Unicode canonical equivalence instead, which would call two
/// differently-encoded texts equal although SQLite stores different bytes.
@inline(__always)
func compareBytes(_ a: String, _ b: String) -> Int {
    withUTF8(of: a) { x in withUTF8(of: b) { y in compareBytes(x, y) } }
}

@inline(__always)
func compareBytes(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Int {
    let common = min(x.count, y.count)
    let order = common == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, common)
    return order != 0 ? Int(order.signum()) : (x.count == y.count ? 0 : (x.count < y.count ? -1 : 1))
}

/// Whether `a` comes before `b` in byte order.
@inline(__always)
func utf8Less(_ a: String, _ b: String) -> Bool { compareBytes(a, b) < 0 }

/// Byte equality of optional texts: both missing, or the same bytes.
@inline(__always)
func sameBytes(_ a: String?, _ b: String?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case let (x?, y?): return sameBytes(x, y)
    default: return false
    }
}
