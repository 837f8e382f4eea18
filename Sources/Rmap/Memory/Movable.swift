import CShims

/// Non-LRU movable pages (PAGE_MAPPING_MOVABLE, mm/migrate.c with
/// mm/balloon_compaction.c as the driver, 6.x before the PageMovableOps
/// rework): a memory balloon owns pages that no process maps; page->mapping
/// holds its movable_operations (`balloon_mops`) tagged
/// PAGE_MAPPING_MOVABLE, and migration moves them only through those
/// callbacks (isolate_page, migrate_page, putback_page). rmap_walk never
/// visits them (neither anon nor file). The balloon device is three header
/// words: balloon_head its page list (through rmap_page.next/prev),
/// balloon_pages the pages on it, balloon_isolated isolated_pages;
/// `balloon_mops` is the byte offset of balloon_head (the model's address of
/// the driver's structure).
extension Kernel {
    @inline(__always) var balloonMops: UInt64 {
        UInt64(MemoryLayout<rmap_arena_header>.offset(of: \rmap_arena_header.balloon_head)!)
    }
    @inline(__always) var balloonHead: PFN {
        get { PFN(UInt32(truncatingIfNeeded: header.pointee.balloon_head)) }
        nonmutating set { header.pointee.balloon_head = UInt64(newValue.rawValue) }
    }

    /// __PageMovable() for the balloon: page->mapping == &balloon_mops | PAGE_MAPPING_MOVABLE.
    @inline(__always) func pageIsBalloonMovable(_ pfn: PFN) -> Bool {
        page(pfn).pointee.mapping == balloonMops | PageMapping.movable
    }

    /// balloon_page_insert(): PageOffline, __SetPageMovable(page,
    /// &balloon_mops), page_private = the device, list_add(&page->lru, &pages).
    func balloonPageInsert(_ pfn: PFN) {
        let p = page(pfn)
        p.pointee.flags |= PG.offline
        p.pointee.mapping = balloonMops | PageMapping.movable
        p.pointee.private_ = balloonMops
        p.pointee.prev = 0
        p.pointee.next = balloonHead.rawValue
        if !balloonHead.isNone { page(balloonHead).pointee.prev = pfn.rawValue }
        balloonHead = pfn
        header.pointee.balloon_pages += 1
    }

    /// list_del(&page->lru) from the balloon's list.
    func balloonListDel(_ pfn: PFN) {
        let p = page(pfn)
        let next = PFN(p.pointee.next), prev = PFN(p.pointee.prev)
        if !prev.isNone { page(prev).pointee.next = next.rawValue } else { balloonHead = next }
        if !next.isNone { page(next).pointee.prev = prev.rawValue }
        p.pointee.next = 0
        p.pointee.prev = 0
        header.pointee.balloon_pages -= 1
    }

    /// balloon_page_delete(): __ClearPageMovable (only the PAGE_MAPPING_MOVABLE
    /// bit stays in page->mapping), ClearPagePrivate, off the list unless isolated.
    func balloonPageDelete(_ pfn: PFN) {
        let p = page(pfn)
        p.pointee.mapping = PageMapping.movable
        p.pointee.private_ = 0
        if p.pointee.flags & PG.isolated == 0 { balloonListDel(pfn) }
    }

    /// balloon_page_alloc() + balloon_page_enqueue(): `n` new pages inflate
    /// the balloon (the page's one reference is the balloon's). Returns the
    /// pages added (fewer when memory runs out).
    func balloonInflate(_ n: Int) -> Int {
        for i in 0..<n {
            let pfn = allocPage()
            if pfn.isNone { return i }
            page(pfn).pointee.flags &= ~PG.uptodate
            balloonPageInsert(pfn)
        }
        return n
    }

    /// balloon_page_dequeue(): up to `n` pages leave the balloon (isolated
    /// pages are not on the list and cannot be deflated) and are freed
    /// (balloon_page_delete, then the driver's put_page). Returns how many.
    func balloonDeflate(_ n: Int) -> Int {
        var done = 0
        while done < n && !balloonHead.isNone {
            let pfn = balloonHead
            balloonPageDelete(pfn)
            page(pfn).pointee.flags &= ~PG.offline  // __ClearPageOffline
            putPage(pfn)
            done += 1
        }
        return done
    }

