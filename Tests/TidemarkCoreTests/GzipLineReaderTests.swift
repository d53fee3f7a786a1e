import Foundation
import Testing
@testable import TidemarkCore

@Suite struct GzipLineReaderTests {
    func lines(_ path: String, limit: Int64 = 1 << 30) throws -> [String] {
        var out: [String] = []
        _ = try GzipLineReader(path: path, maxOutputBytes: limit).forEachLine { _, content in
            switch content {
            case .bytes(let b): out.append(String(decoding: b, as: UTF8.self))
            case .overlong(let n): out.append("<overlong \(n)>")
            }
        }
        return out
    }

    @Test func readsConcatenatedMembers() throws {
        let got = try lines(fixture("decode/two-members/events.ndjson.gz"))
        #expect(got.count == 2)
        #expect(got[0].contains("\"m1\"") && got[1].contains("\"m2\""))
    }

    @Test func truncatedFixtureFails() {
        #expect(throws: GzipError.self) { try lines(fixture("decode/truncated/events.ndjson.gz")) }
    }

    /// A corrupt file's reason says where: junk after a whole member is named as such, a bad
    /// checksum with its member and offset.
    @Test func corruptionIsReportedWithItsMemberAndOffset() throws {
        let folder = TestFolder()
        let member = GzipWriter.gzip("{\"event_id\":\"a\"}\n")
        let junk = folder.root + "/junk.gz"
        createTestFile(atPath: junk, contents: Data(member + Array("trailing junk".utf8)))
        #expect(throws: GzipError.corrupt("what follows gzip member 1 is not gzip (incorrect header check, near byte \(member.count + 2) of \(member.count + 13) read)")) {
            try lines(junk)
        }
        var badCRC = member + member
        badCRC[badCRC.count - 6] ^= 0xFF // the second member's CRC-32
        let crc = folder.root + "/crc.gz"
        createTestFile(atPath: crc, contents: Data(badCRC))
        #expect(throws: GzipError.corrupt("incorrect data check in gzip member 2, near byte \(badCRC.count - 4)")) { try lines(crc) }
    }

    @Test func everyTruncationOffsetIsDetected() throws {
        let folder = TestFolder()
        let text = (0..<200).map { "{\"event_id\":\"e\($0)\",\"pad\":\"\(String(repeating: "x", count: $0 % 37))\"}\n" }.joined()
        let full = GzipWriter.gzip(text)
        for cut in stride(from: 0, to: full.count, by: max(1, full.count / 97)) + [full.count - 1, full.count - 4, full.count - 8] {
            let path = folder.root + "/cut.gz"
            createTestFile(atPath: path, contents: Data(full[0..<cut]))
            #expect(throws: GzipError.self, "cut at \(cut) of \(full.count)") { try lines(path) }
        }
        let path = folder.root + "/whole.gz"
        createTestFile(atPath: path, contents: Data(full))
        #expect(try lines(path).count == 200)
    }

    @Test func flippedBytesAreDetectedOrHarmless() throws {
        let folder = TestFolder()
        let text = (0..<300).map { "line \($0) " + String(repeating: "abc", count: $0 % 20) + "\n" }.joined()
        let full = GzipWriter.gzip(text)
        var random = SeededRandom(seed: 3)
        var detected = 0
        for _ in 0..<200 {
            var bytes = full
            let at = Int.random(in: 0..<bytes.count, using: &random)
            bytes[at] ^= UInt8.random(in: 1...255, using: &random)
            let path = folder.root + "/flip.gz"
            createTestFile(atPath: path, contents: Data(bytes))
            do {
                let got = try lines(path)
                // zlib's CRC-32 and length check make silent corruption of the content impossible;
                // a flip in the header's mtime or OS byte is harmless.
                #expect(got.joined(separator: "\n") + "\n" == text)
            } catch is GzipError {
                detected += 1
            }
        }
        #expect(detected > 150)
    }

    @Test func zeroPaddingAfterTheLastMemberIsIgnored() throws {
        let folder = TestFolder()
        folder.landBytes("padded.ndjson.gz", GzipWriter.gzip("a\nb\n") + [UInt8](repeating: 0, count: 300_000))
        #expect(try lines(folder.landing + "/padded.ndjson.gz") == ["a", "b"])
        folder.landBytes("junk.ndjson.gz", GzipWriter.gzip("a\n") + [0, 0, 7, 0])
        #expect(throws: GzipError.self) { try lines(folder.landing + "/junk.ndjson.gz") }
    }

    @Test func emptyAndNotGzip() throws {
        let folder = TestFolder()
        folder.landBytes("empty.ndjson.gz", [])
        folder.landBytes("plain.ndjson.gz", Array("{\"event_id\":\"x\"}\n".utf8))
        #expect(throws: GzipError.empty) { try lines(folder.landing + "/empty.ndjson.gz") }
        #expect(throws: GzipError.notGzip) { try lines(folder.landing + "/plain.ndjson.gz") }
    }

    @Test func bombGuardStopsEarly() throws {
        let folder = TestFolder()
        let writer = GzipWriter(level: 9)
        let zeros = [UInt8](repeating: 0x30, count: 1 << 20)
        for _ in 0..<8 { writer.write(zeros) }
        folder.landBytes("bomb.ndjson.gz", writer.finish())
        #expect(throws: GzipError.tooLarge(limit: 4 << 20)) { try lines(folder.landing + "/bomb.ndjson.gz", limit: 4 << 20) }
    }

    @Test func lastLineWithoutNewlineAndOverlongLines() throws {
        let folder = TestFolder()
        let long = String(repeating: "y", count: (1 << 20) + 10)
        folder.landBytes("x.ndjson.gz", GzipWriter.gzip("a\n\(long)\nb\nc"))
        #expect(try lines(folder.landing + "/x.ndjson.gz") == ["a", "<overlong \((1 << 20) + 10)>", "b", "c"])
    }

    @Test func sha256MatchesKnownVectors() {
        #expect(SHA256.hex(of: Array("".utf8)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var hasher = SHA256()
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        for chunk in stride(from: 0, to: million.count, by: 4093) { hasher.update(million[chunk..<min(million.count, chunk + 4093)]) }
        #expect(hasher.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
