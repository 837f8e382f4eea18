import Rmap
import RmapTrace
import RmapTools

/// Bytes to an operation sequence on a small arena, with the invariant
/// checker after every statement: a violation is a crash for libFuzzer.
/// The bytes choose the operations (see `OpDecoder`), so the fuzzer's
/// mutations explore sequences the random generator would rarely write.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOps(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: min(size, 4096)))
    let text = OpDecoder.trace(from: bytes)
    guard let trace = try? TraceParser.parse(text, file: "ops.trace") else {
        fatalError("the decoder wrote an invalid trace:\n\(text)")
    }
    var cfg = ArenaConfig()
    cfg.frames = 48 + UInt32(bytes.first ?? 0)
    cfg.ptPages = 24
    cfg.vmas = 64
    cfg.anonVMAs = 48
    cfg.avcs = 96
    cfg.mms = 10
    cfg.files = 8
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
