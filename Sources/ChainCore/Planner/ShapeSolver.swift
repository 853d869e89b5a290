// Chooses which layers of a chain survive and how the others leave it, at the least estimated bytes written.
//
// Positions 0..<n, 0 = active, n-1 = base. A target chain is a subsequence S = s1 < … < sm of positions.
// Layers leave the chain by
//   * commit of the gap between two survivors a < b into b (non-active commit), lowest gaps first;
//   * the active image walking down to s1: a pull merges the layers below the current active image into it
//     (they are only read, so they may be protected or shared), an active commit merges the current active
//     image and the layers between it and a lower image b into b, which becomes the active image. Usually this
//     is one active commit and/or one pull; a pull before an active commit gets protected layers out of the way;
//   * the gap between s1 and s2 may be split: its lower part committed into s2, its upper part pulled into s1;
//   * copy of the final active image to storage.activeDir: shallow (keeps the backing chain) or full (one image).
// Unless m == 1 the base (n-1) survives: nothing can remove layers below the lowest survivor except a full pull.
//
// The data of the active image after the walk has merged everything down to position x is U(0...x), so a pull
// from x to x' writes |U(0...x')| - |U(0...x)| and an active commit into b writes |U(0...b-1)|.

/// Lexicographic plan cost: bytes written, then number of steps, then original layers dropped, then commits
/// (on a tie a pull is preferred: it writes only the active image, a commit writes a backing image).
public struct PlanCost: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var bytes: UInt64
    public var steps: Int
    public var dropped: Int
    public var commits: Int

    public init(bytes: UInt64, steps: Int, dropped: Int, commits: Int = 0) {
        self.bytes = bytes
        self.steps = steps
        self.dropped = dropped
        self.commits = commits
    }

    public static let zero = PlanCost(bytes: 0, steps: 0, dropped: 0)

    public static func < (lhs: PlanCost, rhs: PlanCost) -> Bool {
        if lhs.bytes != rhs.bytes { return lhs.bytes < rhs.bytes }
        if lhs.steps != rhs.steps { return lhs.steps < rhs.steps }
        if lhs.dropped != rhs.dropped { return lhs.dropped < rhs.dropped }
        return lhs.commits < rhs.commits
    }

    public static func + (lhs: PlanCost, rhs: PlanCost) -> PlanCost {
        PlanCost(
            bytes: lhs.bytes + rhs.bytes, steps: lhs.steps + rhs.steps, dropped: lhs.dropped + rhs.dropped,
            commits: lhs.commits + rhs.commits)
    }

    public var description: String { "\(bytes) bytes in \(steps) steps, \(dropped) layers dropped" }
}

public enum CopyKind: String, Sendable, Hashable, Codable {
    /// Copy only the active image; the copy keeps the backing chain.
    case shallow
    /// Copy the whole chain into one self-contained image.
    case full
}

/// What each position of a chain allows, for one policy.
public struct ShapeProblem: Sendable, Hashable {
    public var count: Int
    /// `Policy.effectiveMaxDepth`; nil = no limit.
    public var maxDepth: Int?
    public var flatten: Flatten
    /// May be merged away by a commit (neither protected nor effectively shared).
    public var removable: [Bool]
    /// May receive a commit (active or not).
    public var commitTarget: [Bool]
    /// May receive a pull (as the final active image).
    public var pullTarget: [Bool]
    /// As the final active image, position i is not in storage.activeDir and must be copied there.
    public var needsCopy: [Bool]
    /// Position i may be shallow-copied (moved) to storage.activeDir.
    public var canCopy: [Bool]
    /// The original chain may be full-copied into one image in storage.activeDir.
    public var canFullCopy: Bool

    public init(
        count: Int, maxDepth: Int?, flatten: Flatten, removable: [Bool], commitTarget: [Bool], pullTarget: [Bool],
        needsCopy: [Bool], canCopy: [Bool], canFullCopy: Bool
    ) {
        self.count = count
        self.maxDepth = maxDepth
        self.flatten = flatten
        self.removable = removable
        self.commitTarget = commitTarget
        self.pullTarget = pullTarget
        self.needsCopy = needsCopy
        self.canCopy = canCopy
        self.canFullCopy = canFullCopy
    }

    /// Whether the chain as it is satisfies the shape (no layer needs to leave, no copy is needed).
    public var isCompliant: Bool {
        count >= 1 && count <= (maxDepth ?? count) && (flatten != .full || count == 1)
            && !(needsCopy.first ?? false)
    }
}

