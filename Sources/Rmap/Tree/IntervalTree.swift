// IntervalTree.swift - one augmented red-black interval tree for every tree of
// the model: mm->mm_rb (VMAs keyed by [vm_start, vm_end - 1]), file->i_mmap
// (VMAs keyed by [vm_pgoff, vm_pgoff + pages - 1]) and anon_vma->rb_root
// (anon_vma_chains keyed like i_mmap).
//
// A port of the kernel's lib/rbtree.c (__rb_insert, __rb_erase_color),
// include/linux/rbtree_augmented.h (rb_erase_augmented, RB_DECLARE_CALLBACKS)
// and include/linux/interval_tree_generic.h (INTERVAL_TREE_DEFINE). The kernel
// packs parent and colour into __rb_parent_color; the arena keeps them in two
// fields of rmap_rb_node, so every `rb_set_parent_color(n, p, c)` becomes two
// stores and `child->__rb_parent_color = pc` copies both fields.
//
// Nodes are 32-bit table indices (0 = NULL); the accessor maps an index to its
// embedded rmap_rb_node and to the node's interval. Everything is @inlinable
// generic code so each call site specialises it over its concrete accessor:
// no allocation, no existential, no class on the insert/remove/search paths.

import CShims

/// How one interval tree reaches its nodes. Node ids are UInt32 table indices, 0 = none.
public protocol IntervalTreeAccessor {
    /// The node's embedded links (never called with 0 by the tree code on a sound tree).
    func links(_ n: UInt32) -> UnsafeMutablePointer<rmap_rb_node>
    /// First key of the node's interval.
    func start(_ n: UInt32) -> UInt64
    /// Last key of the node's interval (inclusive).
    func last(_ n: UInt32) -> UInt64
}

public enum IntervalTree {
    /// rmap_rb_node.color values (RB_RED, RB_BLACK).
    @inlinable @inline(__always) static var red: UInt32 { 0 }
    @inlinable @inline(__always) static var black: UInt32 { 1 }

    // MARK: - Small helpers (rbtree_augmented.h)

    @inlinable @inline(__always)
    static func setParentColor<A: IntervalTreeAccessor>(_ n: UInt32, _ p: UInt32, _ color: UInt32, _ a: A) {
        let l = a.links(n)
        l.pointee.parent = p
        l.pointee.color = color
    }

    @inlinable @inline(__always)
    static func isRed<A: IntervalTreeAccessor>(_ n: UInt32, _ a: A) -> Bool {
        a.links(n).pointee.color == red
    }

    /// __rb_change_child
    @inlinable @inline(__always)
    static func changeChild<A: IntervalTreeAccessor>(_ old: UInt32, _ new: UInt32, _ parent: UInt32,
                                                    _ root: UnsafeMutablePointer<UInt32>, _ a: A) {
        if parent != 0 {
            let p = a.links(parent)
            if p.pointee.left == old {
                p.pointee.left = new
            } else {
                p.pointee.right = new
            }
        } else {
            root.pointee = new
        }
    }

    /// __rb_rotate_set_parents: old's parent and colour go to new; old gets new
    /// as its parent and `color` as its colour.
    @inlinable @inline(__always)
    static func rotateSetParents<A: IntervalTreeAccessor>(_ old: UInt32, _ new: UInt32,
                                                         _ root: UnsafeMutablePointer<UInt32>,
                                                         _ color: UInt32, _ a: A) {
        let o = a.links(old)
        let nw = a.links(new)
        let parent = o.pointee.parent
        nw.pointee.parent = parent
        nw.pointee.color = o.pointee.color
        o.pointee.parent = new
        o.pointee.color = color
        changeChild(old, new, parent, root, a)
    }

    // MARK: - Augment callbacks (INTERVAL_TREE_DEFINE + RB_DECLARE_CALLBACKS)

