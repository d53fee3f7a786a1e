import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private let stopRequestedFlag = Atomic<Int32>(0)
/// When the first stop request came (CLOCK_MONOTONIC nanoseconds), and whether another came
/// a second or more after it.
private let firstRequestAt = Atomic<Int64>(0)
private let insistedFlag = Atomic<Bool>(false)

/// Records a stop request (async-signal-safe: atomics and clock_gettime only).
private func noteStopRequest(_ sig: Int32) {
    stopRequestedFlag.store(sig, ordering: .relaxed)
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let nanos = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    let (exchanged, first) = firstRequestAt.compareExchange(expected: 0, desired: nanos, ordering: .relaxed)
    if !exchanged && nanos - first >= 1_000_000_000 { insistedFlag.store(true, ordering: .relaxed) }
}

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
        signal(SIGTERM) { sig in noteStopRequest(sig) }
        signal(SIGINT) { sig in noteStopRequest(sig) }
    }

    /// As `install`, for a job whose unit of work can be long (a rebuild's hour): the first
    /// SIGINT/SIGTERM asks it to stop after the unit in hand; after that the signals are back to
    /// their default, so a second one ends the process at once (its open transaction rolls back).
    public static func installStoppingOnce() {
        install()
        signal(SIGTERM) { sig in
            noteStopRequest(sig)
            signal(SIGTERM, SIG_DFL)
            signal(SIGINT, SIG_DFL)
        }
        signal(SIGINT) { sig in
            noteStopRequest(sig)
            signal(SIGTERM, SIG_DFL)
            signal(SIGINT, SIG_DFL)
        }
    }

    /// A second SIGINT/SIGTERM, a second or more after the first: the operator will not wait for
    /// what the first one lets finish. (One Ctrl-C can arrive twice at once, from the terminal and
    /// from a supervisor forwarding it to the process group: that is not insisting.)
    public static var insisted: Bool { insistedFlag.load(ordering: .relaxed) }

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
