/// "1 file", "2 files": a count and its noun, for messages an operator reads.
func plural(_ count: Int, _ noun: String) -> String {
    "\(count) \(noun)\(count == 1 ? "" : "s")"
}

/// The warning of a batch that rejected `lines` lines in `files` files: where the lines are
/// kept, and what of their files was applied. Files whose every line was rejected
/// (`filesAllRejected`) had nothing applied, and it says so.
func rejectedLinesWarning(lines: Int, files: Int, filesAllRejected: Int, dryRun: Bool) -> String {
    let verb = dryRun ? "would be" : "was"
    let applied: String
    if filesAllRejected == 0 {
        applied = "the rest of each file \(verb) applied"
    } else if filesAllRejected == files {
        applied = "no line of \(files == 1 ? "it" : "them") \(verb) applied"
    } else {
        applied = "the rest of each file \(verb) applied, except in \(plural(filesAllRejected, "file")) whose every line \(verb) rejected"
    }
    if dryRun {
        return "dry run: \(plural(lines, "line")) would be rejected in \(plural(files, "file")); \(applied)"
    }
    let shown = min(lines, 100)
    let listed: String
    switch lines {
    case 1: listed = "it"
    case ...100: listed = "them"
    default: listed = "the latest 100"
    }
    return """
        \(plural(lines, "line")) rejected in \(plural(files, "file")), kept in rejected_lines \
        (tidemark status --rejected \(shown) lists \(listed)); \(applied). \
        To apply a line once its cause is fixed, land it in a new file (the same file landed again is taken for a redelivery)
        """
}
