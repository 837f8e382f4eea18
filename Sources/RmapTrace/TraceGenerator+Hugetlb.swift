import Rmap

/// `rmap gen --large --hugetlb`: hugetlb statements among the large-folio
/// ones, in a window of four huge pages of their own (`hugetlbBase`, 1 GiB
/// aligned, far from `largeBase`'s window, so no other statement meets a
/// hugetlb VMA): mmaps of both kinds (with and without `noreserve`, mostly
/// at 2 MiB-aligned addresses), accesses (faults, COW after the forks the
/// large traces make), munmap and `madvise dontneed` over aligned and
/// unaligned ranges; now and then a shared mapping of the whole GiB there,
/// whose PMD table fork children share; mlock and munlock; mprotect (now
/// and then of the whole GiB: no split, the shared table unshared) and the
/// flag-changing advice (dontfork, dofork, wipeonfork, keeponfork,
/// hugepage, nohugepage, collapse); without `kernelOnly` the reverse
/// statements the model runs on hugetlb pages (migrate, `unmap` with and
/// without `migration` or `ignore_hwpoison`, referenced, mkclean, reclaim,
/// device, poison). Never what the model refuses on a hugetlb VMA
/// (exclusive); mremap only with `hugetlbMremap` (model-only: it can leak
/// on the kernel).
extension TraceGenerator {
    public static let hugetlbBase: UInt64 = 0x1000_4000_0000
    public static let hugetlbPages: UInt64 = 2048

    /// Mostly a huge page's start, sometimes a page inside one.
    mutating func hugetlbAddr() -> UInt64 {
        let a = TraceGenerator.hugetlbBase + int(TraceGenerator.hugetlbPages / 512) << 21
        return chance(85) ? a : a + (1 + int(511)) << 12
    }

    mutating func hugetlbStatement(_ p: String) {
        if hugetlbMremap && chance(12) {
            // mremap in the window: a move (MREMAP_MAYMOVE|MREMAP_FIXED),
            // mostly of the same length, sometimes shrinking; or a resize in
            // place (growth is EINVAL on hugetlb).
            let old = pick([512, 512, 1024, 1536] as [UInt64])
            let new = chance(70) ? old : pick([1, 512, 1024] as [UInt64])
            let to = chance(80) ? " \(hex(hugetlbAddr()))" : ""
            lines.append("\(p) mremap \(hex(hugetlbAddr())) \(old) \(new)\(to)")
            return
        }
        switch int(100) {
        case 0..<4:
            // A shared GiB (noreserve: the pool need only hold what is
            // faulted): fork children sharing its PMD table (huge_pmd_share).
            lines.append("\(p) mmap \(hex(TraceGenerator.hugetlbBase)) 262144 rw hugetlb-shared noreserve")
        case 4..<25:
            let kind = pick(["hugetlb-private", "hugetlb-private", "hugetlb-shared"])
            lines.append("\(p) mmap \(hex(hugetlbAddr())) \(pick([1, 512, 512, 1024, 1100, 1536] as [UInt64])) \(pick(["rw", "rw", "rw", "r"])) \(kind)\(chance(20) ? " noreserve" : "")")
        case 25..<62:
            access(p, chance(60) ? "write" : "read", TraceGenerator.hugetlbBase + int(TraceGenerator.hugetlbPages) << 12, 1 + int(3))
        case 62..<70:
            lines.append("\(p) munmap \(hex(hugetlbAddr())) \(pick([1, 512, 512, 1024] as [UInt64]))")
        case 70..<76:
            // hugetlb_change_protection; splits at 2 MiB boundaries only.
            let prot = pick(["r", "rw", "rw", "none"])
            if chance(10) {
                lines.append("\(p) mprotect \(hex(TraceGenerator.hugetlbBase)) 262144 \(prot)")
            } else {
                lines.append("\(p) mprotect \(hex(hugetlbAddr())) \(pick([1, 512, 512, 1024] as [UInt64])) \(prot)")
            }
        case 76..<81:
            lines.append("\(p) madvise \(hex(hugetlbAddr())) \(pick([1, 512, 1024] as [UInt64])) dontneed")
        case 81..<85:
            let advice = pick(["dontfork", "dontfork", "dofork", "wipeonfork", "keeponfork", "hugepage", "nohugepage", "collapse"])
            lines.append("\(p) madvise \(hex(hugetlbAddr())) \(pick([1, 512, 1024] as [UInt64])) \(advice)")
        case 85..<91:
            // mlock_fixup passes hugetlb VMAs over; __mm_populate faults them in.
            lines.append("\(p) \(chance(60) ? "mlock" : "munlock") \(hex(hugetlbAddr())) \(pick([1, 512, 512, 1024] as [UInt64]))")
        case 91..<100 where !kernelOnly:
            hugetlbReverseOp(p)
        default:
            access(p, chance(60) ? "write" : "read", TraceGenerator.hugetlbBase + int(TraceGenerator.hugetlbPages) << 12, 1 + int(3))
        }
    }

    /// The model-only reverse statements on hugetlb pages: migrate,
    /// try_to_migrate (`unmap ... migration`, leaving hugetlb migration
    /// entries), try_to_unmap (hwpoison entries for a poisoned folio),
    /// referenced, mkclean, reclaim, device and poison.
    mutating func hugetlbReverseOp(_ p: String) {
        // A huge page's first page mostly (where the mmaps and faults are).
        let a = TraceGenerator.hugetlbBase + int(TraceGenerator.hugetlbPages / 512) << 21 + (chance(70) ? 0 : int(512) << 12)
        let n = pick([1, 1, 512] as [UInt64])
        switch int(11) {
        case 0..<3: lines.append("\(p) migrate \(hex(a)) \(n)")
        case 3..<5: lines.append("\(p) unmap \(hex(a)) \(n) migration")
        case 5: lines.append("\(p) unmap \(hex(a)) \(n)\(chance(25) ? " ignore_hwpoison" : "")")
        case 10: lines.append("\(p) poison \(hex(a)) \(n)")
        case 6: lines.append("\(p) referenced \(hex(a)) \(n)")
        case 7: lines.append("\(p) mkclean \(hex(a)) \(n)")
        case 8: lines.append("\(p) reclaim \(hex(a)) \(n)")
        default: lines.append("\(p) device \(hex(a)) \(n)")
        }
    }

    /// The hugetlb window of every live process, and what each page reads back.
    mutating func observeHugetlbWindow() {
        guard !live.isEmpty else { return }
        let targets = live.map { "\($0) \(hex(TraceGenerator.hugetlbBase)) \(TraceGenerator.hugetlbPages)" }
        lines.append("observe " + targets.joined(separator: ", "))
        lines.append("observe contents " + targets.joined(separator: ", "))
    }
}
