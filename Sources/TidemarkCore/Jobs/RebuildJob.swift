import Foundation
import GRDB
import Logging

/// What to rebuild.
public struct RebuildOptions: Sendable {
    public var dataFolder: String
    /// nil: every partition.
    public var hours: ClosedRange<PartitionHour>?
    public var dryRun = false
    /// Events folded in memory per pass; an hour with more is rebuilt in several passes over
    /// a hash split of event ids, so memory stays bounded.
    public var eventsPerPass = 125_000
    public var clock: @Sendable () -> Timestamp = { Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970) }

    public init(dataFolder: String) { self.dataFolder = dataFolder }
}

/// The outcome for one hour.
public struct RebuildHourResult: Codable, Sendable, Equatable {
    public var hour: String
    public var checksumBefore: String?
    public var checksumAfter: String
    public var rows: Int
    public var added: Int
    public var changed: Int
    public var removed: Int
    public var filesRead: Int
    /// unchanged, repaired, restored (table was missing), or "would be …" of these in a dry run.
    public var outcome: String

    static func outcome(tableExisted: Bool, repaired: Bool, dryRun: Bool) -> String {
        let outcome = !tableExisted ? "restored" : (repaired ? "repaired" : "unchanged")
        return dryRun ? "would be " + outcome : outcome
    }

    /// This hour's result, then `later`'s of a second round over it: counts added up, the
    /// checksum recorded first and the last after, repaired when either round wrote.
    func followed(by later: RebuildHourResult) -> RebuildHourResult {
        var both = later
        both.checksumBefore = checksumBefore
        both.added += added
        both.changed += changed
        both.removed += removed
        both.filesRead += filesRead
        if !isUnchanged { both.outcome = outcome }
        return both
    }

    /// The rebuild found nothing to write (or, in a dry run, would have).
    public var isUnchanged: Bool {
        outcome == Self.outcome(tableExisted: true, repaired: false, dryRun: false)
            || outcome == Self.outcome(tableExisted: true, repaired: false, dryRun: true)
    }
}

public struct RebuildReport: Codable, Sendable, JSONDocument {
    public var dryRun: Bool
    public var hours: [RebuildHourResult]
    /// Hours asked for that no partition and no archived file holds: nothing to rebuild.
    public var hoursWithoutData: [String] = []
    /// Hours that still hold a stale copy of an event this run placed in a rebuilt hour (its
    /// lookup entry was lost or wrong) once it is done: hours outside the run; in a dry run, or
    /// after its extra rounds, hours of it too. Rebuilding them removes the copy.
    public var staleCopiesIn: [String] = []
    /// Hours asked for and left as they were because a stop was requested (SIGINT/SIGTERM)
    /// before their turn: the hours above were rebuilt, each committed.
    public var notRebuilt: [String] = []

    public var text: String {
        var rows = [["hour", "outcome", "rows", "added", "changed", "removed", "files read", "checksum recorded", "checksum after"]]
        for h in hours {
            rows.append([h.hour, h.outcome, String(h.rows), String(h.added), String(h.changed), String(h.removed), String(h.filesRead),
                         h.checksumBefore ?? "-", h.checksumAfter])
        }
        var text = TextTable.render(rows)
        if !hoursWithoutData.isEmpty {
            let named = TextTable.firstFew(hoursWithoutData)
            text += "nothing to rebuild for \(named): no partition and no archived file holds events of \(hoursWithoutData.count == 1 ? "that hour" : "those hours")\n"
        }
        if !notRebuilt.isEmpty {
            text += "stop requested: \(TextTable.firstFew(notRebuilt)) \(notRebuilt.count == 1 ? "was" : "were") not rebuilt (left as \(notRebuilt.count == 1 ? "it was" : "they were")); run the rebuild again for \(notRebuilt.count == 1 ? "it" : "them")\n"
        }
        if !staleCopiesIn.isEmpty {
            text += "\(TextTable.firstFew(staleCopiesIn)) still \(staleCopiesIn.count == 1 ? "holds a stale copy" : "hold stale copies") of events this rebuild placed elsewhere: "
                + (dryRun ? "the rebuild would remove \(staleCopiesIn.count == 1 ? "it" : "them") when run with those hours"
                          : "tidemark rebuild --hour H for \(staleCopiesIn.count == 1 ? "it" : "each") removes \(staleCopiesIn.count == 1 ? "it" : "them")") + "\n"
        }
        return text
    }
}

