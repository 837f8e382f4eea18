import Rmap
import CShims

/// The canonical observation of pages and VMAs (docs/trace-format.md).
extension Machine {
    /// The tokens of the targets, one per page, frames named canonically
    /// (first met is 1) within this call.
    public func observeTokens(_ targets: [Target]) -> [String] {
        var ids: [UInt32: Int] = [:]
        return perPage(targets) { m, a in token(m, a, &ids) }
    }

    /// One token per page of the targets, in order: `-` for every page of a
    /// process that is not alive.
    func perPage(_ targets: [Target], _ token: (MMID, UInt64) -> String) -> [String] {
        var out: [String] = []
        for t in targets {
            guard let m = mmOf(t.process) else {
                out.append(contentsOf: repeatElement("-", count: Int(t.pages)))
                continue
            }
            var a = t.addr
            for _ in 0..<t.pages {
                out.append(token(m, a))
                a += PAGE_SIZE
            }
        }
        return out
    }

    func token(_ m: MMID, _ addr: UInt64, _ ids: inout [UInt32: Int]) -> String {
        // A PMD leaf: every page of the 2 MiB gives a token ending in `*`.
        if let pmd = k.pmdSlot(root: k.mm(m).pointee.pgd, key: addr), PTE.isPMDLeafOrEntry(pmd.pointee) {
            // A PMD migration entry: `M*` for each of its pages, as a small
            // page's migration entry is `M`.
            if PTE.isPMDMigrationEntry(pmd.pointee) { return "M*" }
            // A hugetlb hwpoison entry (try_to_unmap of a poisoned folio): `H*`.
            if PTE.isHWPoisonEntry(pmd.pointee) { return "H*" }
            let head = PTE.pfn(pmd.pointee)
            if head == k.hugeZeroPFN { return "Z*" }
            let sub = UInt32((addr >> PAGE_SHIFT) & 511)
            return folioToken(head, sub, &ids) + "*"
        }
        guard let s = k.leafSlot(root: k.mm(m).pointee.pgd, key: addr) else { return "-" }
        let e = s.pointee
        if e == 0 { return "-" }
        if !PTE.isPresent(e) {
            if PTE.isMigrationEntry(e) { return "M" }
            if PTE.isHWPoisonEntry(e) { return "H" }
            if PTE.isDevicePrivateEntry(e) { return "D" }
            if PTE.isDeviceExclusiveEntry(e) { return "X" }
            return "S"
        }
        let pfn = PTE.pfn(e)
        if pfn == k.zeroPFN { return "Z" }
        let head = k.folioOf(pfn)
        return folioToken(head, UInt32(head.distance(to: pfn)), &ids)
    }

    /// The token of page `sub` of the folio at `head`: `A<id>:<count>` for a
    /// small folio, `A<id>+<sub>:<count>` for a page of a large one, the
    /// count as /proc/kpagecount gives it (folio_precise_page_mapcount()),
    /// folios named canonically (first met is 1).
    func folioToken(_ head: PFN, _ sub: UInt32, _ ids: inout [UInt32: Int]) -> String {
        let id: Int
        if let i = ids[head.rawValue] { id = i } else { id = ids.count + 1; ids[head.rawValue] = id }
        let mapping = k.page(head).pointee.mapping & PageMapping.flags
        let kind = k.folioIsHugetlb(head) ? "T" : mapping == PageMapping.ksm ? "K" : mapping == PageMapping.anon ? "A" : "F"
        if k.folioIsLarge(head) { return "\(kind)\(id)+\(sub):\(k.precisePageMapcount(head.advanced(by: sub)))" }
        return "\(kind)\(id):\(k.pageMapcount(head))"
    }

    /// The content tokens of the targets, one per page: `v` and the value the
    /// page reads back (its frame's content token; 0 for the zero page) when
    /// a read needs no fault (a present PTE in a readable VMA), else `-` (a
    /// read would fault: no PTE, a swap or migration entry, a device entry,
    /// PROT_NONE). The oracle reads the same 8 bytes through /proc/PID/mem.
    public func observeContents(_ targets: [Target]) -> [String] {
        perPage(targets, contentToken)
    }

