// Chooses which layers of a chain survive and how the others leave it, at the least estimated bytes written.
//
// Positions 0..<n, 0 = active, n-1 = base. A target chain is a subsequence S = s1 < … < sm of positions.
// Layers leave the chain by
//   * commit of the gap between two survivors a < b into b (non-active commit), lowest gaps first. The commit
//     rewrites the backing reference in the header of the image right above the gap (libvirt live,
//     `qemu-img rebase -u` offline), so that image must be removable (neither protected nor effectively shared);
//   * the active image walking down to s1: a pull merges the layers below the current active image into it
//     (they are only read, so they may be protected or shared), an active commit merges the current active
//     image and the layers between it and a lower image b into b, which becomes the active image. Usually this
//     is one active commit and/or one pull; a pull before an active commit gets protected layers out of the way;
//   * the gap between s1 and s2 may be split: its lower part committed into s2, its upper part pulled into s1.
//     The lower part is committed before the walk while the image right above it (the last pulled one, or s1) is
//     removable; otherwise after the pull, when the image above it is s1 itself (a pull target);
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

    /// Whether original position `i` leaves the chain with this operation (`removed.contains(i)`, without the array).
    @inline(__always) func removes(_ i: Int) -> Bool {
        switch self {
        case .commit(let top, let base): return i >= top && i < base
        case .activeCommit(let top, let after, let base): return i == top || (i > after && i < base)
        case .pull(_, let after, let through, _): return i > after && i <= through
        case .copy(let kind, let from, let through, _): return kind == .full ? (i >= 0 && i <= through) : i == from
        }
    }

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

/// What each position of a chain allows, for one policy, as position sets (what the planner builds per disk).
struct ShapeMasks {
    var count: Int
    /// `Policy.effectiveMaxDepth`; nil = no limit.
    var maxDepth: Int?
    var flatten: Flatten
    /// May be merged away by a commit (neither protected nor effectively shared). Also whether the image may be
    /// the one right above a commit gap: the commit rewrites the backing reference in its header.
    var removable: PositionSet
    /// May receive a commit (active or not).
    var commitTarget: PositionSet
    /// May receive a pull (as the final active image).
    var pullTarget: PositionSet
    /// As the final active image, position i is not in storage.activeDir and must be copied there.
    var needsCopy: PositionSet
    /// Position i may be shallow-copied (moved) to storage.activeDir.
    var canCopy: PositionSet
    /// The original chain may be full-copied into one image in storage.activeDir.
    var canFullCopy: Bool
}

/// Buffers the solver reuses from one disk to the next (one per planning thread; not thread-safe).
final class SolverScratch {
    private var intBase: UnsafeMutablePointer<Int>
    private var intCapacity: Int
    private var costBase: UnsafeMutablePointer<ShapeSolver.Cost>
    private var costCapacity: Int
    private var wordBase: UnsafeMutablePointer<UInt64>
    private var wordCapacity: Int
    /// Where the planner stores a value that keeps loads done only to warm the cache from being optimised away.
    var sink = 0
    /// When set, the planner appends each disk's steps here (one buffer for a whole chunk of disks) instead of
    /// returning them in `DiskChange.steps`.
    var steps: StepSink?

    init() {
        intCapacity = 512
        costCapacity = 512
        wordCapacity = 64
        intBase = .allocate(capacity: intCapacity)
        costBase = .allocate(capacity: costCapacity)
        wordBase = .allocate(capacity: wordCapacity)
    }

    deinit {
        intBase.deallocate()
        costBase.deallocate()
        wordBase.deallocate()
    }

    /// At least `count` Ints (uninitialized; valid until the next call).
    @inline(__always) func ints(_ count: Int) -> UnsafeMutablePointer<Int> {
        if count > intCapacity {
            intBase.deallocate()
            intCapacity = max(count, intCapacity * 2)
            intBase = .allocate(capacity: intCapacity)
        }
        return intBase
    }

