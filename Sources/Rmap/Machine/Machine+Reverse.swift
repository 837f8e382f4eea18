import CShims

/// The model-only statements: reverse-mapping operations on the frame a
/// process maps at each page.
extension Machine {
    /// The frame `m` maps at `addr`, 0 for none, the zero page, or a
    /// non-present entry (the statement then answers EFAULT).
    /// With `devicePrivate`, a device-private entry names its frame too (what
    /// migrate_vma hands to try_to_unmap / migration: `unmap`, `migrate`).
    package func mappedFrame(_ m: MMID, _ addr: UInt64, devicePrivate: Bool = false) -> PFN {
        guard let s = k.leafSlot(root: k.mm(m).pointee.pgd, key: addr) else { return k.mappedPage(m, addr) }
        if devicePrivate && PTE.isDevicePrivateEntry(s.pointee) { return PTE.swpOffsetPFN(s.pointee) }
        return k.vmNormalPage(s.pointee)
    }

    /// A large folio's result as the statement's.
    func opResult(_ r: Kernel.LargeReverseResult) -> OpResult {
        switch r {
        case .ok: return .ok
        case .fail: return .fail
        case .einval: return .errno(.EINVAL)
        case .notModelled(let what): return .notModelled(what)
        }
    }

    func performReverse(_ m: MMID, _ op: Operation) -> OpResult {
        switch op {
        case .unmap(let addr, let pages, let flags):
            let r = eachFrame(m, addr, pages, devicePrivate: true,
                              large: { opResult(k.tryToUnmapFolio($0, flags: flags)) }) { k.tryToUnmap($0, flags: flags) ? .ok : .fail }
            // The caller of try_to_unmap() flushes a TTU_BATCH_FLUSH batch
            // once, after all its pages (try_to_unmap_flush()).
            k.tryToUnmapFlush()
            return r
        case .reclaim(let addr, let pages):
            return eachFrame(m, addr, pages, large: { opResult(k.reclaimFolio($0)) }) { k.reclaimPage($0, kswapd: true) ? .ok : .fail }
        case .migrate(let addr, let pages):
            return eachFrame(m, addr, pages, devicePrivate: true,
                             large: { opResult(k.migrateFolio($0)) }) { k.migratePage($0) ? .ok : .fail }
        case .device(let addr, let pages, let coherent):
            // migrate_vma_setup/pages/finalize with a driver's device pages:
            // only plain anonymous system pages are collected. Page by page
            // (not folio by folio): migrate_vma_collect_pmd() splits a
            // PMD-mapped THP first, and skips each page of a PTE-mapped
            // large folio ("FIXME support THP": PageTransCompound).
            var result = OpResult.ok
            var a = addr
            for _ in 0..<pages {
                defer { a += PAGE_SIZE }
                if !k.migrateVMACollectHugePMD(m, a) {
                    result = .fail  // migrate_vma_collect_skip(): the THP could not be split
                    continue
                }
                let pfn = mappedFrame(m, a)
                if pfn.isNone { return .errno(.EFAULT) }
                let p = k.page(pfn).pointee
                guard !k.folioIsLarge(k.folioOf(pfn)), k.pageIsAnon(pfn), !k.pageIsKSM(pfn), p.flags & PG.zoneDevice == 0,
                      k.migratePage(pfn, to: coherent ? .deviceCoherent : .devicePrivate) else {
                    result = .fail
                    continue
                }
            }
            return result
        case .poison(let addr, let pages):
            // memory_failure() is per page: a page of a large folio is
            // poisoned, then its folio split (try_to_split_thp_page, the
            // hwpoison reference pinning the page); one that cannot be split
            // stays large (MF_MSG_UNSPLIT_THP: EBUSY).
            var result = OpResult.ok
            var a = addr
            for _ in 0..<pages {
                defer { a += PAGE_SIZE }
                let pfn = mappedFrame(m, a)
                if pfn.isNone { return .errno(.EFAULT) }
                let head = k.folioOf(pfn)
                if !k.poisonPage(pfn) { result = .errno(.EHWPOISON); continue }
                if k.folioIsLarge(head) && !k.splitFolio(head, pinned: pfn) { result = .errno(.EBUSY) }
            }
            return result
        case .referenced(let addr, let pages):
            // The sum over the line's folios (one per page of a small folio,
            // one per large folio).
            var n = 0
            let r = eachFrame(m, addr, pages, large: { head in
                n += k.folioReferenced(head, filter: AllVMAs?.none).referenced
                return .ok
            }) { pfn in
                n += k.pageReferenced(pfn, filter: AllVMAs?.none).referenced
                return .ok
            }
            return r == .ok ? .referenced(n) : r
        case .mkclean(let addr, let pages):
            var n = 0
            // folio_mkclean() of a large (anonymous, not swap-cached) folio:
            // no mapping to clean (folio_mapping() is NULL): 0.
            let r = eachFrame(m, addr, pages, large: { _ in .ok }) { pfn in
                n += k.pageMkclean(pfn)
                return .ok
            }
            return r == .ok ? .cleaned(n) : r
        default:
            return .errno(.EINVAL)
        }
    }

