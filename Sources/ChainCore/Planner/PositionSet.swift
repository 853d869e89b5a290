// A set of chain positions (0 = active image), stored inline for chains of up to 64 images: the per-layer flags
// of the planner without a heap allocation per flag and per disk.

struct PositionSet: Hashable, Sendable {
    /// Positions 0..<64.
    private(set) var word: UInt64
    /// Positions 64…, 64 to a word; nil while no such position is in the set.
    private var more: [UInt64]?

    @inline(__always) init() {
        word = 0
        more = nil
    }

    /// Positions `0..<count` (all of them when `all`, else none).
    @inline(__always) init(count: Int, all: Bool) {
        word = 0
        more = nil
        if all { insertAll(count) }
    }

    private mutating func insertAll(_ count: Int) {
        if count >= 64 {
            word = .max
            var i = 64
            while i < count {
                self[i] = true
                i += 1
            }
        } else if count > 0 {
            word = (1 << UInt64(count)) &- 1
        }
    }

    @inline(__always) subscript(_ i: Int) -> Bool {
        get {
            if i < 64 { return (word >> UInt64(i)) & 1 != 0 }
            guard let more else { return false }
            let w = (i - 64) >> 6
            return w < more.count && (more[w] >> UInt64(i & 63)) & 1 != 0
        }
        set {
            if i < 64 {
                if newValue { word |= 1 << UInt64(i) } else { word &= ~(1 << UInt64(i)) }
                return
            }
            let w = (i - 64) >> 6
            if more == nil {
                guard newValue else { return }
                more = []
            }
            while more!.count <= w { more!.append(0) }
            if newValue { more![w] |= 1 << UInt64(i & 63) } else { more![w] &= ~(1 << UInt64(i & 63)) }
        }
    }

    /// Whether no position is in the set.
    var isEmpty: Bool { word == 0 && (more?.allSatisfy { $0 == 0 } ?? true) }

    /// The lowest position in the set.
    var first: Int? {
        if word != 0 { return word.trailingZeroBitCount }
        guard let more else { return nil }
        for (w, bits) in more.enumerated() where bits != 0 { return 64 + w * 64 + bits.trailingZeroBitCount }
        return nil
    }

    static func & (a: PositionSet, b: PositionSet) -> PositionSet {
        var out = PositionSet()
        out.word = a.word & b.word
        if let x = a.more, let y = b.more {
            out.more = (0..<min(x.count, y.count)).map { x[$0] & y[$0] }
        }
        return out
    }

    /// Positions of `0..<count` not in the set.
    func complement(count: Int) -> PositionSet {
        var out = PositionSet(count: count, all: true)
        out.word &= ~word
        if let more {
            for (w, bits) in more.enumerated() {
                for b in 0..<64 where bits & (1 << UInt64(b)) != 0 { out[64 + w * 64 + b] = false }
            }
        }
        return out
    }
}
