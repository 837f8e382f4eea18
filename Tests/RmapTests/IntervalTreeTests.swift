// IntervalTreeTests.swift - the generic augmented red-black interval tree
// against a brute-force reference, and the checker against corrupted trees.

import CShims
@testable import Rmap
import RmapTestSupport
import Testing

/// Nodes 1..<capacity in heap buffers: links plus interval [start, last].
struct TestNodes: IntervalTreeAccessor {
    let nodes: UnsafeMutablePointer<rmap_rb_node>
    let starts: UnsafeMutablePointer<UInt64>
    let lasts: UnsafeMutablePointer<UInt64>
    let root: UnsafeMutablePointer<UInt32>
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        nodes = .allocate(capacity: capacity)
        nodes.initialize(repeating: rmap_rb_node(), count: capacity)
        starts = .allocate(capacity: capacity)
        starts.initialize(repeating: 0, count: capacity)
        lasts = .allocate(capacity: capacity)
        lasts.initialize(repeating: 0, count: capacity)
        root = .allocate(capacity: 1)
        root.initialize(to: 0)
    }

    func free() {
        nodes.deallocate()
        starts.deallocate()
        lasts.deallocate()
        root.deallocate()
    }

    func links(_ n: UInt32) -> UnsafeMutablePointer<rmap_rb_node> {
        precondition(n != 0 && Int(n) < capacity, "links(\(n)) out of range")
        return nodes + Int(n)
    }
    func start(_ n: UInt32) -> UInt64 { starts[Int(n)] }
    func last(_ n: UInt32) -> UInt64 { lasts[Int(n)] }

    /// Fills a node's links with garbage, as a recycled arena slot would hold.
    func scribble(_ n: UInt32, _ rng: inout SplitMix64) {
        nodes[Int(n)] = rmap_rb_node(parent: UInt32(truncatingIfNeeded: rng.next()),
                                     left: UInt32(truncatingIfNeeded: rng.next()),
                                     right: UInt32(truncatingIfNeeded: rng.next()),
                                     color: UInt32(truncatingIfNeeded: rng.next()),
                                     subtree_last: rng.next())
    }

    func insert(_ n: UInt32) { IntervalTree.insert(n, root: root, self) }
    func remove(_ n: UInt32) { IntervalTree.remove(n, root: root, self) }
    func check() -> [String] { IntervalTree.check(root: root.pointee, self, limit: capacity) }

    func inOrder() -> [UInt32] {
        var out: [UInt32] = []
        var n = IntervalTree.first(root: root.pointee, self)
        while n != 0 && out.count < capacity {
            out.append(n)
            n = IntervalTree.next(n, self)
        }
        return out
    }

    func reverseOrder() -> [UInt32] {
        var out: [UInt32] = []
        var n = IntervalTree.last(root: root.pointee, self)
        while n != 0 && out.count < capacity {
            out.append(n)
            n = IntervalTree.prev(n, self)
        }
        return out
    }

    func overlapping(_ qs: UInt64, _ ql: UInt64) -> [UInt32] {
        var out: [UInt32] = []
        var n = IntervalTree.iterFirst(root: root.pointee, start: qs, last: ql, self)
        while n != 0 && out.count < capacity {
            out.append(n)
            n = IntervalTree.iterNext(n, start: qs, last: ql, self)
        }
        return out
    }
}

/// The reference: live nodes with their insertion serials.
struct Reference {
    var serial: [UInt64]     // by node id; insertion serial of live nodes
    var live: [UInt32] = []
    var nextSerial: UInt64 = 1

    init(capacity: Int) { serial = Array(repeating: 0, count: capacity) }

