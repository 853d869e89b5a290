import ChainCore

/// Plans in two passes: the first finds the disks that need a change; only their layers are then measured
/// (per-layer allocation maps) and the plan is made again with exact byte estimates.
public enum PlanBuilder {
    public static func build(
        inventory: inout Inventory, assignments: [DiskKey: Policy], config: HostConfig, policyDigest: String,
        measure: Bool
    ) -> Plan {
        var input = PlannerInput(inventory: inventory, assignments: assignments, config: config, freeSpace: [:])
        var plan = Planner.plan(input)
        let touched = Set(plan.steps.map { DiskKey(domain: $0.domain, disk: $0.disk) })
        // Without measurements (XML review) the second pass would see the same input: skip it.
        if measure && !touched.isEmpty {
            InventoryReader.measureAllocation(&inventory, disks: touched)
            input.inventory = inventory
            input.freeSpace = FreeSpace.directories(of: inventory, disks: touched, assignments: assignments)
            plan = Planner.plan(input)
        }
        plan.fingerprints["policies"] = policyDigest
        return plan
    }
}
