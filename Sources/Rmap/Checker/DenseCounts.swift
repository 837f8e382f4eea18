/// A count per arena index (a frame's PFN, a VMA, an anon_vma, a file), in a
/// flat array indexed by the id's raw value: the checker's census without
/// hashing. The array is allocated on the first `add` (most counts stay
/// empty in most states), sized by the table's high-water mark; an index
/// beyond it (a corrupt entry naming no object of the table) is counted in
/// a side dictionary, so that every count the checker compares is exact.
struct DenseCounts {
    private var counts: [Int32] = []
    private var overflow: [UInt32: Int] = [:]
    private let size: Int

    /// Counts for indices 0..<size.
    init(size: UInt32) { self.size = Int(size) }

    subscript(_ i: UInt32) -> Int {
        Int(i) < counts.count ? Int(counts[Int(i)]) : (overflow.isEmpty ? 0 : overflow[i] ?? 0)
    }
    subscript(_ p: PFN) -> Int { self[p.rawValue] }

    mutating func add(_ i: UInt32, _ n: Int32 = 1) {
        if Int(i) < size {
            if counts.isEmpty { counts = [Int32](repeating: 0, count: size) }
            counts[Int(i)] &+= n
        } else {
            overflow[i, default: 0] += Int(n)
        }
    }
    mutating func add(_ p: PFN, _ n: Int32 = 1) { add(p.rawValue, n) }
}
