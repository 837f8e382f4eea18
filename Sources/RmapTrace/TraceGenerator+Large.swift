import Rmap

/// `rmap gen --large`: random traces about large anonymous folios (PMD-mapped
/// THPs, mTHPs, the huge zero page) and what splits, copies and frees them.
///
/// The window is four PMDs (8 MiB) starting at a 2 MiB-aligned address inside
/// the oracle's MAP_FIXED_NOREPLACE range. Addresses are mostly PMD-aligned
/// or aligned to an mTHP size, so that faults find whole aligned ranges
/// inside the VMAs; the parts unmapped, protected, moved or advised are
/// smaller and land anywhere, so PMDs are split. The statements the model
/// refuses (hugetlb) and `madvise collapse`, `free`, `cold`, `pageout`,
/// `reclaim` and KSM are never written. `split` and the model-only reverse
/// statements `unmap` (PMD migration entries among them), `migrate`,
/// `device`, `exclusive` and `referenced` are written only without
/// `kernelOnly`.
extension TraceGenerator {
    public static let largeBase: UInt64 = 0x1000_0040_0000
    public static let largePages: UInt64 = 2048

    static let largeSizes = ["16K", "32K", "64K", "128K", "256K", "512K", "1M", "2M"]

    /// A page of the window: a PMD start, an mTHP-aligned page, a page just
    /// before a PMD boundary, or any page.
    mutating func largeAddr() -> UInt64 {
        let base = TraceGenerator.largeBase, n = TraceGenerator.largePages
        switch int(10) {
        case 0..<4: return base + (int(n / 512) * 512) << 12
        case 4..<6: return base + (int(n / 16) * 16) << 12
        case 6: return base + ((1 + int(n / 512 - 1)) * 512 - 1 - int(8)) << 12
        default: return base + int(n) << 12
        }
    }

    /// A region length: from 16 pages to more than a PMD.
    mutating func largeLength() -> UInt64 {
        pick([16, 32, 64, 100, 128, 256, 512, 512, 512, 600, 1024, 1024, 1100, 1536])
    }

    /// A part of a region: a few pages to a little more than a PMD.
    mutating func partLength() -> UInt64 {
        switch int(10) {
        case 0..<5: return 1 + int(16)
        case 5..<8: return 16 + int(112)
        case 8: return 512
        default: return 256 + int(400)
        }
    }

    /// A range for an access: one page, a few, or a stretch across a folio boundary.
    mutating func accessLength() -> UInt64 {
        switch int(10) {
        case 0..<4: return 1
        case 4..<8: return 1 + int(16)
        default: return 16 + int(48)
        }
    }

    /// `observe` over a few spans across folio boundaries for some of the live
    /// processes (one token per page: never the whole window here).
    mutating func observeLarge() {
        guard !live.isEmpty else { return }
        var targets: [String] = []
        for p in live where targets.isEmpty || chance(60) {
            for _ in 0..<(1 + int(2)) {
                // Mostly around a page accessed lately (its 64 KiB boundary),
                // else around any 64 KiB boundary of the window.
                let near = touched.isEmpty || chance(25)
                    ? TraceGenerator.largeBase + int(TraceGenerator.largePages) << 12 : pick(touched)
                let boundary = near & ~0xffff
                let before = int(8)
                let start = max(TraceGenerator.largeBase, boundary - before << 12)
                targets.append("\(p) \(hex(start)) \(before + 1 + int(24))")
            }
        }
        lines.append("observe " + targets.joined(separator: ", "))
    }

    /// The last observation: the whole window of every live process, and what
    /// each page reads back.
    mutating func observeLargeWindow() {
        guard !live.isEmpty else { return }
        let targets = live.map { "\($0) \(hex(TraceGenerator.largeBase)) \(TraceGenerator.largePages)" }
        lines.append("observe " + targets.joined(separator: ", "))
        lines.append("observe contents " + targets.joined(separator: ", "))
    }

    /// An access of `n` pages at `a` by `p` (the address is remembered for the
    /// observations).
    mutating func access(_ p: String, _ verb: String, _ a: UInt64, _ n: UInt64) {
        lines.append("\(p) \(verb) \(hex(a)) \(n)")
        touched.append(a)
        if touched.count > 8 { touched.removeFirst() }
    }

    mutating func largeMmap(_ p: String) {
        let a = largeAddr(), n = largeLength()
        let prot = pick(["rw", "rw", "rw", "rw", "rw", "r", "none", "rwx"])
        let kind: String
        switch int(20) {
        case 0..<16: kind = "anon-private"
        case 16..<18: kind = "anon-shared"
        default:
            let (f, size) = pick(files)
            kind = "file-\(chance(50) ? "private" : "shared"):\(f)@\(int(max(1, size)))"
        }
        lines.append("\(p) mmap \(hex(a)) \(n) \(prot) \(kind)\(chance(10) ? " noreserve" : "")")
    }