    func contentToken(_ m: MMID, _ addr: UInt64) -> String {
        let pfn: PFN
        if let pmd = k.pmdSlot(root: k.mm(m).pointee.pgd, key: addr), PTE.isPMDLeaf(pmd.pointee) {
            pfn = PTE.pfn(pmd.pointee).advanced(by: UInt32((addr >> PAGE_SHIFT) & 511))
        } else {
            guard let s = k.leafSlot(root: k.mm(m).pointee.pgd, key: addr), PTE.isPresent(s.pointee) else { return "-" }
            pfn = PTE.pfn(s.pointee)
        }
        let v = k.vmaLookup(m, addr)
        guard !v.isNone, k.vma(v).pointee.vm_flags & VM.read != 0 else { return "-" }
        return "v" + String(k.page(pfn).pointee.content, radix: 16)
    }

    /// `{"tokens":[...],"vmas":[...]}` for the targets (the C API's observation).
    public func observationJSON(_ targets: [Target]) -> String {
        "{\"tokens\":[" + observeTokens(targets).map(jsonString).joined(separator: ",") + "],\"vmas\":["
            + observeVMAs(targets).map(jsonString).joined(separator: ",") + "]}"
    }

    /// The VMAs that intersect each target, target by target, whole, as
    /// `P START-END PERMS KIND`.
    public func observeVMAs(_ targets: [Target]) -> [String] {
        var out: [String] = []
        for t in targets {
            guard let m = mmOf(t.process) else { continue }
            for v in k.vmasIntersecting(m, t.addr, t.addr + t.pages << PAGE_SHIFT) {
                out.append("\(t.process) \(describeVMA(v))")
            }
        }
        return out
    }

    /// `START-END PERMS KIND` as /proc/PID/maps would give it.
    package func describeVMA(_ v: VMAID) -> String {
        let p = k.vma(v).pointee
        let f = p.vm_flags
        let perms = (f & VM.read != 0 ? "r" : "-") + (f & VM.write != 0 ? "w" : "-")
            + (f & VM.exec != 0 ? "x" : "-") + (f & VM.mayshare != 0 ? "s" : "p")
        let kind: String
        if p.file == 0 {
            kind = "anon"
        } else if f & VM.hugetlb != 0 {
            kind = "hugetlb"
        } else if k.file(FileID(p.file)).pointee.kind == FileKind.shmem.rawValue {
            kind = "shmem"
        } else {
            kind = "file:\(fileName(p.file))@\(p.vm_pgoff)"
        }
        return "0x\(String(p.vm_start, radix: 16))-0x\(String(p.vm_end, radix: 16)) \(perms) \(kind)"
    }

    func fileName(_ f: UInt32) -> String {
        for (name, i) in fileByName where i == f { return name }
        return "?"
    }
}

/// What a replay produced: the parts of the canonical observation, and the
/// failed expectations.
public struct ReplayOutcome: Sendable {
    public var results: [(line: Int, result: String)] = []
    public var observations: [(line: Int, tokens: [String], vmas: [String])] = []
    /// `FILE:LINE: expectation failed: expected X, got Y`, in trace order.
    public var failures: [String] = []
    /// `FILE:LINE: error: MESSAGE` when a statement that has no result to
    /// report in could not run on this machine (a `proc` or `file` with the
    /// arena's table full, a `swap` beyond the swap map): `replay` stops there.
    public var error: String? = nil
    /// Whether `observe` lines keep their tokens and VMAs in `observations`.
    /// Without (replay when nobody prints the observation), an observe line
    /// costs nothing after it ran: 200 observations of 2^20 pages no longer
    /// add up to gigabytes. Expectations are checked either way.
    public var keepsObservations = true

