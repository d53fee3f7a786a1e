/// One row of an hourly partition table: the stored form of an `EventState` that has a record.
struct PartitionRow: Equatable, Sendable {
    var state: EventState
    var firstBatch: Int64
    var lastBatch: Int64

    var record: EventRecord { state.record! }

    /// Deterministic 64-bit hash of the row's data columns (everything the merge rule decides;
    /// not the arrival metadata `is_late`, `first_batch`, `last_batch`). FNV-1a over the
    /// column texts with separators. Summed with wrap-around over a partition it gives an
    /// order-independent checksum that rebuild and validate compare.
    var contentHash: UInt64 {
        let r = record
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        @inline(__always) func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        func field(_ text: String?) {
            if let text {
                for byte in text.utf8 { mix(byte) }
                mix(0x1F)
            } else {
                mix(0x1E)
            }
        }
        field(r.eventID)
        field(r.userID)
        field(r.eventType)
        field(r.eventTime.rfc3339)
        field(r.receivedTime?.rfc3339)
        field(state.isValid ? "1" : "0")
        field(state.deletion?.kind)
        field(state.deletion?.deletedAt?.rfc3339)
        field(r.extra)
        // Final avalanche so that sums of similar rows do not cancel in low bits.
        hash ^= hash >> 33
        hash = hash &* 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        return hash
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
