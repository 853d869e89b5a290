// The per-disk fingerprints a saved plan carries (64-bit FNV-1a; the policies digest is SHA-256, Policy/SHA256.swift).

/// 64-bit FNV-1a, fed field by field (strings with a length prefix, integers as 8 little-endian bytes).
public struct FNV1a64: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    @inline(__always)
    public mutating func byte(_ b: UInt8) {
        value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01b3
    }

    public mutating func integer(_ v: UInt64) {
        var x = v
        var h = value
        for _ in 0..<8 {
            h = (h ^ (x & 0xff)) &* 0x0000_0100_0000_01b3
            x >>= 8
        }
        value = h
    }

    public mutating func optional(_ v: UInt64?) {
        if let v {
            byte(1)
            integer(v)
        } else {
            byte(0)
        }
    }

    public mutating func string(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            integer(UInt64(bytes.count))
            var h = value
            for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
            value = h
        }
    }

    /// 16 lower-case hex digits.
    public var hex: String {
        var out = [UInt8](repeating: 0, count: 16)
        var x = value
        for i in stride(from: 15, through: 0, by: -1) {
            let digit = UInt8(x & 0xf)
            out[i] = digit < 10 ? 0x30 + digit : 0x57 + digit
            x >>= 4
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Fingerprints of observed disks, so that `apply PLAN` can refuse a plan made against a different host state.
public enum Fingerprint {
    /// Hex digest (64-bit FNV-1a, 16 digits) over the domain UUID, the disk target, the domain state and, for each
    /// layer (active first), its canonical path (or key), format, file size, mtime, virtual size and data bytes.
    /// Not cryptographic: it detects drift, it does not authenticate.
    public static func disk(_ domain: Domain, _ disk: Disk) -> String {
        var h = FNV1a64()
        h.string("virt-chain disk fingerprint v1")
        h.string(domain.uuid)
        h.string(disk.target)
        h.string(domain.state.rawValue)
        if let chain = disk.chain {
            let layers = chain.layers
            h.integer(UInt64(layers.count))
            for i in layers.indices {
                h.string(layers[i].source.path ?? layers[i].source.key)
                h.string(layers[i].format ?? "")
                h.byte(layers[i].format == nil ? 0 : 1)
                h.optional(layers[i].fileSize)
                h.optional(layers[i].mtime.map { $0.bitPattern })
                h.optional(layers[i].virtualSize)
                h.optional(layers[i].dataBytes)
            }
        } else {
            h.string("no-chain")
        }
        return h.hex
    }

    /// The key under which `Plan.fingerprints` stores a disk's fingerprint.
    public static func key(_ domain: Domain, _ disk: Disk) -> String { "\(domain.uuid)/\(disk.target)" }
}
