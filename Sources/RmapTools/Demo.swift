import Rmap
import RmapTrace
#if canImport(Glibc)
import Glibc
#endif

/// The demo scenario, in the trace language: a small system (an init
/// process with a library, a heap, a shared data file and shared anonymous
/// memory) forks a shell and workers, which copy-on-write, split and merge
/// VMAs, move a region, drop pages, and exit.
public let demoTrace = """
    # The demo: a fork tree with COW, file and shmem mappings, VMA split and merge, exits.
    file libc.so 64
    file data.db 32
    proc init
    init mmap 0x100000000000 64 rx file-private:libc.so@0   # text: fault-around maps 16 at a time
    init mmap 0x100000100000 256 rw anon-private            # heap
    init mmap 0x100000200000 32 rw file-shared:data.db@0     # a shared database file
    init mmap 0x100000300000 16 rw anon-shared               # shared anonymous memory (shmem)
    init read 0x100000000000 64
    init write 0x100000100000 128
    init read 0x100000100000 256                             # the rest reads the zero page
    init write 0x100000200000 4
    init write 0x100000300000 8
    shell = fork init
    shell write 0x100000100000 32                            # COW: 32 private copies
    worker1 = fork shell
    worker2 = fork shell
    worker1 write 0x100000100000 16
    worker2 write 0x100000110000 16
    worker2 write 0x100000300000 16                          # shmem pages shared by all four
    shell mprotect 0x100000140000 16 r                       # split the heap in three
    shell mprotect 0x100000140000 16 rw                      # and merge it back
    worker1 munmap 0x100000180000 16                         # a hole splits the heap
    worker1 mremap 0x100000190000 16 16 0x100000400000       # move a piece elsewhere
    init madvise 0x100000160000 32 dontneed
    worker2 mlock 0x100000000000 64                          # mlock populates and splits nothing: one VMA
    expect init 0x100000100000 2, shell 0x100000100000 2, worker1 0x100000100000 2, worker2 0x100000100000 2 = A1:1 A2:1 A3:2 A4:2 A5:1 A6:1 A3:2 A4:2
    observe init 0x100000100000 4, shell 0x100000100000 4, worker2 0x100000300000 4, init 0x100000200000 4
    worker1 exit
    shell exit
    observe init 0x100000100000 4, worker2 0x100000100000 4, worker2 0x100000300000 4
    """

/// The demo's second part, KSM sharing: three unrelated processes hold a
/// page of identical content in VM_MERGEABLE regions; two ksmd scans merge
/// them into one write-protected KSM frame, which is then migrated and
/// copied on write.
public let demoKSMTrace = """
    # KSM sharing: identical pages of three processes become one KSM frame.
    proc vm1
    proc vm2
    proc vm3
    vm1 mmap 0x100000000000 8 rw anon-private
    vm2 mmap 0x100000000000 8 rw anon-private
    vm3 mmap 0x200000000000 8 rw anon-private
    vm1 write 0x100000000000 4 value=0x5a5a                 # the same content everywhere
    vm2 write 0x100000000000 4 value=0x5a5a
    vm3 write 0x200000000000 4 value=0x5a5a
    vm3 write 0x200000003000 value=0x77                     # one page differs
    vm1 madvise 0x100000000000 8 mergeable
    vm2 madvise 0x100000000000 8 mergeable
    vm3 madvise 0x200000000000 8 mergeable
    ksm scan 2                                               # checksums seen twice, then merged
    expect vm1 0x100000000000 4, vm2 0x100000000000 4, vm3 0x200000000000 4 = K1:11 K1:11 K1:11 K1:11 K1:11 K1:11 K1:11 K1:11 K1:11 K1:11 K1:11 A2:1
    vm2 migrate 0x100000000000                               # rmap_walk_ksm finds all 11 PTEs
    vm3 write 0x200000000000                                 # copy on write: vm3 gets its own page
    expect vm1 0x100000000000 1, vm3 0x200000000000 1 = K1:10 A2:1
    """