    /// ITPREFIX_compute_subtree_last
    @inlinable @inline(__always)
    static func computeSubtreeLast<A: IntervalTreeAccessor>(_ n: UInt32, _ a: A) -> UInt64 {
        var m = a.last(n)
        let l = a.links(n)
        let left = l.pointee.left
        if left != 0 {
            let s = a.links(left).pointee.subtree_last
            if m < s { m = s }
        }
        let right = l.pointee.right
        if right != 0 {
            let s = a.links(right).pointee.subtree_last
            if m < s { m = s }
        }
        return m
    }

    /// augment->propagate: recompute upwards from `n` until `stop` or until a
    /// node's value does not change.
    @inlinable @inline(__always)
    static func augmentPropagate<A: IntervalTreeAccessor>(_ n: UInt32, stop: UInt32, _ a: A) {
        var rb = n
        while rb != stop {
            let augmented = computeSubtreeLast(rb, a)
            let l = a.links(rb)
            if l.pointee.subtree_last == augmented { break }
            l.pointee.subtree_last = augmented
            rb = l.pointee.parent
        }
    }

    /// augment->copy
    @inlinable @inline(__always)
    static func augmentCopy<A: IntervalTreeAccessor>(_ old: UInt32, _ new: UInt32, _ a: A) {
        a.links(new).pointee.subtree_last = a.links(old).pointee.subtree_last
    }

    /// augment->rotate
    @inlinable @inline(__always)
    static func augmentRotate<A: IntervalTreeAccessor>(_ old: UInt32, _ new: UInt32, _ a: A) {
        a.links(new).pointee.subtree_last = a.links(old).pointee.subtree_last
        a.links(old).pointee.subtree_last = computeSubtreeLast(old, a)
    }

    // MARK: - Insert (interval_tree_generic.h _insert, lib/rbtree.c __rb_insert)

    /// ITPREFIX_insert: links `n` (whose links may hold garbage) into the tree.
    /// Equal starts descend right, so among equal starts in-order is insertion order.
    @inlinable
    public static func insert<A: IntervalTreeAccessor>(_ n: UInt32, root: UnsafeMutablePointer<UInt32>, _ a: A) {
        let start = a.start(n)
        let last = a.last(n)
        var rbParent: UInt32 = 0
        var link = root.pointee
        var goLeft = false
        while link != 0 {
            rbParent = link
            let p = a.links(rbParent)
            if p.pointee.subtree_last < last {
                p.pointee.subtree_last = last
            }
            if start < a.start(rbParent) {
                link = p.pointee.left
                goLeft = true
            } else {
                link = p.pointee.right
                goLeft = false
            }
        }
        // rb_link_node: parent, red, no children.
        let l = a.links(n)
        l.pointee.subtree_last = last
        l.pointee.parent = rbParent
        l.pointee.color = red
        l.pointee.left = 0
        l.pointee.right = 0
        if rbParent == 0 {
            root.pointee = n
        } else if goLeft {
            a.links(rbParent).pointee.left = n
        } else {
            a.links(rbParent).pointee.right = n
        }
        insertColor(n, root: root, a)
    }

