import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private let stopRequestedFlag = Atomic<Int32>(0)
private let stopRequestCount = Atomic<Int32>(0)

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
        signal(SIGTERM) { sig in
            stopRequestedFlag.store(sig, ordering: .relaxed)
            stopRequestCount.add(1, ordering: .relaxed)
        }
        signal(SIGINT) { sig in
            stopRequestedFlag.store(sig, ordering: .relaxed)
            stopRequestCount.add(1, ordering: .relaxed)
        }
    }

    /// A second SIGINT/SIGTERM: the operator will not wait for what the first one lets finish.
    public static var insisted: Bool { stopRequestCount.load(ordering: .relaxed) > 1 }

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
