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
        let hashed: Void? = text.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil {
            for byte in text.utf8 { hasher.combine(byte) }
        }
    }

    var description: String { text }
}

/// Whether two texts are the same UTF-8 bytes (SQLite's BINARY equality). Reads native
/// strings in place: dictionary probes call this, and a copy would touch each string's
/// reference count, a cache miss per probe on a million random strings.
@inline(__always)
func sameBytes(_ a: String, _ b: String) -> Bool {
    let compared = a.utf8.withContiguousStorageIfAvailable { x in
        b.utf8.withContiguousStorageIfAvailable { y in
            x.count == y.count && (x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
        }
    }
    if let compared = compared ?? nil { return compared }
    return a.utf8.elementsEqual(b.utf8)
}

/// Byte equality of optional texts: both missing, or the same bytes.
@inline(__always)
func sameBytes(_ a: String?, _ b: String?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case let (x?, y?): return sameBytes(x, y)
    default: return false
    }
}
