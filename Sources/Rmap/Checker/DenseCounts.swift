/// A count per arena index (a frame's PFN, a VMA, an anon_vma, a file), in a
/// flat array indexed by the id's raw value: the checker's census without
/// hashing. The array is allocated on the first `add` (most counts stay
/// empty in most states), sized by the table's high-water mark; an index
/// beyond it (a corrupt entry naming no object of the table) is counted in
/// a side dictionary, so that every count the checker compares is exact.
///
/// The counts live in memory of their own (no Array: a uniqueness test on
/// every `add` was 7% of `replay --check` over thousands of forks), owned by
/// a class that frees it; copies share it, which is fine for the checker,
/// which counts first and passes the counts on only to read them.
struct DenseCounts {
    private final class Storage {
        let p: UnsafeMutablePointer<Int32>
        init(_ n: Int) {
            p = .allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1))
        }
        deinit { p.deallocate() }
    }
    private var storage: Storage?
    private var counts: UnsafeMutablePointer<Int32>?
    private var overflow: [UInt32: Int] = [:]
    private let size: Int

    /// Counts for indices 0..<size.
    init(size: UInt32) { self.size = Int(size) }

    subscript(_ i: UInt32) -> Int {
        if let counts, Int(i) < size { return Int(counts[Int(i)]) }
        return overflow.isEmpty ? 0 : overflow[i] ?? 0
    }
    subscript(_ p: PFN) -> Int { self[p.rawValue] }

    @inline(__always)
    mutating func add(_ i: UInt32, _ n: Int32 = 1) {
        if Int(i) < size {
            if _slowPath(counts == nil) {
                let s = Storage(size)
                storage = s
                counts = s.p
            }
            counts.unsafelyUnwrapped[Int(i)] &+= n
        } else {
            overflow[i, default: 0] += Int(n)
        }
    }
    mutating func add(_ p: PFN, _ n: Int32 = 1) { add(p.rawValue, n) }
}
