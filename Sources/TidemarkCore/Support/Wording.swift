/// "1 file", "2 files": a count and its noun, for messages an operator reads.
func plural(_ count: Int, _ noun: String) -> String {
    "\(count) \(noun)\(count == 1 ? "" : "s")"
}
