/// One full event record as delivered by the source, normalized.
///
/// Equality compares text byte for byte (not by Unicode canonical equivalence), because
/// that is what SQLite stores and what the merge rule must keep stable.
public struct EventRecord: Hashable, Sendable {
    public var eventID: String
    public var userID: String
    public var eventType: String
    public var eventTime: Timestamp
    /// When the source says it sent this delivery; `nil` when the line had none.
    public var receivedTime: Timestamp?
    public var isValid: Bool
    /// Unknown fields of the line, as a canonical JSON object text (keys sorted), or `nil`.
    public var extra: String?

    public init(
        eventID: String, userID: String, eventType: String, eventTime: Timestamp,
        receivedTime: Timestamp?, isValid: Bool = true, extra: String? = nil
    ) {
        self.eventID = eventID
        self.userID = userID
        self.eventType = eventType
        self.eventTime = eventTime
        self.receivedTime = receivedTime
        self.isValid = isValid
        self.extra = extra
    }

    public static func == (a: EventRecord, b: EventRecord) -> Bool {
        a.eventTime == b.eventTime && a.receivedTime == b.receivedTime && a.isValid == b.isValid
            && sameBytes(a.eventID, b.eventID) && sameBytes(a.userID, b.userID) && sameBytes(a.eventType, b.eventType)
            && sameBytes(a.extra, b.extra)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(eventTime)
        hasher.combine(receivedTime)
        hasher.combine(isValid)
        for byte in eventID.utf8 { hasher.combine(byte) }
        hasher.combine(0xFF as UInt8)
        for byte in userID.utf8 { hasher.combine(byte) }
    }
}

/// What one line of a landing file says about one event.
public enum Delivery: Hashable, Sendable {
    /// A full record; `isValid == false` makes it a deletion by flag.
    case record(EventRecord)
    /// A tombstone: only the id (and maybe when it was sent). It deletes the event.
    case tombstone(eventID: String, receivedTime: Timestamp?)

    public var eventID: String {
        switch self {
        case .record(let record): return record.eventID
        case .tombstone(let id, _): return id
        }
    }

    public var receivedTime: Timestamp? {
        switch self {
        case .record(let record): return record.receivedTime
        case .tombstone(_, let time): return time
        }
    }

    /// A record's event time and received time; nil for a tombstone. The hot paths read these
    /// instead of binding the record, which would copy it (a retain per text field).
    var recordTimes: (eventTime: Timestamp, receivedTime: Timestamp?)? {
        switch self {
        case .record(let record): return (record.eventTime, record.receivedTime)
        case .tombstone: return nil
        }
    }
}

extension Delivery {
    /// The delivery as one NDJSON line (no newline), in the landing-file contract's format.
    /// Timestamps are written with millisecond precision, as typical sources do.
    public var jsonLine: String {
        var out: [UInt8] = []
        out.reserveCapacity(200)
        func key(_ name: String, first: Bool = false) {
            if !first { out.append(UInt8(ascii: ",")) }
            JSONValue.writeString(name, to: &out)
            out.append(UInt8(ascii: ":"))
        }
        out.append(UInt8(ascii: "{"))
        switch self {
        case .tombstone(let id, let received):
            key("event_id", first: true)
            JSONValue.writeString(id, to: &out)
            if let received {
                key("received_time")
                JSONValue.writeString(received.rfc3339Millis, to: &out)
            }
        case .record(let r):
            key("event_id", first: true)
            JSONValue.writeString(r.eventID, to: &out)
            key("user_id")
            JSONValue.writeString(r.userID, to: &out)
            key("event_type")
            JSONValue.writeString(r.eventType, to: &out)
            key("event_time")
            JSONValue.writeString(r.eventTime.rfc3339Millis, to: &out)
            if let received = r.receivedTime {
                key("received_time")
                JSONValue.writeString(received.rfc3339Millis, to: &out)
            }
            key("is_valid")
            out.append(contentsOf: (r.isValid ? "true" : "false").utf8)
            if let extra = r.extra, extra.utf8.count > 2 {
                // `extra` is a canonical object text: splice its members in.
                out.append(UInt8(ascii: ","))
                out.append(contentsOf: extra.utf8.dropFirst().dropLast())
            }
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}

extension Timestamp {
    /// RFC 3339 in UTC with exactly three fractional digits (sub-millisecond digits truncated).
    public var rfc3339Millis: String {
        let full = rfc3339 // YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ
        return String(full.prefix(23)) + "Z"
    }
}
