import Foundation

/// A result printed with `--json`: one pretty-printed document, keys sorted and in snake_case.
public protocol JSONDocument: Encodable {}

extension JSONDocument {
    /// `oneLine`: the document on one line (JSON Lines), for a stream of them (`ingest --loop`).
    public func jsonText(oneLine: Bool = false) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = oneLine ? [.sortedKeys] : [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
