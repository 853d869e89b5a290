/// A set of guest byte ranges, kept sorted, disjoint and coalesced. Used for the data each layer holds
/// on its own, so that the bytes a commit or pull would write can be computed exactly (unions, differences).
public struct ExtentSet: Hashable, Codable, Sendable {
    /// Half-open ranges `[start, end)`, sorted, disjoint, non-adjacent.
    public private(set) var ranges: [Range<UInt64>]

    public init() { ranges = [] }

    /// Builds a set from arbitrary (possibly overlapping, unsorted) ranges.
    public init<S: Sequence>(_ input: S) where S.Element == Range<UInt64> {
        let sorted = input.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        var out: [Range<UInt64>] = []
        out.reserveCapacity(sorted.count)
        for r in sorted {
            if let last = out.last, r.lowerBound <= last.upperBound {
                if r.upperBound > last.upperBound { out[out.count - 1] = last.lowerBound..<r.upperBound }
            } else {
                out.append(r)
            }
        }
        ranges = out
    }

    /// Total bytes covered.
    public var byteCount: UInt64 { ranges.reduce(0) { $0 + ($1.upperBound - $1.lowerBound) } }
    public var isEmpty: Bool { ranges.isEmpty }

    public func union(_ other: ExtentSet) -> ExtentSet {
        if other.ranges.isEmpty { return self }
        if ranges.isEmpty { return other }
        var out: [Range<UInt64>] = []
        out.reserveCapacity(ranges.count + other.ranges.count)
        var i = 0
        var j = 0
        while i < ranges.count || j < other.ranges.count {
            let next: Range<UInt64>
            if j >= other.ranges.count || (i < ranges.count && ranges[i].lowerBound <= other.ranges[j].lowerBound) {
                next = ranges[i]
                i += 1
            } else {
                next = other.ranges[j]
                j += 1
            }
            if let last = out.last, next.lowerBound <= last.upperBound {
                if next.upperBound > last.upperBound { out[out.count - 1] = last.lowerBound..<next.upperBound }
            } else {
                out.append(next)
            }
        }
        var result = ExtentSet()
        result.ranges = out
        return result
    }

    /// Ranges in `self` not covered by `other`.
    public func subtracting(_ other: ExtentSet) -> ExtentSet {
        if other.ranges.isEmpty || ranges.isEmpty { return self }
        var out: [Range<UInt64>] = []
        var j = 0
        for r in ranges {
            var start = r.lowerBound
            let end = r.upperBound
            while j < other.ranges.count && other.ranges[j].upperBound <= start { j += 1 }
            var k = j
            while k < other.ranges.count && other.ranges[k].lowerBound < end {
                let o = other.ranges[k]
                if o.lowerBound > start { out.append(start..<o.lowerBound) }
                start = max(start, o.upperBound)
                if start >= end { break }
                k += 1
            }
            if start < end { out.append(start..<end) }
        }
        var result = ExtentSet()
        result.ranges = out
        return result
    }

    public func intersection(_ other: ExtentSet) -> ExtentSet { subtracting(subtracting(other)) }
}
