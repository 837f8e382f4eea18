import CShims

/// The reverse side of hugetlb folios that the model runs: rmap walks of a
/// hugetlb folio (anonymous through its anon_vma, shared through its
/// hugetlbfs file's i_mmap) and folio_referenced() over them.
extension Kernel {
    /// The (VMA, address) pairs whose entry maps hugetlb folio `head`, in
    /// walk order: rmap_walk_anon() over the anon_vma tree or
    /// rmap_walk_file() over i_mmap at the folio's index, each VMA's entry
    /// checked as page_vma_mapped_walk() does for hugetlb (one huge entry).
    func hugetlbMappings(_ head: PFN) -> [(vma: VMAID, address: UInt64, pmd: UnsafeMutablePointer<UInt64>)] {
        var out: [(VMAID, UInt64, UnsafeMutablePointer<UInt64>)] = []
        hugetlbRmapWalk(head) { v, address, pmd in
            if PTE.isPMDLeaf(pmd.pointee), PTE.pfn(pmd.pointee) == head { out.append((v, address, pmd)) }
        }
        return out
    }

    /// The rmap walk of hugetlb folio `head`: rmap_walk_anon() over its
    /// anon_vma tree or rmap_walk_file() over its hugetlbfs file's i_mmap at
    /// the folio's index; `visit` gets each VMA there with the address of
    /// the folio in it and the (huge) entry's slot.
    func hugetlbRmapWalk(_ head: PFN, _ visit: (VMAID, UInt64, UnsafeMutablePointer<UInt64>) -> Void) {
        let idx = page(head).pointee.index
        func at(_ v: VMAID) {
            guard let address = vmaAddress(v, index: idx),
                  let pmd = pmdSlot(root: mm(vmMM(v)).pointee.pgd, key: address) else { return }
            visit(v, address, pmd)
        }
        if pageIsAnon(head) {
            let av = pageAnonVMA(head)
            guard anonVMAIsLive(av) else { return }
            var a = AVCID(IntervalTree.iterFirst(root: anonVMARoot(av).pointee, start: idx, last: idx, avcTree))
            while !a.isNone {
                at(avcVMA(a))
                a = AVCID(IntervalTree.iterNext(a.rawValue, start: idx, last: idx, avcTree))
            }
        } else {
            let f = pageFile(head)
            guard !f.isNone else { return }
            var v = VMAID(IntervalTree.iterFirst(root: iMMapRoot(f).pointee, start: idx, last: idx, iMMap))
            while !v.isNone {
                at(v)
                v = VMAID(IntervalTree.iterNext(v.rawValue, start: idx, last: idx, iMMap))
            }
        }
    }

    /// folio_referenced() of a hugetlb folio: each entry that maps it is
    /// tested and cleared young (folio_referenced_one: the huge pte through
    /// ptep_clear_flush_young_notify, secondary MMUs asked too); the walk
    /// stops once every mapping was seen. (hugetlb VMAs are never VM_LOCKED:
    /// mlock_fixup() leaves them alone.)
    package func hugetlbFolioReferenced(_ head: PFN) -> Int {
        var mapcount = folioMapcount(head)
        var referenced = 0
        for (v, address, pmd) in hugetlbMappings(head) where mapcount > 0 {
            var young = PTE.isYoung(pmd.pointee)
            pmd.pointee &= ~PTE.accessed
            if hooks.hasSubscriptions && mmuClearFlushYoung(vmMM(v), address, address + Kernel.hpageSize) { young = true }
            if young { referenced += 1 }
            mapcount -= 1
        }
        return referenced
    }
}

extension Kernel {
    /// folio_mkclean() of a hugetlb folio: an anonymous one has no mapping
    /// (0); for a hugetlbfs page, each shared VMA of the file's i_mmap that
    /// maps it (invalid_mkclean_vma) has its huge entry, when dirty or
    /// writable, cleared and flushed and set again write-protected and
    /// clean (page_vma_mkclean_one: pvmw.pte is the huge pte), inside an
    /// MMU_NOTIFY_PROTECTION_PAGE range of the folio. An entry of a shared
    /// PMD table is cleaned once (the other sharers find it clean). The
    /// number cleaned; PG_dirty is left to the caller, as for small pages.
    package func hugetlbFolioMkclean(_ head: PFN) -> Int {
        guard folioMapcount(head) > 0, !pageIsAnon(head), !pageFile(head).isNone else { return 0 }
        var cleaned = 0
        for (v, address, pmd) in hugetlbMappings(head) where vma(v).pointee.vm_flags & VM.shared != 0 {
            let m = vmMM(v)
            mmuInvalidateRangeStart(m, address, address + Kernel.hpageSize)
            defer { mmuInvalidateRangeEnd(m, address, address + Kernel.hpageSize) }
            let e = pmd.pointee
            if !PTE.isDirty(e) && !PTE.isWrite(e) { continue }
            pmd.pointee = 0
            flushTLBPage()  // huge_ptep_clear_flush()
            pmd.pointee = e & ~(PTE.rw | PTE.dirty)
            cleaned += 1
        }
        return cleaned
    }

