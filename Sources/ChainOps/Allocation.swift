import ChainCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

// Not exported by Glibc's module map on every toolchain.
private let seekData: Int32 = 3
private let seekHole: Int32 = 4

/// Measures which guest ranges each layer holds data for on its own — the input of the cost model.
/// qcow2: the L1/L2 tables are read directly (read-only, works on images in use). raw: seekData/seekHole.
/// Anything else: `qemu-img map --output=json` of the layer opened without its backing.
public enum Allocation {
    public static func measure(path: String, format: String) throws(ProbeError) -> ExtentSet {
        switch format {
        case "raw": return try raw(path: path)
        case "qcow2":
            if let set = try qcow2(path: path) { return set }
            return try qemuImgMap(path: path, format: format)
        default: return try qemuImgMap(path: path, format: format)
        }
    }

    static func raw(path: String) throws(ProbeError) -> ExtentSet {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ProbeError(path: path, message: String(cString: strerror(errno))) }
        defer { close(fd) }
        let end = lseek(fd, 0, SEEK_END)
        guard end > 0 else { return ExtentSet() }
        var ranges: [Range<UInt64>] = []
        var pos: off_t = 0
        while pos < end {
            let data = lseek(fd, pos, seekData)
            if data < 0 { break }  // ENXIO: no more data
            var hole = lseek(fd, data, seekHole)
            if hole < 0 { hole = end }
            if hole > data { ranges.append(UInt64(data)..<UInt64(hole)) }
            pos = hole
        }
        return ExtentSet(ranges)
    }

    /// Native qcow2 allocation map; nil when the image uses features this reader leaves to qemu-img.
    static func qcow2(path: String) throws(ProbeError) -> ExtentSet? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ProbeError(path: path, message: String(cString: strerror(errno))) }
        defer { close(fd) }
        let head = ImageProbe.pread(fd, 0, 112)
        guard head.count >= 72, ImageProbe.be32(head, 0) == ImageProbe.qcow2Magic else { return nil }
        let version = ImageProbe.be32(head, 4)
        let clusterBits = UInt64(ImageProbe.be32(head, 20))
        let size = ImageProbe.be64(head, 24)
        let l1Size = Int(ImageProbe.be32(head, 36))
        let l1Offset = ImageProbe.be64(head, 40)
        if version == 3 {
            let incompatible = ImageProbe.be64(head, 72)
            // External data file (bit 2) or extended L2 entries (bit 4): let qemu-img answer.
            if incompatible & (0x4 | 0x10) != 0 { return nil }
        }
        guard clusterBits >= 9 && clusterBits <= 21, l1Size >= 0, l1Size < 1 << 26 else { return nil }
        let clusterSize = UInt64(1) << clusterBits
        let l2Entries = Int(clusterSize / 8)
        let l1 = ImageProbe.pread(fd, l1Offset, l1Size * 8)
        var ranges: [Range<UInt64>] = []
        let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
        for i in 0..<(l1.count / 8) {
            let l2Offset = ImageProbe.be64(l1, i * 8) & offsetMask
            if l2Offset == 0 { continue }
            let l2 = ImageProbe.pread(fd, l2Offset, l2Entries * 8)
            let base = UInt64(i) * UInt64(l2Entries) * clusterSize
            var runStart: UInt64?
            var runEnd: UInt64 = 0
            for j in 0..<(l2.count / 8) {
                let entry = ImageProbe.be64(l2, j * 8)
                let compressed = entry & (1 << 62) != 0
                let hostOffset = entry & offsetMask
                let zeroFlag = entry & 1 != 0
                let hasData = compressed || (hostOffset != 0 && !zeroFlag)
                let guestStart = base + UInt64(j) * clusterSize
                if hasData {
                    if runStart == nil { runStart = guestStart }
                    runEnd = min(guestStart + clusterSize, size)
                } else if let s = runStart {
                    ranges.append(s..<runEnd)
                    runStart = nil
                }
            }
            if let s = runStart { ranges.append(s..<runEnd) }
        }
        return ExtentSet(ranges)
    }

    /// `qemu-img map` of the layer alone (exposed so tests can compare it with the native reader).
    public static func qemuImgMapForTesting(path: String, format: String) throws(ProbeError) -> ExtentSet {
        try qemuImgMap(path: path, format: format)
    }

    static func qemuImgMap(path: String, format: String) throws(ProbeError) -> ExtentSet {
        let spec =
            "json:{\"driver\":\"\(format)\",\"backing\":null,\"file\":{\"driver\":\"file\",\"filename\":"
            + "\"\(path.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"}}"
        let result: CommandResult
        do {
            result = try Command.run(["qemu-img", "map", "--output=json", "-U", spec])
        } catch {
            throw ProbeError(path: path, message: error.description)
        }
        guard result.succeeded else { throw ProbeError(path: path, message: "qemu-img map: " + result.stderrString.trimmed) }
        guard let entries = try? JSONSerialization.jsonObject(with: result.stdout) as? [[String: Any]] else {
            throw ProbeError(path: path, message: "qemu-img map printed no JSON array")
        }
        var ranges: [Range<UInt64>] = []
        for e in entries where (e["data"] as? Bool) == true && ((e["depth"] as? NSNumber)?.intValue ?? 0) == 0 {
            guard let start = (e["start"] as? NSNumber)?.uint64Value, let len = (e["length"] as? NSNumber)?.uint64Value
            else { continue }
            ranges.append(start..<(start + len))
        }
        return ExtentSet(ranges)
    }
}
