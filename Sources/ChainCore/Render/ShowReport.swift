// `virt-chain show`: every disk's chain, with sharing, protection, jobs, the matching policy and compliance.

/// Whether a chain meets its policy's shape rules, and why not.
public enum Compliance {
    /// Problems of `disk` against `policy` (empty = compliant). Chain problems (missing, loop, …) come first.
    public static func problems(domain: Domain, disk: Disk, policy: Policy?, inventory: Inventory) -> [String] {
        guard let chain = disk.chain else { return [] }
        var out = chain.problems.map(\.description)
        guard let policy else { return out }
        let depth = chain.depth
        switch policy.flatten {
        case .full where depth > 1:
            out.append("flatten full: chain has \(depth) images, expected one self-contained image")
        case .keepBase where depth > 2:
            out.append("flatten keep-base: chain has \(depth) images, expected base ← active")
        default:
            if let max = policy.maxDepth, depth > max { out.append("depth \(depth) > maxDepth \(max)") }
        }
        if let dir = policy.activeDir, let active = chain.active?.source.path, PathUtil.dirname(active) != dir {
            out.append("active image \(active) is not in storage.activeDir \(dir)")
        }
        if domain.state == .shutoff {
            for i in chain.layers.indices.dropFirst() where !chain.layers[i].formatRecorded {
                out.append(
                    "backing format of \(chain.layers[i].key) is not recorded in \(chain.layers[i - 1].key)")
            }
        }
        if policy.snapshotMetadata == .prune {
            for snap in staleSnapshots(domain) { out.append("snapshot \(snap.name) names images no longer in any chain") }
        }
        return out
    }

    /// Snapshots of `domain` that name an image (overlay or saved state) that is in no current chain of the domain.
    public static func staleSnapshots(_ domain: Domain) -> [Snapshot] {
        let inChains = Set(domain.disks.flatMap { $0.chain?.layers.map(\.key) ?? [] })
        return domain.snapshots.filter { snap in
            snap.disks.contains { ref in
                let named = (ref.overlay.map { [$0] } ?? []) + ref.stateSources
                return named.contains { !inChains.contains($0.key) }
            }
        }
    }
}

public struct ShowReport: Sendable {
    public struct LayerRow: Sendable {
        public var layer: Layer
        /// The first `ShowReport.sharedSample` other chains and snapshots that reference the image.
        public var sharedWith: [ImageReference]
        /// How many there are in all.
        public var sharedCount: Int
        public var protected: Bool
    }

    public struct DiskRow: Sendable {
        public var disk: Disk
        public var layers: [LayerRow]
        public var policy: Policy?
        public var policyConflict: String?
        public var problems: [String]
        public var compliant: Bool
    }

    public struct DomainRow: Sendable {
        public var domain: Domain
        public var disks: [DiskRow]
    }

    public var host: String
    public var domains: [DomainRow]
    /// How many sharers of one image are named (a golden base can be shared by hundreds of disks; naming all of
    /// them on every disk would make the output grow with the square of the host's size). The count is exact.
    public static let sharedSample = 5

    /// Builds the report. `assignments` holds the single policy of each disk; `conflicts` the message of each disk
    /// matched by more than one policy.
    public init(
        inventory: Inventory, assignments: [DiskKey: Policy] = [:], conflicts: [DiskKey: String] = [:],
        only names: [String] = []
    ) {
        host = inventory.host
        var rows: [DomainRow] = []
        for domain in inventory.domains where names.isEmpty || names.contains(domain.name) {
            var disks: [DiskRow] = []
            for disk in domain.disks {
                let key = DiskKey(domain: domain.name, disk: disk.target)
                let policy = assignments[key]
                var layers: [LayerRow] = []
                for layer in disk.chain?.layers ?? [] {
                    let foreign = inventory.foreignReferenceSample(
                        of: layer.key, domain: domain.name, disk: disk.target, limit: ShowReport.sharedSample)
                    let protected = layer.source.path.map { p in policy?.protects(path: p) ?? false } ?? false
                    layers.append(
                        LayerRow(layer: layer, sharedWith: foreign.sample, sharedCount: foreign.count, protected: protected))
                }
                var problems = Compliance.problems(domain: domain, disk: disk, policy: policy, inventory: inventory)
                if let conflict = conflicts[key] { problems.insert(conflict, at: 0) }
                disks.append(
                    DiskRow(
                        disk: disk, layers: layers, policy: policy, policyConflict: conflicts[key], problems: problems,
                        compliant: problems.isEmpty))
            }
            rows.append(DomainRow(domain: domain, disks: disks))
        }
        domains = rows.sorted { $0.domain.name < $1.domain.name }
    }