/// `tidemark rebuild`: recomputes hourly partitions from the archived raw files alone, with
/// the same merge rule as ingest, compares each with the stored hour and writes what differs,
/// in one transaction per hour.
public enum RebuildJob {
    public static func run(_ options: RebuildOptions, logger: Logger) throws -> RebuildReport {
        // The database first: a mistyped --data must not leave a folder (with a lock file) behind.
        // The page cache size made no difference to a 1M-row hour (8, 24 or 96 MiB); 8 keeps RSS down.
        let warehouse = try Warehouse(dataFolder: options.dataFolder, create: false, cacheMebibytes: 8)
        let lock = try JobLock(dataFolder: options.dataFolder, job: "rebuild")
        defer { withExtendedLifetime(lock) {} }
        let started = options.clock()
        let wall = Date()
        return try warehouse.withConnection { db in
            let all = try RebuildStore.allHours(db)
            let selected = options.hours.map { range in
                // An explicit hour may have no partition row (never had events): rebuild it anyway.
                (range.lowerBound.hoursSinceEpoch...range.upperBound.hoursSinceEpoch).map(PartitionHour.init(hoursSinceEpoch:))
            } ?? all
            // Rebuild finds an hour's files through `file_hours`: with rows of it lost, it would
            // delete the rows of the files it no longer finds (and undo their deletions).
            let unindexed = try Ledger.filesMissingFromHourIndex(limit: 1, db)
            if unindexed.count > 0 {
                throw TidemarkError("rebuild", options.dataFolder,
                                    cause: "\(plural(unindexed.count, "applied file")) (first: \(unindexed.files[0].name), ledger file \(unindexed.files[0].fileID)) \(unindexed.count == 1 ? "is" : "are") missing from the file-to-hour index (file_hours); rebuilding now would drop \(unindexed.count == 1 ? "its" : "their") rows",
                                    hint: "nothing was changed; restore \(Warehouse.databaseName) from a backup, or build a new data folder from the archive: \(Warehouse.backfillCommand(from: options.dataFolder, into: Warehouse.newDataFolder))",
                                    exit: .dataError)
            }
            let batchID = try RebuildStore.startBatch(at: started, dryRun: options.dryRun, db)
            var results: [RebuildHourResult] = []
            var withoutData: [String] = []
            var staleCopiesOutside: [String] = []
            var notRebuilt: [String] = []
            do {
                // The partitions' rows, read once: each hour's is its "before".
                let registered = Dictionary(try ValidationQueries.partitions(db).map { ($0.hour, $0) }, uniquingKeysWith: { a, _ in a })
                var waiting = try MergeWriter.waitingTombstones(db)
                // An hour can be rebuilt before another hour's rebuild finds that a row in it is
                // a stale copy of an event that belongs there (its lookup entry lost): such hours
                // of this run are rebuilt once more, until none is left (a few rounds at most).
                var staleCopies = Set<Int>()
                // A range of hours may span years: an hour holding nothing at all is known
                // without a query. (No rebuild creates a table outside this set: relocated
                // entries only go to hours whose table exists.)
                let holdingAnything = try RebuildStore.hoursHoldingAnything(db)
                func rebuildRound(_ hours: [PartitionHour], first: Bool) throws {
                    for hour in hours {
                        if !holdingAnything.contains(hour.hoursSinceEpoch) {
                            if first { withoutData.append(hour.label) }
                            continue
                        }
                        // An hour with no partition row, no table and no archived file has nothing to
                        // rebuild from: no empty table is made. Lookup entries naming it (damaged) point
                        // at nothing and are removed.
                        if try registered[hour] == nil && !db.tableExistsFast(hour.tableName)
                            && RebuildStore.files(touching: [hour], dataFolder: options.dataFolder, db).isEmpty {
                            let stray = try RebuildStore.dropLookupEntries(naming: hour, dryRun: options.dryRun, db)
                            guard stray > 0 else {
                                if first { withoutData.append(hour.label) }
                                continue
                            }
                            results.append(RebuildHourResult(hour: hour.label, checksumBefore: nil, checksumAfter: checksumText(0), rows: 0,
                                                             added: 0, changed: 0, removed: stray, filesRead: 0,
                                                             outcome: RebuildHourResult.outcome(tableExisted: true, repaired: true, dryRun: options.dryRun)))
                            continue
                        }
                        // Asked to stop: the hours done stay committed, the rest are named.
                        // (A round names each hour once, and no round starts after a stop.)
                        if StopSignal.requested {
                            notRebuilt.append(hour.label)
                            continue
                        }
                        var settled: [ExactText] = []
                        var copiesIn = Set<Int>()
                        let result: RebuildHourResult
                        do {
                            result = try rebuild(hour, before: first ? registered[hour] : try ValidationQueries.partitionEntry(hour, db), batchID: batchID,
                                                 dryRun: options.dryRun, eventsPerPass: options.eventsPerPass, dataFolder: options.dataFolder,
                                                 waitingTombstones: waiting, settled: &settled, staleCopiesIn: &copiesIn, db: db, logger: logger)
                        } catch {
                            // The error names the hour it stopped in, and what this run rebuilt
                            // earlier (each hour committed: it stays rebuilt).
                            guard var described = TidemarkError.describing(error, database: warehouse.databasePath) else { throw error }
                            if !described.operation.contains(hour.label) { described.operation += " hour \(hour.label)" }
                            let changed = results.filter { !$0.isUnchanged }.map(\.hour)
                            let earlier = options.dryRun ? "a dry run: nothing was changed"
                                : results.isEmpty ? "no hour was rebuilt earlier in this run"
                                : "the \(plural(results.count, "hour")) rebuilt earlier in this run stay rebuilt"
                                    + (changed.isEmpty ? " (all unchanged)" : " (changed: \(changed.joined(separator: ", ")))")
                            throw described.adding(hint: earlier)
                        }
                        if let earlier = results.firstIndex(where: { $0.hour == result.hour }) {
                            results[earlier] = results[earlier].followed(by: result)
                        } else {
                            results.append(result)
                        }
                        for id in settled { waiting[id] = nil } // the hour's copy is gone: no dictionary copy
                        staleCopies.formUnion(copiesIn)
                        FaultPoint.pause("rebuild-hour-done")
                    }
                }
                try rebuildRound(selected, first: true)
                // A dry run changed nothing: another round would find the same.
                let asked = Set(selected.map(\.hoursSinceEpoch))
                for _ in 0..<3 where !options.dryRun && !StopSignal.requested {
                    let again = staleCopies.intersection(asked)
                    guard !again.isEmpty else { break }
                    staleCopies.subtract(again)
                    try rebuildRound(again.sorted().map(PartitionHour.init(hoursSinceEpoch:)), first: false)
                }
                staleCopiesOutside = staleCopies.sorted().map { PartitionHour(hoursSinceEpoch: $0).label }
            } catch {
                if !options.dryRun { BatchBookkeeping.fail(batchID: batchID, error: "\(error)", db) }
                throw error
            }
            if !options.dryRun {
                try RebuildStore.finishBatch(id: batchID, hours: results.map(\.hour), at: options.clock(),
                                             seconds: Date().timeIntervalSince(wall), db)
            }
            return RebuildReport(dryRun: options.dryRun, hours: results, hoursWithoutData: withoutData, staleCopiesIn: staleCopiesOutside,
                                 notRebuilt: notRebuilt)
        }
    }

