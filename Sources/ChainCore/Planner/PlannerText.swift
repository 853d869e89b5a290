// Small pure helpers for the planner: path pieces and human-readable sizes for reasons.

enum PlanPath {
    /// Directory of a canonical path (`/a/b/c` → `/a/b`, `/c` → `/`).
    static func dirname(_ path: String) -> String {
        guard let slash = lastSlash(path) else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    static func basename(_ path: String) -> String {
        guard let slash = lastSlash(path) else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// `path.lastIndex(of: "/")`; by bytes when the path is ASCII (the same answer, without Character iteration).
    private static func lastSlash(_ path: String) -> String.Index? {
        if PlanBytes.isASCII(path) { return path.utf8.lastIndex(of: UInt8(ascii: "/")) }
        return path.lastIndex(of: "/")
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
        let root = dir == "/"
        let prefixLength = root ? 0 : dir.utf8.count
        guard path.utf8.count > prefixLength, root || PlanBytes.hasPrefix(path, dir) else { return false }
        return PlanBytes.withBytes(path) { p in
            guard p[prefixLength] == UInt8(ascii: "/") else { return false }
            var i = prefixLength + 1
            while i < p.count {
                if p[i] == UInt8(ascii: "/") { return false }
                i += 1
            }
            return true
        }
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
