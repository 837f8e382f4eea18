import Testing
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// The invariant checker can fail: a model with one planted defect (an rmap
/// add removed, a mapcount decrement removed, the root rule of
/// __page_set_anon_rmap ignored) runs a trace the correct model passes, and
/// the checker names the broken object and invariant.
@Suite struct CheckerTests {
    /// Fork shares the page (folio_try_dup_anon_rmap_pte), B's exit removes
    /// its mapping (folio_remove_rmap_pte), and a swap-out/swap-in of a page
    /// shared by two processes sets the anon rmap of a non-exclusive page
    /// (do_swap_page -> folio_add_anon_rmap_pte).
    static let trace = """
        swap 8
        proc A
        A mmap 0x100000000000 2 rw anon-private
        A write 0x100000000000 2
        B = fork A
        C = fork A
        B reclaim 0x100000000000
        B read 0x100000000000
        A read 0x100000000000
        C exit
        """

    func run(_ defect: ModelDefect) throws -> [String] {
        let m = try Machine(config: .default, reuse: .split)
        m.k.hooks.defect = defect
        let out = m.replay(try TraceParser.parse(Self.trace, file: "checker.trace"))
        #expect(out.failures == [])
        return m.check()
    }

    @Test func correctModelPasses() throws {
        #expect(try run(.none) == [])
    }

    @Test func missingRmapAddAtForkIsCaught() throws {
        let v = try run(.skipDupAnonRmap)
        #expect(v.contains { $0.contains("_mapcount") && $0.contains("PTEs map it") }, "\(v)")
    }

    @Test func missingMapcountDecrementIsCaught() throws {
        let v = try run(.skipRemoveRmapDecrement)
        #expect(v.contains { $0.contains("_mapcount") && $0.contains("PTEs map it") }, "\(v)")
    }

    @Test func sharedAnonPageOffTheRootIsCaught() throws {
        let v = try run(.sharedAnonPageNotAtRoot)
        #expect(v.contains { $0.contains("the rmap walk does not find it") }, "\(v)")
    }
}