    /// `before`: the hour's `partitions` row, if any. `waitingTombstones`: the tombstones
    /// waiting for their event, loaded once per run; the events whose tombstones this hour
    /// applies are added to `settled`. Scratch files go into the data folder.
    static func rebuild(_ hour: PartitionHour, before: ValidationQueries.PartitionEntry?, batchID: Int64, dryRun: Bool, eventsPerPass: Int, dataFolder: String,
                        waitingTombstones: [ExactText: (deletion: Deletion, files: [Int64])], settled: inout [ExactText],
                        staleCopiesIn: inout Set<Int>, db: Database, logger: Logger) throws -> RebuildHourResult {
        // The plan (the files to read) is made inside the hour's transaction: a batch committed
        // between planning and rebuilding would otherwise have its rows taken for strays.
        try db.execute(sql: "BEGIN IMMEDIATE")
        do {
            let primary = try RebuildStore.files(touching: [hour], dataFolder: dataFolder, db)
            // Events that moved into this hour: their earlier deliveries are in files of the hours
            // they came from; from those files only these events are read.
            let moved = try RebuildStore.eventsMovedInto(hour, db)
            let known = Set(primary.map(\.fileID))
            let extraHours = Set(moved.values.flatMap { $0 }).map(PartitionHour.init(hoursSinceEpoch:))
            let extra = try RebuildStore.files(touching: extraHours, dataFolder: dataFolder, db).filter { !known.contains($0.fileID) }
            let files = (primary + extra).sorted { $0.fileID < $1.fileID }
            let primaryLines = primary.reduce(0) { $0 + $1.linesRead }
            let passes = PassSplit.passes(for: primaryLines, perPass: eventsPerPass)
            // Rebuild reads and rewrites the lookup through `event_index` alone.
            try EventLookup.foldRecent(db, overwriting: true)
            // The hour's summary is counted again from the rebuilt rows, pass by pass (memory stays
            // bounded by the pass).
            let summaryBefore = try ValidationQueries.storedSummary(hour, db), usersBefore = try ValidationQueries.summaryUsers(hour, db)
            try Summaries.clear(hour, db)
            var rebuild = HourRebuild(hour: hour, files: files, moved: moved, patch: try PartitionPatch(hour, db), dataFolder: dataFolder, batchID: batchID,
                                      dryRun: dryRun, db: db, rejected: try RebuildStore.rejectedLines(in: files.map(\.fileID), db),
                                      waitingTombstones: waitingTombstones)
            // The archived files are read once: the first pass folds its share of events and
            // sets the lines of the other passes aside, uncompressed, one scratch file each (a
            // pass that finds events indexed in another hour reads those hours' files again).
            let spills = try PassSpills(passes: passes, pathPrefix: "\(dataFolder)/.rebuild-pass-")
            let extraFileIDs = Set(extra.map(\.fileID))
            // Passes are folded on a thread of their own, each while this one compares and
            // writes the pass before (two passes in memory): the first from the archived files,
            // the others from their scratch files.
            let folds = PassesAhead(count: passes) { [rejected = rebuild.rejected] pass, isCancelled in
                var folding = Folding(extraFiles: extraFileIDs, movedEvents: moved, only: nil, expected: primaryLines / passes)
                if pass == 0 {
                    try read(files, into: &folding, settingAside: spills, rejected: rejected, isCancelled: isCancelled)
                } else {
                    // Never nil: rebuild's scratch files do not fall back (a failed write throws).
                    try read(spills.lines(ofPass: pass)!, of: files, into: &folding, rejected: rejected, isCancelled: isCancelled)
                }
                return folding
            }
            defer { folds.cancel() }
            // Read while the first pass decodes on the other thread.
            rebuild.storedDeletions = try RebuildStore.deletions(in: hour, db)
            for _ in 0..<passes { try rebuild.apply(try folds.next()) }
            settled = rebuild.settledIDs
            staleCopiesIn = rebuild.staleCopiesIn
            let patch = rebuild.patch
            let removed = try patch.finish()
            let checksum = checksumText(rebuild.checksum)
            // Repaired: rows or lookup entries were wrong, or only the hour's partition row or its
            // summary (the rows right, counted again; read again only when nothing else was wrong).
            let repaired = try patch.added + patch.changed + removed.count + patch.quietFixes + rebuild.settledIDs.count > 0
                || (before.map { $0.checksum != checksum || $0.rowCount != rebuild.rows || $0.validCount != rebuild.valid } ?? patch.tableExisted)
                || ValidationQueries.storedSummary(hour, db) != summaryBefore
                || ValidationQueries.summaryUsers(hour, db) != usersBefore
            let outcome = RebuildHourResult.outcome(tableExisted: patch.tableExisted, repaired: repaired, dryRun: dryRun)
            if dryRun {
                try db.execute(sql: "ROLLBACK")
            } else {
                try RebuildStore.finishPatch(hour, rows: rebuild.rows, valid: rebuild.valid, checksum: rebuild.checksum,
                                             newRowIDsAbove: patch.lastOldRowID, batchID: batchID, db)
                try RebuildStore.relocate(removed, from: hour, to: rebuild.elsewhere, db)
                try db.execute(sql: "COMMIT")
                logger.info("rebuilt partition", metadata: ["hour": "\(hour)", "rows": "\(rebuild.rows)", "outcome": "\(outcome)"])
            }
            return RebuildHourResult(hour: hour.label, checksumBefore: before?.checksum, checksumAfter: checksum,
                                     rows: rebuild.rows, added: patch.added, changed: patch.changed, removed: removed.count,
                                     filesRead: files.count, outcome: outcome)
        } catch {
            try? db.execute(sql: "ROLLBACK")
            throw error
        }
    }

