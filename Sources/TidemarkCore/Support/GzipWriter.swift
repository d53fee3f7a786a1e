import CZlib

/// Compresses bytes into one gzip member held in memory (files here are small: one per second).
/// The `z_stream` lives on the heap: zlib keeps a pointer back to it and refuses a moved stream.
public final class GzipWriter {
    private let stream: UnsafeMutablePointer<z_stream>
    private var output: [UInt8] = []
    private var finished = false

    public init(level: Int32 = 6) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = tidemark_deflate_init_gzip(stream, level)
        precondition(status == Z_OK, "deflateInit2 failed with \(status)")
    }

    deinit {
        if !finished { deflateEnd(stream) }
        stream.deallocate()
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { run($0, flush: Z_NO_FLUSH) }
    }

    public func write(_ text: String) {
        write(Array(text.utf8))
    }

    /// Ends the member and returns the gzip bytes.
    public func finish() -> [UInt8] {
        if !finished {
            run(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_FINISH)
            deflateEnd(stream)
            finished = true
        }
        return output
    }

    private func run(_ input: UnsafeRawBufferPointer, flush: Int32) {
        let chunk = 64 * 1024
        var buffer = [UInt8](repeating: 0, count: chunk)
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: UInt8.self))
        stream.pointee.avail_in = uInt(input.count)
        while true {
            let status: Int32 = buffer.withUnsafeMutableBufferPointer { out in
                stream.pointee.next_out = out.baseAddress
                stream.pointee.avail_out = uInt(chunk)
                return deflate(stream, flush)
            }
            let produced = chunk - Int(stream.pointee.avail_out)
            output.append(contentsOf: buffer[0..<produced])
            if flush == Z_FINISH {
                if status == Z_STREAM_END { break }
            } else if stream.pointee.avail_in == 0 && stream.pointee.avail_out != 0 {
                break
            }
            precondition(status == Z_OK || status == Z_BUF_ERROR, "deflate failed with \(status)")
        }
        stream.pointee.next_in = nil
    }

    /// One-shot helper: the gzip of `text`.
    public static func gzip(_ text: String, level: Int32 = 6) -> [UInt8] {
        let writer = GzipWriter(level: level)
        writer.write(text)
        return writer.finish()
    }
}
