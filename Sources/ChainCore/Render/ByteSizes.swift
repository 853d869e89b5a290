/// Human byte sizes: `512 B`, `1.5 KiB`, `64 MiB`, `2.0 GiB`.
public func formatBytes(_ n: UInt64?) -> String {
    guard let n else { return "?" }
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 {
        v /= 1024
        u += 1
    }
    if u == 0 { return "\(n) B" }
    if v == v.rounded() && v < 10_000 { return "\(Int(v)) \(units[u])" }
    let scaled = (v * 10).rounded() / 10
    return "\(scaled) \(units[u])"
}