    /// __rb_insert with the interval tree's augment_rotate.
    @inlinable
    static func insertColor<A: IntervalTreeAccessor>(_ n: UInt32, root: UnsafeMutablePointer<UInt32>, _ a: A) {
        var node = n
        var parent = a.links(node).pointee.parent  // rb_red_parent(node)
        while true {
            // Loop invariant: node is red.
            if parent == 0 {
                setParentColor(node, 0, black, a)
                break
            } else if !isRed(parent, a) {
                break
            }
            let gparent = a.links(parent).pointee.parent  // rb_red_parent(parent)
            var tmp = a.links(gparent).pointee.right
            if parent != tmp {  // parent == gparent->rb_left
                if tmp != 0 && isRed(tmp, a) {
                    // Case 1 - colour flips, recurse at gparent.
                    setParentColor(tmp, gparent, black, a)
                    setParentColor(parent, gparent, black, a)
                    node = gparent
                    parent = a.links(node).pointee.parent
                    setParentColor(node, parent, red, a)
                    continue
                }
                tmp = a.links(parent).pointee.right
                if node == tmp {
                    // Case 2 - left rotate at parent.
                    tmp = a.links(node).pointee.left
                    a.links(parent).pointee.right = tmp
                    a.links(node).pointee.left = parent
                    if tmp != 0 {
                        setParentColor(tmp, parent, black, a)
                    }
                    setParentColor(parent, node, red, a)
                    augmentRotate(parent, node, a)
                    parent = node
                    tmp = a.links(node).pointee.right
                }
                // Case 3 - right rotate at gparent.
                a.links(gparent).pointee.left = tmp  // == parent->rb_right
                a.links(parent).pointee.right = gparent
                if tmp != 0 {
                    setParentColor(tmp, gparent, black, a)
                }
                rotateSetParents(gparent, parent, root, red, a)
                augmentRotate(gparent, parent, a)
                break
            } else {
                tmp = a.links(gparent).pointee.left
                if tmp != 0 && isRed(tmp, a) {
                    // Case 1 - colour flips.
                    setParentColor(tmp, gparent, black, a)
                    setParentColor(parent, gparent, black, a)
                    node = gparent
                    parent = a.links(node).pointee.parent
                    setParentColor(node, parent, red, a)
                    continue
                }
                tmp = a.links(parent).pointee.left
                if node == tmp {
                    // Case 2 - right rotate at parent.
                    tmp = a.links(node).pointee.right
                    a.links(parent).pointee.left = tmp
                    a.links(node).pointee.right = parent
                    if tmp != 0 {
                        setParentColor(tmp, parent, black, a)
                    }
                    setParentColor(parent, node, red, a)
                    augmentRotate(parent, node, a)
                    parent = node
                    tmp = a.links(node).pointee.left
                }
                // Case 3 - left rotate at gparent.
                a.links(gparent).pointee.right = tmp  // == parent->rb_left
                a.links(parent).pointee.left = gparent
                if tmp != 0 {
                    setParentColor(tmp, gparent, black, a)
                }
                rotateSetParents(gparent, parent, root, red, a)
                augmentRotate(gparent, parent, a)
                break
            }
        }
    }

    // MARK: - Remove (rb_erase_augmented, lib/rbtree.c __rb_erase_color)

    /// ITPREFIX_remove. The node's own links are left as they were (stale).
    @inlinable
    public static func remove<A: IntervalTreeAccessor>(_ n: UInt32, root: UnsafeMutablePointer<UInt32>, _ a: A) {
        let node = a.links(n)
        let child = node.pointee.right
        var tmp = node.pointee.left
        var parent: UInt32
        let rebalance: UInt32

        if tmp == 0 {
            // Case 1: at most one child (the right one).
            let pParent = node.pointee.parent
            let pColor = node.pointee.color
            parent = pParent
            changeChild(n, child, parent, root, a)
            if child != 0 {
                setParentColor(child, pParent, pColor, a)
                rebalance = 0
            } else {
                rebalance = pColor == black ? parent : 0
            }
            tmp = parent
        } else if child == 0 {
            // Still case 1, but the child is node->rb_left.
            let pParent = node.pointee.parent
            let pColor = node.pointee.color
            setParentColor(tmp, pParent, pColor, a)
            parent = pParent
            changeChild(n, tmp, parent, root, a)
            rebalance = 0
            tmp = parent
        } else {
            var successor = child
            let child2: UInt32
            tmp = a.links(child).pointee.left
            if tmp == 0 {
                // Case 2: node's successor is its right child.
                parent = successor
                child2 = a.links(successor).pointee.right
                augmentCopy(n, successor, a)
            } else {
                // Case 3: node's successor is leftmost under node's right child.
                repeat {
                    parent = successor
                    successor = tmp
                    tmp = a.links(tmp).pointee.left
                } while tmp != 0
                child2 = a.links(successor).pointee.right
                a.links(parent).pointee.left = child2
                a.links(successor).pointee.right = child
                a.links(child).pointee.parent = successor  // rb_set_parent
                augmentCopy(n, successor, a)
                augmentPropagate(parent, stop: successor, a)
            }

            tmp = node.pointee.left
            a.links(successor).pointee.left = tmp
            a.links(tmp).pointee.parent = successor  // rb_set_parent

            let pParent = node.pointee.parent
            let pColor = node.pointee.color
            changeChild(n, successor, pParent, root, a)
            if child2 != 0 {
                setParentColor(successor, pParent, pColor, a)
                setParentColor(child2, parent, black, a)
                rebalance = 0
            } else {
                let successorColor = a.links(successor).pointee.color  // pc2
                setParentColor(successor, pParent, pColor, a)
                rebalance = successorColor == black ? parent : 0
            }
            tmp = successor
        }

        augmentPropagate(tmp, stop: 0, a)
        if rebalance != 0 {
            eraseColor(rebalance, root: root, a)
        }
    }

