// virt-chain-bench: generators and measured workloads for docs/benchmarks.md.
//
//   virt-chain-bench gen-xml DIR [--count N] [--seed S]     write N domain XML files (2 disks, chains 1–16 deep)
//   virt-chain-bench parse DIR...                            parse + model every file; prints time and peak RSS
//
// Timing comparisons against baselines are done with hyperfine by scripts/bench-*.sh, side by side in one run.

import ChainCore
import ChainOps
import Foundation

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

/// A realistic live domain XML (as `virsh dumpxml` writes it for a running guest): ~5 KB.
func domainXML(index: Int, rng: inout SplitMix64) -> String {
    let name = "bench-\(index)"
    let uuid = String(format: "%08x-0000-4000-8000-%012x", index, index)
    var nextIndex = 1
    func disk(_ target: String, slot: Int) -> String {
        let depth = Int.random(in: 1...16, using: &rng)
        var s = "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>\n"
        let dir = "/var/lib/libvirt/images/\(name)"
        s += "      <source file='\(dir)/\(target)-\(depth - 1).qcow2' index='\(nextIndex)'/>\n"
        nextIndex += 1
        var indent = "      "
        for level in stride(from: depth - 2, through: 0, by: -1) {
            let fmt = level == 0 ? "raw" : "qcow2"
            let file = level == 0 ? "/var/lib/libvirt/images/golden/base-\(index % 50).raw" : "\(dir)/\(target)-\(level).qcow2"
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
        s += "      <address type='pci' domain='0x0000' bus='0x0\(slot + 4)' slot='0x00' function='0x0'/>\n    </disk>\n"
        return s
    }
    var x = """
        <domain type='kvm' id='\(index + 1)'>
          <name>\(name)</name>
          <uuid>\(uuid)</uuid>
              <memory unit='KiB'>4194304</memory>
          <currentMemory unit='KiB'>4194304</currentMemory>
          <vcpu placement='static'>4</vcpu>
          <resource>
            <partition>/machine</partition>
          </resource>
          <os>
            <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
            <boot dev='hd'/>
          </os>
          <features>
            <acpi/>
            <apic/>
            <vmport state='off'/>
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
            <disk type='file' device='cdrom'>
              <driver name='qemu' type='raw'/>
              <target dev='sda' bus='sata'/>
              <readonly/>
              <alias name='sata0-0-0'/>
              <address type='drive' controller='0' bus='0' target='0' unit='0'/>
            </disk>

        """
    for c in 0..<1 {
        x += """
                    """
    }
    x += """
            <controller type='usb' index='0' model='qemu-xhci' ports='15'>
              <alias name='usb'/>
              <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
            </controller>
            <controller type='sata' index='0'>
              <alias name='ide'/>
              <address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>
            </controller>
            <interface type='network'>
              <mac address='52:54:00:\(String(format: "%02x:%02x:%02x", index & 0xff, (index >> 8) & 0xff, 7))'/>
              <source network='default' portid='8a3c0a3e-0000-0000-0000-\(String(format: "%012x", index))' bridge='virbr0'/>
              <target dev='vnet\(index)'/>
              <model type='virtio'/>
              <alias name='net0'/>
              <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
            </interface>
                <input type='tablet' bus='usb'>
              <alias name='input0'/>
              <address type='usb' bus='0' port='1'/>
            </input>
            <input type='mouse' bus='ps2'>
              <alias name='input1'/>
            </input>
            <input type='keyboard' bus='ps2'>
              <alias name='input2'/>
            </input>
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
    guard let dir = args.first else { throw CLIUsage() }
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

func parseBench(_ args: [String]) throws {
    let t0 = now()
    let (inv, errors) = try InventoryReader.fromXMLFiles(args, probe: false)
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
            + "\(errors.count) errors in \(String(format: "%.3f", t1 - t0)) s; peak RSS \(String(format: "%.1f", peakRSSMiB())) MiB"
    )
}

struct CLIUsage: Error {}

func option(_ args: [String], _ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

let args = Array(CommandLine.arguments.dropFirst())
do {
    switch args.first {
    case "gen-xml": try genXML(Array(args.dropFirst()))
    case "parse": try parseBench(Array(args.dropFirst()))
    case "parse-raw":
        let files = try InventoryReader.xmlFiles(Array(args.dropFirst()))
        let t0 = now()
        var n = 0
        for f in files {
            let b = try InventoryReader.readFile(f)
            let d = try DomainXML.parseDomain(b, file: f, resolve: { $0 })
            n += d.domain.disks.count
        }
        let t1 = now()
        print("raw parse \(files.count) files \(n) disks in \(t1 - t0) s")
        var m = 0
        for f in files {
            let b = try InventoryReader.readFile(f)
            let e = try XMLReader.parse(b, keep: { _ in .skip })
            m += e.children.count
        }
        print("scan only in \(now() - t1) s")
        let t2 = now()
        var trees: [XMLElement] = []
        for f in files {
            let b = try InventoryReader.readFile(f)
            trees.append(try XMLReader.parse(b, keep: DomainXML.domainKeepForBench))
        }
        let t3 = now()
        print("tree in \(t3 - t2) s")
        for t in trees { m += try DomainXML.domain(from: t).domain.disks.count }
        print("model in \(now() - t3) s")
        let t4 = now()
        var doms: [Domain] = []
        for f in files {
            let b = try InventoryReader.readFile(f)
            doms.append(try DomainXML.parseDomain(b, file: f, resolve: ImageProbe.resolver).domain)
        }
        let t5 = now()
        print("parse with resolver \(t5 - t4) s")
        let inv = Inventory(host: "x", domains: doms)
        print("references \(now() - t5) s \(inv.references.count)")
    default: throw CLIUsage()
    }
} catch is CLIUsage {
    FileHandle.standardError.write(Data("usage: virt-chain-bench gen-xml DIR [--count N] [--seed S] | parse DIR...\n".utf8))
    exit(64)
} catch {
    FileHandle.standardError.write(Data("virt-chain-bench: \(error)\n".utf8))
    exit(1)
}