    mutating func insert(_ n: UInt32) {
        serial[Int(n)] = nextSerial
        nextSerial += 1
        live.append(n)
    }
    mutating func remove(_ n: UInt32) {
        serial[Int(n)] = 0
        live.remove(at: live.firstIndex(of: n)!)
    }
    /// In-order as the kernel's insert defines it: by start, equal starts in insertion order.
    func sorted(_ t: TestNodes) -> [UInt32] {
        live.sorted { x, y in
            let sx = t.start(x), sy = t.start(y)
            return sx != sy ? sx < sy : serial[Int(x)] < serial[Int(y)]
        }
    }
}

@Suite struct IntervalTreeTests {
    /// Random inserts/removes of overlapping intervals with many equal starts,
    /// checked against a brute-force reference after every operation.
    @Test(arguments: 0..<20)
    func randomOverlappingAgainstReference(seed: Int) throws {
        var rng = SplitMix64(seed: 0x5EED_0000 &+ UInt64(seed))
        let pool = 24 + 24 * (seed % 4)             // 24..96 node ids
        let t = TestNodes(capacity: pool + 1)
        defer { t.free() }
        var ref = Reference(capacity: pool + 1)
        let startRange: UInt64 = UInt64(pool)       // dense starts: many duplicates
        let maxLen: UInt64 = 12
        for n in 1...pool { t.scribble(UInt32(n), &rng) }

        for op in 0..<2_000 {
            let wantInsert = ref.live.isEmpty
                || (ref.live.count < pool && rng.below(100) < (ref.live.count < pool / 2 ? 65 : 40))
            if wantInsert {
                var n: UInt32
                repeat { n = UInt32(1 + rng.below(pool)) } while ref.serial[Int(n)] != 0
                let s: UInt64
                if rng.below(64) == 0 {
                    s = UInt64.max - rng.below(maxLen)  // near the top of the key space
                    t.starts[Int(n)] = s
                    t.lasts[Int(n)] = s + rng.below(UInt64.max - s + 1)
                } else {
                    s = rng.below(startRange)
                    t.starts[Int(n)] = s
                    t.lasts[Int(n)] = s + rng.below(maxLen)
                }
                t.scribble(n, &rng)
                t.insert(n)
                ref.insert(n)
            } else {
                let n = ref.live[rng.below(ref.live.count)]
                t.remove(n)
                ref.remove(n)
                t.scribble(n, &rng)  // removed nodes' links must not matter
            }

            let errors = t.check()
            try #require(errors.isEmpty, "seed \(seed) op \(op): \(errors)")
            let expected = ref.sorted(t)
            try #require(t.inOrder() == expected, "seed \(seed) op \(op): in-order")
            try #require(t.reverseOrder() == Array(expected.reversed()), "seed \(seed) op \(op): reverse")
            try #require(IntervalTree.count(root: t.root.pointee, t) == expected.count)

            for q in 0..<3 {
                var qs = rng.below(startRange + maxLen)
                var ql = qs + rng.below(maxLen * 2)
                if q == 2 && rng.below(8) == 0 {  // whole key space, or its very top
                    if rng.below(2) == 0 { qs = 0; ql = UInt64.max } else { qs = UInt64.max - 2; ql = UInt64.max }
                }
                let want = expected.filter { t.start($0) <= ql && qs <= t.last($0) }
                let got = t.overlapping(qs, ql)
                try #require(got == want, "seed \(seed) op \(op): overlap [\(qs), \(ql)] got \(got) want \(want)")
            }
        }
    }