    /// __rb_erase_color with the interval tree's augment_rotate.
    @inlinable
    static func eraseColor<A: IntervalTreeAccessor>(_ p: UInt32, root: UnsafeMutablePointer<UInt32>, _ a: A) {
        var parent = p
        var node: UInt32 = 0
        var sibling: UInt32
        var tmp1: UInt32
        var tmp2: UInt32
        while true {
            // Loop invariants:
            // - node is black (or NULL on first iteration)
            // - node is not the root (parent is not NULL)
            // - All leaf paths going through parent and node have a black
            //   node count that is 1 lower than other leaf paths.
            sibling = a.links(parent).pointee.right
            if node != sibling {  // node == parent->rb_left
                if isRed(sibling, a) {
                    // Case 1 - left rotate at parent.
                    tmp1 = a.links(sibling).pointee.left
                    a.links(parent).pointee.right = tmp1
                    a.links(sibling).pointee.left = parent
                    setParentColor(tmp1, parent, black, a)
                    rotateSetParents(parent, sibling, root, red, a)
                    augmentRotate(parent, sibling, a)
                    sibling = tmp1
                }
                tmp1 = a.links(sibling).pointee.right
                if tmp1 == 0 || !isRed(tmp1, a) {
                    tmp2 = a.links(sibling).pointee.left
                    if tmp2 == 0 || !isRed(tmp2, a) {
                        // Case 2 - sibling colour flip (p could be either colour).
                        setParentColor(sibling, parent, red, a)
                        if isRed(parent, a) {
                            a.links(parent).pointee.color = black
                        } else {
                            node = parent
                            parent = a.links(node).pointee.parent
                            if parent != 0 { continue }
                        }
                        break
                    }
                    // Case 3 - right rotate at sibling.
                    tmp1 = a.links(tmp2).pointee.right
                    a.links(sibling).pointee.left = tmp1
                    a.links(tmp2).pointee.right = sibling
                    a.links(parent).pointee.right = tmp2
                    if tmp1 != 0 {
                        setParentColor(tmp1, sibling, black, a)
                    }
                    augmentRotate(sibling, tmp2, a)
                    tmp1 = sibling
                    sibling = tmp2
                }
                // Case 4 - left rotate at parent + colour flips.
                tmp2 = a.links(sibling).pointee.left
                a.links(parent).pointee.right = tmp2
                a.links(sibling).pointee.left = parent
                setParentColor(tmp1, sibling, black, a)
                if tmp2 != 0 {
                    a.links(tmp2).pointee.parent = parent  // rb_set_parent
                }
                rotateSetParents(parent, sibling, root, black, a)
                augmentRotate(parent, sibling, a)
                break
            } else {
                sibling = a.links(parent).pointee.left
                if isRed(sibling, a) {
                    // Case 1 - right rotate at parent.
                    tmp1 = a.links(sibling).pointee.right
                    a.links(parent).pointee.left = tmp1
                    a.links(sibling).pointee.right = parent
                    setParentColor(tmp1, parent, black, a)
                    rotateSetParents(parent, sibling, root, red, a)
                    augmentRotate(parent, sibling, a)
                    sibling = tmp1
                }
                tmp1 = a.links(sibling).pointee.left
                if tmp1 == 0 || !isRed(tmp1, a) {
                    tmp2 = a.links(sibling).pointee.right
                    if tmp2 == 0 || !isRed(tmp2, a) {
                        // Case 2 - sibling colour flip.
                        setParentColor(sibling, parent, red, a)
                        if isRed(parent, a) {
                            a.links(parent).pointee.color = black
                        } else {
                            node = parent
                            parent = a.links(node).pointee.parent
                            if parent != 0 { continue }
                        }
                        break
                    }
                    // Case 3 - left rotate at sibling.
                    tmp1 = a.links(tmp2).pointee.left
                    a.links(sibling).pointee.right = tmp1
                    a.links(tmp2).pointee.left = sibling
                    a.links(parent).pointee.left = tmp2
                    if tmp1 != 0 {
                        setParentColor(tmp1, sibling, black, a)
                    }
                    augmentRotate(sibling, tmp2, a)
                    tmp1 = sibling
                    sibling = tmp2
                }
                // Case 4 - right rotate at parent + colour flips.
                tmp2 = a.links(sibling).pointee.right
                a.links(parent).pointee.left = tmp2
                a.links(sibling).pointee.right = parent
                setParentColor(tmp1, sibling, black, a)
                if tmp2 != 0 {
                    a.links(tmp2).pointee.parent = parent  // rb_set_parent
                }
                rotateSetParents(parent, sibling, root, black, a)
                augmentRotate(parent, sibling, a)
                break
            }
        }
    }

