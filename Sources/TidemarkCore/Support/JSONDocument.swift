import Foundation

/// A result printed with `--json`: one pretty-printed document, keys sorted and in snake_case.
public protocol JSONDocument: Encodable {}

extension JSONDocument {
    public func jsonText() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