    /// One hour's rebuild inside its transaction, one pass of folded events at a time: each
    /// rebuilt event is compared with its stored row and written where it differs
    /// (`PartitionPatch`), and the hour's totals and summary are counted from the rows.
    struct HourRebuild {
        let hour: PartitionHour
        let files: [RebuildStore.SourceFile]
        /// Events that moved into this hour, with the hours they came from.
        let moved: [ExactText: Set<Int>]
        let patch: PartitionPatch
        /// The data folder: ledger locations are read relative to it.
        let dataFolder: String
        let batchID: Int64
        let dryRun: Bool
        let db: Database
        /// The lines ingest rejected, by ledger file id (more are read when events are refolded).
        var rejected: [Int64: Set<Int>]
        /// Tombstones waiting for their event (`pending_tombstones`), by event.
        let waitingTombstones: [ExactText: (deletion: Deletion, files: [Int64])]
        /// The events whose waiting tombstones this hour applied.
        var settledIDs: [ExactText] = []
        /// The deletions stored in this hour's rows (read before the first pass).
        var storedDeletions = StoredDeletions()
        /// Events the fold places in another hour.
        var elsewhere: [ExactText: Int] = [:]
        /// Other hours holding a row of an event this hour's fold placed here (a stale copy,
        /// left where its lookup entry was lost or wrong): their own rebuild removes it.
        var staleCopiesIn = Set<Int>()
        /// The hour's totals: the passes' counts added up.
        var rows = 0, valid = 0
        var checksum: UInt64 = 0

