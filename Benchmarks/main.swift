// virt-chain-bench: generators and measured workloads for docs/benchmarks.md.
//
//   virt-chain-bench gen-xml DIR [--count N] [--seed S]     write N live domain XML files (2 disks, chains 1–16 deep)
//   virt-chain-bench parse DIR... [--phases | --sizes]       parse + model + reference index; prints time and peak RSS
//                                                            (--phases: breakdown, fastest of 5 runs per phase;
//                                                            --sizes: in-memory sizes of the model types)
//   virt-chain-bench plan-only [--disks N] [--runs R] [--seed S]
//                                                            times Planner.plan alone on an in-memory inventory
//   virt-chain-bench live-setup --state FILE [--count N] [--prefix P] [--dir PARENT] [--connect URI]
//                                                            defines N guests (half running) on a real libvirtd;
//                                                            prints their names, records them in FILE
//   virt-chain-bench live-teardown --state FILE              removes exactly what live-setup recorded in FILE
//
// Timing comparisons against baselines are done with hyperfine by scripts/bench-*.sh, side by side in one run.

import ChainCore
import ChainOps
import Foundation
import Libvirt

#if canImport(Glibc)
    import Glibc
#endif

struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func log(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

struct CLIUsage: Error {}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func option(_ args: [String], _ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

/// Options that take no value.
let flags: Set<String> = ["--phases", "--sizes"]

/// Arguments that are neither options nor option values.
func positional(_ args: [String]) -> [String] {
    var out: [String] = []
    var i = 0
    while i < args.count {
        if flags.contains(args[i]) {
            i += 1
        } else if args[i].hasPrefix("--") {
            i += 2
        } else {
            out.append(args[i])
            i += 1
        }
    }
    return out
}

// MARK: - gen-xml

/// A realistic live domain XML (as `virsh dumpxml` writes it for a running guest with two chain disks): on average
/// ~5 KB. Each disk's chain lists every layer with libvirt's `index` attribute and ends with `<backingStore/>`;
/// the base is one of 50 golden raw images shared by many domains.
func domainXML(index: Int, rng: inout SplitMix64) -> String {
    let name = "bench-\(index)"
    let uuid = String(format: "%08x-0000-4000-8000-%012x", index, index)
    var nextIndex = 1
    func disk(_ target: String, slot: Int) -> String {
        let depth = Int.random(in: 1...16, using: &rng)
        let dir = "/var/lib/libvirt/images/\(name)"
        var s = "    <disk type='file' device='disk'>\n"
        s += "      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>\n"
        s += "      <source file='\(dir)/\(target)-\(depth - 1).qcow2' index='\(nextIndex)'/>\n"
        nextIndex += 1
        var indent = "      "
        for level in stride(from: depth - 2, through: 0, by: -1) {
            let fmt = level == 0 ? "raw" : "qcow2"
            let file =
                level == 0 ? "/var/lib/libvirt/images/golden/base-\(index % 50).raw" : "\(dir)/\(target)-\(level).qcow2"
            s += "\(indent)<backingStore type='file' index='\(nextIndex)'>\n"
            s += "\(indent)  <format type='\(fmt)'/>\n\(indent)  <source file='\(file)'/>\n"
            nextIndex += 1
            indent += "  "
        }
        s += "\(indent)<backingStore/>\n"
        for _ in 0..<(depth - 1) {
            indent.removeLast(2)
            s += "\(indent)</backingStore>\n"
        }
        s += "      <target dev='\(target)' bus='virtio'/>\n      <alias name='virtio-disk\(slot)'/>\n"
        s += "      <address type='pci' domain='0x0000' bus='0x0\(slot + 4)' slot='0x00' function='0x0'/>\n"
        s += "    </disk>\n"
        return s
    }
    let mac = String(format: "%02x:%02x:%02x", index & 0xff, (index >> 8) & 0xff, 7)
    var x = """
        <domain type='kvm' id='\(index + 1)'>
          <name>\(name)</name>
          <uuid>\(uuid)</uuid>
          <memory unit='KiB'>4194304</memory>
          <currentMemory unit='KiB'>4194304</currentMemory>
          <vcpu placement='static'>4</vcpu>
              <os>
            <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
            <boot dev='hd'/>
          </os>
          <features>
            <acpi/>
            <apic/>
          </features>
          <cpu mode='host-passthrough' check='none' migratable='on'/>
              <on_poweroff>destroy</on_poweroff>
          <on_reboot>restart</on_reboot>
          <on_crash>destroy</on_crash>
          <devices>
            <emulator>/usr/bin/qemu-system-x86_64</emulator>

        """
    x += disk("vda", slot: 0)
    x += disk("vdb", slot: 1)
    x += """
                <interface type='network'>
              <mac address='52:54:00:\(mac)'/>
              <source network='default' portid='8a3c0a3e-0000-0000-0000-\(String(format: "%012x", index))' bridge='virbr0'/>
              <target dev='vnet\(index)'/>
              <model type='virtio'/>
              <alias name='net0'/>
              <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
            </interface>
            <memballoon model='virtio'>
              <alias name='balloon0'/>
              <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
            </memballoon>
          </devices>
          <seclabel type='dynamic' model='dac' relabel='yes'>
            <label>+64055:+64055</label>
            <imagelabel>+64055:+64055</imagelabel>
          </seclabel>
        </domain>

        """
    return x
}

func genXML(_ args: [String]) throws {
    guard let dir = positional(args).first else { throw CLIUsage() }
    let count = option(args, "--count").flatMap { Int($0) } ?? 10_000
    var rng = SplitMix64(state: option(args, "--seed").flatMap { UInt64($0) } ?? 42)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var total = 0
    for i in 0..<count {
        let xml = domainXML(index: i, rng: &rng)
        total += xml.utf8.count
        try xml.write(toFile: "\(dir)/bench-\(String(format: "%05d", i)).xml", atomically: false, encoding: .utf8)
    }
    print("wrote \(count) files, \(total) bytes (\(String(format: "%.1f", Double(total) / 1e6)) MB) to \(dir)")
}

// MARK: - parse

func parseBench(_ args: [String]) throws {
    let paths = positional(args)
    guard !paths.isEmpty else { throw CLIUsage() }
    if args.contains("--phases") { return try parsePhases(paths) }
    if args.contains("--sizes") {
        print("Layer \(MemoryLayout<Layer>.stride) ImageSource \(MemoryLayout<ImageSource>.stride) Disk \(MemoryLayout<Disk>.stride) Chain \(MemoryLayout<Chain>.stride) Step \(MemoryLayout<Step>.stride) DiskPlan \(MemoryLayout<DiskPlan>.stride) Domain \(MemoryLayout<ChainCore.Domain>.stride)")
        return
    }
    let t0 = now()
    let (inv, errors) = try InventoryReader.fromXMLFiles(paths, probe: false)
    let t1 = now()
    var disks = 0
    var layers = 0
    for d in inv.domains {
        for k in d.disks {
            disks += 1
            layers += k.chain?.depth ?? 0
        }
    }
    print(
        "parsed \(inv.domains.count) domains, \(disks) disks, \(layers) layers, \(inv.references.count) images, "
            + "\(errors.count) errors in \(String(format: "%.3f", t1 - t0)) s; "
            + "peak RSS \(String(format: "%.1f", peakRSSMiB())) MiB")
}

/// `parse --phases`: the parse split into phases, each over every file on ONE thread (for profiling, not for
/// comparison): read the bytes, scan the XML keeping nothing, build the kept element tree, build the model, and
/// canonicalise paths through the resolver; then the reference index.
func parsePhases(_ paths: [String]) throws {
    let ms = { (t: Double) in String(format: "%7.1f ms", t * 1000) }
    let repeats = 5
    /// The fastest of `repeats` runs of `body` (the machine's noise only ever adds time).
    func best<T>(_ body: () throws -> T) rethrows -> (Double, T) {
        var fastest = Double.infinity
        var result: T?
        for _ in 0..<repeats {
            let t = now()
            let r = try body()
            fastest = min(fastest, now() - t)
            result = r
        }
        return (fastest, result!)
    }
    print("fastest of \(repeats) runs of each phase, one thread unless marked")
    let (tList, files) = try best { try InventoryReader.xmlFiles(paths) }
    print("list files                    \(ms(tList))")
    let (tRead, bytes) = try best { try files.map { try InventoryReader.readFile($0) } }
    print("read \(files.count) files            \(ms(tRead)) (\(bytes.reduce(0) { $0 + $1.count }) bytes)")
    let (tScan, _) = try best { try bytes.reduce(0) { $0 + (try XMLReader.parse($1, keep: { _ in .skip }).children.count) } }
    print("scan only (keep nothing)      \(ms(tScan))")
    let (tTree, trees) = try best { try bytes.map { try XMLReader.document($0, keep: DomainXML.domainKeepForBench) } }
    print("scan + element tree           \(ms(tTree))")
    let (tModel, _) = try best { try trees.map { try DomainXML.domain(from: $0).domain } }
    print("model from tree (no resolve)  \(ms(tModel))")
    let (tResolved, resolved) = try best {
        let resolve = ImageProbe.makeResolver()
        return try trees.map { try DomainXML.domain(from: $0, resolve: resolve).domain }
    }
    print("model from tree (resolver)    \(ms(tResolved))")
    let (tIndex, inventory) = best { Inventory(host: "bench", domains: resolved) }
    print("reference index (threads)     \(ms(tIndex)) (\(inventory.imageCount) images)")
}

// MARK: - plan-only

/// The policies of the planner benchmark: a realistic mix over the generated `bench-N` domains (by last digit of N).
/// Golden bases are protected; they are shared by ~200 domains each, so chains are shortened by pull.
func benchPolicies() -> [Policy] {
    let golden = ["/var/lib/libvirt/images/golden/*"]
    return [
        Policy(name: "web", domains: ["bench-*0", "bench-*1", "bench-*2", "bench-*3"], maxDepth: 4, protect: golden),
        Policy(name: "db", domains: ["bench-*4", "bench-*5"], flatten: .keepBase, protect: golden),
        Policy(
            name: "batch", domains: ["bench-*6", "bench-*7"], maxDepth: 8, protect: golden,
            activeDir: "/var/lib/libvirt/images/fast"),
        Policy(name: "archive", domains: ["bench-*8"], flatten: .full, protect: golden, retired: .delete),
        Policy(name: "lab", domains: ["bench-*9"], protect: golden),
    ]
}

/// An in-memory inventory of `disks` disks (two per domain) parsed from generated XML, with synthetic image facts
/// (sizes, mtimes) as a probe would fill them; every other domain is shut off.
func syntheticInventory(disks: Int, seed: UInt64) throws -> Inventory {
    var rng = SplitMix64(state: seed)
    var domains: [ChainCore.Domain] = []
    let count = (disks + 1) / 2
    domains.reserveCapacity(count)
    for i in 0..<count {
        let xml = domainXML(index: i, rng: &rng)
        var d = try DomainXML.parseDomain(Array(xml.utf8), file: "bench-\(i)").domain
        if i % 2 == 1 { d.state = .shutoff }
        for k in d.disks.indices {
            guard var chain = d.disks[k].chain else { continue }
            for l in chain.layers.indices {
                let isBase = l == chain.layers.count - 1
                chain.layers[l].virtualSize = 20 << 30
                let data = isBase ? UInt64(2 << 30) : UInt64.random(in: (1 << 20)...(2 << 30), using: &rng)
                chain.layers[l].dataBytes = data
                chain.layers[l].fileSize = data + (1 << 18)
                chain.layers[l].mtime = 1_700_000_000 + Double(i)
            }
            d.disks[k].chain = chain
        }
        domains.append(d)
    }
    if disks % 2 == 1, var last = domains.popLast() {
        last.disks.removeLast()
        domains.append(last)
    }
    return Inventory(host: "bench", domains: domains)
}

func planOnly(_ args: [String]) throws {
    let disks = option(args, "--disks").flatMap { Int($0) } ?? 20_000
    let runs = max(1, option(args, "--runs").flatMap { Int($0) } ?? 9)
    let seed = option(args, "--seed").flatMap { UInt64($0) } ?? 42
    let t0 = now()
    let inventory = try syntheticInventory(disks: disks, seed: seed)
    let t1 = now()
    let policies = benchPolicies()
    let assignment = PolicySet(policies).assign(inventory.domains)
    var assignments: [DiskKey: Policy] = [:]
    for e in assignment.entries { if let p = e.policy { assignments[e.key] = p } }
    let t2 = now()
    let input = PlannerInput(inventory: inventory, assignments: assignments, config: .defaults)
    var times: [Double] = []
    var last = Plan(host: "bench")
    for _ in 0..<runs {
        last = Plan(host: "bench")  // free the previous plan before the clock starts: planning alone is timed
        let s = now()
        last = Planner.plan(input)
        times.append(now() - s)
    }
    times.sort()
    let median = times[times.count / 2]
    let fmt = { (t: Double) in String(format: "%.1f", t * 1000) }
    print(
        "inventory: \(inventory.domains.count) domains, \(assignments.count) managed disks, "
            + "\(inventory.imageCount) images (built in \(fmt(t1 - t0)) ms); policy matching \(fmt(t2 - t1)) ms")
    print(
        "plan: \(last.steps.count) steps, \(last.blocked.count) blocked, \(last.disks.count) disk plans; "
            + "Planner.plan over \(runs) runs: median \(fmt(median)) ms, min \(fmt(times.first!)) ms, "
            + "max \(fmt(times.last!)) ms; peak RSS \(String(format: "%.1f", peakRSSMiB())) MiB")
    print("plan-only-median-ms \(fmt(median))")
}

// MARK: - live-setup / live-teardown

/// What live-setup created, written after every change so that a teardown after an interruption removes it all.
struct LiveState: Codable {
    struct Entry: Codable {
        var name: String
        /// nil while the domain is being defined (removed by name, which carries the unique prefix).
        var uuid: String?
    }
    var uri: String
    var prefix: String
    var directory: String
    var domains: [Entry]

    func write(to path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    static func read(_ path: String) throws -> LiveState {
        try JSONDecoder().decode(LiveState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

/// Guests `PREFIXgNN`: chain depth 2–6 (`2 + i % 5`) of small qcow2 overlays over a raw base; guests with
/// `i % 10 < 3` share the base `shared/base-(i/10).raw` with two others; even guests run, odd ones are shut off.
func liveSetup(_ args: [String]) throws {
    guard let statePath = option(args, "--state") else { throw CLIUsage() }
    guard !FileManager.default.fileExists(atPath: statePath) else {
        throw BenchError("\(statePath) exists: tear the previous run down first (live-teardown --state \(statePath))")
    }
    let count = option(args, "--count").flatMap { Int($0) } ?? 50
    let prefix = option(args, "--prefix") ?? ("vcbench-" + Sandbox.randomPrefix().dropFirst("vcsbx-".count))
    let parent = option(args, "--dir") ?? Sandbox.defaultParentDirectory()
    let uri = Connection.resolveURI(option(args, "--connect"))
    let connection = try Connection(uri: uri)
    let sandbox = try Sandbox(connection: connection, prefix: prefix, parentDirectory: parent)
    sandbox.keepOnDeinit = true
    var state = LiveState(uri: uri, prefix: prefix, directory: sandbox.directory, domains: [])
    try state.write(to: statePath)
    log("live-setup: \(count) guests \(prefix)g* in \(sandbox.directory) on \(uri)")
    let t0 = now()
    do {
        var names: [String] = []
        for i in 0..<count {
            let depth = 2 + i % 5
            let base: String
            if i % 10 < 3 {
                let shared = try sandbox.path("shared/base-\(i / 10).raw")
                base =
                    sandbox.format(of: shared) == nil
                    ? try sandbox.createImage(name: shared, format: "raw", sizeMiB: 64) : shared
            } else {
                base = try sandbox.createImage(name: "g\(i)/base.raw", format: "raw", sizeMiB: 64)
            }
            var below = base
            var belowFormat = "raw"
            for level in 1..<depth {
                below = try sandbox.createImage(
                    name: "g\(i)/layer-\(level).qcow2", format: "qcow2", backing: below, backingFormat: belowFormat)
                belowFormat = "qcow2"
            }
            let suffix = String(format: "g%02d", i)
            let name = sandbox.domainName(suffix)
            state.domains.append(.init(name: name, uuid: nil))
            try state.write(to: statePath)
            let domain = try sandbox.defineDomain(name: suffix, disks: [("vda", below, "qcow2")], start: i % 2 == 0)
            state.domains[state.domains.count - 1].uuid = domain.uuid
            try state.write(to: statePath)
            names.append(name)
        }
        log("live-setup: done in \(String(format: "%.1f", now() - t0)) s")
        print(names.joined(separator: "\n"))
    } catch {
        log("live-setup: failed: \(error); removing what was created")
        sandbox.keepOnDeinit = false
        try? sandbox.teardown()
        try? FileManager.default.removeItem(atPath: statePath)
        throw error
    }
}

func liveTeardown(_ args: [String]) throws {
    guard let statePath = option(args, "--state") else { throw CLIUsage() }
    guard FileManager.default.fileExists(atPath: statePath) else {
        log("live-teardown: no state file \(statePath); nothing to remove")
        return
    }
    let state = try LiveState.read(statePath)
    guard state.prefix.count >= 3, !state.prefix.contains("/") else { throw BenchError("bad prefix in \(statePath)") }
    let connection = try Connection(uri: state.uri)
    var problems: [String] = []
    var removed = 0
    for entry in state.domains.reversed() {
        guard entry.name.hasPrefix(state.prefix) else {
            problems.append("\(entry.name): not named with prefix \(state.prefix); not touching it")
            continue
        }
        do {
            let domain: Libvirt.Domain
            do {
                domain = try entry.uuid.map { try connection.lookupDomain(uuid: $0) }
                    ?? connection.lookupDomain(name: entry.name)
            } catch let e as LibvirtError where e.code == LibvirtError.Code.noDomain {
                continue  // already gone (or never defined)
            }
            guard domain.name == entry.name else {
                problems.append("\(entry.uuid ?? entry.name) is now named \(domain.name); not touching it")
                continue
            }
            if (try? domain.isActive) == true {
                do {
                    try domain.destroy()
                } catch {
                    if (try? domain.isActive) != false { throw error }  // else it stopped meanwhile
                }
            }
            if (try? domain.isPersistent) == true {
                try domain.undefine([.snapshotsMetadata, .managedSave, .keepNVRAM])
            }
            removed += 1
        } catch {
            problems.append("\(entry.name): \(error)")
        }
    }
    // The directory was made by mkdtemp as PARENT/PREFIX-XXXXXX; remove nothing else.
    let dir = state.directory
    let base = (dir as NSString).lastPathComponent
    let dirIsOurs = dir.hasPrefix("/") && base.hasPrefix(state.prefix) && !dir.contains("/../")
    if problems.isEmpty, dirIsOurs, FileManager.default.fileExists(atPath: dir) {
        do { try FileManager.default.removeItem(atPath: dir) } catch { problems.append("cannot remove \(dir): \(error)") }
    } else if !dirIsOurs {
        problems.append("directory \(dir) is not a sandbox directory of prefix \(state.prefix); left in place")
    }
    if !problems.isEmpty {
        throw BenchError("teardown incomplete (state kept in \(statePath)): " + problems.joined(separator: "; "))
    }
    try? FileManager.default.removeItem(atPath: statePath)
    log("live-teardown: removed \(removed) domains and \(dir)")
}

// MARK: - main

let usage = """
    usage: virt-chain-bench gen-xml DIR [--count N] [--seed S]
           virt-chain-bench parse DIR... [--phases | --sizes]
           virt-chain-bench plan-only [--disks N] [--runs R] [--seed S]
           virt-chain-bench live-setup --state FILE [--count N] [--prefix P] [--dir PARENT] [--connect URI]
           virt-chain-bench live-teardown --state FILE

    """

let args = Array(CommandLine.arguments.dropFirst())
do {
    let rest = Array(args.dropFirst())
    switch args.first {
    case "gen-xml": try genXML(rest)
    case "parse": try parseBench(rest)
    case "strategies": strategiesBench(rest)
    case "plan-only": try planOnly(rest)
    case "live-setup": try liveSetup(rest)
    case "live-teardown": try liveTeardown(rest)
    default: throw CLIUsage()
    }
} catch is CLIUsage {
    FileHandle.standardError.write(Data(usage.utf8))
    exit(64)
} catch {
    FileHandle.standardError.write(Data("virt-chain-bench: \(error)\n".utf8))
    exit(1)
}