    /// Runs `body` on the frame at each page; EFAULT for a page without one
    /// (the rest of the line does not run); the last non-ok result otherwise.
    /// A page of a large folio goes to `large` with the folio's head, once
    /// per folio: the rest of its pages in the range are skipped (the
    /// reverse statements take folios). A path not modelled yet ends the line.
    func eachFrame(_ m: MMID, _ addr: UInt64, _ pages: UInt64, devicePrivate: Bool = false,
                   large: (PFN) -> OpResult, _ body: (PFN) -> OpResult) -> OpResult {
        var result = OpResult.ok
        var a = addr
        var skipUntil: UInt64 = 0  // the rest of the last large folio's pages (it may be split or gone by now)
        for _ in 0..<pages {
            defer { a += PAGE_SIZE }
            if a < skipUntil { continue }
            let pfn = mappedFrame(m, a, devicePrivate: devicePrivate)
            if pfn.isNone { return .errno(.EFAULT) }
            let head = k.folioOf(pfn)
            let r: OpResult
            if k.folioIsLarge(head) {
                skipUntil = a + UInt64(Int(k.folioNrPages(head)) - head.distance(to: pfn)) << PAGE_SHIFT
                r = large(head)
            } else {
                r = body(pfn)
            }
            if case .notModelled = r { return r }
            if r != .ok { result = r }
        }
        return result
    }
}

extension Machine {
    /// page_referenced() on the frame `process` maps at `addr`, optionally
    /// counting only the VMAs of one process (the model's stand-in for a
    /// memcg: invalid_page_referenced_vma). Nil when no frame is mapped there.
    public func referenced(process: String, addr: UInt64, onlyProcess: String? = nil) -> (count: Int, locked: Bool)? {
        guard let m = mmOf(process) else { return nil }
        let pfn = mappedFrame(m, addr)
        guard !pfn.isNone else { return nil }
        let r: (referenced: Int, vmFlags: UInt64)
        // A page of a large folio: folio_referenced() of its folio.
        let head = k.folioOf(pfn)
        let large = k.folioIsLarge(head)
        if let only = onlyProcess {
            guard let om = mmOf(only) else { return nil }
            r = large ? k.folioReferenced(head, filter: OneMMCgroup(mm: om)) : k.pageReferenced(pfn, filter: OneMMCgroup(mm: om))
        } else {
            r = large ? k.folioReferenced(head, filter: AllVMAs?.none) : k.pageReferenced(pfn, filter: AllVMAs?.none)
        }
        return (r.referenced, r.vmFlags & VM.locked != 0)
    }
}

extension Machine {
    /// Idle page tracking (/sys/kernel/mm/page_idle/bitmap, mm/page_idle.c)
    /// on the frame `process` maps at `addr`: the bit write
    /// (page_idle_bitmap_write: page_idle_clear_pte_refs, then
    /// folio_set_idle). False when no trackable frame is mapped there (none,
    /// the zero page, a swap or migration entry).
    @discardableResult
    public func markIdle(process: String, addr: UInt64) -> Bool {
        guard let m = mmOf(process) else { return false }
        return k.pageIdleMark(mappedFrame(m, addr))
    }

    /// The bit read (page_idle_bitmap_read): true while the frame at `addr`
    /// has not been accessed through any PTE or secondary MMU since
    /// `markIdle`; a reference found clears the bit (and marks the page young
    /// for page_referenced). Nil when no trackable frame is mapped there.
    public func isIdle(process: String, addr: UInt64) -> Bool? {
        guard let m = mmOf(process) else { return nil }
        return k.pageIdleRead(mappedFrame(m, addr))
    }
}
