import CSQLiteTuning
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Named crash points for fault-injection tests: when `TIDEMARK_FAULT` names the point (and
/// `TIDEMARK_FAULT_AFTER` hits have passed, default 0), the process kills itself with SIGKILL
/// there, exactly as a power cut or OOM kill would.
public enum FaultPoint {
    private static let configured: (name: String, after: Int)? = {
        guard let raw = getenv("TIDEMARK_FAULT") else { return nil }
        let after = getenv("TIDEMARK_FAULT_AFTER").flatMap { Int(String(cString: $0)) } ?? 0
        return (String(cString: raw), after)
    }()
    private static let hits = Atomic<Int>(0)

    private static let paused = Atomic<Int>(0)

    /// Test hook for concurrency tests: the first time the point named by `TIDEMARK_PAUSE_AT`
    /// is reached, sleep there for `TIDEMARK_PAUSE_SECONDS` (default 2), holding whatever the
    /// job holds. With `TIDEMARK_PAUSE_NOTICE`, the file it names is created as the pause
    /// begins, so that a test acts while the job is certainly there.
    public static func pause(_ name: String) {
        guard let raw = getenv("TIDEMARK_PAUSE_AT"), String(cString: raw) == name,
              paused.add(1, ordering: .relaxed).newValue == 1 else { return }
        if let notice = getenv("TIDEMARK_PAUSE_NOTICE") {
            let fd = open(notice, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            if fd >= 0 { close(fd) }
        }
        let seconds = getenv("TIDEMARK_PAUSE_SECONDS").flatMap { Double(String(cString: $0)) } ?? 2
        usleep(UInt32(seconds * 1_000_000))
    }

    /// Test hook: with `TIDEMARK_GROUP_TRACE` naming a file, each large merge group appends one
    /// line there, `events=N from_fold=M`: how many of its events took the group's own fold
    /// (`GroupFold`), so that a test can tell that path ran.
    static func traceGroup(events: Int, fromFold: @autoclosure () -> Int) {
        guard let path = getenv("TIDEMARK_GROUP_TRACE") else { return }
        let line = Array("events=\(events) from_fold=\(fromFold())\n".utf8)
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// Test hook for the disk-full path of archive moves: with `TIDEMARK_ARCHIVE_SPACE_FILES`
    /// set to N, the moves after the first N of a run fail as on a full disk (ENOSPC), which
    /// a test cannot otherwise cause without mounting a small file system.
    static func archiveIsFull() -> Bool {
        guard let raw = getenv("TIDEMARK_ARCHIVE_SPACE_FILES"), let room = Int(String(cString: raw)) else { return false }
        return archiveMoves.add(1, ordering: .relaxed).newValue > room
    }
    private static let archiveMoves = Atomic<Int>(0)

    /// Test hook for a mapped page that cannot be read: when `TIDEMARK_SIGBUS_AT` names the
    /// point, the process maps a scratch file (`TIDEMARK_SIGBUS_SCRATCH`), shortens it and reads
    /// the page, which the kernel answers with SIGBUS, as it does for a failing device.
    static func readPastAShortenedMap(_ name: String) {
        guard let raw = getenv("TIDEMARK_SIGBUS_AT"), String(cString: raw) == name,
              let scratch = getenv("TIDEMARK_SIGBUS_SCRATCH") else { return }
        tidemark_read_past_a_shortened_map(scratch)
    }

    /// Test hook for a device error on a folder's fsync: with `TIDEMARK_FOLDER_SYNC_ERRNO` set
    /// to an errno value, every folder sync fails with it after fsync itself succeeded.
    static let folderSyncFailure: Int32? = getenv("TIDEMARK_FOLDER_SYNC_ERRNO").flatMap { Int32(String(cString: $0)) }

    public static func hit(_ name: String) {
        guard let configured, configured.name == name else { return }
        let count = hits.add(1, ordering: .relaxed).newValue
        if count > configured.after { kill(getpid(), SIGKILL) }
    }
}
