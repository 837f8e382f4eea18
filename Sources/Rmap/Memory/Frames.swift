import CShims

/// The page-frame allocator and page references (mm/page_alloc.c, mm/swap.c).
/// PFN = index in the frame table. Allocation is deterministic: a LIFO free
/// list, then never-used frames in order. Out of frames is ENOMEM.
extension Kernel {
    @inline(__always) package var zeroPFN: PFN { PFN(header.pointee.zero_pfn) }

    /// alloc_page(): a fresh frame with one reference and no mapping
    /// (_mapcount -1); 0 when memory is exhausted.
    @inline(__always) func allocPage() -> PFN {
        var pfn = PFN(allocIndex(T.frame))
        if _slowPath(pfn.isNone) {
            // No free small frame and none never used: a free large-folio
            // run is broken into small frames (the buddy allocator splits a
            // higher-order block for an order-0 request).
            guard breakFolioRun() else { return .none }
            pfn = PFN(allocIndex(T.frame))
            if pfn.isNone { return .none }
        }
        let p = page(pfn)
        // The record zeroed at its static size (the frame table's
        // record_size is sizeof(rmap_page), asserted in arena.c): four
        // stores, not a memset call per fault.
        UnsafeMutableRawPointer(p).initializeMemory(as: UInt8.self, repeating: 0,
                                                    count: MemoryLayout<rmap_page>.stride)
        p.pointee.refcount = 1
        p.pointee.mapcount = -1
        p.pointee.flags = PG.uptodate
        header.pointee.next_frame_serial &+= 1  // wrapping: a saved state may hold any value
        p.pointee.serial = header.pointee.next_frame_serial
        return pfn
    }

    /// get_page() / folio_get(): a reference on the page's folio.
    @inline(__always) func getPage(_ pfn: PFN) {
        page(folioOf(pfn)).pointee.refcount += 1
    }

    /// put_page() / folio_put(): drops a reference on the page's folio,
    /// freeing it at zero (__free_pages, __folio_put).
    @inline(__always) func putPage(_ pfn: PFN) {
        putPages(pfn, 1)
    }

    /// folio_put_refs(): `n` references at once (a batch of PTEs of one folio).
    @inline(__always) func putPages(_ pfn: PFN, _ n: Int32) {
        let head = folioOf(pfn)
        let p = page(head)
        if p.pointee.flags & PG.reserved != 0 { return }
        p.pointee.refcount -= n
        if p.pointee.refcount == 0 {
            if _slowPath(p.pointee.flags & PG.head != 0) {
                if p.pointee.flags & PG.hugetlb != 0 { freeHugeFolio(head) } else { freeFolio(head) }
            } else {
                free(T.frame, head.rawValue)
            }
        }
    }

    @inline(__always) func pageIsAnon(_ pfn: PFN) -> Bool {
        page(folioOf(pfn)).pointee.mapping & PageMapping.anon != 0
    }

    /// page_mapcount(): the number of PTEs that map the frame.
    @inline(__always) package func pageMapcount(_ pfn: PFN) -> Int { Int(page(pfn).pointee.mapcount) + 1 }

    /// Sets up the shared zero page (mm/memory.c: empty_zero_page). It is reserved:
    /// never refcounted, never in an rmap.
    func initZeroPage() -> Bool {
        let z = allocPage()
        if z.isNone { return false }
        page(z).pointee.flags |= PG.reserved
        header.pointee.zero_pfn = z.rawValue
        return true
    }
}
