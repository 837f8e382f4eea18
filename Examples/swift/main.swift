// Embedding swift-rmap from Swift: build a small system, fork it, write
// copy-on-write pages, walk the reverse map of a shared frame with a custom
// walk control, and check the invariants. `make test` runs it.
import Rmap
import RmapTrace

/// Remembers the mappings the walk finds. The walk visits every VMA that may
/// map the frame (all VMAs attached to its anon_vma); like the kernel's
/// rmap_one hooks, the visitor checks the PTE (page_vma_mapped_walk).
struct Collect: RmapWalkControl {
    var visited = 0
    var hits: [(mm: MMID, address: UInt64)] = []
    mutating func rmapOne(_ m: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
        visited += 1
        if m.maps(pfn: pfn, vma: vma, address: address) { hits.append((m.vmaRange(vma).mm, address)) }
        return true
    }
}

let machine = try Machine()
precondition(machine.createProcess("init") == .ok)
precondition(machine.perform("init", .mmap(addr: 0x1000_0000_0000, pages: 4, prot: [.read, .write], kind: .anonPrivate)) == .ok)
precondition(machine.perform("init", .write(addr: 0x1000_0000_0000, pages: 4)) == .ok)
for i in 1...3 { precondition(machine.fork("init", child: "child\(i)") == .ok) }
precondition(machine.perform("child1", .write(addr: 0x1000_0000_0000, pages: 1)) == .ok)  // COW

var walk = Collect()
precondition(machine.rmapWalk(process: "init", addr: 0x1000_0000_1000, &walk))
let names = walk.hits.compactMap { machine.processName(mm: $0.mm) }.sorted()
print("frame at init 0x100000001000 is mapped by: \(names.joined(separator: ", "))")
precondition(names == ["child1", "child2", "child3", "init"], "\(names)")

var first = Collect()
precondition(machine.rmapWalk(process: "init", addr: 0x1000_0000_0000, &first))
print("frame at init 0x100000000000 (child1 copied it): \(first.visited) VMAs visited, mapped by \(first.hits.count)")
precondition(first.visited == 4 && first.hits.count == 3)

let t = [Target(process: "init", addr: 0x1000_0000_0000, pages: 4, location: SourceLocation(line: 0, column: 0))]
print("observe:", machine.observeTokens(t).joined(separator: " "))
let violations = machine.check()
print("checker:", violations.isEmpty ? "clean" : violations.joined(separator: "; "))
precondition(violations.isEmpty)
print("swift embedding example: ok")