/// The demo's third part, large folios (THP and mTHP): the same statements
/// as Tests/Corpus/kernel-large/28-demo-large-folios.trace, which the kernel
/// oracle runs to the same bytes.
public let demoLargeTrace = """
    # Large folios: a PMD-mapped THP, the huge zero page, a 64 KiB mTHP, COW after fork, partial unmap, the deferred split shrinker, MADV_COLLAPSE.
    thp enabled madvise
    thp 64K always
    proc db
    db mmap 0x100000000000 2048 rw anon-private
    db madvise 0x100000000000 512 hugepage          # the first 2 MiB may be a THP
    db write 0x100000000000                         # do_huge_pmd_anonymous_page: one PMD maps 512 pages
    db read 0x100000200000                          # no VM_HUGEPAGE here; a read maps the small zero page
    db write 0x100000210000 16                      # alloc_anon_folio: a 64 KiB folio, 16 PTEs
    expect db 0x100000000000 2, db 0x100000200000 1, db 0x100000210000 2 = A1+0:1* A1+1:1* Z A2+0:1 A2+1:1
    backup = fork db                                # copy_huge_pmd: the PMD is shared, write-protected
    backup write 0x100000000000                     # do_huge_pmd_wp_page: the child's PMD is split, one page copied
    backup write 0x100000210000                     # wp_page_copy: one small page, the 64 KiB folio stays shared
    expect db 0x100000000000 2, backup 0x100000000000 2 = A1+0:1* A1+1:2* A2:1 A1+1:2
    db munmap 0x1000001ff000 1                      # splits db's PMD; the THP is partially mapped now
    expect db 0x1000001fd000 2, db 0x1000001ff000 1 = A1+509:2 A1+510:2 -
    backup exit
    thp shrink                                      # deferred_split_scan: split, never-written pages map the zero page
    expect db 0x100000000000 2, db 0x1000001fe000 1 = A1:1 Z Z
    db write 0x100000400000 512                     # 32 folios of 64 KiB (no VM_HUGEPAGE there)
    db madvise 0x100000400000 512 collapse => ok    # MADV_COLLAPSE copies them into one THP, by PMD
    expect db 0x100000400000 2 = A1+0:1* A1+1:1*
    """

/// Runs the demo and returns its report, and whether everything held
/// (expectations and invariants).
public func runDemo(reuse: ReusePolicy = .split) -> (String, Bool) {
    var s = ""
    var ok = true
    var t0 = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t0)
    let machine: Machine
    do { machine = try Machine(reuse: reuse) } catch { return ("demo: \(error)\n", false) }
    s += "swift-rmap demo: a model of the Linux rmap (anon_vma reuse policy: \(reuse.name))\n"
    s += "arena: \(machine.arena.byteSize >> 20) MiB reserved for the default capacities\n\n"

    // The trace runs once; the hook reports the state at the first observe.
    guard let trace = try? TraceParser.parse(demoTrace, file: "demo.trace") else {
        return ("demo: the built-in trace does not parse\n", false)
    }
    s += "== the scenario (trace language)\n"
    for (i, l) in demoTrace.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        s += String(i + 1).leftPad(4) + "  " + l + "\n"
    }
    let firstObserve = trace.lines.first { if case .observe = $0.statement { return true } else { return false } }?.line ?? 0
    var mid = ""
    let out = machine.replay(trace) { tl in
        let v = machine.check()
        if !v.isEmpty {
            ok = false
            s += "  line \(tl.line): \(v.count) invariant violations, first: \(v[0])\n"
        }
        if tl.line == firstObserve {
            mid += "\n== at line \(tl.line): processes and VMAs\n" + machine.reportProcesses()
            mid += "\n== frames by kind and mapcount\n" + machine.reportFrames()
            mid += "\n== anon_vma hierarchy (both counter schemes)\n" + machine.reportAnonVMAs()
        }
    }
    s += mid
    s += "\n== at the end: processes and VMAs\n" + machine.reportProcesses()
    s += "\n== frames by kind and mapcount\n" + machine.reportFrames()
    s += "\n== anon_vma hierarchy\n" + machine.reportAnonVMAs()
    s += "\n== results that are not ok\n"
    for (line, r) in out.results where r != "ok" { s += "  line \(line) => \(r)\n" }
    s += "\n== expectations: " + (out.failures.isEmpty ? "all held\n" : "\(out.failures.count) failed\n")
    for f in out.failures { s += "  \(f)\n"; ok = false }
    s += "\n== canonical observation (what `rmap replay --observe` prints)\n" + out.canonicalJSON + "\n"

    let v = machine.check()
    s += "\n== invariant checker: " + (v.isEmpty ? "clean (mapcounts, refcounts, RSS, rmap walks, anon_vma counters, interval trees, leaks)\n" : "\(v.count) violations\n")
    for x in v.prefix(20) { s += "  \(x)\n" }
    if !v.isEmpty { ok = false }
    s += "\n== arena\n" + machine.reportArena()
    s += runKSMDemo(&ok)
    s += runLargeDemo(&ok)
    var t1 = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t1)
    let ms = Double(t1.tv_sec - t0.tv_sec) * 1000 + Double(t1.tv_nsec - t0.tv_nsec) / 1e6
    s += "\ndemo finished in \(Int(ms)) ms: " + (ok ? "all expectations and invariants held\n" : "FAILED\n")
    return (s, ok)
}


