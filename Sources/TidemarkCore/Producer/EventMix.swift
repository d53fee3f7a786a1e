/// What a synthetic event looks like: which user, which kind of action, which id.
///
/// Users follow a Zipf distribution (weight of the user of rank r is 1/r), so a few users
/// produce much of the traffic, as on a real site; event types follow fixed weights, views
/// being common and purchases rare. All strings except the event id are built once here and
/// shared by every record, which keeps the per-event cost to one id string.
struct EventMix {
    /// Event types and their weights in percent.
    static let eventTypes: [(name: String, weight: Double)] = [
        ("view", 40), ("click", 25), ("scroll", 17), ("search", 7),
        ("add_to_cart", 6), ("remove_from_cart", 2), ("purchase", 3),
    ]

    let userIDs: [String]
    private let userCumulative: [Double]
    private let typeNames: [String]
    private let typeCumulative: [Double]

    init(users: Int) {
        precondition(users >= 1)
        let width = max(5, String(users).utf8.count)
        var ids: [String] = []
        ids.reserveCapacity(users)
        var cumulative: [Double] = []
        cumulative.reserveCapacity(users)
        var total = 0.0
        for rank in 1...users {
            var bytes: [UInt8] = [UInt8(ascii: "u")]
            appendDigits(&bytes, rank, width: width)
            ids.append(String(decoding: bytes, as: UTF8.self))
            total += 1.0 / Double(rank)
            cumulative.append(total)
        }
        userIDs = ids
        userCumulative = cumulative.map { $0 / total }
        typeNames = EventMix.eventTypes.map(\.name)
        var running = 0.0
        let typeTotal = EventMix.eventTypes.reduce(0) { $0 + $1.weight }
        typeCumulative = EventMix.eventTypes.map { running += $0.weight; return running / typeTotal }
    }

    func user(_ rng: inout SeededGenerator) -> String {
        userIDs[EventMix.pick(rng.unit(), userCumulative)]
    }

    func eventType(_ rng: inout SeededGenerator) -> String {
        typeNames[EventMix.pick(rng.unit(), typeCumulative)]
    }

    /// The first index whose cumulative weight exceeds `u` (binary search).
    private static func pick(_ u: Double, _ cumulative: [Double]) -> Int {
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let mid = (low + high) / 2
            if cumulative[mid] > u { high = mid } else { low = mid + 1 }
        }
        return low
    }

    /// A random (version 4, RFC 9562 section 5.4) UUID in lowercase text, from the seeded generator.
    static func uuid(_ rng: inout SeededGenerator) -> String {
        let high = rng.next()
        let low = rng.next()
        let hex: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 36) { out in
            let digits = hex.utf8Start
            var position = 0
            for index in 0..<16 {
                var byte = index < 8
                    ? UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(index)))
                    : UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(index - 8)))
                if index == 6 { byte = (byte & 0x0F) | 0x40 } // version 4
                if index == 8 { byte = (byte & 0x3F) | 0x80 } // variant 10
                if index == 4 || index == 6 || index == 8 || index == 10 {
                    out[position] = UInt8(ascii: "-")
                    position += 1
                }
                out[position] = digits[Int(byte >> 4)]
                out[position + 1] = digits[Int(byte & 0x0F)]
                position += 2
            }
            return position
        }
    }
}
