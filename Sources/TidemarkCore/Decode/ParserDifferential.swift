import Foundation

/// Compares `EventLineParser` with Foundation's `JSONSerialization` on one line: the same
/// accept/reject decision on the JSON grammar, and the same values for accepted lines. Used by
/// the fuzz target (`scripts/fuzz-parser.sh`) and by the tests that replay its findings.
public enum ParserDifferential {
    /// Returns a description of the disagreement, or nil when both agree.
    public static func check(_ bytes: UnsafeRawBufferPointer) -> String? {
        let parser = EventLineParser(now: Timestamp(nanosecondsSinceEpoch: 1_800_000_000 * Timestamp.nanosPerSecond))
        let ours = parser.parse(bytes)
        let data = Data(bytes)
        let foundation = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        switch ours {
        case .success(let delivery):
            guard let object = foundation as? [String: Any] else {
                // Foundation turns numbers into Double and refuses ones that overflow; the JSON
                // grammar (RFC 8259) has no limit, and we keep the text as written.
                if hasOverflowingNumber(data) { return nil }
                return "accepted a line Foundation rejects"
            }
            // Foundation drops a U+FEFF that opens a string or follows an escape in one (it takes
            // it for a byte order mark); RFC 8259 keeps it as the character it is, and so do we.
            let hasFEFF = data.firstRange(of: Data([0xEF, 0xBB, 0xBF])) != nil
            func same(_ theirs: Any?, _ ours: String) -> Bool {
                guard let theirs = theirs as? String else { return false }
                return theirs == ours || (hasFEFF && theirs.replacingOccurrences(of: "\u{FEFF}", with: "") == ours.replacingOccurrences(of: "\u{FEFF}", with: ""))
            }
            guard same(object["event_id"], delivery.eventID) else { return "event_id differs" }
            if case .record(let record) = delivery {
                guard same(object["user_id"], record.userID) else { return "user_id differs" }
                guard same(object["event_type"], record.eventType) else { return "event_type differs" }
                guard (object["is_valid"] as? Bool ?? true) == record.isValid else { return "is_valid differs" }
            }
            // Our own output must parse back to the same delivery.
            guard parser.parse(delivery.jsonLine) == .success(delivery) || hasSubMillisecond(delivery) else {
                return "jsonLine does not round-trip"
            }
            return nil
        case .failure(let rejection):
            let grammar = rejection.reason.hasPrefix("invalid JSON") || rejection.reason.hasPrefix("invalid UTF-8") || rejection.isBlank
            guard grammar, let object = foundation else { return nil }
            // Known leniencies of Foundation: a trailing comma before } or ], lone surrogate
            // escapes (it substitutes U+FFFD), text after a NUL byte and a leading byte order
            // mark; we keep to RFC 8259.
            let text = String(decoding: data, as: UTF8.self)
            if text.range(of: #",\s*[}\]]"#, options: .regularExpression) != nil { return nil }
            if rejection.reason.contains("lone surrogate") { return nil }
            // Foundation stops reading at a NUL byte after a complete value; a NUL is never valid JSON.
            if data.contains(0) { return nil }
            if rejection.isBlank && !(object is [String: Any]) { return nil }
            // Foundation skips a leading UTF-8 byte order mark, as RFC 8259 (section 8.1) lets a
            // parser do; we reject it with a reason of its own (a producer writing one writes it
            // on the first line only, and should write none).
            if data.starts(with: [0xEF, 0xBB, 0xBF]) && rejection.reason.contains("byte order mark") { return nil }
            return "rejected (\(rejection.reason)) a line Foundation accepts"
        }
    }

    private static func hasOverflowingNumber(_ data: Data) -> Bool {
        let text = String(decoding: data, as: UTF8.self)
        return text.range(of: #"[0-9][eE][+-]?[0-9]{3,}|[0-9]{300,}"#, options: .regularExpression) != nil
    }

    /// `jsonLine` writes milliseconds; finer timestamps legitimately do not round-trip.
    private static func hasSubMillisecond(_ delivery: Delivery) -> Bool {
        func fine(_ t: Timestamp?) -> Bool { (t?.nanosecondsSinceEpoch ?? 0) % 1_000_000 != 0 }
        switch delivery {
        case .record(let r): return fine(r.eventTime) || fine(r.receivedTime)
        case .tombstone(_, let t): return fine(t)
        }
    }
}