/// The KSM part of the demo: its trace, frames by kind, and the checker.
func runKSMDemo(_ ok: inout Bool) -> String {
    var s = "\n== KSM sharing (trace language)\n"
    guard let m = try? Machine(), let trace = try? TraceParser.parse(demoKSMTrace, file: "demo-ksm.trace") else {
        ok = false
        return s + "  the KSM demo could not start\n"
    }
    for (i, l) in demoKSMTrace.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        s += String(i + 1).leftPad(4) + "  " + l + "\n"
    }
    var afterScan = ""
    let out = m.replay(trace) { tl in
        if case .ksmScan = tl.statement { afterScan = m.reportFrames() }
    }
    s += "\n== frames after the scans\n" + afterScan
    s += "KSM: pages_shared \(m.k.header.pointee.ksm_pages_shared), pages_sharing \(m.k.header.pointee.ksm_pages_sharing) (at the end)\n"
    s += "\n== KSM expectations: " + (out.failures.isEmpty ? "all held\n" : "\(out.failures.count) failed\n")
    for f in out.failures { s += "  \(f)\n"; ok = false }
    let v = m.check()
    s += "== KSM invariant checker: " + (v.isEmpty ? "clean\n" : "\(v.count) violations\n")
    for x in v.prefix(10) { s += "  \(x)\n" }
    if !v.isEmpty { ok = false }
    return s
}

/// The large-folio part of the demo: its trace, the frames by kind after the
/// THP fault and the mTHP fault, the THP counters and the checker.
func runLargeDemo(_ ok: inout Bool) -> String {
    var s = "\n== Large folios: THP, the huge zero page, mTHP (trace language)\n"
    guard let m = try? Machine(), let trace = try? TraceParser.parse(demoLargeTrace, file: "demo-large.trace") else {
        ok = false
        return s + "  the large-folio demo could not start\n"
    }
    for (i, l) in demoLargeTrace.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        s += String(i + 1).leftPad(4) + "  " + l + "\n"
    }
    let firstExpect = trace.lines.first { if case .expect = $0.statement { return true } else { return false } }?.line ?? 0
    var afterFaults = ""
    var violations = 0
    let out = m.replay(trace) { tl in
        violations += m.check().count
        if tl.line == firstExpect { afterFaults = m.reportFrames() }
    }
    s += "\n== frames after the THP, zero-page and mTHP faults\n" + afterFaults
    s += "\n== THP counters at the end\n"
    for (name, value) in m.thpStats { s += "  \(name) \(value)\n" }
    s += "\n== large-folio expectations: " + (out.failures.isEmpty && out.error == nil ? "all held\n" : "\(out.failures.count) failed\n")
    for f in out.failures { s += "  \(f)\n"; ok = false }
    if let e = out.error { s += "  \(e)\n"; ok = false }
    s += "== large-folio invariant checker (after every statement): " + (violations == 0 ? "clean\n" : "\(violations) violations\n")
    if violations > 0 { ok = false }
    return s
}
