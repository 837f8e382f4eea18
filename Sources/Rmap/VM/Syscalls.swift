import CShims

/// The memory system calls of the trace language, with the kernel's
/// semantics and error codes (mm/mmap.c, mm/vma.c, mm/mprotect.c,
/// mm/mremap.c, mm/madvise.c, mm/mlock.c, mm/gup.c).
extension Kernel {
    // MARK: mmap

    /// do_mmap() + __mmap_region() with MAP_FIXED_NOREPLACE: EEXIST when
    /// anything overlaps; a new range merges with compatible neighbours.
    /// `file` is 0 for anonymous memory; shared anonymous memory gets a new
    /// shmem file (shmem_zero_setup) whose pgoff is 0.
    package func doMmap(_ m: MMID, addr: UInt64, pages: UInt64, prot: UInt64, shared: Bool, file f: FileID,
                pgoff fileOff: UInt64, noreserve: Bool = false) -> Errno? {
        let end = addr + pages << PAGE_SHIFT
        let v0 = findVMA(m, addr)
        if !v0.isNone && vma(v0).pointee.vm_start < end { return .EEXIST }
        var flags = prot | VM.mayread | VM.maywrite | VM.mayexec | VM.softdirty
        if shared { flags |= VM.shared | VM.mayshare }
        // accountable_mapping(): private writable memory is charged.
        // MAP_NORESERVE (overcommit heuristic, the default): VM_NORESERVE, and
        // accountable_mapping() is then false.
        if noreserve { flags |= VM.noreserve }
        if flags & (VM.shared | VM.write | VM.noreserve) == VM.write { flags |= VM.account }
        // A machine without THP settings makes no large folio, and its
        // mappings are VM_NOHUGEPAGE from the start (what the oracle gives
        // such a trace: MADV_NOHUGEPAGE after each mmap).
        if !thpConfigured { flags |= VM.nohugepage }
        var pgoff = fileOff
        if f.isNone && !shared { pgoff = addr >> PAGE_SHIFT }
        guard available(T.vma) >= 2, available(T.avc) >= 8, available(T.file) >= 1,
              available(T.ptPage) >= 1 else { return .ENOMEM }
        let next = v0
        let prev = !next.isNone ? prevVMA(next) : (!firstVMA(m).isNone ? lastVMA(m) : .none)
        if !(f.isNone && shared) {
            let d = VMAMergeDesc(start: addr, end: end, flags: flags, file: f, pgoff: pgoff)
            let merged = vmaMergeNewRange(m, d, prev: prev, next: next)
            if !merged.isNone { return nil }
        }
        var file = f
        if f.isNone && shared {
            file = createFile(pages: pages, kind: .shmem)
            if file.isNone { return .ENOMEM }
        }
        let v = vmAreaAlloc(m)
        let p = vma(v)
        p.pointee.vm_start = addr
        p.pointee.vm_end = end
        p.pointee.vm_pgoff = pgoff
        p.pointee.vm_flags = flags
        p.pointee.file = file.rawValue
        if !f.isNone { getFile(f) }  // the VMA's reference; a new shmem file's first reference is the VMA's
        vmaLink(v)
        return nil
    }

    // MARK: mprotect

    /// do_mprotect_pkey(): changes the protection VMA by VMA; a hole is
    /// ENOMEM, after the VMAs before it were changed (as in the kernel).
    func doMprotect(_ m: MMID, start: UInt64, end: UInt64, prot: UInt64) -> Errno? {
        var v = findVMA(m, start)
        guard !v.isNone, vma(v).pointee.vm_start <= start else { return .ENOMEM }
        var prev: VMAID = vma(v).pointee.vm_start < start ? v : prevVMA(v)
        var nstart = start
        while true {
            let old = vma(v).pointee.vm_flags
            let newflags = prot | (old & ~VM.accessFlags)
            let tmp = min(vma(v).pointee.vm_end, end)
            let r: VMAID
            switch mprotectFixup(m, v, prev: &prev, start: nstart, end: tmp, newflags: newflags) {
            case .failure(let e): return e
            case .success(let n): r = n
            }
            // tmp = vma_iter_end(): the end of the VMA now covering the range
            // (a merge may have carried it past `tmp`).
            nstart = vma(r).pointee.vm_end
            if nstart >= end { return nil }
            v = nextVMA(r)
            if v.isNone || vma(v).pointee.vm_start != nstart { return .ENOMEM }
        }
    }

