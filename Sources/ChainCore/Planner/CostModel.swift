// Bytes a commit, pull or copy writes, from the guest ranges each layer holds on its own.

/// `|U(i...j)|` — the bytes of the union of the data of layers `i...j` — for every interval of one chain, in O(1).
///
/// A layer with a measured `allocation` contributes its ranges; a layer without one is treated as disjoint from all
/// others with `dataBytes` bytes (so unions are sums and differences are the pulled sums).
public struct CostModel: Sendable, Hashable {
    public let count: Int
    /// `table[i * count + j]` = |U(i...j)| for i ≤ j; empty when every layer is an estimate.
    private var table: [UInt64]
    /// When no layer has a measured allocation: `sums[k]` = Σ dataBytes of layers 0..<k.
    private var sums: [UInt64]

    public init(layers: [Layer]) {
        if layers.allSatisfy({ $0.allocation == nil }) {
            let sums = [UInt64](unsafeUninitializedCapacity: layers.count + 1) { buffer, count in
                var running: UInt64 = 0
                buffer[0] = 0
                for i in layers.indices {
                    running += layers[i].dataBytes ?? 0
                    buffer[i + 1] = running
                }
                count = layers.count + 1
            }
            self.init(count: layers.count, table: [], sums: sums)
        } else {
            self.init(extents: layers.map(\.allocation), estimates: layers.map { $0.dataBytes ?? 0 })
        }
    }

    private init(count: Int, table: [UInt64], sums: [UInt64]) {
        self.count = count
        self.table = table
        self.sums = sums
    }

    /// `extents[i]` nil = use `estimates[i]` bytes, disjoint from everything else.
    public init(extents: [ExtentSet?], estimates: [UInt64]) {
        let n = extents.count
        count = n
        sums = []
        // h[i * n + t]: bytes whose first covering layer at or below position i is t.
        // Then |U(i...j)| = Σ_{t=i...j} h[i * n + t].
        var h = [UInt64](repeating: 0, count: n * n)
        var events: [ExtentEvent] = []
        for (layer, extent) in extents.enumerated() {
            if let extent {
                for range in extent.ranges {
                    events.append(ExtentEvent(position: range.lowerBound, layer: layer, delta: 1))
                    events.append(ExtentEvent(position: range.upperBound, layer: layer, delta: -1))
                }
            } else {
                let bytes = layer < estimates.count ? estimates[layer] : 0
                if bytes > 0 {
                    for i in 0...layer { h[i * n + layer] += bytes }
                }
            }
        }
        if !events.isEmpty {
            events.sort { $0.position < $1.position }
            // For a segment covered by layers c1 < c2 < … < ck, every i in (c_{j-1}, c_j] has first covering
            // layer c_j: a range update on i for fixed t = c_j, kept as a difference array d[t][i].
            var d = [UInt64](repeating: 0, count: n * (n + 1))
            var cover = [Int](repeating: 0, count: n)
            var mask: UInt64 = 0
            let useMask = n <= 64
            var covered = 0
            var previous = events[0].position
            var e = 0
            while e < events.count {
                let position = events[e].position
                if covered > 0 && position > previous {
                    let length = position - previous
                    var lower = 0
                    if useMask {
                        var bits = mask
                        while bits != 0 {
                            let t = bits.trailingZeroBitCount
                            d[t * (n + 1) + lower] &+= length
                            d[t * (n + 1) + t + 1] &-= length
                            lower = t + 1
                            bits &= bits - 1
                        }
                    } else {
                        for t in 0..<n where cover[t] > 0 {
                            d[t * (n + 1) + lower] &+= length
                            d[t * (n + 1) + t + 1] &-= length
                            lower = t + 1
                        }
                    }
                }
                while e < events.count && events[e].position == position {
                    let layer = events[e].layer
                    let before = cover[layer]
                    cover[layer] += events[e].delta
                    if before == 0 && cover[layer] > 0 {
                        covered += 1
                        if useMask { mask |= 1 << UInt64(layer) }
                    }
                    if before > 0 && cover[layer] == 0 {
                        covered -= 1
                        if useMask { mask &= ~(1 << UInt64(layer)) }
                    }
                    e += 1
                }
                previous = position
            }
            for t in 0..<n {
                var running: UInt64 = 0
                for i in 0...t {
                    running &+= d[t * (n + 1) + i]
                    h[i * n + t] += running
                }
            }
        }
        var t = [UInt64](repeating: 0, count: n * n)
        for i in 0..<n {
            var running: UInt64 = 0
            for j in i..<n {
                running += h[i * n + j]
                t[i * n + j] = running
            }
        }
        table = t
    }

    /// |U(i...j)|; 0 for an empty interval (i > j).
    @inline(__always)
    public func union(_ i: Int, _ j: Int) -> UInt64 {
        if i > j { return 0 }
        return table.isEmpty ? sums[j + 1] - sums[i] : table[i * count + j]
    }

    /// |U(0...k)|: the data of the active image after everything down to `k` has been merged into it.
    @inline(__always)
    public func prefix(_ k: Int) -> UInt64 { union(0, k) }

    /// Calls `body` with a view of the unions that reads raw memory (the solver's inner loops).
    func withView<R>(_ body: (CostView) -> R) -> R {
        if table.isEmpty {
            return sums.withUnsafeBufferPointer { body(CostView(base: $0.baseAddress, count: count, sums: true)) }
        }
        return table.withUnsafeBufferPointer { body(CostView(base: $0.baseAddress, count: count, sums: false)) }
    }
}

/// `CostModel.union` on raw memory; valid only inside `CostModel.withView`.
struct CostView {
    let base: UnsafePointer<UInt64>?
    let count: Int
    /// `base` holds prefix sums (every layer an estimate) rather than the |U(i...j)| table.
    let sums: Bool

    /// |U(i...j)| for 0 <= i <= j < count; 0 for i > j.
    @inline(__always) func union(_ i: Int, _ j: Int) -> UInt64 {
        if i > j { return 0 }
        guard let base else { return 0 }
        return sums ? base[j + 1] &- base[i] : base[i &* count &+ j]
    }

    @inline(__always) func prefix(_ k: Int) -> UInt64 { union(0, k) }
}

/// Start (+1) or end (-1) of one range of one layer, for the sweep.
struct ExtentEvent {
    var position: UInt64
    var layer: Int
    var delta: Int
}

/// Ranges standing in for layers whose allocation was not measured: each such layer gets one disjoint synthetic
/// range of `dataBytes` bytes far above any guest offset, so ExtentSet arithmetic equals the disjoint estimate.
public enum EstimatedExtents {
    /// Where synthetic ranges start (above any real virtual size).
    public static let syntheticBase: UInt64 = 1 << 62

    public static func extents(for layers: [Layer]) -> [ExtentSet] {
        var next = syntheticBase
        return layers.map { layer in
            if let allocation = layer.allocation { return allocation }
            let bytes = layer.dataBytes ?? 0
            defer { next += bytes }
            return bytes == 0 ? ExtentSet() : ExtentSet([next..<(next + bytes)])
        }
    }
}
