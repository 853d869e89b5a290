// SHA-256 in pure Swift (FIPS 180-4) and the per-disk fingerprints a saved plan carries.

/// A small SHA-256 implementation, enough for fingerprints (no Foundation, no CryptoKit).
public struct ChainDigest: Sendable {
    private var h0: UInt32 = 0x6a09_e667, h1: UInt32 = 0xbb67_ae85, h2: UInt32 = 0x3c6e_f372, h3: UInt32 = 0xa54f_f53a
    private var h4: UInt32 = 0x510e_527f, h5: UInt32 = 0x9b05_688c, h6: UInt32 = 0x1f83_d9ab, h7: UInt32 = 0x5be0_cd19
    /// Bytes not yet compressed (fewer than 64).
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    public init() { pending.reserveCapacity(64) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        length &+= UInt64(bytes.count)
        var offset = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, bytes.count)
            pending.append(contentsOf: bytes[0..<take])
            offset = take
            if pending.count < 64 { return }
            let block = pending
            block.withUnsafeBytes { compress($0, at: 0) }
            pending.removeAll(keepingCapacity: true)
        }
        while bytes.count - offset >= 64 {
            compress(bytes, at: offset)
            offset += 64
        }
        if offset < bytes.count { pending.append(contentsOf: bytes[offset...]) }
    }

    public mutating func update<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        let array = Array(bytes)
        array.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ text: String) {
        var text = text
        text.withUTF8 { update(UnsafeRawBufferPointer($0)) }
    }

    /// The 32-byte digest. The value itself is not changed (finalising works on a copy).
    public func finalize() -> [UInt8] {
        var copy = self
        let bitLength = length &* 8
        var tail: [UInt8] = [0x80]
        let padding = (pending.count + 1 + 8 <= 64) ? 64 - pending.count - 1 - 8 : 128 - pending.count - 1 - 8
        tail.append(contentsOf: repeatElement(0, count: padding))
        for shift in stride(from: 56, through: 0, by: -8) {
            tail.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift)))
        }
        tail.withUnsafeBytes { copy.update($0) }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for word in [copy.h0, copy.h1, copy.h2, copy.h3, copy.h4, copy.h5, copy.h6, copy.h7] {
            out.append(UInt8(truncatingIfNeeded: word >> 24))
            out.append(UInt8(truncatingIfNeeded: word >> 16))
            out.append(UInt8(truncatingIfNeeded: word >> 8))
            out.append(UInt8(truncatingIfNeeded: word))
        }
        return out
    }

    public func hexDigest() -> String { ChainDigest.hex(finalize()) }

    public static func sha256Hex(_ text: String) -> String {
        var digest = ChainDigest()
        digest.update(text)
        return digest.hexDigest()
    }

    public static func sha256Hex(_ bytes: [UInt8]) -> String {
        var digest = ChainDigest()
        bytes.withUnsafeBytes { digest.update($0) }
        return digest.hexDigest()
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    /// Compresses the 64 bytes of `block` starting at `offset`.
    private mutating func compress(_ block: UnsafeRawBufferPointer, at offset: Int) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            for i in 0..<16 {
                let j = offset + 4 * i
                w[i] = UInt32(block[j]) << 24 | UInt32(block[j + 1]) << 16 | UInt32(block[j + 2]) << 8
                    | UInt32(block[j + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7
            ChainDigest.k.withUnsafeBufferPointer { k in
                for i in 0..<64 {
                    let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                    let ch = (e & f) ^ (~e & g)
                    let t1 = h &+ s1 &+ ch &+ k[i] &+ w[i]
                    let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                    let maj = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = s0 &+ maj
                    h = g
                    g = f
                    f = e
                    e = d &+ t1
                    d = c
                    c = b
                    b = a
                    a = t1 &+ t2
                }
            }
            h0 &+= a
            h1 &+= b
            h2 &+= c
            h3 &+= d
            h4 &+= e
            h5 &+= f
            h6 &+= g
            h7 &+= h
        }
    }

    @inline(__always) private func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
}

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
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 16)
        var x = value
        for i in stride(from: 15, through: 0, by: -1) {
            out[i] = digits[Int(x & 0xf)]
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