    /// mprotect_fixup(): VM_ACCOUNT rules, then vma_modify_flags() and
    /// change_protection() (hugetlb_change_protection() for a hugetlb VMA).
    /// Sets `prev` to the VMA now covering the range.
    func mprotectFixup(_ m: MMID, _ v: VMAID, prev: inout VMAID, start: UInt64, end: UInt64,
                       newflags nf: UInt64) -> Result<VMAID, Errno> {
        let old = vma(v).pointee.vm_flags
        if nf == old { prev = v; return .success(v) }
        var newflags = nf
        if newflags & VM.write != 0 {
            if old & (VM.account | VM.write | VM.hugetlb | VM.shared | VM.noreserve) == 0 { newflags |= VM.account }
        } else if old & VM.account != 0 && vma(v).pointee.file == 0 && vma(v).pointee.anon_vma == 0 {
            newflags &= ~VM.account
        }
        let r: VMAID
        switch vmaModify(v, prev: prev, start: start, end: end, flags: newflags) {
        case .failure(let e): return .failure(e)
        case .success(let n): r = n
        }
        prev = r
        if isHugetlbVMA(r) { hugetlbChangeProtection(r, start, end) } else { changeProtection(r, start, end) }
        // Private VM_LOCKED VMA becoming writable: trigger COW to avoid a
        // major fault on access (populate_vma_page_range).
        if old & (VM.write | VM.shared | VM.locked) == VM.locked && newflags & VM.write != 0 {
            var a = start
            while a < end { _ = gupFaultIn(m, a, write: true); a += PAGE_SIZE }
        }
        return .success(r)
    }

    /// change_pte_range(): every present PTE in the range takes the VMA's new
    /// protection; a private page stays writable only if it is an exclusive
    /// anon page that was writable-eligible (can_change_pte_writable), a
    /// shared one only if dirty.
    func changeProtection(_ v: VMAID, _ start: UInt64, _ end: UInt64) {
        let m = vmMM(v)
        let flags = vma(v).pointee.vm_flags
        let prot = PTE.pageProt(vmFlags: flags)
        // change_pmd_range(): PMD leaves the range covers whole change in
        // place (change_huge_pmd); the VMA split before already split any
        // PMD it cut.
        splitHugePMDsAtEdges(v, start, end)
        walkLeaves(root: mm(m).pointee.pgd, start: start, end: end, pmd: { _, pmd in
            changeHugePMD(v, pmd)
            return true
        }) { _, slot in
            let e = slot.pointee
            guard PTE.isPresent(e) else { return true }
            // pte_modify(): _PAGE_CHG_MASK bits stay, the rest comes from the new protection.
            let chg = PTE.pfnMask | PTE.accessed | PTE.dirty | PTE.softDirty | PTE.special
            var n = (e & chg) | (prot & ~chg)
            if flags & VM.write != 0 && prot & PTE.present != 0 {
                let pfn = vmNormalPage(e)
                if flags & VM.shared != 0 {
                    if PTE.isDirty(e) || PTE.isWrite(e) { n |= PTE.rw }
                } else if !pfn.isNone && pageIsAnon(pfn) && page(pfn).pointee.flags & PG.anonExclusive != 0 && PTE.isDirty(e) {
                    n |= PTE.rw
                } else {
                    n &= ~PTE.rw
                }
            } else {
                n &= ~PTE.rw
            }
            slot.pointee = n
            return true
        }
    }

    // MARK: mremap

