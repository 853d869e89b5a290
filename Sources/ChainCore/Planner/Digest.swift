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
    public var hex: String { FNV1a64.hex(value) }

    static func hex(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { out in
            var x = value
            for i in stride(from: 15, through: 0, by: -1) {
                let digit = UInt8(x & 0xf)
                out[i] = digit < 10 ? 0x30 + digit : 0x57 + digit
                x >>= 4
            }
            return 16
        }
    }

    static let prime: UInt64 = 0x0000_0100_0000_01b3
}

/// Fingerprints of observed disks, so that `apply PLAN` can refuse a plan made against a different host state.
public enum Fingerprint {
    /// Hex digest (64-bit FNV-1a, 16 digits) over the domain UUID, the disk target, the domain state and, for each
    /// layer (active first), its canonical path (or key), format, file size, mtime, virtual size and data bytes.
    /// A running guest writes its active image all the time, so for a running domain the active image's file
    /// size, mtime and data bytes are left out (its path, format and virtual size stay in, and so does everything
    /// of the images below it, which nothing but a block job may change): a plan saved for a running guest is not
    /// stale just because the guest kept working. Not cryptographic: it detects drift, it does not authenticate.
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
                let live = i == 0 && domain.state == .running
                h.string(layers[i].source.path ?? layers[i].source.key)
                h.string(layers[i].format ?? "")
                h.byte(layers[i].format == nil ? 0 : 1)
                h.optional(live ? nil : layers[i].fileSize)
                h.optional(live ? nil : layers[i].mtime.map { $0.bitPattern })
                h.optional(layers[i].virtualSize)
                h.optional(live ? nil : layers[i].dataBytes)
            }
        } else {
            h.string("no-chain")
        }
        return h.hex
    }

    /// The key under which `Plan.fingerprints` stores a disk's fingerprint.
    public static func key(_ domain: Domain, _ disk: Disk) -> String {
        var key = domain.uuid
        key.reserveCapacity(domain.uuid.utf8.count + 1 + disk.target.utf8.count)
        key += "/"
        key += disk.target
        return key
    }

    /// The FNV-1a state after the constant first field of `disk`.
    private static let header: UInt64 = {
        var h = FNV1a64()
        h.string("virt-chain disk fingerprint v1")
        return h.value
    }()

    /// `disk(domains[d], domains[d].disks[k])` for each (d, k) of `items`, in order (see `Batch`).
    static func disks(_ items: [(domain: Int, disk: Int)], in domains: [Domain]) -> [String] {
        var batch = Batch()
        for item in items { batch.add(domains[item.domain], domains[item.domain].disks[item.disk]) }
        return batch.finish()
    }

    /// `disk` for many disks: each disk's bytes are laid out when it is added (while its chain is in the cache),
    /// and `finish` hashes them four disks side by side: FNV-1a is a chain of dependent multiplications, so four
    /// independent chains in one loop run about four times as fast as one after another.
    struct Batch: ~Copyable {
        private var buffer: UnsafeMutablePointer<UInt8>
        private var capacity: Int
        private var count = 0
        private var ends: [Int] = []

        init(capacity: Int = 1 << 16) {
            self.capacity = capacity
            buffer = .allocate(capacity: capacity)
        }

        deinit { buffer.deallocate() }

        /// Room for `extra` more bytes.
        @inline(__always) private mutating func reserve(_ extra: Int) {
            guard count + extra > capacity else { return }
            var grown = capacity * 2
            while grown < count + extra { grown *= 2 }
            let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
            bigger.moveInitialize(from: buffer, count: count)
            buffer.deallocate()
            buffer = bigger
            capacity = grown
        }

        @inline(__always) private mutating func byte(_ b: UInt8) {
            buffer[count] = b
            count += 1
        }

        @inline(__always) private mutating func integer(_ v: UInt64) {
            UnsafeMutableRawPointer(buffer + count).storeBytes(of: v.littleEndian, as: UInt64.self)
            count += 8
        }

        @inline(__always) private mutating func optional(_ v: UInt64?) {
            if let v {
                byte(1)
                integer(v)
            } else {
                byte(0)
            }
        }

        private mutating func string(_ text: String) {
            let n = text.utf8.count
            reserve(8 + n)
            integer(UInt64(n))
            let done = text.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
                if let base = bytes.baseAddress { (buffer + count).update(from: base, count: n) }
                return true
            }
            if done == nil { (buffer + count).initialize(from: Array(text.utf8), count: n) }
            count += n
        }

        /// Lays out the bytes `disk(domain, disk)` hashes after its constant first field.
        mutating func add(_ domain: Domain, _ disk: Disk) {
            string(domain.uuid)
            string(disk.target)
            string(domain.state.rawValue)
            if let chain = disk.chain {
                let layers = chain.layers
                reserve(8)
                integer(UInt64(layers.count))
                for i in layers.indices {
                    let live = i == 0 && domain.state == .running  // see `Fingerprint.disk`
                    if let path = layers[i].source.path {
                        string(path)
                    } else {
                        string(layers[i].source.key)
                    }
                    string(layers[i].format ?? "")
                    reserve(1 + 4 * 9)
                    byte(layers[i].format == nil ? 0 : 1)
                    optional(live ? nil : layers[i].fileSize)
                    optional(live ? nil : layers[i].mtime.map { $0.bitPattern })
                    optional(layers[i].virtualSize)
                    optional(live ? nil : layers[i].dataBytes)
                }
            } else {
                string("no-chain")
            }
            ends.append(count)
        }

        /// The fingerprints of the disks added, in order.
        consuming func finish() -> [String] {
            let n = ends.count
            let values = [UInt64](unsafeUninitializedCapacity: n) { out, initialized in
                for i in 0..<n { out[i] = header }
                hashSideBySide(buffer, ends, into: out)
                initialized = n
            }
            return values.map(FNV1a64.hex)
        }
    }

    /// FNV-1a (from `out[i]`) of `base[ends[i-1]..<ends[i]]` into `out[i]`, four inputs at a time.
    private static func hashSideBySide(
        _ base: UnsafePointer<UInt8>, _ ends: [Int], into out: UnsafeMutableBufferPointer<UInt64>
    ) {
        let p = FNV1a64.prime
        let count = ends.count
        var next = 0
        // A lane: input index (-1 = idle), position, end, state.
        func start(_ i: Int) -> (Int, Int, Int, UInt64) {
            (i, i == 0 ? 0 : ends[i - 1], ends[i], out[i])
        }
        func refill(_ lane: inout (Int, Int, Int, UInt64)) {
            if lane.0 >= 0 { out[lane.0] = lane.3 }
            if next < count {
                lane = start(next)
                next += 1
            } else {
                lane = (-1, 0, 0, 0)
            }
        }
        var l0 = (-1, 0, 0, UInt64(0))
        var l1 = l0
        var l2 = l0
        var l3 = l0
        refill(&l0)
        refill(&l1)
        refill(&l2)
        refill(&l3)
        while l0.0 >= 0 && l1.0 >= 0 && l2.0 >= 0 && l3.0 >= 0 {
            let run = min(l0.2 - l0.1, l1.2 - l1.1, l2.2 - l2.1, l3.2 - l3.1)
            var (h0, h1, h2, h3) = (l0.3, l1.3, l2.3, l3.3)
            let (b0, b1, b2, b3) = (base + l0.1, base + l1.1, base + l2.1, base + l3.1)
            for k in 0..<run {
                h0 = (h0 ^ UInt64(b0[k])) &* p
                h1 = (h1 ^ UInt64(b1[k])) &* p
                h2 = (h2 ^ UInt64(b2[k])) &* p
                h3 = (h3 ^ UInt64(b3[k])) &* p
            }
            (l0.3, l1.3, l2.3, l3.3) = (h0, h1, h2, h3)
            l0.1 += run
            l1.1 += run
            l2.1 += run
            l3.1 += run
            if l0.1 == l0.2 { refill(&l0) }
            if l1.1 == l1.2 { refill(&l1) }
            if l2.1 == l2.2 { refill(&l2) }
            if l3.1 == l3.2 { refill(&l3) }
        }
        // Fewer than four inputs left: one at a time.
        for var lane in [l0, l1, l2, l3] where lane.0 >= 0 {
            while true {
                var hv = lane.3
                for k in lane.1..<lane.2 { hv = (hv ^ UInt64(base[k])) &* p }
                lane.3 = hv
                lane.1 = lane.2
                refill(&lane)
                if lane.0 < 0 { break }
            }
        }
    }
}