    // MARK: - Overlap search (interval_tree_generic.h)
    //
    // A node's interval intersects [start;last] iff
    //   Cond1: start(node) <= last   and   Cond2: start <= last(node).

    /// ITPREFIX_subtree_search: leftmost node under `n` overlapping [start;last].
    /// Precondition: start <= subtree_last(n).
    @inlinable
    static func subtreeSearch<A: IntervalTreeAccessor>(_ n: UInt32, start: UInt64, last: UInt64, _ a: A) -> UInt32 {
        var node = n
        while true {
            // Loop invariant: start <= subtree_last(node).
            let l = a.links(node)
            let left = l.pointee.left
            if left != 0 && start <= a.links(left).pointee.subtree_last {
                // The leftmost node satisfying Cond2 is on the left; if it fails
                // Cond1 so does everything to its right.
                node = left
                continue
            }
            if a.start(node) <= last {  // Cond1
                if start <= a.last(node) {  // Cond2
                    return node  // leftmost match
                }
                let right = l.pointee.right
                if right != 0 {
                    node = right
                    if start <= a.links(node).pointee.subtree_last { continue }
                }
            }
            return 0  // no match
        }
    }

    /// ITPREFIX_iter_first: the first node (in order) overlapping [start, last], 0 if none.
    @inlinable
    public static func iterFirst<A: IntervalTreeAccessor>(root: UInt32, start: UInt64, last: UInt64, _ a: A) -> UInt32 {
        if root == 0 { return 0 }
        if a.links(root).pointee.subtree_last < start { return 0 }
        return subtreeSearch(root, start: start, last: last, a)
    }