    /// do_mremap() without MREMAP_MAYMOVE (`to == nil`: shrink, or grow in
    /// place when the space after the VMA is free) or with
    /// MREMAP_MAYMOVE|MREMAP_FIXED (move to `to`, mremap_to()).
    func doMremap(_ m: MMID, addr: UInt64, oldLen: UInt64, newLen: UInt64, to: UInt64?) -> Errno? {
        if let to {
            return mremapTo(m, addr: addr, oldLen: oldLen, newLen: newLen, newAddr: to)
        }
        // Shrinking: unmap the tail.
        if oldLen >= newLen {
            let v = vmaLookup(m, addr)
            guard !v.isNone else { return .EFAULT }
            if oldLen == newLen { return nil }
            return doMunmap(m, addr + newLen, addr + oldLen)
        }
        let v = vmaLookup(m, addr)
        guard !v.isNone else { return .EFAULT }
        if let e = vmaToResize(v, addr: addr, oldLen: oldLen, newLen: newLen) { return e }
        let delta = newLen - oldLen
        // Can we just expand the current mapping?
        if addr + oldLen == vma(v).pointee.vm_end && vmaExpandable(m, v, delta) {
            let oldEnd = vma(v).pointee.vm_end
            // vma_merge_extend(): the VMA grows over the gap, and over the
            // next VMA too when that one starts right at the new end and is
            // compatible (observed on 6.18: the two merge).
            var d = VMAMergeDesc(start: oldEnd, end: oldEnd + delta, flags: vma(v).pointee.vm_flags,
                                 file: vmFile(v), pgoff: vma(v).pointee.vm_pgoff + vmaPages(v))
            d.anonVMA = vmaAnonVMA(v)
            if vmaMergeNewRange(m, d, prev: v, next: nextVMA(v)).isNone {
                vmaSetRange(v, start: vma(v).pointee.vm_start, end: oldEnd + delta, pgoff: vma(v).pointee.vm_pgoff)
            }
            if vma(v).pointee.vm_flags & VM.locked != 0 {
                mm(m).pointee.locked_vm += delta >> PAGE_SHIFT
                _ = mmPopulate(m, oldEnd, oldEnd + delta)
            }
            return nil
        }
        return .ENOMEM
    }

    /// vma_to_resize(): EFAULT when the old range runs past its VMA.
    func vmaToResize(_ v: VMAID, addr: UInt64, oldLen: UInt64, newLen: UInt64) -> Errno? {
        if oldLen > vma(v).pointee.vm_end - addr { return .EFAULT }
        if newLen == oldLen { return nil }
        if vma(v).pointee.vm_flags & (VM.dontexpand | VM.pfnmap) != 0 { return .EFAULT }
        return nil
    }

    /// vma_expandable(): nothing mapped in [vm_end, vm_end + delta).
    func vmaExpandable(_ m: MMID, _ v: VMAID, _ delta: UInt64) -> Bool {
        let end = vma(v).pointee.vm_end
        guard end + delta <= TraceLimits.maxAddress else { return false }
        let n = nextVMA(v)
        return n.isNone || vma(n).pointee.vm_start >= end + delta
    }

    /// mremap_to(): MREMAP_FIXED moves [addr, addr+oldLen) to newAddr,
    /// unmapping whatever was there; ranges that overlap are EINVAL.
    func mremapTo(_ m: MMID, addr: UInt64, oldLen: UInt64, newLen: UInt64, newAddr: UInt64) -> Errno? {
        if addr + oldLen > newAddr && newAddr + newLen > addr { return .EINVAL }
        var oldLen = oldLen
        if newAddr + newLen > TraceLimits.maxAddress { return .EINVAL }
        // check_mremap_params / vma_to_resize before any change.
        let v0 = vmaLookup(m, addr)
        guard !v0.isNone else { return .EFAULT }
        if oldLen == newLen && addr + oldLen > vma(v0).pointee.vm_end {
            return mremapMoveMultiple(m, addr: addr, len: oldLen, newAddr: newAddr)
        }
        if let e = vmaToResize(v0, addr: addr, oldLen: min(oldLen, newLen), newLen: newLen) { return e }
        guard available(T.vma) >= 4, available(T.avc) >= UInt32(4 * (avcListLength(v0) + 2)),
              available(T.ptPage) >= 6 else { return .ENOMEM }
        if let e = doMunmap(m, newAddr, newAddr + newLen) { return e }
        if oldLen > newLen {
            if let e = doMunmap(m, addr + newLen, addr + oldLen) { return e }
            oldLen = newLen
        }
        let v = vmaLookup(m, addr)
        guard !v.isNone else { return .EFAULT }
        if let e = vmaToResize(v, addr: addr, oldLen: oldLen, newLen: newLen) { return e }
        return moveVMA(m, v, oldAddr: addr, oldLen: oldLen, newLen: newLen, newAddr: newAddr)
    }