        /// Compares one pass's events with the stored rows, writes what differs and counts the
        /// rows into the totals and the hour's summary.
        mutating func apply(_ pass: consuming Folding) throws {
            // The pass's events in byte order: index lookups then walk event_index once.
            let ids = pass.ids
            var events = pass.events
            pass.ids = []
            pass.events = [] // so that `events` is changed in place
            let byID = byteOrder(ids.map(\.text))
            // Where event_index places each event the fold puts in this hour (its stored row).
            // Each event's hour (Int.min: tombstones only), read once.
            var eventHours = events.map { $0.hour }
            let candidates = byID.filter { eventHours[$0] == hour.hoursSinceEpoch }
            var located = [(hour: Int, rowID: Int64)?](repeating: nil, count: ids.count)
            for (index, location) in zip(candidates, try RebuildStore.indexLocations(of: candidates.map { ids[$0] }, db)) {
                located[index] = location
            }
            // Events this pass puts here whose lookup entry names another hour (and that did not
            // move in from there: those hours' files were folded already): their history is
            // folded again before they are placed. An event that moved in from one hour while
            // its entry names a third (a stale record there, placed by an earlier rebuild whose
            // lookup entry was lost) is folded again too.
            var indexedElsewhere = candidates.compactMap { index -> (id: ExactText, hours: Set<Int>)? in
                guard let at = located[index], at.hour != hour.hoursSinceEpoch,
                      !(moved[ids[index]]?.contains(at.hour) ?? false) else { return nil }
                return (ids[index], [at.hour])
            }
            // Events with no lookup entry at all: in a sound database every stored event has
            // one, so theirs was lost (deleted by hand, say). A row of theirs in another hour
            // means this hour's files may not hold their whole history (a stale record dated
            // here, the event deleted there): they are folded again over that hour's files too,
            // so that a deleted event never comes back here as valid.
            let unindexed = candidates.filter { located[$0] == nil }
            if !unindexed.isEmpty {
                for (id, hours) in try RebuildStore.otherHoursHolding(unindexed.map { ids[$0] }, except: hour, db) {
                    indexedElsewhere.append((id, hours))
                }
            }
            let otherHours = Dictionary(indexedElsewhere.map { ($0.id, $0.hours) }, uniquingKeysWith: { $0.union($1) })
            for (id, folded) in try refoldEventsIndexedElsewhere(indexedElsewhere) {
                let index = pass.slots[id]!
                events[index] = folded
                eventHours[index] = folded.hour
                if folded.hour == hour.hoursSinceEpoch { staleCopiesIn.formUnion(otherHours[id, default: []].subtracting([hour.hoursSinceEpoch])) }
            }
            // Events stored here as deleted that the fold finds valid, or deleted by fewer kinds
            // or later: a deletion only grows, so part of their history was not read (a move whose
            // `event_moves` row was lost left a deleting file under an hour they moved through).
            // They are folded again over every file that holds a delivery of theirs, found
            // through `file_hours`; what that finds stands (the stored row was what was wrong).
            if !storedDeletions.isEmpty {
                // In memory order (the events as first met), not byte order: each id's bytes are
                // read once, and visiting them in byte order would miss the cache on each.
                var differing = Set<ExactText>()
                for index in ids.indices where eventHours[index] == hour.hoursSinceEpoch
                    && storedDeletions.lacks(ids[index], in: events[index].state?.deletion) {
                    differing.insert(ids[index])
                }
                let alsoFrom = Set(differing.flatMap { otherHours[$0, default: []] })
                for (id, folded) in try refoldThroughFileHours(differing, startingFrom: alsoFrom) {
                    let index = pass.slots[id]!
                    events[index] = folded
                    eventHours[index] = folded.hour
                }
            }
            // A tombstone still waits for an event this hour holds only when the event's lookup
            // entry was lost (deleted by hand, say) as it arrived: the event is here, so the
            // tombstone applies now, as ingest applies one when its event arrives. The smaller of
            // the two (usually the waiting tombstones) is looked up in the other.
            if !waitingTombstones.isEmpty {
                let meeting: [(id: ExactText, index: Int)] = waitingTombstones.count <= ids.count
                    ? waitingTombstones.keys.compactMap { id in pass.slots[id].map { (id, $0) } }
                    : ids.indices.compactMap { waitingTombstones[ids[$0]] == nil ? nil : (ids[$0], $0) }
                var settled: [(id: ExactText, files: [Int64])] = []
                for (id, index) in meeting where eventHours[index] == hour.hoursSinceEpoch {
                    guard let waiting = waitingTombstones[id] else { continue }
                    // Their joined deletion is one tombstone received at the earliest of them.
                    _ = MergeRule.apply(.tombstone(eventID: id.text, receivedTime: waiting.deletion.deletedAt), to: &events[index].state)
                    settled.append((id, waiting.files))
                }
                try RebuildStore.settlePendingTombstones(settled, hour: hour, db)
                settledIDs += settled.map(\.id)
            }
            pass.slots = [:]
            // Each rebuilt event is compared with the stored row its lookup entry names, in
            // stored row_id order (a stored row_id is random with respect to event_id); the
            // events with no stored row to compare with are then written as new rows, in
            // event_id order. Damaged entries may name one row for several events: only the
            // event the row holds meets it, the others get new rows.
            var stored: [(rowID: Int64, index: Int)] = []
            var fresh: [Int] = []
            stored.reserveCapacity(ids.count)
            for index in byID {
                let eventHour = eventHours[index]
                guard eventHour != Int.min else { continue }
                guard eventHour == hour.hoursSinceEpoch else {
                    elsewhere[ids[index]] = eventHour
                    continue
                }
                if let at = located[index], at.hour == hour.hoursSinceEpoch {
                    stored.append((at.rowID, index))
                } else {
                    fresh.append(index)
                }
            }
            stored.sort { $0.rowID < $1.rowID }
            let planned = stored.map { (rowID: Optional($0.rowID), index: $0.index) } + fresh.map { (rowID: nil, index: $0) }
            // Formatted (and counted) on a second thread while this one compares and writes.
            let folded = events, hourNumber = hour.hoursSinceEpoch, batchID = batchID, dryRun = dryRun
            events = []
            let encoded = EncodedRows(count: planned.count) { i in
                let event = folded[planned[i].index]
                return (hourNumber, PartitionRow(state: event.state!, firstBatch: event.firstBatch, lastBatch: dryRun ? event.firstBatch : batchID))
            }
            defer { encoded.cancel() }
            var deltas: [Int: HourDelta] = [:]
            for (n, planned) in planned.enumerated() {
                try patch.apply(n, of: encoded, storedAt: planned.rowID)
            }
            encoded.addDeltas(to: &deltas)
            let counts = deltas[hourNumber] ?? HourDelta()
            rows += Int(counts.rows)
            valid += Int(counts.valid)
            checksum = checksum &+ counts.checksum
            try Summaries.apply(counts, hour: hour.label, batchID: batchID, db)
        }

