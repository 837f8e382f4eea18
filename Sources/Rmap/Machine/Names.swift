// Spellings the model and its saved states share with the trace language:
// hexadecimal addresses in messages, and the syntax of process and file names
// (a saved arena's name table is validated against it).

/// `0x` and lower-case hex digits, as every message of the model prints an address.
package func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

func isNameStart(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x41...0x5A, 0x61...0x7A, 0x5F: return true
    default: return false
    }
}

func isNameChar(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x41...0x5A, 0x61...0x7A, 0x5F, 0x30...0x39, 0x2E, 0x2D: return true
    default: return false
    }
}

/// `[A-Za-z_][A-Za-z0-9_.-]*` (any length).
package func isNameSyntax<S: Collection>(_ s: S) -> Bool where S.Element == Unicode.Scalar {
    guard let first = s.first, isNameStart(first) else { return false }
    return s.allSatisfy(isNameChar)
}