    /// remap_move() (6.17+): a move that does not resize may span several
    /// VMAs and the gaps between them; each piece moves to the same offset
    /// from the new address, so the gaps stay gaps.
    func mremapMoveMultiple(_ m: MMID, addr: UInt64, len: UInt64, newAddr: UInt64) -> Errno? {
        let end = addr + len
        let list = vmasIntersecting(m, addr, end)
        for v in list where vma(v).pointee.vm_flags & (VM.dontexpand | VM.pfnmap) != 0 { return .EFAULT }
        guard available(T.vma) >= UInt32(4 * list.count + 4), available(T.ptPage) >= 6,
              available(T.avc) >= UInt32(list.reduce(8) { $0 + 4 * (avcListLength($1) + 2) }) else { return .ENOMEM }
        // The target is cleared only where a piece lands: what lies under a
        // gap of the source stays (observed on 6.18).
        let pieces = list.map { (max(vma($0).pointee.vm_start, addr), min(vma($0).pointee.vm_end, end)) }
        for (ps, pe) in pieces {
            let to = newAddr + (ps - addr)
            if let e = doMunmap(m, to, to + (pe - ps)) { return e }
            let v = vmaLookup(m, ps)
            guard !v.isNone else { continue }
            if let e = moveVMA(m, v, oldAddr: ps, oldLen: pe - ps, newLen: pe - ps, newAddr: newAddr + (ps - addr)) {
                return e
            }
        }
        return nil
    }

    /// move_vma(): copy_vma() at the new place (merging there if it can),
    /// move_page_tables(), then unmap the old range (whose PTEs are gone).
    func moveVMA(_ m: MMID, _ v: VMAID, oldAddr: UInt64, oldLen: UInt64, newLen: UInt64, newAddr: UInt64) -> Errno? {
        // Advise KSM to break any KSM pages in the area to be moved (they
        // would otherwise turn up where rmap_walk_ksm does not look); the
        // VMA keeps VM_MERGEABLE.
        var dummy = vma(v).pointee.vm_flags
        if let e = ksmMadvise(v, start: oldAddr, end: oldAddr + oldLen, advice: .unmergeable, flags: &dummy) { return e }
        let p = vma(v).pointee
        var newPgoff = p.vm_pgoff + ((oldAddr - p.vm_start) >> PAGE_SHIFT)
        // copy_vma(): an unfaulted anonymous VMA takes the new address's pgoff.
        if p.file == 0 && p.anon_vma == 0 && p.vm_flags & VM.shared == 0 { newPgoff = newAddr >> PAGE_SHIFT }
        let next = findVMA(m, newAddr)
        let prev = !next.isNone ? prevVMA(next) : lastVMA(m)
        var d = VMAMergeDesc(start: newAddr, end: newAddr + newLen, flags: p.vm_flags, file: FileID(p.file), pgoff: newPgoff)
        d.anonVMA = AnonVMAID(p.anon_vma)
        d.copiedFrom = v
        var nv = vmaMergeNewRange(m, d, prev: prev, next: next)
        if nv.isNone {
            nv = vmAreaDup(v)
            if nv.isNone { return .ENOMEM }
            vma(nv).pointee.vm_start = newAddr
            vma(nv).pointee.vm_end = newAddr + newLen
            vma(nv).pointee.vm_pgoff = newPgoff
            _ = anonVMAClone(dst: nv, src: v)
            vmaLink(nv)
        }
        // move_page_tables(): PTEs move with their bits; pages keep index and mapping.
        let root = mm(m).pointee.pgd
        var off: UInt64 = 0
        while off < oldLen {
            // move_page_tables() skips the spans whose source PMD is none
            // (get_old_pmd() finds no table: nothing to move there).
            let present = nextPMDPresent(root: root, from: oldAddr + off, end: oldAddr + oldLen)
            if present > oldAddr + off { off = present - oldAddr; continue }
            // A PMD leaf moves whole (move_huge_pmd, with
            // its deposited table) when the old and new 2 MiB are aligned,
            // covered and the new PMD is none; otherwise it is split first.
            if _slowPath(thpActive), let spmd = pmdSlot(root: root, key: oldAddr + off), PTE.isPMDLeafOrEntry(spmd.pointee) {
                let haddr = (oldAddr + off) & ~(Kernel.pmdSize - 1)
                let dst = newAddr + off
                if haddr == oldAddr + off && dst & (Kernel.pmdSize - 1) == 0 && off + Kernel.pmdSize <= oldLen,
                   available(T.ptPage) >= 2, let dpmd = pmdSlotAlloc(root: root, key: dst), dpmd.pointee == 0 {
                    let e = spmd.pointee
                    spmd.pointee = 0
                    let pgtable = withdrawPTETable(pmdTable: pmdTable(root: root, key: haddr))
                    depositPTETable(pmdTable: pmdTable(root: root, key: dst), pgtable)
                    dpmd.pointee = e
                    if _slowPath(hooks.reverseMapOn) && PTE.isPMDLeaf(e) {
                        for i in 0..<UInt64(RMAP_PMD_NR) {
                            hooks.reverseMap!.ptesMoved(self, pte: e + (i << PAGE_SHIFT), mm: m, from: haddr + i << PAGE_SHIFT, to: dst + i << PAGE_SHIFT)
                        }
                    }
                    off += Kernel.pmdSize
                    continue
                }
                splitHugePMD(v, haddr, spmd)
            }
            if let s = leafSlot(root: root, key: oldAddr + off), s.pointee != 0 {
                let e = s.pointee
                s.pointee = 0
                if let d = leafSlotAlloc(root: root, key: newAddr + off) {
                    d.pointee = e
                    if _slowPath(hooks.reverseMapOn) { hooks.reverseMap!.ptesMoved(self, pte: e, mm: m, from: oldAddr + off, to: newAddr + off) }
                }
            }
            off += PAGE_SIZE
        }
        let locked = p.vm_flags & VM.locked != 0
        // The old range is unmapped; its PTEs already moved.
        _ = doMunmap(m, oldAddr, oldAddr + oldLen)
        if locked {
            // The old range's unmap took its pages off locked_vm; the new VMA's count.
            mm(m).pointee.locked_vm += newLen >> PAGE_SHIFT
            if newLen > oldLen { _ = mmPopulate(m, newAddr + oldLen, newAddr + newLen) }
        }
        return nil
    }

