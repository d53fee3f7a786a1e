/// The process exit codes, part of Tidemark's interface (sysexits where one fits).
///
/// | code | meaning |
/// |---|---|
/// | 0 | done, or nothing to do; validate found nothing wrong; freshness ok |
/// | 1 | validate found discrepancies; freshness warning |
/// | 2 | freshness error (pipeline stalled) |
/// | 64 | usage error (bad flags) |
/// | 65 | bad input data where a command cannot skip it |
/// | 66 | a named input (landing folder, sent log, database) is missing |
/// | 74 | I/O error: disk full, unreadable or unwritable file, corrupt database |
/// | 75 | busy: another Tidemark job holds the lock, or the database stayed locked; retry later |
public enum ExitStatus: Int32, Sendable {
    case ok = 0
    case findings = 1
    case critical = 2
    case usage = 64
    case dataError = 65
    case noInput = 66
    case ioError = 74
    case busy = 75
}

/// An error a person can act on: what failed, where, why, and what to do.
public struct TidemarkError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var target: String
    public var cause: String
    public var hint: String?
    public var exitStatus: ExitStatus

    public init(_ operation: String, _ target: String, cause: String, hint: String? = nil, exit: ExitStatus) {
        self.operation = operation
        self.target = target
        self.cause = cause
        self.hint = hint
        self.exitStatus = exit
    }

    /// `<operation> <target>: <cause>`, the line after `error: `.
    public var description: String {
        target.isEmpty ? "\(operation): \(cause)" : "\(operation) \(target): \(cause)"
    }

    /// The same error, with `more` after its hint.
    func adding(hint more: String) -> TidemarkError {
        var error = self
        error.hint = (hint.map { $0 + "; " } ?? "") + more
        return error
    }
}