    // MARK: Text

    public func text() -> String {
        var out = ""
        if domains.isEmpty { out += "no domains on \(host)\n" }
        for row in domains {
            let d = row.domain
            out += "\(d.name)  \(d.state.rawValue)  \(d.uuid)\(d.persistent ? "" : "  (transient)")\n"
            for disk in row.disks {
                out += diskText(disk, domain: d)
            }
            let snaps = d.snapshots
            if !snaps.isEmpty {
                out += "  snapshots:\n"
                for s in snaps {
                    let names = s.disks.compactMap { ref -> String? in
                        guard let o = ref.overlay else { return nil }
                        return "\(ref.target) overlay \(PathUtil.basename(o.display))"
                            + (ref.stateSources.first.map { ", state \(PathUtil.basename($0.display))" } ?? "")
                    }
                    let current = s.isCurrent ? " (current)" : ""
                    let parent = s.parent.map { " parent \($0)" } ?? ""
                    out += "    \(s.name)\(current)\(parent): \(names.isEmpty ? "no external disks" : names.joined(separator: "; "))\n"
                }
            }
        }
        return out
    }

    func diskText(_ row: DiskRow, domain: Domain) -> String {
        let disk = row.disk
        var out = "  \(disk.target)"
        guard let chain = disk.chain, disk.isChainDisk else {
            let what = disk.chain == nil ? "empty" : "not managed"
            return out + "  \(disk.device) (\(what))\n"
        }
        if let policy = row.policy {
            out += "  policy \(policy.name) (\(policy.location.fileLine))"
            out += row.compliant ? "  compliant" : "  NOT compliant"
        } else if row.policyConflict != nil {
            out += "  policy conflict"
        } else {
            out += "  no policy"
        }
        out += "\n"
        // base ← … ← active
        let names = chain.layers.reversed().map { PathUtil.basename($0.source.display) }
        var line = names.joined(separator: " ← ") + " (active)"
        if !chain.complete && chain.problems.isEmpty { line += " ← ?" }
        out += "    " + line + "\n"
        for lr in row.layers {
            let l = lr.layer
            var marks: [String] = []
            if lr.sharedCount > 0 {
                let shown = lr.sharedWith.prefix(ShowReport.sharedSample).map(\.description).joined(separator: ", ")
                let more = lr.sharedCount - lr.sharedWith.count
                marks.append("shared with " + shown + (more > 0 ? " and \(more) more" : ""))
            }
            if lr.protected { marks.append("protected") }
            if !l.formatRecorded && l.key != chain.layers.first?.key { marks.append("backing format not recorded") }
            if !l.bitmaps.isEmpty { marks.append("bitmaps: " + l.bitmaps.joined(separator: ",")) }
            if l.encrypted { marks.append("encrypted") }
            let idx = l.index.map { "[\($0)]" } ?? ""
            let fmt = (l.format ?? "?").padding(5)
            out += "      \(fmt) \(formatBytes(l.virtualSize).padding(9)) virtual \(formatBytes(l.dataBytes).padding(9)) data  "
            out += "\(l.source.display)\(idx)"
            if !marks.isEmpty { out += "  (" + marks.joined(separator: "; ") + ")" }
            out += "\n"
        }
        if let job = disk.job {
            let pct = job.end > 0 ? Int(Double(job.cur) / Double(job.end) * 100) : 0
            out += "    block job: \(job.type.rawValue) \(pct)%\(job.ready ? " ready for pivot" : "")\n"
        } else if let mirror = disk.mirror {
            out += "    block job: \(mirror.job)\(mirror.ready ? " ready for pivot" : "")\n"
        }
        for p in row.problems { out += "    ✗ \(p)\n" }
        return out
    }

    // MARK: JSON

