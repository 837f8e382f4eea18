import CShims

/// The model-only statements: reverse-mapping operations on the frame a
/// process maps at each page.
extension Machine {
    /// The frame `m` maps at `addr`, 0 for none, the zero page, or a
    /// non-present entry (the statement then answers EFAULT).
    func mappedFrame(_ m: UInt32, _ addr: UInt64) -> UInt32 {
        guard let s = k.leafSlot(root: k.mm(m).pointee.pgd, key: addr) else { return 0 }
        return k.vmNormalPage(s.pointee)
    }

    func performReverse(_ m: UInt32, _ op: Operation) -> OpResult {
        switch op {
        case .unmap(let addr, let pages, let flags):
            return eachFrame(m, addr, pages) { k.tryToUnmap($0, flags: flags) ? .ok : .fail }
        case .reclaim(let addr, let pages):
            return eachFrame(m, addr, pages) { k.reclaimPage($0) ? .ok : .fail }
        case .migrate, .referenced, .mkclean:
            return .errno(.EINVAL)
        default:
            return .errno(.EINVAL)
        }
    }

    /// Runs `body` on the frame at each page; EFAULT for a page without one
    /// (the rest of the line does not run); the last non-ok result otherwise.
    func eachFrame(_ m: UInt32, _ addr: UInt64, _ pages: UInt64, _ body: (UInt32) -> OpResult) -> OpResult {
        var result = OpResult.ok
        var a = addr
        for _ in 0..<pages {
            let pfn = mappedFrame(m, a)
            if pfn == 0 { return .errno(.EFAULT) }
            let r = body(pfn)
            if r != .ok { result = r }
            a += PAGE_SIZE
        }
        return result
    }
}
