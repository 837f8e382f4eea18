import Rmap
#if canImport(Glibc)
import Glibc
#endif

/// Bytes as an arena file: opening must reject it or give a machine that
/// works (under ASan: no out-of-bounds access either way).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzArena(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let path = "/tmp/rmap-fuzz-arena-\(getpid())"
    guard let f = fopen(path, "wb") else { return 0 }
    _ = fwrite(data, 1, size, f)
    fclose(f)
    defer { unlink(path) }
    guard let m = try? Machine(opening: path) else { return 0 }
    for p in m.processes.keys.sorted() {
        _ = m.perform(p, .write(addr: 0x1000_0000_0000, pages: 4))
        _ = m.perform(p, .munmap(addr: 0x1000_0000_0000, pages: 2))
    }
    if let v = m.checkViolations().first(where: { $0.kind != .anonVMAReusedInUse }) {
        fatalError("accepted arena became inconsistent: \(v)")
    }
    return 0
}
