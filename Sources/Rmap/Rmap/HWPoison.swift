import CShims

/// Memory failure (mm/memory-failure.c), the part rmap sees: a frame marked
/// PG_hwpoison, and the hwpoison entries try_to_unmap_one() leaves in its
/// place (see TryToUnmap.swift); a fault on one is VM_FAULT_HWPOISON, which
/// user space sees as SIGBUS (do_swap_page: the entry is no real swap entry).
extension Kernel {
    /// memory_failure()'s first step: TestSetPageHWPoison(), and the
    /// reference get_hwpoison_page() takes, which the model never drops
    /// (a poisoned page never goes back to the allocator). The unmapping
    /// that memory_failure() goes on to do (hwpoison_user_mappings ->
    /// try_to_unmap) is the trace's `unmap` statement, so both of
    /// try_to_unmap_one's branches (with and without TTU_IGNORE_HWPOISON)
    /// can be driven. False when the frame was poisoned already (-EHWPOISON).
    func poisonPage(_ pfn: PFN) -> Bool {
        let p = page(pfn)
        if p.pointee.flags & PG.hwpoison != 0 { return false }
        p.pointee.flags |= PG.hwpoison
        getPage(pfn)
        return true
    }

    /// make_hwpoison_entry(): a swap-format entry of type SWP_HWPOISON naming the frame.
    @inline(__always) func makeHWPoisonPTE(_ pfn: PFN) -> UInt64 {
        PTE.swpEntry(type: PTE.swpHWPoison, pfn: pfn)
    }
}
