import CSQLiteTuning

/// What ends the process when a page of a memory-mapped database cannot be read: the kernel
/// reports it as SIGBUS, which SQLite cannot catch, and by default the process dies with a core
/// dump and no word of which file failed. Only the executable prints and chooses exit codes, so
/// it prepares the report (`IngestOptions.mappedReadFault`); `Warehouse.mapForReading` arms it
/// around the reads that use the map, and maps nothing without one. Armed, a SIGBUS that is a
/// fault writes the report on stderr and exits with its code, as a crash would end the run
/// (what was committed stays); one sent by another process gets the action from before.
public struct MappedReadFault: Sendable {
    /// The report for a database (path) in a data folder: the bytes written on stderr, rendered
    /// up front since a signal handler can do nothing else safely, and the exit code.
    public let report: @Sendable (_ database: String, _ dataFolder: String) -> (text: String, exitCode: Int32)

    public init(report: @escaping @Sendable (_ database: String, _ dataFolder: String) -> (text: String, exitCode: Int32)) {
        self.report = report
    }

    /// Installs the handler with this database's report; false when the system refused it.
    func arm(database: String, dataFolder: String) -> Bool {
        let (text, exitCode) = report(database, dataFolder)
        return tidemark_exit_on_sigbus(text, exitCode) == 0
    }

    /// SIGBUS back to the action it had before `arm` (the default, or the Swift runtime's
    /// backtrace handler).
    static func disarm() {
        _ = tidemark_restore_sigbus()
    }
}
