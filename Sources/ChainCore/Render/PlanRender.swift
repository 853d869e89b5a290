// Plan output: text (terminal), JSON (machines, saved plans) and Markdown (review comments).

import Dispatch

/// Where `PlanRender.describe` writes: a String, or the JSON string being written.
protocol TextSink {
    mutating func put(_ s: String)
    /// The last path component of `path` ("?" for nil).
    mutating func putBase(_ path: String?)
}

extension String: TextSink {
    mutating func put(_ s: String) { append(s) }
    mutating func putBase(_ path: String?) { append(path.map(PathUtil.basename) ?? "?") }
}

extension JSONWriter: TextSink {
    mutating func put(_ s: String) { stringPart(s) }
    mutating func putBase(_ path: String?) {
        guard let path else { return stringPart("?") }
        stringPart(basenameOf: path)
    }
}

public enum PlanRender {
    static func base(_ path: String?) -> String { path.map(PathUtil.basename) ?? "?" }

    static func chainLine(_ paths: [String]) -> String {
        guard !paths.isEmpty else { return "(none)" }
        return paths.reversed().map(PathUtil.basename).joined(separator: " ← ") + " (active)"
    }

    /// One-line description of what a step does.
    public static func describe(_ s: Step) -> String {
        var out = ""
        describe(s, into: &out)
        return out
    }

    /// The description written piece by piece (into a String, or straight into a JSON string: no intermediate
    /// strings for the tens of thousands of steps of a large plan).
    static func describe<Sink: TextSink>(_ s: Step, into o: inout Sink) {
        switch s.action {
        case .commit:
            let active = s.expectBefore.first == s.top
            o.put(active && s.mode != .offline ? "active commit " : "commit ")
            layersBetween(s, into: &o)
            o.put(" into ")
            o.putBase(s.base)
            if active {
                o.put(s.mode == .offline ? "; the domain then uses " : ", then pivot to ")
                o.putBase(s.base)
            }
        case .pull:
            if s.base != nil {
                o.put("pull ")
                layersBetween(s, into: &o)
                o.put(" into ")
                o.putBase(s.top)
                o.put("; new backing ")
                o.putBase(s.base)
            } else {
                o.put("pull the whole chain into ")
                o.putBase(s.top)
                o.put(" (self-contained)")
            }
        case .copy:
            if s.base == nil {
                o.put("full copy (flattened)")
            } else {
                o.put("shallow copy (keeps backing ")
                o.putBase(s.base)
                o.put(")")
            }
            o.put(" of ")
            o.putBase(s.top)
            o.put(" to ")
            o.put(s.destination ?? "?")
            o.put(", then switch to it")
        case .rebase:
            o.put("record backing format ")
            o.put(s.backingFormat ?? "?")
            o.put(" of ")
            o.putBase(s.base)
            o.put(" in ")
            o.putBase(s.top)
        case .metadataDelete:
            o.put("delete libvirt metadata of snapshot ")
            o.put(s.snapshot ?? "?")
            o.put(" (files untouched)")
        case .deleteImage:
            o.put("delete retired image ")
            o.put(s.top ?? "?")
        }
    }

    /// The images a commit or pull removes from the chain, from `expectBefore`/`expectAfter`, comma-separated.
    static func layersBetween<Sink: TextSink>(_ s: Step, into o: inout Sink) {
        var first = true
        // Paths compared as bytes, as the file system compares names.
        for path in s.expectBefore where !s.expectAfter.contains(where: { PlanBytes.equal($0, path) }) {
            if s.action == .commit, let base = s.base, PlanBytes.equal(path, base) { continue }
            if !first { o.put(", ") }
            o.putBase(path)
            first = false
        }
        if first, let t = s.top { o.putBase(t) }
    }

    /// The reason without a leading `domain/disk: ` (the renderers print the disk already).
    static func reason(_ b: Blocked) -> String {
        let prefix = "\(b.domain)/\(b.disk): "
        return b.reason.hasPrefix(prefix) ? String(b.reason.dropFirst(prefix.count)) : b.reason
    }

    /// `n thing` / `n things`.
    static func count(_ n: Int, _ thing: String) -> String { "\(n) \(thing)\(n == 1 ? "" : "s")" }

    // MARK: Text