    public init(keepsObservations: Bool = true) { self.keepsObservations = keepsObservations }

    /// The canonical observation: one line of JSON, keys in spec order.
    public var canonicalJSON: String {
        var s = "{\"format\":\"rmap-observation/1\",\"results\":["
        s += results.map { "[\($0.line),\(jsonString($0.result))]" }.joined(separator: ",")
        s += "],\"observations\":["
        s += observations.map { o in
            "[\(o.line),[" + o.tokens.map(jsonString).joined(separator: ",") + "],["
                + o.vmas.map(jsonString).joined(separator: ",") + "]]"
        }.joined(separator: ",")
        s += "]}"
        return s
    }
}

func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16) }
            else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

extension Machine {
    /// Why a `proc` or `file` statement got ENOMEM.
    func fullTableMessage(file: Bool) -> String {
        guard let t = fullTableForCreating(file: file) else { return "out of memory" }
        return "the arena's \(t.table) table is full (\(t.capacity) in use)"
    }

    /// Runs a parsed trace to the end, or up to a statement that cannot run
    /// (`ReplayOutcome.error`). `hook` runs after every statement
    /// (the checker uses it).
    public func replay(_ trace: Trace, keepingObservations: Bool = true,
                       after hook: ((TraceLine) -> Void)? = nil) -> ReplayOutcome {
        var out = ReplayOutcome(keepsObservations: keepingObservations)
        // A trace with any `thp` statement (even a late `thp shrink`) runs
        // from the kernel's defaults from its first line: its mappings carry
        // no VM_NOHUGEPAGE (the contract; the oracle does the same).
        if trace.largePageSettings.anyTHPStatement { configureTHPDefaults() }
        for tl in trace.lines {
            step(tl, file: trace.file, into: &out)
            if out.error != nil { break }
            hook?(tl)
        }
        return out
    }