    /// try_to_unmap() of a hugetlb folio, as the seeds' try_to_unmap_one()
    /// orders its PageHuge branch (v5.0): per VMA, the notifier range is the
    /// folio's, widened to the PUD range when the PMD table may be shared
    /// (adjust_range_if_pmd_sharing_possible); a shared PMD table is only
    /// unshared (huge_pmd_unshare: this mm's PUD entry goes, the TLB and the
    /// secondary MMUs are flushed over the widened range) and the walk of
    /// that VMA ends there, the other sharers still mapping the page;
    /// otherwise the entry is cleared and flushed, its dirty bit given to the
    /// folio, and the mapping removed (hugetlb_remove_rmap, one reference).
    /// A poisoned folio (PG_hwpoison on its head: `poison`) leaves a
    /// hwpoison entry naming it in each entry's place (set_huge_pte_at of
    /// make_hwpoison_entry), unless TTU_IGNORE_HWPOISON; a shared PMD table
    /// is still only unshared. An anonymous hugetlb folio otherwise is
    /// refused (EINVAL): the seeds would take the swap path a hugetlb page
    /// has no swap entry for, 6.18 has VM_BUG_ON(!PageHWPoison) there.
    /// TTU_MIGRATION is try_to_migrate()
    /// (Kernel.tryToMigrateHugetlb: hugetlb migration entries), for
    /// anonymous folios too. `ok` when no mapping is left.
    package func tryToUnmapHugetlb(_ head: PFN, flags: TTUFlags) -> LargeReverseResult {
        getPage(head)  // the caller's reference
        defer { putPage(head) }
        if flags.contains(.migration) { return tryToMigrateHugetlb(head) ? .ok : .fail }
        let anon = pageIsAnon(head)
        let poisoned = page(head).pointee.flags & PG.hwpoison != 0 && !flags.contains(.ignoreHWPoison)
        guard !anon || poisoned else { return .einval }
        forEachHugetlbMappingWidened(head) { v, address, pmd in
            if !anon && hugePMDUnshare(v, address) { return }
            let e = pmd.pointee
            pmd.pointee = 0
            flushTLBPage()  // ptep_clear_flush()
            if PTE.isDirty(e) { page(head).pointee.flags |= PG.dirty }
            if poisoned { pmd.pointee = makeHWPoisonPTE(head) }  // hugetlb_count_sub(), set_huge_pte_at()
            hugetlbRemoveRmap(head)
            putPage(head)
        }
        return folioMapcount(head) == 0 ? .ok : .fail
    }

    /// The walk try_to_unmap_one() and try_to_migrate_one() share for a
    /// hugetlb folio: each VMA that maps it once, with a fresh rmap walk
    /// after each step (an unshare changes what the next VMA's entry is;
    /// page_vma_mapped_walk looks it up anew), while mappings are left; the
    /// step runs inside the MMU-notifier range widened to the shared PMD's
    /// GiB where sharing is possible (adjust_range_if_pmd_sharing_possible).
    func forEachHugetlbMappingWidened(_ head: PFN,
                                      _ step: (VMAID, UInt64, UnsafeMutablePointer<UInt64>) -> Void) {
        var done = Set<VMAID>()
        while folioMapcount(head) > 0 {
            guard let (v, address, pmd) = hugetlbMappings(head).first(where: { !done.contains($0.vma) }) else { break }
            done.insert(v)
            let m = vmMM(v)
            var start = address, end = min(vma(v).pointee.vm_end, address + Kernel.hpageSize)
            adjustRangeIfPMDSharingPossible(v, &start, &end)
            mmuInvalidateRangeStart(m, start, end)
            step(v, address, pmd)
            mmuInvalidateRangeEnd(m, start, end)
        }
    }
}

extension PG {
    /// Not a kernel flag: the raw page memory_failure() kept when it
    /// dissolved a poisoned hugetlb folio (__page_handle_poison:
    /// take_page_off_buddy, page_ref_inc). Its `private_` holds the head the
    /// folio had, which the hwpoison entries left in page tables still name.
    static let hugetlbRawHWPoison: UInt64 = 1 << 28
}

/// What memory_failure() answers for a page of a hugetlb folio.
enum HugetlbMemoryFailure: Equatable {
    /// MF_RECOVERED: 0.
    case recovered
    /// MF_FAILED (unmap failed, extra references, or the freed folio could
    /// not be dissolved): -EBUSY.
    case failed
    /// MF_HUGETLB_FOLIO_PRE_POISONED / _PAGE_PRE_POISONED: -EHWPOISON.
    case alreadyPoisoned
}