    /// isolate_movable_page(): a reference (get_page_unless_zero), the page
    /// must be __PageMovable and not isolated; mops->isolate_page
    /// (balloon_page_isolate: off the list, isolated_pages++), PG_isolated set.
    func isolateMovablePage(_ pfn: PFN) -> Bool {
        let p = page(pfn)
        guard p.pointee.refcount > 0, p.pointee.mapping & PageMapping.flags == PageMapping.movable else { return false }
        getPage(pfn)
        guard pageIsBalloonMovable(pfn), p.pointee.flags & PG.isolated == 0 else { putPage(pfn); return false }
        balloonListDel(pfn)  // balloon_page_isolate()
        header.pointee.balloon_isolated += 1
        p.pointee.flags |= PG.isolated
        return true
    }

    /// putback_movable_page(): mops->putback_page (balloon_page_putback:
    /// back on the list, isolated_pages--), PG_isolated cleared, the
    /// isolation reference dropped.
    func putbackMovablePage(_ pfn: PFN) {
        let p = page(pfn)
        if pageIsBalloonMovable(pfn) {
            p.pointee.prev = 0
            p.pointee.next = balloonHead.rawValue
            if !balloonHead.isNone { page(balloonHead).pointee.prev = pfn.rawValue }
            balloonHead = pfn
            header.pointee.balloon_pages += 1
            header.pointee.balloon_isolated -= 1
        }
        p.pointee.flags &= ~PG.isolated
        putPage(pfn)
    }

    /// migrate_pages() for an isolated non-LRU movable page: a new page,
    /// then move_to_new_folio() calls mops->migrate_page
    /// (balloon_page_migrate -> the driver's migratepage: get_page(newpage),
    /// balloon_page_insert(newpage), isolated_pages--, balloon_page_delete(page),
    /// put_page(page) for the balloon's reference); PG_isolated is cleared
    /// and the isolation reference dropped, freeing the old page; the new
    /// page keeps only the balloon's reference. No new page: putback, false.
    func migrateMovablePage(_ src: PFN) -> Bool {
        let dst = allocPage()
        if dst.isNone {
            putbackMovablePage(src)
            return false
        }
        page(dst).pointee.flags &= ~PG.uptodate
        if !pageIsBalloonMovable(src) {
            // The page was released after isolation: nothing to migrate.
            page(src).pointee.flags &= ~PG.isolated
            putPage(src)
            putPage(dst)
            return true
        }
        getPage(dst)
        balloonPageInsert(dst)
        header.pointee.balloon_isolated -= 1
        balloonPageDelete(src)
        page(src).pointee.flags &= ~PG.offline
        putPage(src)  // the balloon's reference
        page(src).pointee.flags &= ~PG.isolated
        putPage(src)  // the isolation reference: freed
        putPage(dst)  // the allocation's reference
        return true
    }
}

extension Machine {
    /// The balloon driver inflates by `pages` pages; returns how many it got.
    public func balloonInflate(pages: Int) -> Int { k.balloonInflate(pages) }
    /// The balloon deflates by up to `pages` pages; returns how many it freed.
    public func balloonDeflate(pages: Int) -> Int { k.balloonDeflate(pages) }
    /// The frames on the balloon's list, most recently added first.
    public func balloonFrames() -> [PFN] {
        var out: [PFN] = []
        var p = k.balloonHead
        while !p.isNone && out.count < 1 << 24 { out.append(p); p = PFN(k.page(p).pointee.next) }
        return out
    }
    /// Compaction's use of non-LRU movable pages (isolate_movable_pages_range
    /// then migrate_pages): every balloon page is isolated, then migrated
    /// through the driver's callbacks (or put back when no page is free).
    /// Returns the pages moved.
    public func compactMovable() -> Int {
        let isolated = balloonFrames().filter { k.isolateMovablePage($0) }
        var moved = 0
        for pfn in isolated where k.migrateMovablePage(pfn) { moved += 1 }
        return moved
    }
}