    public static func text(_ plan: Plan) -> String {
        var out = ""
        let changing = plan.disks.filter { !$0.stepIDs.isEmpty }
        let compliant = plan.disks.filter { $0.stepIDs.isEmpty }
        out += "Plan for \(plan.host): \(count(plan.steps.count, "step")) on "
        out += "\(count(changing.count, "disk")), ~\(formatBytes(plan.totalEstimatedBytes)) to write"
        out += ", \(plan.blocked.count) blocked, \(compliant.count) compliant\n"
        let byID = Dictionary(plan.steps.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for d in changing {
            out += "\n\(d.domain)/\(d.disk)  policy \(d.policy)\n"
            out += "  before: \(chainLine(d.before))\n"
            out += "  after:  \(chainLine(d.after))\n"
            for id in d.stepIDs {
                guard let s = byID[id] else { continue }
                out += "  \(s.id). \(s.action.rawValue) (\(s.mode.rawValue)): \(describe(s))"
                out += "  ~\(formatBytes(s.estimatedBytes))\n"
                out += "     because \(s.reason)\n"
            }
        }
        if !plan.blocked.isEmpty {
            out += "\nBlocked:\n"
            for b in plan.blocked {
                out += "  \(b.domain)/\(b.disk) [\(b.code.rawValue)]: \(reason(b))\n"
            }
        }
        if !compliant.isEmpty {
            out += "\nCompliant: " + compliant.map { "\($0.domain)/\($0.disk)" }.joined(separator: ", ") + "\n"
        }
        if plan.steps.isEmpty && plan.blocked.isEmpty {
            out += "\nNo changes. Every managed disk matches its policy.\n"
        }
        return out
    }

    // MARK: JSON

    /// The plan as JSON (DESIGN.md's keys, `"formatVersion": 1`, two-space indentation), written directly (no
    /// tree) and, for large plans, in parallel pieces of steps and disks, handed to `sink` in order. A few pieces are
    /// in memory at a time (their buffers are reused), never the whole document.
    public static func writeJSON(_ plan: Plan, to sink: (UnsafeRawBufferPointer) -> Void) {
        var w = JSONWriter()
        w.beginObject()
        w.key("formatVersion"); w.int(plan.formatVersion)
        w.key("host"); w.string(plan.host)
        w.key("noOp"); w.bool(plan.isNoOp)
        w.key("totalEstimatedBytes"); w.uint(plan.totalEstimatedBytes)
        w.key("steps"); w.beginArray()
        w.withBytes(sink)
        inWaves(count: plan.steps.count, perPiece: 1024, bytesPerItem: 1400, sink: sink) { w, i in
            w.item()
            writeStep(plan.steps[i], into: &w)
        }
        w = JSONWriter.resumingArray(depth: 1, itemsBefore: plan.steps.count)
        w.endArray()
        w.key("blocked"); w.beginArray()
        for b in plan.blocked {
            w.item()
            w.beginObject()
            w.key("domain"); w.string(b.domain)
            w.key("disk"); w.string(b.disk)
            w.key("reason"); w.string(b.reason)
            w.key("code"); w.string(b.code.rawValue)
            w.key("policy"); w.string(b.policy)
            w.endObject()
        }
        w.endArray()
        w.key("disks"); w.beginArray()
        w.withBytes(sink)
        inWaves(count: plan.disks.count, perPiece: 2048, bytesPerItem: 900, sink: sink) { w, i in
            let d = plan.disks[i]
            w.item()
            w.beginObject()
            w.key("domain"); w.string(d.domain)
            w.key("disk"); w.string(d.disk)
            w.key("policy"); w.string(d.policy)
            w.key("before"); writeStrings(d.before, into: &w)
            w.key("after"); writeStrings(d.after, into: &w)
            w.key("steps"); w.beginArray()
            for id in d.stepIDs { w.item(); w.int(id) }
            w.endArray()
            w.endObject()
        }
        w = JSONWriter.resumingArray(depth: 1, itemsBefore: plan.disks.count)
        w.endArray()
        w.key("fingerprints"); w.beginObject()
        for (k, v) in plan.fingerprints.sorted(by: { $0.key < $1.key }) {
            w.key(k); w.string(v)
        }
        w.endObject()
        w.endObject()
        w.finish()
        w.withBytes(sink)
    }

    /// `writeJSON` into one array.
    public static func jsonBytes(_ plan: Plan) -> [UInt8] {
        var out: [UInt8] = []
        writeJSON(plan) { out.append(contentsOf: $0) }
        return out
    }

    static func writeStrings(_ items: [String], into w: inout JSONWriter) {
        w.beginArray()
        for s in items { w.item(); w.string(s) }
        w.endArray()
    }

    static func writeStep(_ s: Step, into w: inout JSONWriter) {
        w.beginObject()
        w.key("id"); w.int(s.id)
        w.key("host"); w.string(s.host)
        w.key("domain"); w.string(s.domain)
        w.key("disk"); w.string(s.disk)
        w.key("action"); w.string(s.action.rawValue)
        w.key("mode"); w.string(s.mode.rawValue)
        w.key("top"); w.string(s.top)
        w.key("base"); w.string(s.base)
        w.key("destination"); w.string(s.destination)
        w.key("estimatedBytes"); w.uint(s.estimatedBytes)
        w.key("reason"); w.string(parts: s.reason.rule, " (policy ", s.reason.policy, ", ", s.reason.location, ")")
        w.key("rule"); w.string(s.reason.rule)
        w.key("policy"); w.string(s.reason.policy)
        w.key("policyLocation"); w.string(s.reason.location)
        w.key("snapshot"); w.string(s.snapshot)
        w.key("backingFormat"); w.string(s.backingFormat)
        w.key("expectBefore"); writeStrings(s.expectBefore, into: &w)
        w.key("expectAfter"); writeStrings(s.expectAfter, into: &w)
        w.key("description"); w.beginString(); describe(s, into: &w); w.endString()
        w.endObject()
    }

    /// Items `0..<count` of an array that is a member of the top object, written by `body` in pieces of
    /// `perPiece` items, `wave` pieces at a time on several threads, each wave handed to `sink` in order before the
    /// next one reuses the buffers.
    static func inWaves(
        count: Int, perPiece: Int, bytesPerItem: Int, wave: Int = 4, sink: (UnsafeRawBufferPointer) -> Void,
        _ body: @escaping @Sendable (inout JSONWriter, Int) -> Void
    ) {
        let pieces = (count + perPiece - 1) / perPiece
        guard pieces > 1 else {
            var w = JSONWriter.resumingArray(depth: 1, itemsBefore: 0, capacity: count * bytesPerItem)
            for i in 0..<count { body(&w, i) }
            w.withBytes(sink)
            return
        }
        let slots = SharedSlots(base: UnsafeMutablePointer<JSONWriter>.allocate(capacity: wave))
        for j in 0..<wave {  // one writer (one buffer) each: copies of a writer would share the buffer
            (slots.base + j).initialize(to: JSONWriter(capacity: perPiece * bytesPerItem))
        }
        defer {
            slots.base.deinitialize(count: wave)
            slots.base.deallocate()
        }
        var first = 0
        while first < pieces {
            let inWave = min(wave, pieces - first)
            let start = first
            DispatchQueue.concurrentPerform(iterations: inWave) { j in
                let range = ((start + j) * perPiece)..<min(count, (start + j + 1) * perPiece)
                slots.base[j].resume(depth: 1, itemsBefore: range.lowerBound)
                for i in range { body(&slots.base[j], i) }
            }
            for j in 0..<inWave { slots.base[j].withBytes(sink) }
            first += inWave
        }
    }

    // MARK: Markdown

    static func md(_ s: String) -> String {
        var out = ""
        for c in s {
            if "|*_`<>[]\\".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }

    public static func markdown(_ plan: Plan) -> String {
        var out = "### virt-chain plan for `\(plan.host)`\n\n"
        let changing = plan.disks.filter { !$0.stepIDs.isEmpty }
        let compliant = plan.disks.filter { $0.stepIDs.isEmpty }
        out += "**\(count(plan.steps.count, "step"))** on \(count(changing.count, "disk")), "
        out += "about **\(formatBytes(plan.totalEstimatedBytes))** to write"
        out += " · \(plan.blocked.count) blocked · \(compliant.count) compliant\n\n"
        if !plan.steps.isEmpty {
            out += "| # | disk | action | mode | what | est. bytes | why |\n"
            out += "|---:|---|---|---|---|---:|---|\n"
            for s in plan.steps {
                out += "| \(s.id) | `\(s.domain)/\(s.disk)` | \(s.action.rawValue) | \(s.mode.rawValue) | "
                out += "\(md(describe(s))) | \(formatBytes(s.estimatedBytes)) | \(md(s.reason.description)) |\n"
            }
            out += "\n<details><summary>Chains before ⇒ after</summary>\n\n"
            for d in changing {
                out += "- `\(d.domain)/\(d.disk)` (policy `\(d.policy)`):\n"
                out += "  `\(chainLine(d.before))` ⇒ `\(chainLine(d.after))`\n"
            }
            out += "\n</details>\n\n"
        }
        if !plan.blocked.isEmpty {
            out += "#### ⚠️ Blocked\n\n"
            for b in plan.blocked {
                out += "- `\(b.domain)/\(b.disk)` **\(b.code.rawValue)**: \(md(reason(b)))\n"
            }
            out += "\n"
        }
        if plan.steps.isEmpty && plan.blocked.isEmpty {
            out += "No changes: every managed disk matches its policy.\n"
        }
        return out
    }
}
