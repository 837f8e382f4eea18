import Rmap
import CShims

// Design variant 2: no reverse map at all.
//
// Linux 2.4 kept no reverse map for process pages: to find who maps a page,
// the only way is to look at every page table of every process (2.4's
// swap_out walked the mm list and each VMA's page tables; a page was freed
// once its count dropped as a side effect). The walk below does exactly that
// for one frame: every live mm, every VMA, every PTE, compared with the
// frame. It costs nothing at fault, fork or unmap and no memory; each walk
// costs in proportion to all the mapped memory of the machine, whatever the
// page's sharing.
extension Kernel {
    /// The scan walk behind the rmap walk API: every PTE of every VMA of
    /// every live mm, in mm-index then address order; each one that maps
    /// `pfn` is handed to the hooks as `rmapWalk` hands a VMA.
    @inline(__always)
    func scanRmapWalk<C: RmapWalkControl>(_ pfn: PFN, _ c: inout C) {
        let ctx = RmapContext(k: self)
        let d = desc(T.mm)
        var m = MMID(1)
        while m.rawValue < d.pointee.bump {
            defer { m = MMID(m.rawValue + 1) }
            guard mm(m).pointee.pid == m.rawValue else { continue }  // a freed mm is poisoned
            let pgd = mm(m).pointee.pgd
            var v = firstVMA(m)
            while !v.isNone {
                let p = vma(v)
                var stop = false
                var skip = false
                walkLeaves(root: pgd, start: p.pointee.vm_start, end: p.pointee.vm_end) { a, slot in
                    let e = slot.pointee
                    guard PTE.isPresent(e), PTE.pfn(e) == pfn, e & PTE.special == 0 else { return true }
                    if !skip && c.invalidVMA(ctx, vma: v) { skip = true }
                    if skip { return false }
                    if !c.rmapOne(ctx, pfn: pfn, vma: v, address: a) || c.done(ctx, pfn: pfn) {
                        stop = true
                        return false
                    }
                    return true
                }
                if stop { return }
                v = nextVMA(v)
            }
        }
    }
}
