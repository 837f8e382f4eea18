import CShims

/// The three interval trees of the model, all on the augmented rbtree of
/// `IntervalTree` (include/linux/interval_tree_generic.h):
/// - `MMTree`: an mm's VMAs keyed by address (the role of the maple tree in 6.x,
///   the mm_rb of older kernels); intervals never overlap.
/// - `IMMap`: a file's i_mmap, VMAs keyed by [vm_pgoff, vm_pgoff + pages - 1]
///   (vma_interval_tree, mm/interval_tree.c).
/// - `AVCTree`: anon_vma->rb_root, AVCs keyed by their VMA's pgoff range
///   (anon_vma_interval_tree, mm/interval_tree.c).
struct MMTree: IntervalTreeAccessor {
    let k: Kernel
    @inline(__always) func links(_ n: UInt32) -> UnsafeMutablePointer<rmap_rb_node> {
        UnsafeMutableRawPointer(k.vma(VMAID(n))).advanced(by: MemoryLayout<rmap_vma>.offset(of: \rmap_vma.mm_rb)!)
            .assumingMemoryBound(to: rmap_rb_node.self)
    }
    @inline(__always) func start(_ n: UInt32) -> UInt64 { k.vma(VMAID(n)).pointee.vm_start }
    @inline(__always) func last(_ n: UInt32) -> UInt64 { k.vma(VMAID(n)).pointee.vm_end - 1 }
}

struct IMMap: IntervalTreeAccessor {
    let k: Kernel
    @inline(__always) func links(_ n: UInt32) -> UnsafeMutablePointer<rmap_rb_node> {
        UnsafeMutableRawPointer(k.vma(VMAID(n))).advanced(by: MemoryLayout<rmap_vma>.offset(of: \rmap_vma.shared_rb)!)
            .assumingMemoryBound(to: rmap_rb_node.self)
    }
    @inline(__always) func start(_ n: UInt32) -> UInt64 { k.vma(VMAID(n)).pointee.vm_pgoff }
    @inline(__always) func last(_ n: UInt32) -> UInt64 { k.vmaLastPgoff(VMAID(n)) }
}

package struct AVCTree: IntervalTreeAccessor {
    let k: Kernel
    @inline(__always) package func links(_ n: UInt32) -> UnsafeMutablePointer<rmap_rb_node> {
        UnsafeMutableRawPointer(k.avc(AVCID(n))).advanced(by: MemoryLayout<rmap_avc>.offset(of: \rmap_avc.rb)!)
            .assumingMemoryBound(to: rmap_rb_node.self)
    }
    @inline(__always) package func start(_ n: UInt32) -> UInt64 { k.vma(k.avcVMA(AVCID(n))).pointee.vm_pgoff }
    @inline(__always) package func last(_ n: UInt32) -> UInt64 { k.vmaLastPgoff(k.avcVMA(AVCID(n))) }
}

extension Kernel {
    /// vma->vm_mm
    @inline(__always) package func vmMM(_ v: VMAID) -> MMID { MMID(vma(v).pointee.mm) }
    @inline(__always) func vmaPages(_ v: VMAID) -> UInt64 {
        (vma(v).pointee.vm_end - vma(v).pointee.vm_start) >> PAGE_SHIFT
    }
    /// vma_last_pgoff()
    @inline(__always) func vmaLastPgoff(_ v: VMAID) -> UInt64 {
        vma(v).pointee.vm_pgoff + vmaPages(v) - 1
    }
    var mmTree: MMTree { MMTree(k: self) }
    var iMMap: IMMap { IMMap(k: self) }
    package var avcTree: AVCTree { AVCTree(k: self) }

    @inline(__always) func anonVMARoot(_ av: AnonVMAID) -> UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(anonVMA(av)).advanced(by: MemoryLayout<rmap_anon_vma>.offset(of: \rmap_anon_vma.rb_root)!)
            .assumingMemoryBound(to: UInt32.self)
    }
    @inline(__always) func iMMapRoot(_ f: FileID) -> UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(file(f)).advanced(by: MemoryLayout<rmap_file>.offset(of: \rmap_file.i_mmap)!)
            .assumingMemoryBound(to: UInt32.self)
    }
    @inline(__always) func mmRoot(_ m: MMID) -> UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(mm(m)).advanced(by: MemoryLayout<rmap_mm>.offset(of: \rmap_mm.mm_rb)!)
            .assumingMemoryBound(to: UInt32.self)
    }
}
