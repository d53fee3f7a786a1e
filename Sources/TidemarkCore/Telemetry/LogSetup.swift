import Foundation
import GRDB
import Logging

/// Log output formats on stderr.
public enum LogFormat: String, Sendable, CaseIterable {
    case text, logfmt, json
}

/// Bootstraps swift-log once per process with Tidemark's stderr handler. Only the executable
/// (and tests) call it; library code just takes a `Logger`.
public enum LogSetup {
    nonisolated(unsafe) private static var done = false
    nonisolated(unsafe) private static var chosen = LogFormat.text
    private static let lock = NSLock()

    /// The format chosen at bootstrap (text before it): errors follow it too.
    public static var format: LogFormat {
        lock.lock()
        defer { lock.unlock() }
        return chosen
    }

    public static func bootstrap(format: LogFormat, verbose: Bool) {
        lock.lock()
        defer { lock.unlock() }
        guard !done else { return }
        done = true
        chosen = format
        let level: Logger.Level = verbose ? .info : .warning
        LoggingSystem.bootstrap { label in
            var handler = StderrLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
    }
}

/// Writes one line per record on stderr in text, logfmt or JSON.
public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let format: LogFormat

    public init(label: String, format: LogFormat) {
        self.label = label
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let line = StderrLogHandler.line(level: event.level, message: "\(event.message)", metadata: merged, format: format)
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// One record as this handler writes it (without its newline), stamped now.
    public static func line(level: Logger.Level, message: String, metadata merged: Logger.Metadata, format: LogFormat) -> String {
        let time = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970).rfc3339Millis
        let keys = merged.keys.sorted()
        let line: String
        switch format {
        case .text:
            let fields = keys.map { "\($0)=\(merged[$0]!)" }.joined(separator: " ")
            line = "\(time) \(level) \(message)\(fields.isEmpty ? "" : " " + fields)"
        case .logfmt:
            var parts = ["ts=\(time)", "level=\(level)", "msg=\(logfmtQuote(message))"]
            parts += keys.map { "\($0)=\(logfmtQuote("\(merged[$0]!)"))" }
            line = parts.joined(separator: " ")
        case .json:
            var out: [UInt8] = Array("{\"ts\":".utf8)
            JSONValue.writeString(time, to: &out)
            out += Array(",\"level\":".utf8)
            JSONValue.writeString("\(level)", to: &out)
            out += Array(",\"msg\":".utf8)
            JSONValue.writeString(message, to: &out)
            for key in keys {
                out.append(UInt8(ascii: ","))
                JSONValue.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                let value = "\(merged[key]!)"
                // The exit code is a number, as a log pipeline compares it.
                if key == "exit_code", Int(value) != nil { out += Array(value.utf8) } else { JSONValue.writeString(value, to: &out) }
            }
            out.append(UInt8(ascii: "}"))
            line = String(decoding: out, as: UTF8.self)
        }
        return line
    }

    private static func logfmtQuote(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.contains { $0 == " " || $0 == "=" || $0 == "\"" || $0.isNewline }
        guard needsQuotes else { return value }
        var out: [UInt8] = []
        JSONValue.writeString(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

/// How the executable reports an error: message, optional hint, exit code.
public enum ErrorReport {
    public static func describe(_ error: Error) -> (message: String, hint: String?, status: ExitStatus) {
        // Here the database's path is not known: a store error names the operation alone.
        guard let e = TidemarkError.describing(error, operation: "database", database: "") else {
            return ("\(error)", nil, .ioError)
        }
        return (e.description, e.hint, e.exitStatus)
    }
}