/// One way for a layer or group of layers to leave the chain, in original positions.
public enum ShapeOperation: Hashable, Sendable {
    /// Non-active commit of `top...base-1` into `base`.
    case commit(top: Int, base: Int)
    /// Active commit of the active image `top` (holding the data of `0...after`) and of `after+1..<base` into
    /// `base`, which becomes the active image.
    case activeCommit(top: Int, after: Int, base: Int)
    /// Pull of `after+1...through` into the active image `into`; `base` = its new backing image, nil = none.
    case pull(into: Int, after: Int, through: Int, base: Int?)
    /// Copy of the final active image `from` (holding the data of `0...through`) to storage.activeDir;
    /// `base` = backing kept (shallow), nil = none.
    case copy(CopyKind, from: Int, through: Int, base: Int?)

    /// Original positions that leave the chain with this operation.
    public var removed: [Int] {
        switch self {
        case .commit(let top, let base): return Array(top..<base)
        case .activeCommit(let top, let after, let base): return [top] + Array((after + 1)..<base)
        case .pull(_, let after, let through, _): return Array((after + 1)...through)
        case .copy(let kind, let from, let through, _): return kind == .full ? Array(0...through) : [from]
        }
    }
}

public struct ShapeSolution: Sendable, Hashable {
    /// Surviving original positions, ascending. Empty after a full copy.
    public var survivors: [Int]
    /// Last position merged into the final active image (== survivors[0] when nothing is pulled; n-1 for m == 1).
    public var pulledThrough: Int
    public var copy: CopyKind?
    public var cost: PlanCost
    /// In execution order: non-active commits bottom-up, the walk of the active image (active commits and pulls,
    /// top-down), copy.
    public var operations: [ShapeOperation]
}

public enum ShapeSolver {
    /// Bytes one operation writes, on the original chain's data.
    public static func bytes(of operation: ShapeOperation, _ costs: CostModel) -> UInt64 {
        switch operation {
        case .commit(let top, let base): return costs.union(top, base - 1)
        case .activeCommit(_, _, let base): return costs.prefix(base - 1)
        case .pull(_, let after, let through, _): return costs.prefix(through) - costs.prefix(after)
        case .copy(_, _, let through, _): return costs.prefix(through)
        }
    }

    /// A PlanCost packed for the inner loops: bytes, then (steps, dropped, commits) in one word.
    struct Cost {
        var bytes: UInt64
        var tie: UInt64

        static let infinite = Cost(bytes: .max, tie: .max)
        static let zero = Cost(bytes: 0, tie: 0)

        @inline(__always)
        init(bytes: UInt64, tie: UInt64) {
            self.bytes = bytes
            self.tie = tie
        }

        @inline(__always)
        init(bytes: UInt64, steps: Int, dropped: Int, commits: Int) {
            self.bytes = bytes
            tie = UInt64(steps) << 42 | UInt64(dropped) << 21 | UInt64(commits)
        }

        var isFinite: Bool { bytes != .max }

        @inline(__always)
        static func + (a: Cost, b: Cost) -> Cost {
            a.bytes == .max || b.bytes == .max ? .infinite : Cost(bytes: a.bytes + b.bytes, tie: a.tie + b.tie)
        }

        @inline(__always)
        static func < (a: Cost, b: Cost) -> Bool { a.bytes != b.bytes ? a.bytes < b.bytes : a.tie < b.tie }

        var planCost: PlanCost {
            let mask: UInt64 = (1 << 21) - 1
            return PlanCost(
                bytes: bytes, steps: Int(tie >> 42), dropped: Int((tie >> 21) & mask), commits: Int(tie & mask))
        }
    }