    // MARK: mlock

    /// apply_vma_lock_flags() then __mm_populate() (do_mlock / sys_munlock).
    func doMlock(_ m: MMID, start: UInt64, end: UInt64, lock: Bool) -> Errno? {
        if let e = applyVMALockFlags(m, start: start, end: end, flags: lock ? VM.locked : 0) { return e }
        if !lock { return nil }
        // __mlock_posix_error_return(): EFAULT and EINVAL become ENOMEM.
        return mmPopulate(m, start, end)
    }

    func applyVMALockFlags(_ m: MMID, start: UInt64, end: UInt64, flags: UInt64) -> Errno? {
        var v = vmaLookup(m, start)
        guard !v.isNone else { return .ENOMEM }
        var prev: VMAID = vma(v).pointee.vm_start < start ? v : prevVMA(v)
        var nstart = start
        var tmp = vma(v).pointee.vm_start
        while !v.isNone && vma(v).pointee.vm_start < end {
            if vma(v).pointee.vm_start != tmp { return .ENOMEM }
            let newflags = (vma(v).pointee.vm_flags & ~VM.lockedMask) | flags
            tmp = min(vma(v).pointee.vm_end, end)
            guard let r = mlockFixup(m, v, prev: &prev, start: nstart, end: tmp, newflags: newflags) else {
                return .ENOMEM
            }
            tmp = vma(r).pointee.vm_end
            nstart = tmp
            v = nextVMA(r)
        }
        if tmp < end { return .ENOMEM }
        return nil
    }