    /// An anonymous private region at a PMD start, maybe with hugepage advice,
    /// written (THPs or mTHPs, or small pages), as the first statements.
    mutating func largeRegion(_ p: String) -> Int {
        let a = TraceGenerator.largeBase + (int(TraceGenerator.largePages / 512 - 1) * 512) << 12
        let n = pick([512, 600, 1024, 1024]) as UInt64
        lines.append("\(p) mmap \(hex(a)) \(n) rw anon-private")
        var ops = 1
        if chance(85) {
            lines.append("\(p) madvise \(hex(a)) \(chance(70) ? n : 512) hugepage")
            ops += 1
        }
        access(p, "write", a + int(16) << 12, 1 + int(4))
        // The second PMD (or the part past the first): read faults give the
        // huge zero page where a whole aligned PMD is VM_HUGEPAGE.
        access(p, chance(70) ? "read" : "write", a + (512 + int(64)) << 12, 1 + int(24))
        if !kernelOnly && chance(25) {
            // try_to_migrate of the first THP left half done: PMD migration
            // entries for the forks, faults, zaps and splits that follow.
            lines.append("\(p) unmap \(hex(a)) 1 migration")
            lines.append("observe \(p) \(hex(a)) 2")
            ops += 1
        }
        return ops + 2
    }

    /// A model-only reverse statement on the large regions (never with
    /// `kernelOnly`): try_to_migrate of PMD-mapped THPs without the split
    /// (PMD migration entries, which later faults, forks, zaps, mprotects
    /// and mremaps meet), with it, or other TTU flags; migration of whole
    /// folios; migrate_vma and make_device_exclusive, which split PMDs and
    /// skip PTE-mapped large folios.
    mutating func largeReverseOp(_ p: String) {
        // Mostly a page accessed lately: a frame is there (else EFAULT).
        let a = touched.isEmpty || chance(25) ? largeAddr() : pick(touched)
        switch int(10) {
        case 0..<4:
            // At the start of the PMD of a page accessed lately: a THP there
            // is mapped by a PMD unless something split it.
            let at = chance(70) ? max(TraceGenerator.largeBase, a & ~0x1fffff) : a
            let flags = pick(["migration", "migration", "migration", "migration,ignore_access", "migration,split_huge_pmd",
                              "split_huge_pmd,ignore_access", "migration,ignore_mlock,ignore_access"])
            lines.append("\(p) unmap \(hex(at)) \(accessLength()) \(flags)")
            lines.append("observe \(p) \(hex(at)) 2")  // `M*` where a PMD became an entry
        case 4..<5: lines.append("\(p) migrate \(hex(a)) \(accessLength())")
        case 5..<7: lines.append("\(p) device \(hex(a)) \(accessLength())\(chance(30) ? " coherent" : "")")
        case 7..<9:
            // Not on a hugetlb page `touched` may hold (--hugetlb): the model
            // refuses make_device_exclusive there.
            let at = a >= TraceGenerator.hugetlbBase ? largeAddr() : a
            lines.append("\(p) exclusive \(hex(at)) \(1 + int(4))")
        default: lines.append("\(p) referenced \(hex(a)) \(accessLength())")
        }
        touched.append(a)
        if touched.count > 8 { touched.removeFirst() }
    }

    /// `reclaim` of large folios (model-only): mostly at the start of the
    /// PMD or the 64 KiB folio of a page accessed lately, a few pages or a
    /// whole PMD; then, often, a fault on what was swapped out (do_swap_page
    /// from the swap cache when a reclaim failed midway) and an observation.
    mutating func largeReclaimOp(_ p: String) {
        let a = touched.isEmpty || chance(25) ? largeAddr() : pick(touched)
        let at: UInt64
        switch int(10) {
        case 0..<4: at = max(TraceGenerator.largeBase, a & ~0x1fffff)
        case 4..<7: at = max(TraceGenerator.largeBase, a & ~0xffff)
        default: at = a
        }
        // An mlocked mapping makes the reclaim fail midway (the folio stays
        // in the swap cache, what was unmapped stays swapped out): another
        // process's read-only mapping (mlock does not COW it), or a few
        // pages of this one (a VMA of their own).
        var locker: String? = nil
        switch int(10) {
        case 0..<3 where live.count > 1:
            let q = pick(live.filter { $0 != p })
            lines.append("\(q) mprotect \(hex(at)) 512 r")
            lines.append("\(q) mlock \(hex(at)) 512")
            locker = q
        case 3..<5:
            lines.append("\(p) mlock \(hex(at + (8 + int(8)) << 12)) \(1 + int(8))")
            locker = p
        default: break
        }
        let n: UInt64 = pick([1, 1, 4, 16, 512])
        lines.append("\(p) reclaim \(hex(at)) \(n)")
        if chance(60) {
            let q = chance(70) ? p : pick(live)
            access(q, chance(60) ? "read" : "write", at + int(16) << 12, accessLength())
        }
        if let locker, chance(40) {
            lines.append("\(locker) munlock \(hex(at)) 512")
            lines.append("\(p) reclaim \(hex(at)) \(n)")
        }
        lines.append("observe \(p) \(hex(at)) 2")
    }

