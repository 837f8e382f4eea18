/// Page flags (include/linux/page-flags.h). Bit numbers are the model's own;
/// names are the kernel's.
package enum PG {
    static let locked: UInt64 = 1 << 0
    static let referenced: UInt64 = 1 << 1
    static let uptodate: UInt64 = 1 << 2
    static let dirty: UInt64 = 1 << 3
    static let lru: UInt64 = 1 << 4
    static let active: UInt64 = 1 << 5
    static let workingset: UInt64 = 1 << 6
    package static let swapbacked: UInt64 = 1 << 7
    static let swapcache: UInt64 = 1 << 8
    static let mlocked: UInt64 = 1 << 9
    /// PG_anon_exclusive (6.x; aliases PG_mappedtodisk for anon pages in the kernel).
    package static let anonExclusive: UInt64 = 1 << 10
    static let reclaim: UInt64 = 1 << 11
    static let hwpoison: UInt64 = 1 << 12
    static let young: UInt64 = 1 << 13
    static let idle: UInt64 = 1 << 14
    static let unevictable: UInt64 = 1 << 15
    static let writeback: UInt64 = 1 << 16
    /// Not a kernel flag: marks the shared zero page and other reserved frames.
    static let reserved: UInt64 = 1 << 17
    /// is_zone_device_page(): the frame is device memory (a dev_pagemap's),
    /// not system RAM. Model bit (the kernel reads the page's zone).
    static let zoneDevice: UInt64 = 1 << 18
    /// is_device_private_page(): MEMORY_DEVICE_PRIVATE, not addressable by
    /// the CPU: mapped only through device-private swap entries.
    static let devicePrivate: UInt64 = 1 << 19
    /// PG_isolated: a non-LRU movable page isolated for migration.
    static let isolated: UInt64 = 1 << 20
    /// PageOffline (a page type in the kernel): a page a balloon took from the system.
    static let offline: UInt64 = 1 << 21
    /// Not a kernel flag (on a large folio's head): a page of it was mapped
    /// back on its own, by do_swap_page from the swap cache or by a fault
    /// that finished a PTE migration entry. The kernel queues a folio for
    /// deferred split only when a mapping goes (__folio_remove_rmap), so
    /// such a folio may be partially mapped and not queued; the checker's
    /// deferred-split rule knows it by this bit.
    static let remappedInPart: UInt64 = 1 << 27
    /// Every flag the model defines (those above and the folio bits of
    /// Folio.swift): a saved frame with another bit set is rejected.
    /// A new flag joins this list.
    static let known: UInt64 = (1 << 22) - 1 | head | tail | partiallyMapped | hugetlb | hugetlbRestoreReserve | remappedInPart
        | hugetlbRawHWPoison
}

/// Low bits of page->mapping (include/linux/page-flags.h).
package enum PageMapping {
    package static let anon: UInt64 = 0x1
    static let movable: UInt64 = 0x2
    package static let ksm: UInt64 = 0x3
    package static let flags: UInt64 = 0x3
}