        /// Folds these events again over every file that holds a delivery of theirs: from the
        /// files of this hour (and of `others`, where rows of theirs were found), the hours the
        /// files carrying them touched (`file_hours`), then those hours' files, until no new
        /// hour appears. Only for events the first fold missed part of (rare: a damaged
        /// `event_moves`); it reads the files of the hours those events passed through, and of
        /// any hour a file carrying them touched.
        private mutating func refoldThroughFileHours(_ only: Set<ExactText>, startingFrom others: Set<Int>) throws -> [(ExactText, Folded)] {
            guard !only.isEmpty else { return [] }
            var hours = others.union([hour.hoursSinceEpoch])
            while true {
                let sources = try RebuildStore.files(touching: hours.map(PartitionHour.init(hoursSinceEpoch:)), dataFolder: dataFolder, db)
                for (fileID, lines) in try RebuildStore.rejectedLines(in: sources.map(\.fileID).filter { rejected[$0] == nil }, db) {
                    rejected[fileID] = lines
                }
                var refolded = Folding(extraFiles: [], movedEvents: [:], only: only, expected: only.count)
                try RebuildJob.read(sources, into: &refolded, settingAside: nil, rejected: rejected)
                let reached = hours.union(try RebuildStore.hoursTouched(byFiles: refolded.carriers, db))
                if reached == hours { return Array(zip(refolded.ids, refolded.events)) }
                hours = reached
            }
        }

