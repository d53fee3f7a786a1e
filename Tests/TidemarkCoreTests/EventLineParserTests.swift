import Foundation
import Testing
@testable import TidemarkCore

@Suite struct EventLineParserTests {
    let parser = EventLineParser(now: try! Timestamp.parse("2025-07-31T00:00:00Z").get())

    func record(_ line: String) -> EventRecord? {
        if case .success(.record(let r)) = parser.parse(line) { return r }
        return nil
    }

    func reason(_ line: String) -> String? {
        if case .failure(let r) = parser.parse(line) { return r.reason }
        return nil
    }

    /// A value quoted in a reason is a JSON string of its first 64 characters, control
    /// characters escaped and the cut marked inside the quotes.
    @Test func longValuesAreQuotedCutAndEscaped() {
        let time = "\\t" + String(repeating: "x", count: 99) // the JSON escape \t, then 99 x: 100 characters
        let r = reason(#"{"event_id":"e","user_id":"u","event_type":"click","event_time":"\#(time)"}"#)
        #expect(r?.hasPrefix("event_time \"\\t" + String(repeating: "x", count: 63) + "…\": ") == true, "\(r ?? "accepted")")
    }

    @Test func fullRecord() {
        let r = record(#"{"event_id":"e1","user_id":"u1","event_type":"click","event_time":"2025-07-30T12:00:00+02:00","received_time":"2025-07-30T10:00:01.5Z","is_valid":true}"#)
        #expect(r?.eventID == "e1")
        #expect(r?.eventTime.rfc3339 == "2025-07-30T10:00:00.000000000Z")
        #expect(r?.receivedTime?.rfc3339 == "2025-07-30T10:00:01.500000000Z")
        #expect(r?.isValid == true)
        #expect(r?.extra == nil)
    }

    @Test func defaultsAndExtras() {
        let r = record(#" { "event_id" : "e1", "user_id":"u1","event_type":"click","event_time":"2025-07-30T10:00:00Z", "z":1.5e3, "a":{"y":[true,null],"x":"\u00e9"} } "#)
        #expect(r?.isValid == true)
        #expect(r?.receivedTime == nil)
        #expect(r?.extra == #"{"a":{"x":"é","y":[true,null]},"z":1.5e3}"#)
    }

    @Test func tombstones() {
        #expect(parser.parse(#"{"event_id":"e1"}"#) == .success(.tombstone(eventID: "e1", receivedTime: nil)))
        #expect(parser.parse(#"{"event_id":"e1","is_valid":false}"#) == .success(.tombstone(eventID: "e1", receivedTime: nil)))
        let t = try! Timestamp.parse("2025-07-30T10:00:00Z").get()
        #expect(parser.parse(#"{"event_id":"e1","received_time":"2025-07-30T10:00:00Z"}"#) == .success(.tombstone(eventID: "e1", receivedTime: t)))
        #expect(reason(#"{"event_id":"e1","is_valid":true}"#) == "missing field user_id")
        // No record field but other keys: a deletion carrying more than a tombstone may.
        #expect(reason(#"{"event_id":"e1","note":"x"}"#) == #"missing field user_id: a record needs user_id, event_type and event_time, and a tombstone may hold only event_id, received_time and "is_valid": false (this line also has "note")"#)
        #expect(reason(#"{"event_id":"e1","is_valid":false,"a":1,"b":2,"c":3,"d":4}"#)?.hasSuffix(#"(this line also has "a", "b", "c", …)"#) == true)
        #expect(reason(#"{"event_id":"e1","user_id":"u","note":"x"}"#) == "missing field event_type")
        // A byte order mark is named as such; more than nanoseconds is named as such.
        #expect(reason("\u{FEFF}" + #"{"event_id":"e1"}"#) == "invalid JSON at byte 1: expected '{', found a UTF-8 byte order mark (BOM): write the file as UTF-8 without one")
        #expect(reason(#"{"event_id":"e","user_id":"u","event_type":"click","event_time":"2025-07-30T10:00:00.1234567891Z"}"#)
                == #"event_time "2025-07-30T10:00:00.1234567891Z": more than 9 fractional digits (nanoseconds are the finest Tidemark keeps)"#)
    }

    @Test func flagDeletion() {
        let r = record(#"{"event_id":"e1","user_id":"u1","event_type":"click","event_time":"2025-07-30T10:00:00Z","is_valid":false}"#)
        #expect(r?.isValid == false)
    }

    @Test func rejections() {
        let base = #""user_id":"u1","event_type":"click","event_time":"2025-07-30T10:00:00Z""#
        #expect(reason("not json")?.hasPrefix("invalid JSON at byte 1") == true)
        #expect(reason("[1,2]") == "line is JSON but not an object")
        // A repeated key inside is valid JSON (events alone may not repeat one).
        #expect(reason(#"[{"a":1,"a":2}]"#) == "line is JSON but not an object")
        #expect(reason("\"text\"") == "line is JSON but not an object")
        #expect(reason(#"{"user_id":"u1"}"#) == "missing field event_id")
        #expect(reason(#"{"event_id":5,\#(base)}"#) == "event_id must be a string, found a number")
        #expect(reason(#"{"event_id":"","user_id":"u"}"#) == "event_id is empty")
        #expect(reason(#"{"event_id":"e","user_id":7,"event_type":"c","event_time":"2025-07-30T10:00:00Z"}"#) == "user_id must be a string, found a number")
        #expect(reason(#"{"event_id":"e",\#(base),"is_valid":"yes"}"#) == "is_valid must be true or false, found a string")
        #expect(reason(#"{"event_id":"e","user_id":"u1","event_type":"click","event_time":"2025-07-30T10:00:00"}"#) == #"event_time "2025-07-30T10:00:00": no time zone (add Z or an offset like +02:00)"#)
        #expect(reason(#"{"event_id":"e","user_id":"u1","event_type":"click","event_time":"2025-02-30T10:00:00Z"}"#)?.contains("not a real date-time") == true)
        #expect(reason(#"{"event_id":"e","user_id":"u1","event_type":"click","event_time":"1969-12-31T23:59:59Z"}"#)?.contains("before 1970") == true)
        #expect(reason(#"{"event_id":"e","user_id":"u1","event_type":"click","event_time":"2025-08-01T00:00:01Z"}"#)?.contains("more than 24 h ahead") == true)
        #expect(reason(#"{"event_id":"e",\#(base),"received_time":"yesterday"}"#)?.hasPrefix("received_time \"yesterday\"") == true)
        // A received_time far ahead (a producer's clock gone wrong) would win every later correction.
        #expect(reason(#"{"event_id":"e",\#(base),"received_time":"2099-01-01T00:00:00Z"}"#) == #"received_time "2099-01-01T00:00:00Z" is more than 24 h ahead of the ingest clock (2025-07-31T00:00:00.000000000Z)"#)
        #expect(reason(#"{"event_id":"e","received_time":"2025-08-01T00:00:01Z"}"#)?.contains("more than 24 h ahead") == true)
        #expect(reason(#"{"event_id":"e",\#(base),"received_time":"2025-08-01T00:00:00Z"}"#) == nil)
        #expect(reason(#"{"event_id":"e","event_id":"f",\#(base)}"#) == #"duplicate key "event_id" in one object"#)
        #expect(reason(#"{"event_id":"e\ud800",\#(base)}"#) == #"invalid JSON string: lone surrogate \uD800"#)
        #expect(reason(#"{"event_id":"e\udc00x",\#(base)}"#) == #"invalid JSON string: lone surrogate \uDC00"#)
        #expect(reason(#"{"event_id":"e",\#(base)} x"#)?.contains("unexpected text after the object") == true)
        #expect(reason(#"{"event_id":"e",\#(base),}"#) != nil)
        #expect(reason(#"{"event_id":"e",\#(base),"n":01}"#) != nil)
        #expect(reason(#"{"event_id":"e",\#(base),"n":-}"#) != nil)
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(reason(#"{"event_id":"e",\#(base),"deep":\#(deep)}"#) == "nesting deeper than 64 levels (a field's value is level 1)")
        // The boundary: a value 64 levels down is kept, one 65 levels down is not.
        func nested(_ levels: Int, around inner: String) -> String { String(repeating: "[", count: levels) + inner + String(repeating: "]", count: levels) }
        #expect(reason(#"{"event_id":"e",\#(base),"deep":\#(nested(63, around: "1"))}"#) == nil)
        #expect(reason(#"{"event_id":"e",\#(base),"deep":\#(nested(64, around: ""))}"#) == nil)
        #expect(reason(#"{"event_id":"e",\#(base),"deep":\#(nested(64, around: "1"))}"#) == "nesting deeper than 64 levels (a field's value is level 1)")
    }

    @Test func invalidUTF8IsRejected() {
        var bytes = Array(#"{"event_id":"e","user_id":""#.utf8)
        bytes += [0xC3, 0x28] // invalid continuation
        bytes += Array(#"","event_type":"c","event_time":"2025-07-30T10:00:00Z"}"#.utf8)
        let result = bytes.withUnsafeBytes { parser.parse($0) }
        guard case .failure(let r) = result else { Issue.record("accepted invalid UTF-8"); return }
        #expect(r.reason.hasPrefix("invalid UTF-8"))
        // An encoded surrogate (CESU-style) is invalid UTF-8 too.
        var cesu = Array(#"{"event_id":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8)
        let r2 = cesu.withUnsafeMutableBytes { parser.parse(UnsafeRawBufferPointer($0)) }
        #expect((try? r2.get()) == nil)
    }

    @Test func sqlLookingTextIsJustText() {
        let evil = #"'); DROP TABLE partitions; --"#
        let r = record(#"{"event_id":"\#(evil)","user_id":"\#(evil)","event_type":"\#(evil)","event_time":"2025-07-30T10:00:00Z"}"#)
        #expect(r?.eventID == evil)
        #expect(r?.userID == evil)
    }

    @Test func jsonLineRoundTrips() {
        let r = EventRecord(eventID: "e\"1\n", userID: "ü", eventType: "click", eventTime: try! Timestamp.parse("2025-07-30T10:00:00.123Z").get(),
                            receivedTime: try! Timestamp.parse("2025-07-30T10:00:01Z").get(), isValid: false, extra: #"{"k":[1]}"#)
        let line = Delivery.record(r).jsonLine
        #expect(parser.parse(line) == .success(.record(r)))
    }

    /// Differential test against Foundation's JSONSerialization: same accept/reject decision on
    /// the JSON grammar, and the same values for accepted lines.
    @Test func agreesWithFoundationOnGeneratedLines() throws {
        var random = SeededRandom(seed: 42)
        let pieces = ["{", "}", "[", "]", ",", ":", "\"", "\\", "\\u00e9", "\\ud83d\\ude00", "\\ud800", "1", "-0", "1.5e3", "01", "true", "nul", "null", " ", "\"k\"", "é", "\u{7f}", "\t"]
        var agreed = 0
        for _ in 0..<3000 {
            // Start from a valid record and mutate it a little, so most lines are near-valid.
            var line = Array(#"{"event_id":"e1","user_id":"u\u00e9","event_type":"click","event_time":"2025-07-30T10:00:00Z","x":[1,{"y":null}]}"#)
            for _ in 0..<Int.random(in: 0...3, using: &random) {
                let at = Int.random(in: 0...line.count, using: &random)
                if Bool.random(using: &random), at < line.count {
                    line.remove(at: at)
                } else {
                    line.insert(contentsOf: pieces.randomElement(using: &random)!, at: at)
                }
            }
            let text = String(line)
            let ours = parser.parse(text)
            let foundation = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
            switch ours {
            case .success(let delivery):
                guard let object = foundation as? [String: Any] else {
                    Issue.record("we accepted what Foundation rejects: \(text)"); continue
                }
                #expect(object["event_id"] as? String == delivery.eventID, "\(text)")
                if case .record(let r) = delivery {
                    #expect(object["user_id"] as? String == r.userID, "\(text)")
                    #expect(object["event_type"] as? String == r.eventType, "\(text)")
                }
                agreed += 1
            case .failure(let rejection):
                // Grammar rejections must be rejections for Foundation too; contract
                // rejections (missing field, duplicate key, bad time) may be valid JSON.
                // Known leniency of Foundation: it accepts a trailing comma before } or ], which
                // RFC 8259 does not allow; we keep to the RFC.
                let trailingComma = text.range(of: #",\s*[}\]]"#, options: .regularExpression) != nil
                if (rejection.reason.hasPrefix("invalid JSON") || rejection.reason.hasPrefix("invalid UTF-8")) && !trailingComma {
                    #expect(foundation == nil || !(foundation is [String: Any]), "Foundation accepted: \(text) — we said \(rejection.reason)")
                } else {
                    agreed += 1
                }
            }
        }
        #expect(agreed > 100)
    }
}

/// Rebuild skips lines of other passes by hashing the event_id read off the line's start; that
/// must agree with hashing the parsed event_id whenever the line parses.
@Suite struct LeadingEventIDTests {
    let parser = EventLineParser(now: Timestamp(secondsSinceEpoch: 1_753_900_000))

    func leading(_ text: String) -> UInt64? {
        var copy = text
        return copy.withUTF8 { EventLineParser.leadingEventIDHash(UnsafeRawBufferPointer($0)) }
    }

    @Test func readsOnlyPlainLeadingIDs() {
        #expect(leading(#"{"event_id":"abc","user_id":"u"}"#) == stableHash("abc"))
        #expect(leading(#"{"event_id":"t1"}"#) == stableHash("t1"))
        #expect(leading(#"{ "event_id":"abc"}"#) == nil)           // not the exact prefix
        #expect(leading(#"{"user_id":"u","event_id":"abc"}"#) == nil) // not first
        #expect(leading(#"{"event_id":"a\"b"}"#) == nil)           // escape: the parse decides
        #expect(leading(#"{"event_id":"a\u0062"}"#) == nil)
        #expect(leading(#"{"event_id":""}"#) == nil)                 // empty is a rejection
        #expect(leading(#"{"event_id":"é"}"#) == nil)                // non-ASCII: the parse decides
        #expect(leading(#"{"event_id":"abc"#) == nil)                // unterminated
        #expect(leading(#"{"event_id":1}"#) == nil)
    }

    @Test func agreesWithTheParseOnMutatedLines() {
        var random = SeededRandom(seed: 7)
        let pieces = [#"\""#, #"\\"#, #"\u0041"#, #""event_id":"x""#, ",", " ", "é", "}", "{"]
        var decided = 0
        for n in 0..<5000 {
            var line = Array(#"{"event_id":"e-\#(n)","user_id":"u1","event_type":"view","event_time":"2025-07-30T10:00:00Z"}"#)
            for _ in 0..<Int.random(in: 0...2, using: &random) {
                let at = Int.random(in: 0...line.count, using: &random)
                line.insert(contentsOf: pieces.randomElement(using: &random)!, at: at)
            }
            let text = String(line)
            guard let hash = leading(text) else { continue }
            decided += 1
            if case .success(let delivery) = parser.parse(text) {
                #expect(stableHash(delivery.eventID) == hash, "\(text)")
            }
        }
        #expect(decided > 1000)
    }
}

/// Replays every input the fuzzer ever crashed on (scripts/fuzz-parser.sh keeps them as
/// fixtures) through the parser and the Foundation differential.
@Suite struct FuzzFindingsTests {
    @Test func fuzzFindingsStayFixed() throws {
        let folder = fixture("fuzz")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).filter { !$0.hasPrefix(".") }
        #expect(!names.isEmpty)
        for name in names {
            let bytes = try FileSystem.readAll(folder + "/" + name)
            let problem = bytes.withUnsafeBytes { ParserDifferential.check($0) }
            #expect(problem == nil, "\(name): \(problem ?? "")")
        }
    }

    /// The fuzzer is built outside the package from the sources `scripts/fuzz-parser.sh`
    /// lists: they must still compile on their own (a helper moved to a file it does not list
    /// once broke the script). Type-checking them, without the sanitizers, shows it in seconds.
    @Test func theFuzzScriptsSourcesCompileOnTheirOwn() throws {
        let root = repositoryRoot.path
        let script = try String(contentsOfFile: root + "/scripts/fuzz-parser.sh", encoding: .utf8)
        let sources = script.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasSuffix(".swift \\") }.map { String($0.dropLast(2)) }
        #expect(sources.contains("Fuzz/ParserFuzzTarget.swift") && sources.count >= 5, "\(sources)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["swiftc", "-typecheck", "-parse-as-library", "-module-name", "TidemarkFuzz"] + sources
        process.currentDirectoryURL = URL(fileURLWithPath: root)
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(String(decoding: output, as: UTF8.self).prefix(2000))")
    }
}
