import RmapTools

/// Bytes to an operation sequence about large folios (`OpDecoder.largeTrace`:
/// THP settings, hugepage advice, `thp shrink`, `split`) on an arena with
/// room for one or two THPs, with the invariant checker after every
/// statement: a violation is a crash for libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLargeOps(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    OpDecoder.runChecked(Array(UnsafeBufferPointer(start: data, count: min(size, 4096))), large: true)
    return 0
}
