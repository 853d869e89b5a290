// Small pure helpers for the planner: path pieces and human-readable sizes for reasons.

enum PlanPath {
    /// Directory of a canonical path (`/a/b/c` → `/a/b`, `/c` → `/`).
    static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    static func basename(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// A directory as given in a policy, without trailing slashes (except `/` itself).
    static func normalizedDir(_ dir: String) -> String {
        var out = Substring(dir)
        while out.count > 1 && out.hasSuffix("/") { out = out.dropLast() }
        return String(out)
    }

    static func join(_ dir: String, _ name: String) -> String { dir == "/" ? "/" + name : dir + "/" + name }

    /// Whether `dirname(path) == dir` (dir normalised), without building the dirname.
    static func isDirectChild(_ path: String, of dir: String) -> Bool {
        let p = path.utf8
        let d = dir.utf8
        let slash = UInt8(ascii: "/")
        let prefixLength = dir == "/" ? 0 : d.count
        guard p.count > prefixLength, p.starts(with: d) || dir == "/" else { return false }
        let rest = p.dropFirst(prefixLength)
        guard rest.first == slash else { return false }
        return !rest.dropFirst().contains(slash)
    }
}

enum PlanText {
    /// `512 B`, `1.5 KiB`, `64.0 MiB`, `2.0 GiB` (one decimal, integer arithmetic).
    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        if n < 1024 { return "\(n) B" }
        var unit = 0
        var scale: UInt64 = 1
        while unit < units.count - 1 && n / scale >= 1024 {
            scale *= 1024
            unit += 1
        }
        let whole = n / scale
        let tenth = (n % scale) * 10 / scale
        return "\(whole).\(tenth) \(units[unit])"
    }

    /// `a, b and c`
    static func list(_ items: [String]) -> String {
        switch items.count {
        case 0: return ""
        case 1: return items[0]
        default: return items.dropLast().joined(separator: ", ") + " and " + (items.last ?? "")
        }
    }

    static let configHint = "the host configuration (/etc/virt-chain/config.json, or the file given with --config)"
}
