import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private let stopRequestedFlag = Atomic<Int32>(0)

/// SIGINT/SIGTERM handling for long-running jobs: the signal only sets a flag; jobs check it
/// between files, finish (commit or roll back) the transaction in hand, and return.
public enum StopSignal {
    public static func install() {
        // A process started by another program can inherit a mask with these signals
        // blocked (Foundation's Process does this); a blocked SIGTERM would never arrive.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        signal(SIGTERM) { sig in stopRequestedFlag.store(sig, ordering: .relaxed) }
        signal(SIGINT) { sig in stopRequestedFlag.store(sig, ordering: .relaxed) }
    }

    public static var requested: Bool { stopRequestedFlag.load(ordering: .relaxed) != 0 }
    /// The signal number received, 0 if none.
    public static var signalNumber: Int32 { stopRequestedFlag.load(ordering: .relaxed) }

    /// Sleeps up to `seconds`, waking early when a stop is requested.
    public static func sleep(seconds: Double) {
        var remaining = seconds
        while remaining > 0 && !requested {
            let step = min(remaining, 0.1)
            usleep(UInt32(step * 1_000_000))
            remaining -= step
        }
    }
}

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
    /// job holds.
    public static func pause(_ name: String) {
        guard let raw = getenv("TIDEMARK_PAUSE_AT"), String(cString: raw) == name,
              paused.add(1, ordering: .relaxed).newValue == 1 else { return }
        let seconds = getenv("TIDEMARK_PAUSE_SECONDS").flatMap { Double(String(cString: $0)) } ?? 2
        usleep(UInt32(seconds * 1_000_000))
    }

    public static func hit(_ name: String) {
        guard let configured, configured.name == name else { return }
        let count = hits.add(1, ordering: .relaxed).newValue
        if count > configured.after { kill(getpid(), SIGKILL) }
    }
}
