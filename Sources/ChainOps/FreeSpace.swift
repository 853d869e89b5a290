import ChainCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Free bytes of file systems, for the planner's space checks.
public enum FreeSpace {
    /// Free bytes available to unprivileged writers... and root (f_bavail) of the file system holding `dir`.
    public static func bytes(_ dir: String) -> UInt64? {
        var s = statvfs()
        guard statvfs(dir, &s) == 0 else { return nil }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    /// Free space of every directory holding a layer of `disks`, and of their policies' activeDirs.
    public static func directories(
        of inventory: Inventory, disks: Set<DiskKey>, assignments: [DiskKey: Policy]
    ) -> [String: UInt64] {
        var dirs: Set<String> = []
        for d in inventory.domains {
            for k in d.disks where disks.contains(DiskKey(domain: d.name, disk: k.target)) {
                for l in k.chain?.layers ?? [] where l.source.kind == .file {
                    if let p = l.source.path { dirs.insert(PathUtil.dirname(p)) }
                }
                if let dir = assignments[DiskKey(domain: d.name, disk: k.target)]?.activeDir { dirs.insert(dir) }
            }
        }
        var out: [String: UInt64] = [:]
        for dir in dirs {
            if let free = bytes(dir) { out[dir] = free }
        }
        return out
    }
}
