import Rmap
import RmapTrace
import RmapTools

/// Bytes to an operation sequence about large folios (`OpDecoder.largeTrace`:
/// THP settings, hugepage advice, `thp shrink`, `split`) on an arena with
/// room for one or two THPs, with the invariant checker after every
/// statement: a violation is a crash for libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLargeOps(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: min(size, 4096)))
    let text = OpDecoder.largeTrace(from: bytes)
    guard let trace = try? TraceParser.parse(text, file: "large-ops.trace") else {
        fatalError("the decoder wrote an invalid trace:\n\(text)")
    }
    var cfg = ArenaConfig()
    cfg.frames = 256 + 8 * UInt32(bytes.first ?? 0)
    cfg.ptPages = 48
    cfg.vmas = 64
    cfg.anonVMAs = 48
    cfg.avcs = 96
    cfg.mms = 10
    cfg.files = 4
    cfg.swapSlots = 32
    guard let m = try? Machine(config: cfg) else { return 0 }
    var out = ReplayOutcome()
    for tl in trace.lines {
        m.step(tl, file: trace.file, into: &out)
        let v = m.check()
        if !v.isEmpty { fatalError("line \(tl.line): \(v[0])\n\(text)") }
    }
    return 0
}