    /// Non-overlapping intervals (a VMA tree): findFirstEndingAtOrAfter against brute force.
    @Test(arguments: 0..<20)
    func findFirstEndingAtOrAfterNonOverlapping(seed: Int) throws {
        var rng = SplitMix64(seed: 0xF1_4D00 &+ UInt64(seed))
        let slots = 48
        let width: UInt64 = 16
        let t = TestNodes(capacity: slots + 1)
        defer { t.free() }
        var live = Array(repeating: false, count: slots + 1)
        var liveCount = 0
        for n in 1...slots { t.scribble(UInt32(n), &rng) }

        for op in 0..<2_000 {
            let n = UInt32(1 + rng.below(slots))  // node n owns [ (n-1)*width, n*width )
            if live[Int(n)] {
                t.remove(n)
                live[Int(n)] = false
                liveCount -= 1
            } else {
                let base = UInt64(n - 1) * width
                let a = rng.below(width)
                t.starts[Int(n)] = base + a
                t.lasts[Int(n)] = base + a + rng.below(width - a)
                t.scribble(n, &rng)
                t.insert(n)
                live[Int(n)] = true
                liveCount += 1
            }
            let errors = t.check()
            try #require(errors.isEmpty, "seed \(seed) op \(op): \(errors)")
            try #require(IntervalTree.count(root: t.root.pointee, t) == liveCount)

            for _ in 0..<4 {
                let addr = rng.below(UInt64(slots + 1) * width)
                var want: UInt32 = 0
                for m in 1...slots where live[m] && t.last(UInt32(m)) >= addr {
                    want = UInt32(m)  // slots are in address order: the first is lowest
                    break
                }
                let got = IntervalTree.findFirstEndingAtOrAfter(root: t.root.pointee, addr, t)
                try #require(got == want, "seed \(seed) op \(op): find \(addr) got \(got) want \(want)")
                // The point query agrees when addr lies inside the found interval.
                let point = IntervalTree.iterFirst(root: t.root.pointee, start: addr, last: addr, t)
                let inside = want != 0 && t.start(want) <= addr
                try #require(point == (inside ? want : 0), "seed \(seed) op \(op): point \(addr)")
            }
        }
    }

    /// Equal starts go right: among equal starts, in-order is insertion order,
    /// and a removed-then-reinserted node moves behind the others.
    @Test func equalStartsKeepInsertionOrder() {
        let t = TestNodes(capacity: 33)
        defer { t.free() }
        for n in 1...32 {
            t.starts[n] = n % 2 == 0 ? 5 : 9
            t.lasts[n] = t.starts[n] + UInt64(n)
            t.insert(UInt32(n))
        }
        #expect(t.check().isEmpty)
        let evens = (1...32).filter { $0 % 2 == 0 }.map(UInt32.init)
        let odds = (1...32).filter { $0 % 2 == 1 }.map(UInt32.init)
        #expect(t.inOrder() == evens + odds)
        t.remove(4)
        t.insert(4)
        t.remove(31)
        #expect(t.check().isEmpty)
        #expect(t.inOrder() == evens.filter { $0 != 4 } + [4] + odds.filter { $0 != 31 })
        // Every node overlaps [5, 9]; iteration returns them all, in order.
        #expect(t.overlapping(5, 9) == t.inOrder())
        // [40, 40]: only nodes whose last >= 40.
        #expect(t.overlapping(40, 40) == t.inOrder().filter { t.last($0) >= 40 })
    }

    @Test func emptyTree() {
        let t = TestNodes(capacity: 2)
        defer { t.free() }
        #expect(t.check().isEmpty)
        #expect(IntervalTree.first(root: 0, t) == 0)
        #expect(IntervalTree.last(root: 0, t) == 0)
        #expect(IntervalTree.count(root: 0, t) == 0)
        #expect(IntervalTree.iterFirst(root: 0, start: 0, last: .max, t) == 0)
        #expect(IntervalTree.findFirstEndingAtOrAfter(root: 0, 0, t) == 0)
        t.starts[1] = 10
        t.lasts[1] = 20
        t.insert(1)
        #expect(t.root.pointee == 1)
        #expect(t.links(1).pointee.color == 1)
        #expect(t.check().isEmpty)
        t.remove(1)
        #expect(t.root.pointee == 0)
    }

