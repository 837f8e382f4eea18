import CShims

/// The swap map against its census (kind `swapMap`): swap_map[] counts the
/// swap PTEs, SWAP_HAS_CACHE marks the slots of swap-cache folios, and the
/// clusters of 512 slots (SWAPFILE_CLUSTER with CONFIG_THP_SWAP) hold one
/// order each, a large folio's slots contiguous and naturally aligned.
extension Checker {
    func checkSwapMap(refs: [UInt64: Int]) {
        let n = k.swapDeviceSlots
        for (off, c) in refs where off < 1 || off > n {
            fail(.swapMap, nil, "swap slot \(off): \(c) swap PTEs name a slot outside the device (1...\(n))")
        }
        guard n > 0 else { return }
        for off in 1...n {
            let s = k.swapMap[Int(off)]
            let census = refs[off] ?? 0
            if Int(s.count) != census {
                fail(.swapMap, nil, "swap slot \(off): swap count \(s.count), \(census) swap PTEs name it")
            }
            let cached = s.flags & Kernel.swapHasCache != 0
            if cached != (s.cache_frame != 0) {
                fail(.swapMap, nil, "swap slot \(off): SWAP_HAS_CACHE \(cached) with swap-cache frame \(s.cache_frame)")
            }
            if s.count == 0 && !cached && s.flags != 0 {
                fail(.swapMap, nil, "swap slot \(off): free, but flags 0x\(String(s.flags, radix: 16))")
            }
            if s.flags & ~(Kernel.swapHasCache | Kernel.swapOrderMask) != 0 {
                fail(.swapMap, nil, "swap slot \(off): undefined flag bits 0x\(String(s.flags, radix: 16))")
            }
            guard s.cache_frame != 0 else { continue }
            let pfn = PFN(s.cache_frame)
            if pfn.rawValue >= k.desc(T.frame).pointee.bump || k.isFree(T.frame, pfn.rawValue)
                || k.page(k.folioOf(pfn)).pointee.flags & PG.swapcache == 0 {
                fail(.swapMap, nil, "swap slot \(off): its swap-cache frame \(pfn) is no live swap-cache page")
            } else if PTE.swpOffset(k.swapCacheEntry(pfn)) != off {
                fail(.swapMap, .frame(pfn), "swap slot \(off): its swap-cache frame \(pfn) is in the swap cache at slot \(PTE.swpOffset(k.swapCacheEntry(pfn)))")
            }
        }
        // Every swap-cache folio holds its slots: page i at folio->swap + i,
        // naturally aligned (a large folio's slots come from one cluster of
        // its order).
        let bump = k.desc(T.frame).pointee.bump
        var i: UInt32 = 1
        while i < bump {
            defer { i += 1 }
            let head = PFN(i)
            guard !k.isFree(T.frame, i), k.page(head).pointee.flags & PG.tail == 0,
                  k.page(head).pointee.flags & PG.swapcache != 0 else { continue }
            let e = k.page(head).pointee.private_
            let off = PTE.swpOffset(e)
            let nr = UInt64(k.folioNrPages(head))
            let order = UInt16(k.folioOrder(head))
            guard PTE.isRealSwapEntry(e), off >= 1, off + nr - 1 <= n else {
                fail(.swapMap, .frame(head), "frame \(head): in the swap cache at slot \(off), outside the device")
                continue
            }
            if off % nr != 0 {
                fail(.swapMap, .frame(head), "frame \(head): swap-cache folio of \(nr) pages at slot \(off), not naturally aligned")
            }
            for j in 0..<nr {
                let s = k.swapMap[Int(off + j)]
                if s.flags & Kernel.swapHasCache == 0 || s.cache_frame != head.advanced(by: UInt32(j)).rawValue {
                    fail(.swapMap, .frame(head), "frame \(head): page \(j) in the swap cache at slot \(off + j), which holds frame \(s.cache_frame)")
                } else if nr > 1 && (s.flags & Kernel.swapOrderMask) >> Kernel.swapOrderShift != order {
                    fail(.swapMap, .frame(head), "frame \(head): order-\(order) swap-cache folio in slot \(off + j) of a cluster of order \((s.flags & Kernel.swapOrderMask) >> Kernel.swapOrderShift)")
                }
                // do_swap_page(): a swap PTE never points at a
                // PG_anon_exclusive page in the swap cache.
                if nr > 1, s.count > 0, k.page(head.advanced(by: UInt32(j))).pointee.flags & PG.anonExclusive != 0 {
                    fail(.swapExclusivity, .frame(head.advanced(by: UInt32(j))), "frame \(head.advanced(by: UInt32(j))): PG_anon_exclusive in the swap cache while \(s.count) swap entries still refer to its slot")
                }
            }
        }
        // One order per cluster (ci->order); a cluster with bad slots (the
        // header, the device's end) is order 0.
        for c in 0..<k.swapClusterCount {
            let first = c * Kernel.swapClusterSlots
            var order: UInt16? = nil
            var bad = false
            for off in first..<(first + Kernel.swapClusterSlots) {
                guard off >= 1, off <= n else { bad = true; continue }
                let s = k.swapMap[Int(off)]
                guard s.count > 0 || s.flags & Kernel.swapHasCache != 0 else { continue }
                let o = (s.flags & Kernel.swapOrderMask) >> Kernel.swapOrderShift
                if let order, order != o {
                    fail(.swapMap, nil, "swap cluster \(c): slot \(off) of order \(o) in a cluster of order \(order)")
                    break
                }
                order = o
            }
            if bad, let order, order != 0 {
                fail(.swapMap, nil, "swap cluster \(c): it holds bad slots, but order \(order)")
            }
        }
    }
}
