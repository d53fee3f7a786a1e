import Foundation
import Testing
@testable import TidemarkCore

@Suite struct FileSystemTests {
    @Test func relativeFoldersWorkFromTheCommandLine() throws {
        // Cron jobs often run with relative --landing/--data from their working directory.
        let f = TestFolder()
        let run = try Binary.run(["ingest", "--landing", "landing", "--data", "data"], cwd: f.root)
        #expect(FileSystem.isFolder(f.root + "/data"))
        let nested = try Binary.run(["ingest", "--landing", "landing", "--data", "rel/data"], cwd: f.root)
        #expect(nested.status == 0, "\(nested.stderr)")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(FileSystem.isFolder(f.root + "/rel/data"))
    }

    @Test func makeFolderCreatesParentsAndNamesTheRealCause() throws {
        let f = TestFolder()
        try FileSystem.makeFolder(f.root + "/a/b//c/")
        #expect(FileSystem.isFolder(f.root + "/a/b/c"))
        try FileSystem.makeFolder(f.root + "/a/b/c") // already there: fine
        FileManager.default.createFile(atPath: f.root + "/file", contents: Data("x".utf8))
        #expect {
            try FileSystem.makeFolder(f.root + "/file/sub")
        } throws: { error in
            let error = error as? FileSystemError
            return error?.path == f.root + "/file" && error?.cause == "something that is not a folder is in the way"
        }
    }

    @Test func parentFolders() {
        #expect(FileSystem.parentFolder(of: "a/b/c") == "a/b")
        #expect(FileSystem.parentFolder(of: "/c") == "/")
        #expect(FileSystem.parentFolder(of: "a/b/") == "a")
        #expect(FileSystem.parentFolder(of: "D") == nil)
        #expect(FileSystem.parentFolder(of: "m.prom") == nil)
    }

    @Test func copyStreamsTheBytesAndLeavesNoTemporaryFile() throws {
        let f = TestFolder()
        var random = SeededRandom(seed: 3)
        let bytes = (0..<3_000_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        FileManager.default.createFile(atPath: f.root + "/source", contents: Data(bytes))
        try FileSystem.copy(f.root + "/source", to: f.root + "/copy")
        #expect(FileManager.default.contents(atPath: f.root + "/copy") == Data(bytes))
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.root).sorted() == ["copy", "landing", "source"])
    }
}