    /// Runs one statement of a trace, adding its result, observation or
    /// failed expectation to `out`; or, for a statement with no result that
    /// cannot run here, setting `out.error` (the machine is unchanged).
    ///
    /// Every Large pages addition runs: the THP ones (settings, `thp
    /// shrink`, `madvise hugepage|nohugepage|collapse`, `split`,
    /// `noreserve`) and hugetlb (the pool, the hugetlb kinds). A path the
    /// model does not run yet (an operation on a hugetlb mapping it refuses,
    /// some reverse paths of large folios) stops the replay with
    /// `FILE:LINE: error: large pages are not modelled yet: ...` (the
    /// machine is unchanged), so no trace passes for one the model ran.
    public func step(_ tl: TraceLine, file: String, into out: inout ReplayOutcome) {
        switch tl.statement {
        case .thpEnabled(let mode):
            _ = setTHP(enabled: THPMode(mode))
        case .thpSize(let size, let mode):
            _ = setTHP(order: UInt32(size.order), mode: THPMode(mode))
        case .hugetlb(let pages):
            if setHugetlbPool(pages: pages) != .ok {
                out.error = "\(file):\(tl.line): error: hugetlb \(pages): this arena's frames cannot hold the pool"
            }
        case .thpShrink:
            thpShrink()
        case .largePageOp(let p, let op, let expected):
            let result: OpResult
            switch op {
            case .mmap(let addr, let pages, let prot, let kind, let noreserve):
                result = mmap(p, addr: addr, pages: pages, prot: prot, kind: kind, noreserve: noreserve)
            case .madvise(let addr, let pages, .collapse):
                result = madviseCollapse(p, addr: addr, pages: pages)
            case .madvise(let addr, let pages, let advice):
                result = madviseHugepage(p, addr: addr, pages: pages, hugepage: advice == .hugepage)
            case .split(let addr, let pages):
                result = split(p, addr: addr, pages: pages)
            }
            if case .notModelled(let what) = result {
                let verb: String
                switch op { case .mmap: verb = "mmap"; case .madvise: verb = "madvise"; case .split: verb = "split" }
                out.error = "\(file):\(tl.line): error: large pages are not modelled yet: \(p) \(verb) (\(what))"
                return
            }
            let r = result.description
            out.results.append((tl.line, r))
            if let expected, expected != r {
                out.failures.append("\(file):\(tl.line): expectation failed: expected \(expected), got \(r)")
            }
        case .file(let name, let pages):
            let r = createFile(name, pages: pages)
            if r != .ok {
                // A parsed trace gets only ENOMEM here (the parser applies the name and size rules).
                out.error = "\(file):\(tl.line): error: cannot create file '\(name)': "
                    + (r == .errno(.ENOMEM) ? fullTableMessage(file: true) : r.description)
            }
        case .proc(let name):
            let r = createProcess(name)
            if r != .ok {
                out.error = "\(file):\(tl.line): error: cannot create process '\(name)': "
                    + (r == .errno(.ENOMEM) ? fullTableMessage(file: false) : r.description)
            }
        case .swap(let slots):
            if setSwap(slots: slots) != .ok {
                out.error = "\(file):\(tl.line): error: swap \(slots) is larger than this arena's swap map (\(swapMapSlots) slots)"
            }
        case .op(let p, let op, let expected):
            let result = perform(p, op)
            if case .notModelled(let what) = result {
                out.error = "\(file):\(tl.line): error: large pages are not modelled yet: \(p) \(op.verb) (\(what))"
                return
            }
            let r = result.description
            out.results.append((tl.line, r))
            if let expected, expected != r {
                out.failures.append("\(file):\(tl.line): expectation failed: expected \(expected), got \(r)")
            }
        case .ksmScan(let passes):
            ksmScan(passes: passes)
        case .observe(let targets):
            if out.keepsObservations { out.observations.append((tl.line, observeTokens(targets), observeVMAs(targets))) }
        case .observeContents(let targets):
            if out.keepsObservations { out.observations.append((tl.line, observeContents(targets), observeVMAs(targets))) }
        case .expectContents(let targets, let tokens):
            let got = observeContents(targets)
            if got != tokens {
                out.failures.append("\(file):\(tl.line): expectation failed: expected \(tokens.joined(separator: " ")), got \(got.joined(separator: " "))")
            }
        case .observeHugetlb:
            if out.keepsObservations { out.observations.append((tl.line, hugetlbPoolTokens(), [])) }
        case .expectHugetlb(let tokens):
            let got = hugetlbPoolTokens()
            if got != tokens {
                out.failures.append("\(file):\(tl.line): expectation failed: expected \(tokens.joined(separator: " ")), got \(got.joined(separator: " "))")
            }
        case .expect(let targets, let tokens):
            let got = observeTokens(targets)
            if got != tokens {
                out.failures.append("\(file):\(tl.line): expectation failed: expected \(tokens.joined(separator: " ")), got \(got.joined(separator: " "))")
            }
        }
    }
}

extension Machine {
    /// `observe hugetlb` (HugetlbPoolView): the model's pool serves the
    /// trace alone (a fresh arena's is empty; a state saved by an earlier
    /// part of the trace and continued with --load holds only that part's),
    /// so its own counts are the trace's view: what the oracle gets by
    /// subtracting the rest of the machine's pool.
    public func hugetlbPoolTokens() -> [String] {
        let p = hugetlbPool
        return HugetlbPoolView.tokens(total: Int64(bitPattern: p.total), free: Int64(bitPattern: p.free),
                                      resv: p.reserved, surplus: Int64(bitPattern: p.surplus))
    }
}

extension THPMode {
    init(_ m: THPEnabledMode) {
        switch m {
        case .always: self = .always
        case .madvise: self = .madvise
        case .never: self = .never
        }
    }
    init(_ m: THPSizeMode) {
        switch m {
        case .always: self = .always
        case .inherit: self = .inherit
        case .madvise: self = .madvise
        case .never: self = .never
        }
    }
}