        /// A stale or deleting delivery may name this hour for an event whose row is in
        /// another (`indexed`: the events, with the hours event_index gives, or whose tables
        /// hold a row of an event that lost its entry): its files of this hour do not hold its
        /// whole history. Those events are folded again over the files of those hours (and
        /// the hours they moved through), before deciding where they belong. (An event that
        /// moved into this hour was folded over the files of the hours it came from already.)
        private mutating func refoldEventsIndexedElsewhere(_ indexed: [(id: ExactText, hours: Set<Int>)]) throws -> [(ExactText, Folded)] {
            guard !indexed.isEmpty else { return [] }
            let hourOf = Dictionary(indexed.map { ($0.id, $0.hours) }, uniquingKeysWith: { $0.union($1) })
            var hours = Set(hourOf.values.joined())
            for other in hours {
                for (id, from) in try RebuildStore.eventsMovedInto(PartitionHour(hoursSinceEpoch: other), db) where hourOf[id] != nil {
                    hours.formUnion(from)
                }
            }
            let more = try RebuildStore.files(touching: hours.map(PartitionHour.init(hoursSinceEpoch:)), dataFolder: dataFolder, db)
            var all = Dictionary(files.map { ($0.fileID, $0) }, uniquingKeysWith: { a, _ in a })
            for file in more { all[file.fileID] = file }
            var refolded = Folding(extraFiles: [], movedEvents: [:], only: Set(hourOf.keys), expected: hourOf.count)
            for (fileID, lines) in try RebuildStore.rejectedLines(in: more.map(\.fileID), db) { rejected[fileID] = lines }
            try RebuildJob.read(all.values.sorted { $0.fileID < $1.fileID }, into: &refolded, settingAside: nil, rejected: rejected)
            return Array(zip(refolded.ids, refolded.events))
        }
    }

    struct Folded {
        /// Never nil once a delivery is folded (optional so the merge rule applies in place).
        var state: EventState?
        var firstBatch: Int64

        /// The hour of the event's record (hours since the epoch), Int.min when it has none.
        var hour: Int { state?.record?.eventTime.hour.hoursSinceEpoch ?? Int.min }
    }

    /// Deliveries folded with the merge rule per event_id, in the order given: all those read
    /// (a pass reads only its own share: the first pass sets the others' lines aside), or only
    /// the named events, skipping the deliveries of files read only for events that moved in.
    struct Folding {
        let extraFiles: Set<Int64>
        let movedEvents: [ExactText: Set<Int>]
        let only: Set<ExactText>?
        /// Each event's place in `ids` and `events`, which grow in the order events are first met.
        var slots: [ExactText: Int] = [:]
        var ids: [ExactText] = []
        var events: [Folded] = []
        /// With `only`: the files that held a delivery of those events.
        var carriers = Set<Int64>()

        init(extraFiles: Set<Int64>, movedEvents: [ExactText: Set<Int>], only: Set<ExactText>?, expected: Int) {
            self.extraFiles = extraFiles
            self.movedEvents = movedEvents
            self.only = only
            slots.reserveCapacity(expected)
            ids.reserveCapacity(expected)
            events.reserveCapacity(expected)
        }

