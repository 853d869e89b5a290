import Foundation
import Testing

// End-to-end tests of the built `virt-chain` binary: argv in; stdout, stderr and exit status out (DESIGN.md,
// "Command line — the contract"; exit codes 0 ok, 1 error, 2 changes pending, 3 blocked, 64 usage).

/// Lines of `text` that start with `FILE:LINE:COL: ` for the given file.
private func diagnosticLines(_ text: String, file: String) -> [Substring] {
    text.split(separator: "\n").filter { line in
        guard line.hasPrefix(file + ":") else { return false }
        let rest = line.dropFirst(file.count + 1).split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        return rest.count == 3 && Int(rest[0]) != nil && Int(rest[1]) != nil && rest[2].hasPrefix(" ")
    }
}

private func domains(_ json: [String: Any]) -> [[String: Any]] { json["domains"] as? [[String: Any]] ?? [] }
private func disks(_ domain: [String: Any]) -> [[String: Any]] { domain["disks"] as? [[String: Any]] ?? [] }
private func chainPaths(_ disk: [String: Any]) -> [String] {
    (disk["chain"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
}

@Suite struct ValidateCLITests {
    @Test func examplePoliciesAreValid() throws {
        let r = try CLI.run(["validate", "policies/"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("valid"), "\(r)")
    }

    @Test func everyProblemInEveryFileIsReportedWithItsLocation() throws {
        let dir = try TempDir()
        let a = try dir.write(
            "a.json",
            """
            {
              "version": 1,
              "policies": [
                { "name": "Web", "maxDepth": 0, "flaten": "none" }
              ]
            }

            """)
        let b = try dir.write(
            "sub/b.json",
            """
            {
              "version": 1,
              "policies": [
                {
                  "name": "db",
                  "protect": ["relative/*"],
                  "shutoff": "never"
                }
              ]
            }

            """)
        let r = try CLI.run(["validate", dir.path])
        #expect(r.status == 1, "\(r)")
        #expect(r.stdout.isEmpty, "results only on success; diagnostics go to stderr:\n\(r)")

        let inA = diagnosticLines(r.stderr, file: a)
        let inB = diagnosticLines(r.stderr, file: b)
        for path in ["policies[0].name", "policies[0].maxDepth", "policies[0].flaten"] {
            #expect(inA.contains { $0.contains(": \(path): ") }, "no FILE:LINE:COL line for \(path) in a.json:\n\(r)")
        }
        for path in ["policies[0].protect[0]", "policies[0].shutoff"] {
            #expect(inB.contains { $0.contains(": \(path): ") }, "no FILE:LINE:COL line for \(path) in b.json:\n\(r)")
        }
        // Every error of a.json is on line 4; b.json's on lines 6 and 7.
        #expect(inA.allSatisfy { $0.hasPrefix(a + ":4:") }, "\(r)")
        #expect(inB.contains { $0.hasPrefix(b + ":6:") } && inB.contains { $0.hasPrefix(b + ":7:") }, "\(r)")
        #expect(inA.contains { $0.contains("did you mean \"flatten\"") }, "unknown key without a suggestion:\n\(r)")
        #expect(inA.count + inB.count == 5, "\(r)")
    }

    @Test func syntaxErrorNamesFileLineAndColumn() throws {
        let dir = try TempDir()
        let c = try dir.write("c.json", "{\n  \"version\": 1,\n  \"policies\": [\n    { \"name\": \"x\" }\n  ],\n}\n")
        let r = try CLI.run(["validate", c])
        #expect(r.status == 1, "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
        #expect(diagnosticLines(r.stderr, file: c).contains { $0.hasPrefix(c + ":5:") }, "\(r)")
    }

    @Test func missingPathIsAnError() throws {
        let r = try CLI.run(["validate", "/nonexistent/policies"])
        #expect(r.status == 1, "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
        #expect(r.stderr.contains("/nonexistent/policies"), "\(r)")
    }

    @Test func noArgumentsIsAUsageError() throws {
        let r = try CLI.run(["validate"])
        #expect(r.status == 64, "\(r)")
    }
}

@Suite struct ShowCLITests {
    @Test func fixturesAsJSON() throws {
        let r = try CLI.run(["show", "--domain-xml", "Tests/ChainCoreTests/Fixtures/domains", "--format", "json"])
        #expect(r.status == 0, "\(r)")
        let json = try CLI.jsonObject(r)
        #expect(json["formatVersion"] as? Int == 1)
        let all = domains(json)
        // 11 domain dumps of 4 domains (the 12th file is snapshot metadata, attached to its domain): each domain is
        // read once, from its first file in sorted order, and every later dump of it is reported on stderr.
        #expect(all.count == 4, "\(all.map { $0["name"] ?? "?" })")
        #expect(Set(all.compactMap { $0["name"] as? String }) == ["mixed & sources", "relative", "vcfix-off", "vcfix-run"])
        #expect(r.stderr.contains("domain vcfix-run was already read from"))

        // live-running-chain.xml: chain[0] is the active image, the last element the base.
        let one = try CLI.run([
            "show", "--domain-xml", "Tests/ChainCoreTests/Fixtures/domains/live-running-chain.xml", "--format", "json",
        ])
        #expect(one.status == 0, "\(one)")
        let running = domains(try CLI.jsonObject(one)).filter {
            $0["name"] as? String == "vcfix-run" && $0["state"] as? String == "running"
        }
        let vcfix = "/var/lib/libvirt/images/vcfix/"
        let expected = ["c.qcow2", "b.qcow2", "a.qcow2", "base.raw"].map { vcfix + $0 }
        #expect(
            running.contains { d in disks(d).contains { $0["target"] as? String == "vda" && chainPaths($0) == expected } },
            "no running vcfix-run with vda chain \(expected)")

        // synthetic-mixed-sources.xml: block devices keep their paths; network sources are present too.
        let mixed = try #require(all.first { $0["name"] as? String == "mixed & sources" })
        let vdd = try #require(disks(mixed).first { $0["target"] as? String == "vdd" })
        #expect(chainPaths(vdd) == ["/dev/vg0/top", "/dev/vg0/base"])
        #expect(disks(mixed).count >= 8)
        for d in all {
            #expect(d["uuid"] is String && d["state"] is String, "\(d)")
            for k in disks(d) where k["chain"] != nil && !(k["chain"] is NSNull) {
                for layer in k["chain"] as? [[String: Any]] ?? [] {
                    for key in ["path", "format", "index", "dataBytes", "shared", "protected"] {
                        #expect(layer.keys.contains(key), "layer without \(key): \(layer)")
                    }
                }
            }
        }
    }

    @Test func textShowsTheChainDiagram() throws {
        let file = "Tests/ChainCoreTests/Fixtures/domains/live-running-chain.xml"
        let r = try CLI.run(["show", "--domain-xml", file])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("vcfix-run"), "\(r)")
        #expect(r.stdout.contains("base.raw ← a.qcow2 ← b.qcow2 ← c.qcow2 (active)"), "\(r)")
        #expect(r.stderr.isEmpty, "\(r)")
    }

    @Test func onlyNamedDomains() throws {
        let r = try CLI.run(["show", "--domain-xml", CLI.fixtureDomains, "--format", "json", "relative"])
        #expect(r.status == 0, "\(r)")
        let names = domains(try CLI.jsonObject(r)).compactMap { $0["name"] as? String }
        #expect(names == ["relative"])
    }

    @Test func unknownDomainIsAnError() throws {
        let r = try CLI.run(["show", "--domain-xml", CLI.fixtureDomains, "no-such-domain"])
        #expect(r.status == 1, "\(r)")
        #expect(r.stderr.contains("no-such-domain"), "\(r)")
    }

    @Test func missingDomainXMLPathIsAClearError() throws {
        let r = try CLI.run(["show", "--domain-xml", "/nonexistent"])
        #expect(r.status == 1, "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
        #expect(r.stderr.contains("/nonexistent"), "\(r)")
        #expect(r.stderr.split(separator: "\n").contains { $0.hasPrefix("hint: ") }, "no hint line:\n\(r)")
    }

    @Test func unreadableXMLIsReportedWithItsLocation() throws {
        let dir = try TempDir()
        let broken = try dir.write("broken.xml", "<domain>\n  <name>x</name>\n  <devices>\n</domain>\n")
        let r = try CLI.run(["show", "--domain-xml", dir.path])
        #expect(r.status == 1, "\(r)")
        #expect(r.stderr.contains(broken + ": 4:"), "\(r)")
    }

    @Test func libvirtTestDriver() throws {
        let r = try CLI.run(["show", "--connect", "test:///default"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("test"), "\(r)")
        let j = try CLI.run(["show", "--connect", "test:///default", "--format", "json"])
        #expect(j.status == 0, "\(j)")
        if j.status == 0 {
            let json = try CLI.jsonObject(j)
            #expect(domains(json).contains { $0["name"] as? String == "test" }, "\(j)")
        }
    }

    @Test func connectAndDomainXMLExcludeEachOther() throws {
        let r = try CLI.run(["show", "--connect", "test:///default", "--domain-xml", CLI.fixtureDomains])
        #expect(r.status == 64, "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
        #expect(r.stderr.contains("--connect") && r.stderr.contains("--domain-xml"), "\(r)")
    }

    @Test func unknownOptionAndSubcommandAreUsageErrors() throws {
        #expect(try CLI.run(["show", "--bogus"]).status == 64)
        #expect(try CLI.run(["frobnicate"]).status == 64)
    }

    @Test func policiesAddComplianceToJSON() throws {
        let dir = try TempDir()
        try dir.write(
            "p.json", #"{ "version": 1, "policies": [ { "name": "fix", "match": { "domains": ["vcfix-*"] }, "maxDepth": 2 } ] }"#)
        let file = CLI.fixtureDomains + "/live-running-chain.xml"
        let r = try CLI.run(["show", "--domain-xml", file, "--policies", dir.path, "--format", "json"])
        #expect(r.status == 0, "\(r)")
        let vda = try #require(domains(try CLI.jsonObject(r)).first.flatMap { disks($0).first })
        #expect(vda["policy"] as? String == "fix")
        #expect(vda["compliant"] as? Bool == false)
        #expect((vda["problems"] as? [Any])?.isEmpty == false)
    }
}

@Suite struct PlanCLITests {
    /// A policy for the fixture domains (vcfix-*): chains of at most two images.
    static let fixturePolicy =
        #"{ "version": 1, "policies": [ { "name": "fixtures", "match": { "domains": ["vcfix-*"] }, "maxDepth": 2 } ] }"#

    @Test func policiesAreRequired() throws {
        let r = try CLI.run(["plan", "--domain-xml", CLI.fixtureDomains])
        #expect(r.status == 64, "\(r)")
        #expect(r.stderr.contains("--policies"), "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
    }

    @Test func anEmptyPolicySetIsRefused() throws {
        let empty = try TempDir()
        let r = try CLI.run(["plan", "--policies", empty.path, "--domain-xml", CLI.fixtureDomains])
        #expect(r.status == 1, "\(r)")
        #expect(r.stderr.contains("--allow-empty"), "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
    }

    @Test func anEmptyPolicySetIsAcceptedWithAllowEmpty() throws {
        let empty = try TempDir()
        let r = try CLI.run(["plan", "--policies", empty.path, "--domain-xml", CLI.fixtureDomains, "--allow-empty"])
        #expect(r.status == 0, "\(r)")
    }

    @Test func jsonPlanOfTheFixtures() throws {
        let dir = try TempDir()
        try dir.write("fixtures.json", Self.fixturePolicy)
        let r = try CLI.run(["plan", "--policies", dir.path, "--domain-xml", CLI.fixtureDomains, "--format", "json"])
        // Some fixture chains are unterminated and their images absent here: those disks are blocked (exit 3).
        #expect(r.status == 0 || r.status == 3, "\(r)")
        let json = try CLI.jsonObject(r)
        #expect(json["formatVersion"] as? Int == 1)
        #expect(json["steps"] is [Any], "\(json.keys)")
        #expect(json["blocked"] is [Any], "\(json.keys)")
        #expect(json["fingerprints"] is [String: Any], "\(json.keys)")
        let blocked = json["blocked"] as? [[String: Any]] ?? []
        #expect((r.status == 3) == !blocked.isEmpty, "exit 3 exactly when some disk is blocked:\n\(r)")
        for b in blocked {
            #expect(b["domain"] is String && b["disk"] is String && b["reason"] is String, "\(b)")
        }
    }

    @Test func jsonStepsFollowTheContract() throws {
        let dir = try TempDir()
        try dir.write("fixtures.json", Self.fixturePolicy)
        let file = CLI.fixtureDomains + "/live-running-chain.xml"
        let r = try CLI.run(["plan", "--policies", dir.path, "--domain-xml", file, "--format", "json"])
        #expect(r.status == 0, "\(r)")
        let json = try CLI.jsonObject(r)
        let steps = try #require(json["steps"] as? [[String: Any]])
        #expect(!steps.isEmpty, "depth 4 > maxDepth 2 needs a step:\n\(r)")
        for step in steps {
            for key in ["id", "host", "domain", "disk", "action", "mode", "top", "base", "destination", "estimatedBytes", "reason"] {
                #expect(step.keys.contains(key), "step without \(key): \(step)")
            }
            #expect(step["domain"] as? String == "vcfix-run")
            #expect(step["mode"] as? String == "live")
        }
        let fingerprints = try #require(json["fingerprints"] as? [String: Any])
        #expect(fingerprints["policies"] is String, "\(fingerprints)")
    }

    @Test func detailedExitcodeSignalsPendingChanges() throws {
        let dir = try TempDir()
        try dir.write("fixtures.json", Self.fixturePolicy)
        let file = CLI.fixtureDomains + "/live-running-chain.xml"
        let r = try CLI.run(["plan", "--policies", dir.path, "--domain-xml", file, "--detailed-exitcode"])
        #expect(r.status == 2, "\(r)")
        #expect(!r.stdout.isEmpty, "\(r)")
    }

    @Test func savedPlanIsTheJSONPlan() throws {
        let dir = try TempDir()
        try dir.write("fixtures.json", Self.fixturePolicy)
        let file = CLI.fixtureDomains + "/live-running-chain.xml"
        let out = try TempDir()  // not in the policy directory: it would be read as a policy file
        let saved = out.path + "/plan.json"
        let text = try CLI.run(["plan", "--policies", dir.path, "--domain-xml", file, "--out", saved])
        #expect(text.status == 0, "\(text)")
        #expect(text.stdout.contains("Plan for"), "text on stdout:\n\(text)")
        #expect(text.stderr.contains("plan saved to \(saved)"), "\(text)")
        let json = try CLI.run(["plan", "--policies", dir.path, "--domain-xml", file, "--format", "json"])
        #expect(try String(contentsOfFile: saved, encoding: .utf8) == json.stdout)
        // Only the plan is left in the directory (no temporary file).
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path) == ["plan.json"])
    }

    @Test func failingStandardOutputIsAnErrorAndLeavesNoPlanFile() throws {
        let dir = try TempDir()
        try dir.write("fixtures.json", Self.fixturePolicy)
        let out = try TempDir()
        let file = CLI.fixtureDomains + "/live-running-chain.xml"
        let r = try CLI.run(
            ["plan", "--policies", dir.path, "--domain-xml", file, "--format", "json", "--out", out.path + "/plan.json"],
            stdoutPath: "/dev/full")
        #expect(r.status == 1, "\(r)")
        #expect(r.stderr.contains("cannot write the plan to standard output: No space left on device"), "\(r)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).isEmpty, "no plan, no temporary file")
    }

    @Test func unwritablePlanFileIsAnErrorAndLeavesNothing() throws {
        let dir = try TempDir()
        try dir.write("fixtures.json", Self.fixturePolicy)
        let file = CLI.fixtureDomains + "/live-running-chain.xml"
        let r = try CLI.run(["plan", "--policies", dir.path, "--domain-xml", file, "--out", dir.path + "/no/such/dir/plan.json"])
        #expect(r.status == 1, "\(r)")
        #expect(r.stderr.contains("cannot write plan to \(dir.path)/no/such/dir/plan.json: No such file or directory"), "\(r)")
        #expect(r.stderr.contains("hint:"), "\(r)")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/no"))
    }

    @Test func brokenPoliciesStopThePlan() throws {
        let dir = try TempDir()
        let bad = try dir.write("bad.json", #"{ "version": 2, "policies": [] }"#)
        let r = try CLI.run(["plan", "--policies", dir.path, "--domain-xml", CLI.fixtureDomains])
        #expect(r.status == 1, "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
        #expect(diagnosticLines(r.stderr, file: bad).count >= 1, "\(r)")
    }
}
