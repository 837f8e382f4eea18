import RmapTrace

/// Bytes to the trace parser: it must never crash, hang or allocate without
/// bound; every error must carry a position inside the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        _ = try TraceParser.parse(bytes: bytes, file: "fuzz.trace")
    } catch {
        let lines = bytes.reduce(1) { $0 + ($1 == 10 ? 1 : 0) }
        if error.line < 1 || error.line > lines + 1 || error.column < 1 {
            fatalError("error position \(error.line):\(error.column) outside the input: \(error)")
        }
    }
    return 0
}
