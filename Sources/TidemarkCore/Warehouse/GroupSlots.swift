/// A merge group's events, worked out from its deliveries alone (nothing stored is read):
/// each distinct event gets a slot, numbered in byte order of event_id, so that every later
/// pass over the events walks its arrays front to back while SQLite reads and writes in key
/// order; a large group also gets the hour each event lives in if it is new.
struct GroupSlots {
    let files: [(fileID: Int64, deliveries: [PreparedDelivery])]
    /// Per slot, its event_id.
    let ids: SlotIDs
    /// The deliveries' event_ids in arrival order, which the passes in byte order read
    /// (`GroupIDBytes`).
    let idBytes: GroupIDBytes
    /// Per delivery (in file order, then line order), its slot.
    let slotOfDelivery: [Int]
    /// Per file, the index of its first delivery in `slotOfDelivery`.
    let firstDelivery: [Int]
    /// Whether the group has more deliveries than `MergeWriter.claimThreshold`: it folds its
    /// own deliveries (`GroupFold`) and may claim lookup entries.
    let isLarge: Bool
    /// Per slot, for a large group of more events than the threshold, the hour of the record
    /// that wins among the group's own deliveries (nil: tombstones only); else empty.
    let groupHour: [Int?]
    /// Whether more events than `MergeWriter.claimThreshold` have such an hour: the group then
    /// claims their lookup entries before looking events up (`MergeWriter.readStoredStates`).
    let claimsFirst: Bool

    init(_ files: [(fileID: Int64, deliveries: [PreparedDelivery])]) {
        self.files = files
        // One sort of every delivery's id, then equal neighbours share a slot.
        var every: [String] = []
        let deliveryCount = files.reduce(0) { $0 + $1.deliveries.count }
        every.reserveCapacity(deliveryCount)
        var idBytes = GroupIDBytes(capacity: deliveryCount)
        // Per delivery, for `winningHours` (only a large group needs them): a record's
        // `MergeRule.receivedRank` and hour; Int32.min for a tombstone.
        isLarge = deliveryCount > MergeWriter.claimThreshold
        var receivedOf = [Int64](repeating: .min, count: isLarge ? deliveryCount : 0)
        var hourOf = [Int32](repeating: .min, count: isLarge ? deliveryCount : 0)
        for file in files {
            // Read in place, by index: iterating would copy each delivery (a retain per text field).
            for index in file.deliveries.indices {
                if isLarge, let times = file.deliveries[index].delivery.recordTimes {
                    receivedOf[every.count] = MergeRule.receivedRank(receivedTime: times.receivedTime)
                    hourOf[every.count] = Int32(truncatingIfNeeded: times.eventTime.hour.hoursSinceEpoch)
                }
                every.append(file.deliveries[index].delivery.eventID)
                idBytes.append(every[every.count - 1])
            }
        }
        var slotOfDelivery = [Int](repeating: 0, count: every.count)
        var slotDelivery: [Int] = [] // per slot: its first delivery in byte order
        for index in idBytes.byteOrder() {
            if slotDelivery.isEmpty || !idBytes.same(index, slotDelivery[slotDelivery.count - 1]) { slotDelivery.append(index) }
            slotOfDelivery[index] = slotDelivery.count - 1
        }
        var firstDelivery: [Int] = []
        firstDelivery.reserveCapacity(files.count)
        var start = 0
        for file in files {
            firstDelivery.append(start)
            start += file.deliveries.count
        }
        ids = SlotIDs(every: every, slotDelivery: slotDelivery)
        self.idBytes = idBytes
        self.slotOfDelivery = slotOfDelivery
        self.firstDelivery = firstDelivery
        groupHour = slotDelivery.count > MergeWriter.claimThreshold // more events than that means a large group
            ? Self.winningHours(files, firstDelivery: firstDelivery, slotOfDelivery: slotOfDelivery, slots: slotDelivery.count,
                                receivedOf: receivedOf, hourOf: hourOf)
            : []
        claimsFirst = groupHour.reduce(0) { $0 + ($1 == nil ? 0 : 1) } > MergeWriter.claimThreshold
    }

    /// Calls `body` with slot `slot`'s event_id as UTF-8 bytes (valid during the call).
    @inline(__always)
    func withIDBytes<R>(of slot: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try idBytes.withBytes(ids.slotDelivery[slot], body)
    }

    /// Per slot, the hour of the record that wins among the group's own deliveries (nil when
    /// it has tombstones only): where the event lives if it is not stored yet. The winner is
    /// `MergeRule.outranks`'s greatest record, which is what `MergeRule.merge` keeps; received
    /// times decide from the arrays, and only equal ones look at the records.
    private static func winningHours(_ files: [(fileID: Int64, deliveries: [PreparedDelivery])], firstDelivery: [Int],
                              slotOfDelivery: [Int], slots: Int, receivedOf: [Int64], hourOf: [Int32]) -> [Int?] {
        func record(_ delivery: Int) -> EventRecord {
            // The file holding a delivery: the last whose first delivery is not after it.
            var low = 0, high = firstDelivery.count - 1
            while low < high {
                let middle = (low + high + 1) / 2
                if firstDelivery[middle] <= delivery { low = middle } else { high = middle - 1 }
            }
            guard case .record(let record) = files[low].deliveries[delivery - firstDelivery[low]].delivery else {
                preconditionFailure("delivery \(delivery) has an hour, so it is a record")
            }
            return record
        }
        var winner = [Int](repeating: -1, count: slots)
        for delivery in hourOf.indices where hourOf[delivery] != .min {
            let slot = slotOfDelivery[delivery]
            let best = winner[slot]
            if best >= 0 && !MergeRule.outranks(receivedOf[delivery], receivedOf[best], onTie: {
                MergeRule.canonicalOrder(record(delivery), record(best)) > 0
            }) { continue }
            winner[slot] = delivery
        }
        return winner.map { $0 >= 0 ? Int(hourOf[$0]) : nil }
    }
}

/// A merge group's event_ids per slot: the string of the slot's first delivery in byte order,
/// taken when needed.
struct SlotIDs {
    let every: [String]
    let slotDelivery: [Int]
    var count: Int { slotDelivery.count }
    var indices: Range<Int> { 0..<slotDelivery.count }
    subscript(slot: Int) -> String { every[slotDelivery[slot]] }
}
