// Resolved policy values (after loading and validation). The loader lives in PolicyLoader.swift.

/// A place in a source file, 1-based.
public struct SourceLocation: Hashable, Codable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }
    /// `FILE:LINE:COL`
    public var description: String { "\(file):\(line):\(column)" }
    /// `FILE:LINE`
    public var fileLine: String { "\(file):\(line)" }
}

public enum Flatten: String, Codable, Sendable, Hashable, CaseIterable {
    /// Leave the shape alone (only maxDepth, storage and metadata rules apply).
    case none
    /// The chain becomes `base ← active`.
    case keepBase = "keep-base"
    /// One self-contained image.
    case full
}

public enum SnapshotMetadataMode: String, Codable, Sendable, Hashable, CaseIterable { case prune, keep }
public enum ShutoffMode: String, Codable, Sendable, Hashable, CaseIterable { case offline, skip }
public enum RetiredMode: String, Codable, Sendable, Hashable, CaseIterable { case keep, delete }

public struct Policy: Hashable, Codable, Sendable {
    public var name: String
    public var domains: [String]
    public var disks: [String]
    /// Most images a chain may have, counting active and base. nil = no limit.
    public var maxDepth: Int?
    public var flatten: Flatten
    /// Path globs of images never written, moved or deleted.
    public var protect: [String]
    /// The active image must live in this directory (absolute path).
    public var activeDir: String?
    public var snapshotMetadata: SnapshotMetadataMode
    public var shutoff: ShutoffMode
    public var retired: RetiredMode
    public var bandwidthMiBps: Int
    /// Where the policy was declared (the `{` of its object).
    public var location: SourceLocation

    public init(
        name: String, domains: [String] = ["*"], disks: [String] = ["*"], maxDepth: Int? = nil,
        flatten: Flatten = .none, protect: [String] = [], activeDir: String? = nil,
        snapshotMetadata: SnapshotMetadataMode = .prune, shutoff: ShutoffMode = .offline,
        retired: RetiredMode = .keep, bandwidthMiBps: Int = 0,
        location: SourceLocation = SourceLocation(file: "<memory>", line: 1, column: 1)
    ) {
        self.name = name
        self.domains = domains
        self.disks = disks
        self.maxDepth = maxDepth
        self.flatten = flatten
        self.protect = protect
        self.activeDir = activeDir
        self.snapshotMetadata = snapshotMetadata
        self.shutoff = shutoff
        self.retired = retired
        self.bandwidthMiBps = bandwidthMiBps
        self.location = location
    }

    /// The most layers this policy allows, combining `flatten` and `maxDepth`.
    public var effectiveMaxDepth: Int? {
        switch flatten {
        case .full: return 1
        case .keepBase: return min(2, maxDepth ?? 2)
        case .none: return maxDepth
        }
    }

    public func matches(domain: String, disk: String) -> Bool {
        domains.contains { Glob.match($0, domain) } && disks.contains { Glob.match($0, disk) }
    }

    public func protects(path: String) -> Bool {
        protect.contains { Glob.match($0, path, pathMode: true) }
    }
}

/// Admin-owned host configuration (`/etc/virt-chain/config.json`).
public struct HostConfig: Hashable, Codable, Sendable {
    /// Directories where virt-chain may create, write or delete images (canonical absolute paths).
    public var allowedRoots: [String]
    /// Journal, lock and saved reports.
    public var stateDir: String
    public var maxParallelJobs: Int
    /// Per-run limits; nil = unlimited.
    public var maxSteps: Int?
    public var maxBytes: UInt64?

    public init(
        allowedRoots: [String] = ["/var/lib/libvirt/images"], stateDir: String = "/var/lib/virt-chain",
        maxParallelJobs: Int = 1, maxSteps: Int? = nil, maxBytes: UInt64? = nil
    ) {
        self.allowedRoots = allowedRoots
        self.stateDir = stateDir
        self.maxParallelJobs = maxParallelJobs
        self.maxSteps = maxSteps
        self.maxBytes = maxBytes
    }

    public static let defaults = HostConfig()

    /// Whether `path` (canonical, absolute) lies inside one of the allowed roots.
    public func allows(path: String) -> Bool {
        allowedRoots.contains { root in
            let r = root.hasSuffix("/") ? String(root.dropLast()) : root
            return path == r || path.hasPrefix(r + "/")
        }
    }
}