    /// ITPREFIX_iter_next: the node after `n` (in order) overlapping [start, last], 0 if none.
    @inlinable
    public static func iterNext<A: IntervalTreeAccessor>(_ n: UInt32, start: UInt64, last: UInt64, _ a: A) -> UInt32 {
        var node = n
        var rb = a.links(node).pointee.right
        while true {
            // Loop invariants: Cond1 holds for node; rb == node->right.
            // First, search the right subtree if suitable.
            if rb != 0 && start <= a.links(rb).pointee.subtree_last {
                return subtreeSearch(rb, start: start, last: last, a)
            }
            // Move up the tree until we come from a node's left child.
            var prev: UInt32
            repeat {
                rb = a.links(node).pointee.parent
                if rb == 0 { return 0 }
                prev = node
                node = rb
                rb = a.links(node).pointee.right
            } while prev == rb
            // Check if the node intersects [start;last].
            if last < a.start(node) {  // !Cond1
                return 0
            } else if start <= a.last(node) {  // Cond2
                return node
            }
        }
    }

    // MARK: - In-order walk (rb_first, rb_last, rb_next, rb_prev)

    @inlinable
    public static func first<A: IntervalTreeAccessor>(root: UInt32, _ a: A) -> UInt32 {
        var n = root
        if n == 0 { return 0 }
        while true {
            let left = a.links(n).pointee.left
            if left == 0 { return n }
            n = left
        }
    }

    @inlinable
    public static func last<A: IntervalTreeAccessor>(root: UInt32, _ a: A) -> UInt32 {
        var n = root
        if n == 0 { return 0 }
        while true {
            let right = a.links(n).pointee.right
            if right == 0 { return n }
            n = right
        }
    }

    @inlinable
    public static func next<A: IntervalTreeAccessor>(_ n: UInt32, _ a: A) -> UInt32 {
        if n == 0 { return 0 }
        var node = n
        // A right child: go down once right, then left as far as possible.
        var right = a.links(node).pointee.right
        if right != 0 {
            while true {
                let left = a.links(right).pointee.left
                if left == 0 { return right }
                right = left
            }
        }
        // Otherwise go up until we come from a left child.
        while true {
            let parent = a.links(node).pointee.parent
            if parent == 0 || node != a.links(parent).pointee.right { return parent }
            node = parent
        }
    }

    @inlinable
    public static func prev<A: IntervalTreeAccessor>(_ n: UInt32, _ a: A) -> UInt32 {
        if n == 0 { return 0 }
        var node = n
        var left = a.links(node).pointee.left
        if left != 0 {
            while true {
                let right = a.links(left).pointee.right
                if right == 0 { return left }
                left = right
            }
        }
        while true {
            let parent = a.links(node).pointee.parent
            if parent == 0 || node != a.links(parent).pointee.left { return parent }
            node = parent
        }
    }

    // MARK: - find_vma

    /// find_vma(): the first node (lowest start) whose last >= addr, 0 if none.
    /// (For a tree of non-overlapping intervals.) The rbtree walk of the
    /// pre-maple-tree mm/mmap.c: `vm_end > addr` is `last >= addr`.
    @inlinable
    public static func findFirstEndingAtOrAfter<A: IntervalTreeAccessor>(root: UInt32, _ addr: UInt64, _ a: A) -> UInt32 {
        var found: UInt32 = 0
        var rb = root
        while rb != 0 {
            if a.last(rb) >= addr {
                found = rb
                if a.start(rb) <= addr { break }
                rb = a.links(rb).pointee.left
            } else {
                rb = a.links(rb).pointee.right
            }
        }
        return found
    }

    // MARK: - Checking