    /// The checker must be able to fail: each corruption is reported, naming the node.
    @Test func checkerReportsCorruption() throws {
        var rng = SplitMix64(seed: 42)
        let n = 64
        let t = TestNodes(capacity: n + 1)
        defer { t.free() }
        for i in 1...n {
            t.starts[i] = rng.below(UInt64(200))
            t.lasts[i] = t.starts[i] + rng.below(UInt64(30))
            t.scribble(UInt32(i), &rng)
            t.insert(UInt32(i))
        }
        try #require(t.check().isEmpty)
        let order = t.inOrder()
        let root = t.root.pointee

        func corrupting(_ node: UInt32, _ body: (UnsafeMutablePointer<rmap_rb_node>) -> Void,
                        expect needle: String) {
            let saved = t.nodes[Int(node)]
            body(t.links(node))
            let errors = t.check()
            #expect(errors.contains { $0.contains(needle) }, "expected \"\(needle)\" in \(errors)")
            t.nodes[Int(node)] = saved
            #expect(t.check().isEmpty)
        }

        // Wrong subtree_last, on a leaf and on the root.
        let leaf = try #require(order.first { t.links($0).pointee.left == 0 && t.links($0).pointee.right == 0 })
        corrupting(leaf, { $0.pointee.subtree_last += 1 }, expect: "node \(leaf): subtree_last")
        corrupting(root, { $0.pointee.subtree_last -= 1 }, expect: "node \(root): subtree_last")

        // Two reds in a row: paint the (black) parent of a red node red.
        let redChild = try #require(order.first { $0 != root && t.links($0).pointee.color == 0 })
        let redParent = t.links(redChild).pointee.parent
        corrupting(redParent, { $0.pointee.color = 0 }, expect: "node \(redParent): red node has red child \(redChild)")

        // Black height: paint a red node black.
        corrupting(redChild, { $0.pointee.color = 1 }, expect: "black height")

        // A red root.
        corrupting(root, { $0.pointee.color = 0 }, expect: "node \(root): root is not black")

        // A wrong parent link.
        let victim = try #require(order.first { $0 != root && t.links($0).pointee.parent != root })
        corrupting(victim, { $0.pointee.parent = root }, expect: "node \(victim): parent link")

        // Out-of-order starts: give the first node in order the largest start.
        let firstNode = order[0]
        let savedStart = t.starts[Int(firstNode)]
        t.starts[Int(firstNode)] = 1_000
        t.lasts[Int(firstNode)] += 1_000
        let orderErrors = t.check()
        #expect(orderErrors.contains { $0.contains("in-order start") }, "\(orderErrors)")
        t.starts[Int(firstNode)] = savedStart
        t.lasts[Int(firstNode)] -= 1_000
        #expect(t.check().isEmpty)

        // A cycle: a leaf's left link back to the root. The check must terminate.
        corrupting(leaf, { $0.pointee.left = root }, expect: "cycle or too many nodes")
    }

    /// A tree of one node is checked without the walk's stack (most
    /// anon_vma trees): the same rules, the same messages, in the walk's order.
    @Test func oneNodeTreeIsCheckedLikeAnyOther() throws {
        let t = TestNodes(capacity: 4)
        defer { t.free() }
        t.starts[3] = 10
        t.lasts[3] = 20
        t.insert(3)
        try #require(t.root.pointee == 3 && t.check().isEmpty)
        let saved = t.nodes[3]
        t.nodes[3].parent = 2
        #expect(t.check() == ["node 3: parent link is 2, expected 0"])
        t.nodes[3] = saved
        t.nodes[3].subtree_last = 19
        #expect(t.check() == ["node 3: subtree_last is 19, expected 20"])
        t.nodes[3] = saved
        t.nodes[3].color = 7
        t.nodes[3].subtree_last = 21
        t.nodes[3].parent = 1
        #expect(t.check() == ["node 3: root is not black (color 7)", "node 3: parent link is 1, expected 0",
                              "node 3: invalid color 7", "node 3: subtree_last is 21, expected 20"])
        t.nodes[3] = saved
        // A limit of 0: the walk's report, not the fast path's.
        #expect(IntervalTree.check(root: 3, t, limit: 0) == ["node 3: cycle or too many nodes (visited more than 0)"])
        #expect(t.check().isEmpty)
    }
}
