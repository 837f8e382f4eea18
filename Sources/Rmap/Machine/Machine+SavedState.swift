import CShims

/// Saved states: a machine's whole arena written to a file and reopened.
/// Nothing in an opened file is trusted: every index of every object is
/// checked against its table before any pointer is formed from it, the
/// page tables and trees are checked for shape, and then the invariant
/// checker must pass. A truncated, corrupted or hostile file is rejected
/// with the first problem found.
extension Machine {
    /// Writes the machine's state to `path`. Returns an error message or nil.
    public func save(to path: String) -> String? {
        arena.save(to: path)?.message
    }

    /// `save(to:)` with the errno of the step that failed (the C API returns it).
    package func saveReportingErrno(to path: String) -> (message: String, errno: Int32)? {
        arena.save(to: path)
    }

    /// Rebuilds the name dictionaries from the arena's name table.
    func loadNames() {
        var recs: [(order: UInt32, r: UInt32)] = []
        let d = k.desc(T.name).pointee
        var free = Set<UInt32>()
        var f = d.free_head
        while f != 0 && free.count < Int(d.capacity) { free.insert(f); f = UnsafeRawPointer(k.names + Int(f)).load(as: UInt32.self) }
        for r in 1..<d.bump where !free.contains(r) { recs.append((k.names[Int(r)].order, r)) }
        recs.sort { $0.order < $1.order }
        for (_, r) in recs {
            let p = k.names[Int(r)]
            let name = Machine.nameString(p)
            if p.kind == UInt32(RMAP_NAME_FILE) {
                fileByName[name] = p.index
                fileOrder.append(name)
            } else {
                processOrder.append(name)
                liveMMsCache = nil
                processNamesUsed.insert(name)
                if p.index != 0 {
                    mmByName[name] = p.index
                    processNameRecord[name] = r
                }
            }
        }
    }

    static func nameString(_ p: rmap_name) -> String {
        var p = p
        let len = min(Int(p.len), Int(RMAP_NAME_MAX))
        return withUnsafeBytes(of: &p.name) { String(decoding: $0.prefix(len), as: UTF8.self) }
    }
}