    /// Checks every invariant: parent links consistent, root black, no red node with a red child, equal black height,
    /// in-order starts non-decreasing, every subtree_last == max(last(n), children's subtree_last). Returns a list of
    /// violation messages naming the node id and the broken invariant; empty when the tree is sound. Bounded: stops
    /// after visiting `limit` nodes (report "cycle or too many nodes").
    @inlinable
    public static func check<A: IntervalTreeAccessor>(root: UInt32, _ a: A, limit: Int) -> [String] {
        var errors: [String] = []
        var suppressed = 0
        let maxErrors = 64
        func report(_ s: @autoclosure () -> String) {
            if errors.count < maxErrors { errors.append(s()) } else { suppressed += 1 }
        }
        func finish() -> [String] {
            if suppressed > 0 { errors.append("... and \(suppressed) more violations") }
            return errors
        }
        if root == 0 { return errors }
        let rootColor = a.links(root).pointee.color
        if rootColor != black {
            report("node \(root): root is not black (color \(rootColor))")
        }
        // A tree of one node (most anon_vmas' and many mms' trees): the walk
        // below without its stack (no allocation per tree checked).
        let r = a.links(root).pointee
        if r.left == 0 && r.right == 0 && limit >= 1 {
            if r.parent != 0 { report("node \(root): parent link is \(r.parent), expected 0") }
            if r.color != red && r.color != black { report("node \(root): invalid color \(r.color)") }
            let expect = a.last(root)
            if r.subtree_last != expect { report("node \(root): subtree_last is \(r.subtree_last), expected \(expect)") }
            return finish()
        }

        // Iterative in-order walk (a corrupt tree may be deep or cyclic, so no
        // recursion); each stack entry is (node, black nodes on the path from
        // the root down to and including node).
        var stack: [(UInt32, Int)] = []
        var cur = root
        var curParent: UInt32 = 0     // the node cur was reached from
        var aboveBlack = 0            // black nodes strictly above cur
        var leafBlack = -1            // black height of the first NULL leaf met
        var leafBlackWitness: UInt32 = 0
        var visited = 0
        var havePrev = false
        var prevNode: UInt32 = 0
        var prevStart: UInt64 = 0

        func leaf(_ above: UInt32, _ side: String, _ h: Int) {
            if leafBlack < 0 {
                leafBlack = h
                leafBlackWitness = above
            } else if h != leafBlack {
                report("node \(above): black height \(h) on its \(side) NULL leaf differs from \(leafBlack) under node \(leafBlackWitness)")
            }
        }

        while true {
            while cur != 0 {
                visited += 1
                if visited > limit {
                    errors.append("node \(cur): cycle or too many nodes (visited more than \(limit))")
                    return finish()
                }
                let l = a.links(cur).pointee
                if l.parent != curParent {
                    report("node \(cur): parent link is \(l.parent), expected \(curParent)")
                }
                if l.color != red && l.color != black {
                    report("node \(cur): invalid color \(l.color)")
                }
                if l.color == red {
                    if l.left != 0 && a.links(l.left).pointee.color == red {
                        report("node \(cur): red node has red child \(l.left)")
                    }
                    if l.right != 0 && a.links(l.right).pointee.color == red {
                        report("node \(cur): red node has red child \(l.right)")
                    }
                }
                var expect = a.last(cur)
                if l.left != 0 { expect = Swift.max(expect, a.links(l.left).pointee.subtree_last) }
                if l.right != 0 { expect = Swift.max(expect, a.links(l.right).pointee.subtree_last) }
                if l.subtree_last != expect {
                    report("node \(cur): subtree_last is \(l.subtree_last), expected \(expect)")
                }
                let h = aboveBlack + (l.color == black ? 1 : 0)
                if l.left == 0 { leaf(cur, "left", h) }
                stack.append((cur, h))
                curParent = cur
                aboveBlack = h
                cur = l.left
            }
            guard let top = stack.popLast() else { break }
            let (n, h) = top
            let s = a.start(n)
            if havePrev && s < prevStart {
                report("node \(n): in-order start \(s) is below start \(prevStart) of its predecessor \(prevNode)")
            }
            havePrev = true
            prevNode = n
            prevStart = s
            let right = a.links(n).pointee.right
            if right == 0 { leaf(n, "right", h) }
            cur = right
            curParent = n
            aboveBlack = h
        }
        return finish()
    }

    /// Number of nodes in the tree (an in-order walk).
    @inlinable
    public static func count<A: IntervalTreeAccessor>(root: UInt32, _ a: A) -> Int {
        var c = 0
        var n = first(root: root, a)
        while n != 0 {
            c += 1
            n = next(n, a)
        }
        return c
    }
}