/// Glob matching: `*` any run of characters, `?` one character, `[abc]`/`[a-z]`/`[!x]` classes, `\` escapes.
/// In path mode `*` and `?` do not cross `/`, and `**` does.
public enum Glob {
    public static func match(_ pattern: String, _ text: String, pathMode: Bool = false) -> Bool {
        if !pathMode, let simple = simpleMatch(pattern, text) { return simple }
        let p = Array(pattern.utf8)
        let t = Array(text.utf8)
        // States (pattern index, text index) already known to fail: keeps matching O(|p|·|t|) whatever the stars.
        var failed = Set<Int>()
        return matchFrom(p, 0, t, 0, pathMode, &failed)
    }

    /// Patterns of only literals, `*` and `?` (the common case for domain and disk globs): the classic
    /// single-backtrack wildcard match, O(|p|·|t|) at worst, no allocation. nil = the pattern needs the full matcher.
    static func simpleMatch(_ pattern: String, _ text: String) -> Bool? {
        var pattern = pattern
        var text = text
        return pattern.withUTF8 { p -> Bool? in
            for c in p where c == UInt8(ascii: "[") || c == UInt8(ascii: "\\") { return nil }
            return text.withUTF8 { t -> Bool in
                var pi = 0
                var ti = 0
                var star = -1
                var mark = 0
                while ti < t.count {
                    if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == t[ti]) && p[pi] != UInt8(ascii: "*") {
                        pi += 1
                        ti += 1
                    } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                        star = pi
                        mark = ti
                        pi += 1
                    } else if star >= 0 {
                        pi = star + 1
                        mark += 1
                        ti = mark
                    } else {
                        return false
                    }
                }
                while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
                return pi == p.count
            }
        }
    }

    private static func matchFrom(
        _ p: [UInt8], _ pi0: Int, _ t: [UInt8], _ ti0: Int, _ pathMode: Bool, _ failed: inout Set<Int>
    ) -> Bool {
        let state = pi0 * (t.count + 1) + ti0
        if failed.contains(state) { return false }
        let matched = matchSegment(p, pi0, t, ti0, pathMode, &failed)
        if !matched { failed.insert(state) }
        return matched
    }

    private static func matchSegment(
        _ p: [UInt8], _ pi0: Int, _ t: [UInt8], _ ti0: Int, _ pathMode: Bool, _ failed: inout Set<Int>
    ) -> Bool {
        var pi = pi0
        var ti = ti0
        while pi < p.count {
            let c = p[pi]
            switch c {
            case UInt8(ascii: "*"):
                var doubleStar = false
                while pi < p.count && p[pi] == UInt8(ascii: "*") {
                    if pi + 1 < p.count && p[pi + 1] == UInt8(ascii: "*") { doubleStar = true }
                    pi += 1
                }
                let crossSlash = !pathMode || doubleStar
                if pi == p.count {
                    return crossSlash || !t[ti...].contains(UInt8(ascii: "/"))
                }
                var k = ti
                while k <= t.count {
                    if matchFrom(p, pi, t, k, pathMode, &failed) { return true }
                    if k == t.count { break }
                    if !crossSlash && t[k] == UInt8(ascii: "/") { break }
                    k += 1
                }
                return false
            case UInt8(ascii: "?"):
                guard ti < t.count, !(pathMode && t[ti] == UInt8(ascii: "/")) else { return false }
                pi += 1
                ti += 1
            case UInt8(ascii: "["):
                guard ti < t.count else { return false }
                var j = pi + 1
                var negate = false
                if j < p.count && (p[j] == UInt8(ascii: "!") || p[j] == UInt8(ascii: "^")) {
                    negate = true
                    j += 1
                }
                var matched = false
                var first = true
                while j < p.count && (first || p[j] != UInt8(ascii: "]")) {
                    first = false
                    let lo = p[j]
                    if j + 2 < p.count && p[j + 1] == UInt8(ascii: "-") && p[j + 2] != UInt8(ascii: "]") {
                        if t[ti] >= lo && t[ti] <= p[j + 2] { matched = true }
                        j += 3
                    } else {
                        if t[ti] == lo { matched = true }
                        j += 1
                    }
                }
                guard j < p.count else {
                    // Unterminated class: treat `[` literally.
                    guard t[ti] == c else { return false }
                    pi += 1
                    ti += 1
                    continue
                }
                if matched == negate { return false }
                pi = j + 1
                ti += 1
            case UInt8(ascii: "\\") where pi + 1 < p.count:
                guard ti < t.count, t[ti] == p[pi + 1] else { return false }
                pi += 2
                ti += 1
            default:
                guard ti < t.count, t[ti] == c else { return false }
                pi += 1
                ti += 1
            }
        }
        return ti == t.count
    }
}