    /// The cheapest valid target shape, or nil when none exists. O(n² · maxDepth) time.
    public static func solve(_ p: ShapeProblem, costs: CostModel) -> ShapeSolution? {
        let n = p.count
        guard n >= 1, n < 1 << 20, costs.count == n, p.removable.count == n, p.commitTarget.count == n,
            p.pullTarget.count == n, p.needsCopy.count == n, p.canCopy.count == n
        else { return nil }
        let limit = min(p.maxDepth ?? n, n)
        guard limit >= 1 else { return nil }

        // bad[k]: non-removable layers among 0..<k; lastBad[b]: last non-removable position < b, or -1.
        var badBuild = [Int](repeating: 0, count: n + 1)
        var lastBadBuild = [Int](repeating: -1, count: n + 1)
        for i in 0..<n {
            badBuild[i + 1] = badBuild[i] + (p.removable[i] ? 0 : 1)
            lastBadBuild[i + 1] = p.removable[i] ? lastBadBuild[i] : i
        }
        let bad = badBuild
        let lastBad = lastBadBuild
        let commitTarget = p.commitTarget
        /// Commit of `a...b-1` into b (an empty gap is free).
        func gapCommit(_ a: Int, _ b: Int) -> Cost {
            if a >= b { return .zero }
            guard commitTarget[b], bad[b] == bad[a] else { return .infinite }
            return Cost(bytes: costs.union(a, b - 1), steps: 1, dropped: b - a, commits: 1)
        }

        // Suffix DP (flatten none, 3+ survivors): best[j][c] = cheapest way to keep j, end at the base and keep at
        // most c survivors in j...n-1, every gap committed into the survivor below it.
        let allowMulti = p.flatten != .full && limit >= 2 && n >= 2
        let deepSuffix = allowMulti && p.flatten == .none && limit >= 3
        let width = limit
        var best = [Cost](repeating: .infinite, count: deepSuffix ? n * width : 0)
        var nextOf = [Int](repeating: -1, count: deepSuffix ? n * width : 0)
        if deepSuffix {
            for c in 1..<limit { best[(n - 1) * width + c] = .zero }
            for j in stride(from: n - 2, through: 0, by: -1) {
                let row = j * width
                // Room for every layer of j...n-1: keep them all.
                let roomy = max(2, n - j)
                if roomy < limit {
                    for c in roomy..<limit {
                        best[row + c] = .zero
                        nextOf[row + c] = j + 1
                    }
                }
                let tight = min(roomy, limit)
                guard tight > 2 else { continue }
                // Each gap commit j+1..<b into b is priced once, then tried for every survivor count.
                for b in (j + 1)..<n {
                    if b - 1 > j && !p.removable[b - 1] { break }
                    let gap = gapCommit(j + 1, b)
                    guard gap.isFinite else { continue }
                    let next = b * width
                    for c in 2..<tight {
                        let rest = best[next + c - 1]
                        guard rest.bytes != .max else { continue }
                        let total = Cost(bytes: gap.bytes &+ rest.bytes, tie: gap.tie &+ rest.tie)
                        if total < best[row + c] {
                            best[row + c] = total
                            nextOf[row + c] = b
                        }
                    }
                }
            }
        }

        // Walk DP. State (a, x): the active image is position a and holds U(0...x). (a, a) is reached by an active
        // commit (or is the start (0, 0)); (a, x > a) only by one pull from (a, a) — two pulls in a row cost the
        // same bytes as one. An active commit into b comes from a state (a, x) with a removable, x < b and
        // x+1..<b removable, i.e. x >= lastBad[b]. byX[x] is the cheapest state (a, x) with a removable.
        // walk = diag (n) | byX (n) | tail (n);
        // links = diagFrom (n, predecessor state a * n + x) | byXA (n) | tailS2 (n).
        var walk = [Cost](repeating: .infinite, count: 3 * n)
        var links = [Int](repeating: -1, count: 3 * n)
        walk[0] = .zero
        for x in 0..<n {
            if x > 0 && commitTarget[x] {
                let commitBytes = costs.prefix(x - 1)
                for from in max(lastBad[x], 0)..<x {
                    let c = walk[n + from]
                    guard c.isFinite else { continue }
                    let total = c + Cost(bytes: commitBytes, steps: 1, dropped: x - from, commits: 1)
                    if total < walk[x] {
                        walk[x] = total
                        links[x] = links[n + from] * n + from
                    }
                }
            }
            let px = costs.prefix(x)
            for a in 0...x where p.removable[a] {
                var c = walk[a]
                if x > a {
                    guard p.pullTarget[a] else { continue }
                    c = c + Cost(bytes: px - costs.prefix(a), steps: 1, dropped: x - a, commits: 0)
                }
                if c < walk[n + x] {
                    walk[n + x] = c
                    links[n + x] = a
                }
            }
        }

        // tail = walk[2 * n + x]: cheapest way from the walk's end at x down to the base with survivors below: the gap
        // x+1..<s2
        // committed into s2, then the suffix.
        if allowMulti {
            for x in 0..<(n - 1) {
                let lowS2 = p.flatten == .keepBase ? n - 1 : x + 1
                for s2 in lowS2..<n {
                    let rest: Cost = s2 == n - 1 ? .zero : (deepSuffix ? best[s2 * width + limit - 1] : .infinite)
                    guard rest.isFinite else { continue }
                    let total = gapCommit(x + 1, s2) + rest
                    if total < walk[2 * n + x] {
                        walk[2 * n + x] = total
                        links[2 * n + x] = s2
                    }
                }
            }
        }

        var bestCost = Cost.infinite
        var chosen: (a: Int, x: Int, s2: Int?, copy: CopyKind?)?
        for x in 0..<n {
            let px = costs.prefix(x)
            for a in 0...x {
                var c = walk[a]
                guard c.isFinite else { continue }
                if x > a {
                    guard p.pullTarget[a] else { continue }
                    c = c + Cost(bytes: px - costs.prefix(a), steps: 1, dropped: x - a, commits: 0)
                }
                var copyKind: CopyKind?
                if p.needsCopy[a] {
                    guard p.canCopy[a] else { continue }
                    c = c + Cost(bytes: px, steps: 1, dropped: 1, commits: 0)
                    copyKind = .shallow
                }
                // m == 1: everything merged into a. keep-base: only the base itself, moved only if it is alone.
                if x == n - 1 && (p.flatten != .keepBase || (a == n - 1 && (copyKind == nil || n == 1))) {
                    if c < bestCost {
                        bestCost = c
                        chosen = (a, x, nil, copyKind)
                    }
                }
                if allowMulti && x < n - 1 {
                    let total = c + walk[2 * n + x]
                    if total < bestCost {
                        bestCost = total
                        chosen = (a, x, links[2 * n + x], copyKind)
                    }
                }
            }
        }
        if p.canFullCopy && p.flatten != .keepBase && p.needsCopy[0] {
            let full = Cost(bytes: costs.prefix(n - 1), steps: 1, dropped: n, commits: 0)
            if full < bestCost {
                bestCost = full
                chosen = (0, n - 1, nil, .full)
            }
        }

        guard let chosen, bestCost.isFinite else { return nil }
        let cost = bestCost.planCost
        if chosen.copy == .full {
            return ShapeSolution(
                survivors: [], pulledThrough: n - 1, copy: .full, cost: cost,
                operations: [.copy(.full, from: 0, through: n - 1, base: nil)])
        }
        let finalActive = chosen.a
        let finalX = chosen.x
        var survivors = [finalActive]
        if let s2 = chosen.s2 {
            survivors.append(s2)
            var j = s2
            var c = limit - 1
            while j != n - 1 && deepSuffix && c >= 2 {
                let b = nextOf[j * width + c]
                if b < 0 { break }
                survivors.append(b)
                j = b
                c -= 1
            }
        }
        var ops: [ShapeOperation] = []
        // Non-active commits bottom-up; the top gap's lower part (finalX+1 ..< s2) last.
        for index in stride(from: survivors.count - 1, through: 1, by: -1) {
            let lower = survivors[index]
            let upper = index == 1 ? finalX : survivors[index - 1]
            if lower - upper > 1 { ops.append(.commit(top: upper + 1, base: lower)) }
        }
        // The walk, from the final state back to (0, 0).
        var walkOps: [ShapeOperation] = []
        var (a, x) = (finalActive, finalX)
        while true {
            if x > a {
                let base: Int? = x == finalX ? (survivors.count > 1 ? survivors[1] : nil) : x + 1
                walkOps.append(.pull(into: a, after: a, through: x, base: base))
            }
            let from = links[a]
            if from < 0 { break }
            let (fromA, fromX) = (from / n, from % n)
            walkOps.append(.activeCommit(top: fromA, after: fromX, base: a))
            (a, x) = (fromA, fromX)
        }
        ops.append(contentsOf: walkOps.reversed())
        if let copy = chosen.copy {
            ops.append(.copy(copy, from: finalActive, through: finalX, base: survivors.count > 1 ? survivors[1] : nil))
        }
        return ShapeSolution(
            survivors: survivors, pulledThrough: finalX, copy: chosen.copy, cost: cost, operations: ops)
    }

    /// The fewest images the chain can be brought to (ignoring flatten and storage rules), or nil if it cannot
    /// even stay as it is (never for a non-empty chain).
    public static func shortestReachable(_ p: ShapeProblem, costs: CostModel) -> Int? {
        var q = p
        q.flatten = .none
        q.needsCopy = [Bool](repeating: false, count: p.count)
        q.canFullCopy = false
        for depth in 1...max(p.count, 1) {
            q.maxDepth = depth
            if solve(q, costs: costs) != nil { return depth }
        }
        return nil
    }
}