        mutating func add(_ delivery: Delivery, from file: RebuildStore.SourceFile) {
            let id = ExactText(delivery.eventID)
            if let only {
                guard only.contains(id) else { return }
                carriers.insert(file.fileID)
            } else {
                if extraFiles.contains(file.fileID) && movedEvents[id] == nil { return }
            }
            var late = false
            if case .record(let r) = delivery, let mark = file.watermarkBefore, r.eventTime < mark { late = true }
            if let slot = slots[id] {
                let hadRecord = events[slot].state?.record != nil
                _ = MergeRule.apply(delivery, to: &events[slot].state, late: late)
                // The first batch is the one that first gave the event a record.
                if !hadRecord && events[slot].state?.record != nil { events[slot].firstBatch = file.batchID }
            } else {
                var state: EventState?
                _ = MergeRule.apply(delivery, to: &state, late: late)
                slots[id] = events.count
                ids.append(id)
                events.append(Folded(state: state, firstBatch: file.batchID))
            }
        }
    }

    /// Reads the archived files (each verified against the ledger's SHA-256 as it is read) and
    /// folds their deliveries in ledger order. Decompression, hashing and parsing run on a
    /// second thread (`FileDecoder`) while this one folds. With `spills`, the lines of later
    /// passes are set aside there unparsed, in order, with where they came from.
    /// `rejected`: the lines ingest rejected, by ledger file id (rebuild skips them).
    static func read(_ files: [RebuildStore.SourceFile], into folding: inout Folding, settingAside spills: PassSpills?,
                     rejected: [Int64: Set<Int>], isCancelled: () -> Bool = { false }) throws {
        var paths: [String] = []
        paths.reserveCapacity(files.count)
        for file in files {
            guard let path = Ledger.readablePath(location: file.location, sourcePath: file.sourcePath, sha256: file.sha256) else {
                throw TidemarkError("rebuild", file.location, cause: "archived file \(file.name) (ledger file \(file.fileID)) is missing",
                                    hint: "restore it from backup into that path, then rerun; hours that do not need the file can be rebuilt one at a time with --hour H", exit: .noInput)
            }
            paths.append(path)
        }
        let parser = EventLineParser.forPublishedLines
        // A line that does not parse stays here: every pass would reject it alike.
        var divert: FileDecoder.Divert?
        if let spills, spills.passes > 1 {
            divert = { file, line, bytes in try spills.divert(file: file, line: line, bytes: bytes, parser: parser) }
        }
        try fold(FileDecoder(paths: paths, parser: parser, maxOutputBytes: .max, divert: divert), files, into: &folding, rejected: rejected,
                 isCancelled: isCancelled)
    }

    /// Folds the lines a first pass set aside for a later one (their files were verified then).
    static func read(_ spill: LineSpill, of files: [RebuildStore.SourceFile], into folding: inout Folding,
                     rejected: [Int64: Set<Int>], isCancelled: () -> Bool) throws {
        try fold(FileDecoder(spill: spill, parser: EventLineParser.forPublishedLines), files, into: &folding, rejected: rejected,
                 isCancelled: isCancelled)
    }

    /// Folds what a decoder hands over, file by file, checking each file's end.
    private static func fold(_ decoder: FileDecoder, _ files: [RebuildStore.SourceFile], into folding: inout Folding,
                             rejected: [Int64: Set<Int>], isCancelled: () -> Bool) throws {
        defer { decoder.cancel() }
        while let piece = decoder.next() {
            if isCancelled() { throw CancellationError() }
            let file = files[piece.fileIndex]
            let skipped = rejected[file.fileID] ?? []
            // A file that fails its SHA-256 check aborts the whole rebuild (one transaction), so
            // folding its lines before the check is safe.
            for line in piece.lines {
                guard case .delivery(let number, let delivery) = line, skipped.isEmpty || !skipped.contains(number) else { continue }
                folding.add(delivery, from: file)
            }
            guard let end = piece.end else { continue }
            let changed = TidemarkError("rebuild", file.location, cause: "archived file \(file.name) no longer matches its SHA-256 in the ledger",
                                        hint: "restore the original file; rebuild refuses to use changed raw data (hours that do not need the file can be rebuilt one at a time with --hour H)", exit: .dataError)
            switch end {
            case .success(let summary):
                guard summary.sha256 == file.sha256 else { throw changed }
            case .failure(.gzip):
                throw changed // it was valid gzip when it was applied
            case .failure(.io(let error)):
                throw error
            }
        }
    }
}