    /// mlock_fixup(): vma_modify_flags(), then mlock or munlock the pages
    /// already mapped (mlock_vma_pages_range). A hugetlb VMA is left alone
    /// ("don't set VM_LOCKED or VM_LOCKONFAULT and don't count": no split,
    /// no locked_vm, its pages never PG_mlocked); __mm_populate() still
    /// faults its pages in.
    func mlockFixup(_ m: MMID, _ v: VMAID, prev: inout VMAID, start: UInt64, end: UInt64,
                    newflags: UInt64) -> VMAID? {
        let old = vma(v).pointee.vm_flags
        if newflags == old || old & Kernel.vmSpecial != 0 || isHugetlbVMA(v) { prev = v; return v }
        guard case .success(let r) = vmaModify(v, prev: prev, start: start, end: end, flags: newflags) else { return nil }
        prev = r
        let pages = (end - start) >> PAGE_SHIFT
        if newflags & VM.locked != 0 {
            mm(m).pointee.locked_vm += pages
        } else {
            mm(m).pointee.locked_vm -= min(mm(m).pointee.locked_vm, pages)
        }
        if newflags & VM.locked != 0 && old & VM.locked != 0 { return r }
        let lock = newflags & VM.locked != 0
        var skipUntil: UInt64 = 0  // the rest of a large folio's step (folio_mlock_step)
        walkLeaves(root: mm(m).pointee.pgd, start: start, end: end, pmd: { _, pmd in
            // mlock_pte_range()'s PMD leaf: the THP is mlocked or munlocked
            // whole (not the huge zero page, nor a migration entry:
            // !pmd_present).
            let head = PTE.pfn(pmd.pointee)
            guard PTE.isPMDLeaf(pmd.pointee), head != hugeZeroPFN else { return true }
            if lock { mlockLargeFolio(head) } else { munlockLargeFolio(head) }
            return true
        }) { addr, slot in
            if addr < skipUntil { return true }
            let pfn = vmNormalPage(slot.pointee)
            guard !pfn.isNone else { return true }
            let head = folioOf(pfn)
            if _slowPath(folioIsLarge(head)) {
                // mlock_pte_range(): one step over the folio's PTEs; mlock
                // only a folio inside this PMD's part of the range and
                // fully mapped there (allow_mlock_munlock); munlock always.
                let pmdStart = max(start, addr & ~(Kernel.pmdSize - 1))
                let pmdEnd = min(end, (addr & ~(Kernel.pmdSize - 1)) + Kernel.pmdSize)
                let step = folioMlockStep(head, pfn, slot, addr, pmdEnd)
                skipUntil = addr + UInt64(max(step, 1)) << PAGE_SHIFT
                if !lock {
                    munlockLargeFolio(head)
                } else if allowMlockLargeFolio(head, vma: r, start: pmdStart, end: pmdEnd, step: step) {
                    mlockLargeFolio(head)
                }
                return true
            }
            if lock {
                page(pfn).pointee.flags |= PG.mlocked | PG.unevictable  // mlock_folio()
            } else {
                if page(pfn).pointee.flags & PG.mlocked != 0 { munlockVMAPage(pfn) }
            }
            return true
        }
        return r
    }

    /// __mm_populate() -> populate_vma_page_range() -> __get_user_pages():
    /// faults in every page of [start, end): with FOLL_WRITE in private
    /// writable VMAs (breaking COW), read otherwise. A PROT_NONE VMA or a
    /// hole is an error, reported as ENOMEM by mlock.
    func mmPopulate(_ m: MMID, _ start: UInt64, _ end: UInt64) -> Errno? {
        var addr = start
        while addr < end {
            let v = findVMA(m, addr)
            guard !v.isNone, vma(v).pointee.vm_start < end else { return nil }
            if vma(v).pointee.vm_start > addr { addr = vma(v).pointee.vm_start }
            let flags = vma(v).pointee.vm_flags
            let nend = min(end, vma(v).pointee.vm_end)
            if flags & VM.lockonfault != 0 { addr = nend; continue }
            if flags & VM.accessFlags == 0 { return .ENOMEM }  // check_vma_flags(): EFAULT
            let write = flags & (VM.write | VM.shared) == VM.write
            while addr < nend {
                if let e = gupFaultIn(m, addr, write: write) { return e }
                addr += PAGE_SIZE
            }
        }
        return nil
    }

    /// follow_page_pte() / faultin_page() for one page: a fault only when the
    /// PTE is missing, or read-only for a write.
    func gupFaultIn(_ m: MMID, _ addr: UInt64, write: Bool) -> Errno? {
        if let s = leafSlot(root: mm(m).pointee.pgd, key: addr), PTE.isPresent(s.pointee) {
            if !write || PTE.isWrite(s.pointee) {
                s.pointee |= PTE.accessed  // FOLL_TOUCH
                return nil
            }
        }
        switch handleMMFault(m, addr, write: write) {
        case .ok: return nil
        case .oom: return .ENOMEM
        // VM_FAULT_SIGBUS / _SIGSEGV, and VM_FAULT_HWPOISON(_LARGE) (a
        // hwpoison entry: do_swap_page, hugetlb_fault) are -EFAULT here:
        // vm_fault_to_errno() gives -EHWPOISON only with FOLL_HWPOISON,
        // which populate_vma_page_range() does not pass (faultin_page_range
        // for MADV_POPULATE_* does); mlock's __mlock_posix_error_return()
        // then makes -EFAULT ENOMEM.
        case .sigbus, .sigsegv: return .ENOMEM
        }
    }
}

/// Address-space limits shared with the trace language.
enum TraceLimits {
    static let minAddress: UInt64 = 0x1000_0000_0000
    static let maxAddress: UInt64 = 0x7000_0000_0000
}