    /// The report as JSON (DESIGN.md's `show --format json`), written directly (no tree) in parallel waves of
    /// domains and handed to `sink` in order: tens of thousands of disks without a document in memory.
    public func writeJSON(to sink: (UnsafeRawBufferPointer) -> Void) {
        var w = JSONWriter()
        w.beginObject()
        w.key("formatVersion"); w.int(1)
        w.key("host"); w.string(host)
        w.key("domains"); w.beginArray()
        w.withBytes(sink)
        let rows = domains
        PlanRender.inWaves(count: rows.count, perPiece: 512, bytesPerItem: 4096, sink: sink) { w, i in
            let row = rows[i]
            w.item()
            w.beginObject()
            w.key("name"); w.string(row.domain.name)
            w.key("uuid"); w.string(row.domain.uuid)
            w.key("state"); w.string(row.domain.state.rawValue)
            w.key("persistent"); w.bool(row.domain.persistent)
            w.key("disks"); w.beginArray()
            for disk in row.disks {
                w.item()
                ShowReport.writeDisk(disk, into: &w)
            }
            w.endArray()
            w.key("snapshots"); w.beginArray()
            for s in row.domain.snapshots {
                w.item()
                w.beginObject()
                w.key("name"); w.string(s.name)
                w.key("parent"); w.string(s.parent)
                w.key("current"); w.bool(s.isCurrent)
                w.key("disks"); w.beginArray()
                for r in s.disks {
                    w.item()
                    w.beginObject()
                    w.key("target"); w.string(r.target)
                    w.key("snapshot"); w.string(r.kind)
                    w.key("overlay"); w.string(r.overlay?.display)
                    w.key("state"); w.beginArray()
                    for source in r.stateSources { w.item(); w.string(source.display) }
                    w.endArray()
                    w.endObject()
                }
                w.endArray()
                w.endObject()
            }
            w.endArray()
            w.endObject()
        }
        w = JSONWriter.resumingArray(depth: 1, itemsBefore: rows.count)
        w.endArray()
        w.endObject()
        w.finish()
        w.withBytes(sink)
    }

    /// `writeJSON` into one array.
    public func jsonBytes() -> [UInt8] {
        var out: [UInt8] = []
        writeJSON { out.append(contentsOf: $0) }
        return out
    }

    static func writeDisk(_ row: DiskRow, into w: inout JSONWriter) {
        let d = row.disk
        w.beginObject()
        w.key("target"); w.string(d.target)
        w.key("device"); w.string(d.device)
        w.key("managed"); w.bool(d.isChainDisk)
        w.key("chain"); w.beginArray()
        for lr in row.layers {
            w.item()
            w.beginObject()
            w.key("path"); w.string(lr.layer.source.display)
            w.key("type"); w.string(lr.layer.source.kind.rawValue)
            w.key("format"); w.string(lr.layer.format)
            w.key("index"); if let index = lr.layer.index { w.int(index) } else { w.null() }
            w.key("virtualSize"); if let v = lr.layer.virtualSize { w.uint(v) } else { w.null() }
            w.key("dataBytes"); if let v = lr.layer.dataBytes { w.uint(v) } else { w.null() }
            w.key("shared"); w.bool(lr.sharedCount > 0)
            w.key("sharedCount"); w.int(lr.sharedCount)
            w.key("sharedWith"); w.beginArray()
            for ref in lr.sharedWith.prefix(ShowReport.sharedSample) { w.item(); w.string(ref.description) }
            w.endArray()
            w.key("protected"); w.bool(lr.protected)
            w.key("formatRecorded"); w.bool(lr.layer.formatRecorded)
            w.key("bitmaps"); w.beginArray()
            for b in lr.layer.bitmaps { w.item(); w.string(b) }
            w.endArray()
            w.endObject()
        }
        w.endArray()
        w.key("chainComplete"); w.bool(d.chain?.complete ?? true)
        w.key("policy"); w.string(row.policy?.name)
        w.key("compliant"); w.bool(row.compliant)
        w.key("problems"); w.beginArray()
        for p in row.problems { w.item(); w.string(p) }
        w.endArray()
        w.key("job")
        if let job = d.job {
            w.beginObject()
            w.key("type"); w.string(job.type.rawValue)
            w.key("cur"); w.uint(job.cur)
            w.key("end"); w.uint(job.end)
            w.key("ready"); w.bool(job.ready)
            w.endObject()
        } else {
            w.null()
        }
        w.endObject()
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
