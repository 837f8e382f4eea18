import RmapTools

/// Bytes to an operation sequence on a small arena, with the invariant
/// checker after every statement: a violation is a crash for libFuzzer.
/// The bytes choose the operations (see `OpDecoder`), so the fuzzer's
/// mutations explore sequences the random generator would rarely write.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOps(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    OpDecoder.runChecked(Array(UnsafeBufferPointer(start: data, count: min(size, 4096))), large: false)
    return 0
}