    /// At least `count` words (uninitialized; valid until the next call).
    @inline(__always) func words(_ count: Int) -> UnsafeMutablePointer<UInt64> {
        if count > wordCapacity {
            wordBase.deallocate()
            wordCapacity = max(count, wordCapacity * 2)
            wordBase = .allocate(capacity: wordCapacity)
        }
        return wordBase
    }

    /// At least `count` costs (uninitialized; valid until the next call).
    @inline(__always) func costs(_ count: Int) -> UnsafeMutablePointer<ShapeSolver.Cost> {
        if count > costCapacity {
            costBase.deallocate()
            costCapacity = max(count, costCapacity * 2)
            costBase = .allocate(capacity: costCapacity)
        }
        return costBase
    }
}

/// Steps of many disks in one buffer, in order; they are moved out (`move`) into the plan.
final class StepSink: @unchecked Sendable {
    private var base: UnsafeMutablePointer<Step>
    private var capacity: Int
    /// Steps appended so far.
    private(set) var count = 0
    /// Steps moved out so far (from the front).
    private var moved = 0

    init(capacity: Int = 1024) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    deinit {
        (base + moved).deinitialize(count: count - moved)
        base.deallocate()
    }

    func append(_ step: consuming Step) {
        if count == capacity {
            let grown = UnsafeMutablePointer<Step>.allocate(capacity: capacity * 2)
            grown.moveInitialize(from: base, count: count)
            base.deallocate()
            base = grown
            capacity *= 2
        }
        (base + count).initialize(to: step)
        count += 1
    }

