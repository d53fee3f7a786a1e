// libFuzzer entry point for the line parser; built by scripts/fuzz-parser.sh together with
// the Decode sources (not part of the Swift package).
@_cdecl("LLVMFuzzerTestOneInput")
public func tidemarkFuzzLine(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let problem = ParserDifferential.check(UnsafeRawBufferPointer(start: data, count: size)) {
        fatalError("parser differential: \(problem)")
    }
    return 0
}
