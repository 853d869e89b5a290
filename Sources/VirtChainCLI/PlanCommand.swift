import ArgumentParser
import ChainCore
import ChainOps
import Foundation

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Plan the smallest safe sequence of steps that brings every disk to its policy.",
        discussion: """
            Exit codes: 0 nothing to do; 1 error; 2 changes pending (only with --detailed-exitcode); \
            3 some disks blocked (each with its reason).
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json, markdown }

    @Option(name: .long, help: "Policy file or directory (repeatable).")
    var policies: [String] = []

    @OptionGroup var source: SourceOptions

    @Option(name: .long, help: "Host configuration file (default /etc/virt-chain/config.json).")
    var config: String?

    @Option(name: .long, help: "Output format: text, json or markdown.")
    var format: Format = .text

    @Option(name: .long, help: "Also save the plan (JSON, with fingerprints) to FILE for `apply FILE`.")
    var out: String?

    @Flag(name: .customLong("detailed-exitcode"), help: "Exit 2 when there are changes to apply.")
    var detailedExitcode = false

    @Flag(name: .customLong("allow-empty"), help: "Accept a run with no policies (nothing is managed).")
    var allowEmpty = false

    @Argument(help: "Only these domains (default: all).")
    var domains: [String] = []

    func validate() throws {
        if policies.isEmpty { throw ValidationError("--policies PATH is required") }
    }

    func run() throws {
        try runReporting {
            var clock = PhaseClock()
            defer { clock.total() }
            let loaded = try LoadedPolicies.load(policies, allowEmpty: allowEmpty)
            let hostConfig = try loadHostConfig(config)
            clock.mark("policies")
            var inventory = try source.inventory(names: domains, indexed: false)
            clock.mark("inventory")
            // Policy matching and the reference index read the same domains: build them side by side.
            let observed = inventory
            var matched: LoadedPolicies.Match?
            inventory.reindex { matched = loaded.match(observed) }
            let match = matched!
            clock.mark("match + index")
            if !match.diagnostics.isEmpty {
                for d in match.diagnostics { Stderr.write("\(d)\n") }
                throw CLIError(
                    "\(match.diagnostics.count) disk(s) matched by more than one policy; nothing was planned",
                    hint: "make the policies' match patterns disjoint, then run again")
            }
            let plan = PlanBuilder.build(
                inventory: &inventory, assignments: match.assignments, config: hostConfig,
                policyDigest: loaded.result.digest, measure: source.domainXML.isEmpty)
            clock.mark("plan")
            // JSON is streamed, piece by piece, to standard output and/or the saved plan (written to a temporary
            // file renamed into place at the end: a reader never sees half a plan).
            let saved = try out.map { try AtomicFile(path: $0) }
            if format == .json || saved != nil {
                var stdoutError: Int32?
                PlanRender.writeJSON(plan) { bytes in
                    if format == .json && stdoutError == nil { stdoutError = writeAll(1, bytes) }
                    saved?.write(bytes)
                }
                if let e = stdoutError {  // (the saved plan's temporary file is removed with it)
                    throw CLIError("cannot write the plan to standard output: \(String(cString: strerror(e)))")
                }
            }
            clock.mark("render json")
            switch format {
            case .text: emit(PlanRender.text(plan))
            case .json: break
            case .markdown: emit(PlanRender.markdown(plan))
            }
            clock.mark("emit")
            if let saved, let out {
                try saved.commit()
                Stderr.write("plan saved to \(out)\n")
            }
            // The process ends right after this: freeing hundreds of thousands of objects one by one would only
            // make it end later.
            ProcessLifetime.keep(inventory, plan, match)
            if !plan.blocked.isEmpty { return Exit.blocked }
            if detailedExitcode && !plan.steps.isEmpty { return Exit.changesPending }
            return Exit.ok
        }
    }
}