    /// Moves the next `n` steps (in the order appended) to `destination`.
    func move(_ n: Int, to destination: UnsafeMutablePointer<Step>) {
        precondition(moved + n <= count)
        destination.moveInitialize(from: base + moved, count: n)
        moved += n
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
    /// top-down), copy. When the image right above the top gap (the lowest pulled one) is protected or shared, the
    /// top gap's commit comes after the walk, once the final active image is the one above it.
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

        @inline(__always)
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

    /// The cheapest valid target shape, or nil when none exists. O(n² · maxDepth) time; buffers reused.
    static func solve(_ p: ShapeMasks, costs: CostModel, scratch: SolverScratch) -> ShapeSolution? {
        let n = p.count
        guard n >= 1, n < 1 << 20, costs.count == n else { return nil }
        let limit = min(p.maxDepth ?? n, n)
        guard limit >= 1 else { return nil }
        return costs.withView { view in solve(p, n: n, limit: limit, costs: view, scratch: scratch) }
    }

    private static func solve(
        _ p: ShapeMasks, n: Int, limit: Int, costs: CostView, scratch: SolverScratch
    ) -> ShapeSolution? {
        let removable = p.removable
        let commitTarget = p.commitTarget
        let pullTarget = p.pullTarget
        let needsCopy = p.needsCopy
        let canCopy = p.canCopy

        let allowMulti = p.flatten != .full && limit >= 2 && n >= 2
        let deepSuffix = allowMulti && p.flatten == .none && limit >= 3
        let width = limit
        let table = deepSuffix ? n * width : 0

        // Buffers: ints = bad (n+1) | lastBad (n+1) | links (3n) | nextOf (table);
        // costs = walk (3n) | tight (n) | rest (n) | best (table); words = prefix (n).
        let ints = scratch.ints(2 * (n + 1) + 3 * n + table)
        let bad = ints
        let lastBad = ints + (n + 1)
        let links = ints + 2 * (n + 1)
        let nextOf = links + 3 * n
        let costBuffer = scratch.costs(5 * n + table)
        let walk = costBuffer
        let tight = costBuffer + 3 * n
        let best = tight + 2 * n
        let pre = scratch.words(n)
        for x in 0..<n { pre[x] = costs.prefix(x) }

        // bad[k]: non-removable layers among 0..<k; lastBad[b]: last non-removable position < b, or -1.
        bad[0] = 0
        lastBad[0] = -1
        for i in 0..<n {
            let r = removable[i]
            bad[i + 1] = bad[i] &+ (r ? 0 : 1)
            lastBad[i + 1] = r ? lastBad[i] : i
        }
        /// Commit of `a...b-1` into b (an empty gap is free).
        @inline(__always) func gapCommit(_ a: Int, _ b: Int) -> Cost {
            if a >= b { return .zero }
            guard commitTarget[b], bad[b] == bad[a] else { return .infinite }
            return Cost(bytes: costs.union(a, b &- 1), steps: 1, dropped: b &- a, commits: 1)
        }
        /// A pull from state (a, a) to (a, x), x > a.
        @inline(__always) func pull(_ a: Int, _ x: Int) -> Cost {
            Cost(bytes: pre[x] &- pre[a], steps: 1, dropped: x &- a, commits: 0)
        }

        // Suffix DP (flatten none, 3+ survivors): best[j][c] = cheapest way to keep j, end at the base and keep at
        // most c survivors in j...n-1, every gap committed into the survivor below it.
        if deepSuffix {
            best.initialize(repeating: .infinite, count: table)
            nextOf.initialize(repeating: -1, count: table)
            for c in 1..<limit { best[(n - 1) * width + c] = .zero }
            var j = n - 2
            while j >= 0 {
                defer { j -= 1 }
                let row = j * width
                // Room for every layer of j...n-1: keep them all.
                let roomy = max(2, n - j)
                if roomy < limit {
                    for c in roomy..<limit {
                        best[row + c] = .zero
                        nextOf[row + c] = j + 1
                    }
                }
                let most = min(roomy, limit)
                guard most > 2 else { continue }
                // A non-empty gap below j rewrites j's header: j must be removable.
                let gapEnd = removable[j] ? n : j + 2
                // Each gap commit j+1..<b into b is priced once, then tried for every survivor count.
                var b = j + 1
                while b < gapEnd {
                    defer { b += 1 }
                    if b - 1 > j && !removable[b - 1] { break }
                    let gap = gapCommit(j + 1, b)
                    guard gap.isFinite else { continue }
                    let next = best + (b * width - 1)
                    let here = best + row
                    for c in 2..<most {
                        let rest = next[c]
                        guard rest.bytes != .max else { continue }
                        let total = Cost(bytes: gap.bytes &+ rest.bytes, tie: gap.tie &+ rest.tie)
                        if total < here[c] {
                            here[c] = total
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
        // The pull candidates of byX[x] are ordered by walk[a] - prefix(a) whatever x is, so the cheapest one
        // (the first on a tie, as a scan in increasing a would keep) is carried along as x grows.
        walk.initialize(repeating: .infinite, count: 3 * n)
        links.initialize(repeating: -1, count: 3 * n)
        walk[0] = .zero
        var pullFrom = -1
        for x in 0..<n {
            if x > 0 && commitTarget[x] {
                let commitBytes = pre[x - 1]
                for from in max(lastBad[x], 0)..<x {
                    let c = walk[n + from]
                    guard c.isFinite else { continue }
                    let step = Cost(bytes: 0, steps: 1, dropped: x - from, commits: 1)
                    let total = Cost(bytes: c.bytes &+ commitBytes, tie: c.tie &+ step.tie)
                    if total < walk[x] {
                        walk[x] = total
                        links[x] = links[n + from] * n + from
                    }
                }
            }
            if x > 0 {
                let a = x - 1
                if removable[a] && pullTarget[a] && walk[a].isFinite
                    && (pullFrom < 0 || walk[a] + pull(a, x) < walk[pullFrom] + pull(pullFrom, x))
                {
                    pullFrom = a
                }
            }
            if pullFrom >= 0 {
                walk[n + x] = walk[pullFrom] + pull(pullFrom, x)
                links[n + x] = pullFrom
            }
            if removable[x] && walk[x] < walk[n + x] {
                walk[n + x] = walk[x]
                links[n + x] = x
            }
        }

        // tail = walk[2 * n + x]: cheapest way from the walk's end at x down to the base with survivors below: the gap
        // x+1..<s2 committed into s2, then the suffix. The commit rewrites the header of the image above the gap:
        // x before the walk, the final active image after it. So a non-empty gap needs x removable, or x pulled
        // into the final active image (a < x, then the commit runs after the pull). tight[x]: s2 = x+1 (no gap).
        if allowMulti {
            tight.initialize(repeating: .infinite, count: n)
            // rest[s2]: from s2 down to the base (the suffix), priced once per s2.
            let rest = tight + n
            for s2 in 0..<n { rest[s2] = s2 == n - 1 ? .zero : (deepSuffix ? best[s2 * width + limit - 1] : .infinite) }
            for x in 0..<(n - 1) {
                let top = x + 1
                let lowS2 = p.flatten == .keepBase ? n - 1 : top
                for s2 in lowS2..<n {
                    let after = rest[s2]
                    guard after.isFinite else { continue }
                    let total: Cost
                    if s2 == top {
                        total = after
                        tight[x] = total
                    } else {
                        // A layer that may not be merged away in top..<s2 closes every larger gap too.
                        guard bad[s2] == bad[top] else { break }
                        guard commitTarget[s2] else { continue }
                        total = Cost(
                            bytes: costs.union(top, s2 &- 1) &+ after.bytes,
                            tie: Cost(bytes: 0, steps: 1, dropped: s2 &- top, commits: 1).tie &+ after.tie)
                    }
                    if total < walk[2 * n + x] {
                        walk[2 * n + x] = total
                        links[2 * n + x] = s2
                    }
                }
            }
        }

        // The final state (a, x), in the order of a scan over x, then a (the first of equal costs wins). For a < x
        // the candidates of one kind (the final active image moved by a shallow copy or not) are ordered
        // independently of x, so the cheapest of each kind is carried along as x grows.
        var bestCost = Cost.infinite
        var chosenA = -1
        var chosenX = -1
        var chosenS2 = -1
        var chosenCopy: CopyKind?
        var keepFrom = -1  // cheapest a < x that is not copied
        var moveFrom = -1  // cheapest a < x that is copied
        @inline(__always) func consider(_ total: Cost, _ a: Int, _ x: Int, _ s2: Int, _ copy: CopyKind?) {
            if total < bestCost {
                bestCost = total
                (chosenA, chosenX, chosenS2, chosenCopy) = (a, x, s2, copy)
            }
        }
        for x in 0..<n {
            let px = pre[x]
            let copyCost = Cost(bytes: px, steps: 1, dropped: 1, commits: 0)
            if x > 0 {
                let a = x - 1
                if walk[a].isFinite && pullTarget[a] {
                    if !needsCopy[a] {
                        if keepFrom < 0 || walk[a] + pull(a, x) < walk[keepFrom] + pull(keepFrom, x) { keepFrom = a }
                    } else if canCopy[a] {
                        if moveFrom < 0 || walk[a] + pull(a, x) < walk[moveFrom] + pull(moveFrom, x) { moveFrom = a }
                    }
                }
                // The cheaper kind; on a tie the smaller a (met first by the scan).
                var a0 = -1
                var c0 = Cost.infinite
                if keepFrom >= 0 {
                    a0 = keepFrom
                    c0 = walk[keepFrom] + pull(keepFrom, x)
                }
                if moveFrom >= 0 {
                    let c1 = walk[moveFrom] + pull(moveFrom, x) + copyCost
                    if c1 < c0 || (!(c0 < c1) && moveFrom < a0) {
                        a0 = moveFrom
                        c0 = c1
                    }
                }
                if a0 >= 0 {
                    let copy: CopyKind? = a0 == moveFrom ? .shallow : nil
                    // m == 1 (everything merged into a0; keep-base keeps only the base itself, and a0 < n-1).
                    if x == n - 1 && p.flatten != .keepBase { consider(c0, a0, x, -1, copy) }
                    if allowMulti && x < n - 1 { consider(c0 + walk[2 * n + x], a0, x, links[2 * n + x], copy) }
                }
            }
            // a == x: no pull.
            var c = walk[x]
            guard c.isFinite else { continue }
            var copyKind: CopyKind?
            if needsCopy[x] {
                guard canCopy[x] else { continue }
                c = c + copyCost
                copyKind = .shallow
            }
            if x == n - 1 && (p.flatten != .keepBase || copyKind == nil || n == 1) { consider(c, x, x, -1, copyKind) }
            if allowMulti && x < n - 1 {
                let anyGap = removable[x]
                consider(c + (anyGap ? walk[2 * n + x] : tight[x]), x, x, anyGap ? links[2 * n + x] : x + 1, copyKind)
            }
        }
        if p.canFullCopy && p.flatten != .keepBase && needsCopy[0] {
            let full = Cost(bytes: pre[n - 1], steps: 1, dropped: n, commits: 0)
            if full < bestCost {
                bestCost = full
                (chosenA, chosenX, chosenS2, chosenCopy) = (0, n - 1, -1, .full)
            }
        }

        guard chosenA >= 0, bestCost.isFinite else { return nil }
        let cost = bestCost.planCost
        if chosenCopy == .full {
            return ShapeSolution(
                survivors: [], pulledThrough: n - 1, copy: .full, cost: cost,
                operations: [.copy(.full, from: 0, through: n - 1, base: nil)])
        }
        let finalActive = chosenA
        let finalX = chosenX
        var survivors: [Int] = []
        survivors.reserveCapacity(min(limit, n))
        survivors.append(finalActive)
        if chosenS2 >= 0 {
            let s2 = chosenS2
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
        ops.reserveCapacity(survivors.count + 3)
        // Non-active commits bottom-up; the top gap's lower part (finalX+1 ..< s2) last, or after the walk when
        // finalX (the image above it until the walk) may not have its header rewritten.
        var topGapAfterWalk = false
        for index in stride(from: survivors.count - 1, through: 1, by: -1) {
            let lower = survivors[index]
            let upper = index == 1 ? finalX : survivors[index - 1]
            guard lower - upper > 1 else { continue }
            if index == 1 && !removable[finalX] {
                topGapAfterWalk = true
            } else {
                ops.append(.commit(top: upper + 1, base: lower))
            }
        }
        // The walk, from the final state back to (0, 0), appended in reverse and flipped.
        let walkStart = ops.count
        var a = finalActive
        var x = finalX
        while true {
            if x > a {
                let base: Int? =
                    x == finalX && !topGapAfterWalk ? (survivors.count > 1 ? survivors[1] : nil) : x + 1
                ops.append(.pull(into: a, after: a, through: x, base: base))
            }
            let from = links[a]
            if from < 0 { break }
            let (fromA, fromX) = (from / n, from % n)
            ops.append(.activeCommit(top: fromA, after: fromX, base: a))
            (a, x) = (fromA, fromX)
        }
        ops[walkStart...].reverse()
        if topGapAfterWalk { ops.append(.commit(top: finalX + 1, base: survivors[1])) }
        if let copy = chosenCopy {
            ops.append(.copy(copy, from: finalActive, through: finalX, base: survivors.count > 1 ? survivors[1] : nil))
        }
        return ShapeSolution(
            survivors: survivors, pulledThrough: finalX, copy: chosenCopy, cost: cost, operations: ops)
    }

    /// The fewest images the chain can be brought to (ignoring flatten and storage rules), or nil if it cannot
    /// even stay as it is (never for a non-empty chain).
    static func shortestReachable(_ p: ShapeMasks, costs: CostModel, scratch: SolverScratch) -> Int? {
        var q = p
        q.flatten = .none
        q.needsCopy = PositionSet()
        q.canFullCopy = false
        for depth in 1...max(p.count, 1) {
            q.maxDepth = depth
            if solve(q, costs: costs, scratch: scratch) != nil { return depth }
        }
        return nil
    }
}