    /// A trace about large folios, of about `statements` operation lines.
    public mutating func generateLarge(statements: Int) -> String {
        lines = ["# generated by rmap gen --large\(kernelOnly ? " --kernel-only" : "")"]
        lines.append("thp enabled \(pick(["always", "always", "madvise", "madvise", "madvise", "never"]))")
        var sizes = TraceGenerator.largeSizes
        for _ in 0..<(1 + int(3)) where !sizes.isEmpty {
            let i = Int(int(UInt64(sizes.count)))
            let size = sizes.remove(at: i)
            lines.append("thp \(size) \(pick(["always", "always", "inherit", "madvise", "never"]))")
        }
        if hugetlb { lines.append("hugetlb \(1 + int(4))") }
        let reclaim = largeReclaim && !kernelOnly
        // Below 1023 slots no cluster is free of bad slots: every large
        // folio falls back to a split (THP_SWPOUT_FALLBACK).
        if reclaim { lines.append("swap \(pick([0, 300, 1023, 1100, 1600, 2100, 4000]))") }
        let nfiles = 1 + int(2)
        for i in 0..<nfiles {
            let n = 8 + int(120)
            files.append(("f\(i)", n))
            lines.append("file f\(i) \(n)")
        }
        let first = newProcName()
        lines.append("proc \(first)")
        live.append(first)
        var ops = largeRegion(first)
        // Fork early: the large folios just made are shared with a child,
        // and the writes after the fork are COW of PMDs and of PTE-mapped
        // large folios.
        if chance(70) {
            let c = newProcName()
            lines.append("\(c) = fork \(first)")
            live.append(c)
            access(chance(50) ? first : c, "write", largeAddr(), accessLength())
            ops += 2
        }
        if chance(50) { observeLarge() }
        while ops < statements {
            if live.isEmpty {
                let p = newProcName()
                lines.append("proc \(p)")
                live.append(p)
                ops += largeRegion(p)
                continue
            }
            let p = pick(live)
            ops += 1
            if reclaim && chance(7) {
                largeReclaimOp(p)
                continue
            }
            if hugetlb && chance(20) {
                hugetlbStatement(p)
                continue
            }
            switch int(100) {
            case 0..<10: largeMmap(p)
            case 10..<34:
                access(p, chance(60) ? "write" : "read", largeAddr(), accessLength())
            case 34..<42:
                if live.count < 6 {
                    let c = newProcName()
                    lines.append("\(c) = fork \(p)")
                    live.append(c)
                    if chance(70) {
                        access(chance(50) ? p : c, "write", largeAddr(), accessLength())
                        ops += 1
                    }
                } else {
                    access(p, "write", largeAddr(), accessLength())
                }
            case 42..<46:
                if live.count > 1 || chance(20) {
                    lines.append("\(p) exit")
                    live.removeAll { $0 == p }
                }
            case 46..<53: lines.append("\(p) munmap \(hex(largeAddr())) \(partLength())")
            case 53..<60:
                lines.append("\(p) mprotect \(hex(largeAddr())) \(partLength()) \(pick(["none", "r", "rw", "rw", "rx"]))")
            case 60..<66:
                let a = largeAddr(), o = partLength(), n = chance(50) ? o : partLength()
                if chance(40) {
                    lines.append("\(p) mremap \(hex(a)) \(o) \(n)")
                } else {
                    lines.append("\(p) mremap \(hex(a)) \(o) \(n) \(hex(largeAddr()))")
                }
            case 66..<76:
                lines.append("\(p) madvise \(hex(largeAddr())) \(chance(50) ? largeLength() : partLength()) \(chance(70) ? "hugepage" : "nohugepage")")
            case 76..<83:
                lines.append("\(p) madvise \(hex(largeAddr())) \(partLength()) \(pick(["dontneed", "dontneed", "dontneed", "dontfork", "dofork", "wipeonfork"]))")
            case 83..<88:
                lines.append("thp shrink")
                ops -= 1
            case 88..<91: lines.append("\(p) \(chance(60) ? "mlock" : "munlock") \(hex(largeAddr())) \(partLength())")
            case 91..<94 where !kernelOnly:
                lines.append("\(p) split \(hex(largeAddr())) \(partLength())")
            case 94..<99 where !kernelOnly:
                largeReverseOp(p)
            default:
                observeLarge()
                ops -= 1
            }
        }
        observeLargeWindow()
        if hugetlb { observeHugetlbWindow() }
        return lines.joined(separator: "\n") + "\n"
    }
}