extension Kernel {
    /// try_memory_failure_hugetlb() on page `raw` of an in-use hugetlb folio
    /// (mm/memory-failure.c, 6.18), after its first step (see below):
    /// - hwpoison_user_mappings() -> unmap_poisoned_folio(): try_to_unmap
    ///   with TTU_HWPOISON (a file folio under the i_mmap lock taken for
    ///   write, TTU_RMAP_LOCKED: huge_pmd_unshare may run), so every mapper,
    ///   anonymous or hugetlbfs, is left a hugetlb hwpoison entry (a shared
    ///   PMD table is unshared, the last sharer's entry replaced). hugetlbfs
    ///   has no writeback, so no folio_mkclean first. A folio still mapped
    ///   is MF_MSG_UNMAP_FAILED (-EBUSY), the reference kept. The
    ///   processes to kill are not modelled (early kill is off; with
    ///   MADV_HWPOISON the caller alone would get SIGBUS for a dirty folio).
    /// - identify_page_state() -> me_huge_page() (PG_head):
    ///   - a hugetlbfs folio (folio_mapping): truncate_error_folio() ->
    ///     hugetlbfs_error_remove_folio() keeps it in the page cache (a fault
    ///     there is SIGBUS: hugetlb_no_page), and the memory-failure
    ///     reference stays for good; has_extra_refcount() with the cache's
    ///     pins: -EBUSY if anything else holds it;
    ///   - an anonymous folio: folio_put() of the memory-failure reference;
    ///     unreferenced, free_huge_folio() puts it on the free list (its
    ///     reservation restored if it consumed one), then
    ///     __page_handle_poison() -> dissolve_free_hugetlb_folio(): only
    ///     while available_huge_pages() (free less reserved) is not 0, the
    ///     folio leaves the pool (remove_hugetlb_folio: nr_huge_pages and
    ///     free_huge_pages down, max_huge_pages down) and its pages go back
    ///     to the buddy allocator but the raw one, taken off it with a
    ///     reference (take_page_off_buddy, page_ref_inc): recovered. When
    ///     every free page is reserved, or another reference holds it, the
    ///     dissolve fails (-EBUSY): the poisoned folio stays in the pool,
    ///     counted free once it is freed, and never handed out again
    ///     (dequeue_hugetlb_folio_node_exact skips PG_hwpoison).
    func memoryFailureHugetlb(_ raw: PFN) -> HugetlbMemoryFailure {
        let head = folioOf(raw)
        // The first step (get_huge_page_for_hwpoison ->
        // __get_huge_page_for_hwpoison): folio_try_get() and
        // folio_set_hugetlb_hwpoison(), PG_hwpoison on the head (which
        // migrateHugetlbFolio refuses), as poisonPage does for a small page;
        // -EHWPOISON, no reference taken, when poisoned already through any
        // of its pages.
        guard poisonPage(head) else { return .alreadyPoisoned }
        if folioMapcount(head) > 0 {
            _ = tryToUnmapHugetlb(head, flags: [.ignoreMlock])
            if folioMapcount(head) > 0 { return .failed }
        }
        let p = page(head)
        if !pageIsAnon(head) && p.pointee.mapping != 0 {
            // has_extra_refcount(ps, p, extra_pins: true): the page cache's
            // and memory_failure's references only.
            return p.pointee.refcount > 2 ? .failed : .recovered
        }
        putPage(head)  // me_huge_page(): folio_put()
        guard p.pointee.refcount == 0, availableHugePages > 0 else { return .failed }
        dissolvePoisonedHugetlbFolio(head, raw: raw)
        return .recovered
    }

    /// dissolve_free_hugetlb_folio() of a poisoned folio on the free list,
    /// then what update_and_free_hugetlb_folio() and take_page_off_buddy()
    /// leave: the folio out of the pool and of the free list, its frames
    /// free but `raw`, which stays with one reference and PG_hwpoison
    /// (folio_clear_hugetlb_hwpoison moved the flag to the raw page).
    func dissolvePoisonedHugetlbFolio(_ head: PFN, raw: PFN) {
        unlinkFreeHugetlbFolio(head)
        header.pointee.nr_huge_pages -= 1
        for i in 0..<RMAP_PMD_NR {
            let f = head.advanced(by: i)
            if f == raw {
                let r = page(f)
                UnsafeMutableRawPointer(r).initializeMemory(as: UInt8.self, repeating: 0,
                                                            count: MemoryLayout<rmap_page>.stride)
                r.pointee.flags = PG.hwpoison | PG.hugetlbRawHWPoison
                r.pointee.refcount = 1
                r.pointee.mapcount = -1
                r.pointee.private_ = UInt64(head.rawValue)
            } else {
                free(T.frame, f.rawValue)
            }
        }
    }

    /// Takes `head` off the hugetlb free list (remove_hugetlb_folio's
    /// list_del): free_huge_pages down.
    func unlinkFreeHugetlbFolio(_ head: PFN) {
        var prev = PFN.none
        var f = PFN(header.pointee.hugetlb_free_head)
        while !f.isNone && f != head {
            prev = f
            f = PFN(page(f).pointee.next)
        }
        precondition(f == head, "dissolving a hugetlb folio that is not on the free list")
        let next = page(head).pointee.next
        if prev.isNone { header.pointee.hugetlb_free_head = next } else { page(prev).pointee.next = next }
        page(head).pointee.next = 0
        header.pointee.free_huge_pages -= 1
    }
}
