// A model of a backing chain that plan steps can be applied to: data per layer, guest-visible content identity,
// and the safety flags a step must respect. Used by the property tests and available to anyone checking a plan.

/// One image in a simulated chain.
public struct SimLayer: Hashable, Sendable {
    /// Canonical path (or key for non-local sources).
    public var path: String
    public var kind: SourceKind
    /// Guest ranges holding data in this layer alone.
    public var data: ExtentSet
    /// Content identity: original image that wrote the data → the ranges of `data` holding it.
    public var origins: [String: ExtentSet]
    /// Neither protected nor effectively shared: may receive a commit or pull, be merged away by a commit, be
    /// rebased or moved by a copy, be the image right above a commit (which rewrites its backing reference).
    public var writable: Bool
    /// Inside `HostConfig.allowedRoots`.
    public var inAllowedRoots: Bool

    public init(path: String, kind: SourceKind = .file, data: ExtentSet, writable: Bool = true,
                inAllowedRoots: Bool = true) {
        self.path = path
        self.kind = kind
        self.data = data
        self.origins = data.isEmpty ? [:] : [path: data]
        self.writable = writable
        self.inAllowedRoots = inAllowedRoots
    }

    /// May receive a commit: writable, a file, inside the allowed roots.
    public var isCommitTarget: Bool { writable && inAllowedRoots && kind == .file }
    /// May receive a pull as the active image.
    public var isPullTarget: Bool { writable && inAllowedRoots && (kind == .file || kind == .block) }
    /// May be copied (moved) to another directory.
    public var isCopySource: Bool { writable && kind == .file }
}

/// A simulated chain, active first.
public struct SimChain: Hashable, Sendable {
    public var layers: [SimLayer]

    public init(layers: [SimLayer]) { self.layers = layers }

    /// A chain built from an observed one. Layers without a measured allocation get disjoint synthetic extents of
    /// `dataBytes` bytes (the planner's estimate). `writable[i]`/`inAllowedRoots[i]` default to true.
    public init(chain: Chain, writable: [Bool]? = nil, inAllowedRoots: [Bool]? = nil) {
        let extents = EstimatedExtents.extents(for: chain.layers)
        layers = chain.layers.enumerated().map { index, layer in
            SimLayer(
                path: layer.source.path ?? layer.key, kind: layer.source.kind, data: extents[index],
                writable: writable?[index] ?? true, inAllowedRoots: inAllowedRoots?[index] ?? true)
        }
    }

    public var paths: [String] { layers.map(\.path) }

    /// Guest-visible content: for every original image, the guest ranges whose bytes come from it.
    public func resolve() -> [String: ExtentSet] {
        guard var content = layers.last?.origins else { return [:] }
        for layer in layers.dropLast().reversed() {
            content = ChainSimulator.overlay(layer.origins, layer.data, onto: content)
        }
        return content
    }
}

public enum ChainSimulator {
    /// The chain after `step`, or nil if the step does not apply (its expected chain differs, an image it names is
    /// missing, or it would write, merge away or move an image that is not writable — a non-active commit writes the
    /// header of the image above its top).
    public static func apply(_ step: Step, to chain: SimChain) -> SimChain? {
        transition(step, chain)?.chain
    }

    /// Bytes `step` writes on `chain`, or nil if it does not apply.
    public static func cost(of step: Step, on chain: SimChain) -> UInt64? {
        transition(step, chain)?.bytes
    }

    /// `upper` (with its data ranges) laid over `lower`: upper wins where it holds data.
    public static func overlay(
        _ upper: [String: ExtentSet], _ upperData: ExtentSet, onto lower: [String: ExtentSet]
    ) -> [String: ExtentSet] {
        var out: [String: ExtentSet] = [:]
        for (origin, ranges) in lower {
            let rest = ranges.subtracting(upperData)
            if !rest.isEmpty { out[origin] = rest }
        }
        for (origin, ranges) in upper where !ranges.isEmpty {
            out[origin] = out[origin].map { $0.union(ranges) } ?? ranges
        }
        return out
    }

    /// Layers `from..<to` merged into one (topmost wins), keeping the identity of `into`'s metadata.
    private static func merge(_ layers: ArraySlice<SimLayer>, into target: SimLayer) -> SimLayer {
        var result = target
        for layer in layers.reversed() {
            result.origins = overlay(layer.origins, layer.data, onto: result.origins)
            result.data = result.data.union(layer.data)
        }
        return result
    }

    private static func union(_ layers: ArraySlice<SimLayer>) -> ExtentSet {
        layers.reduce(ExtentSet()) { $0.union($1.data) }
    }

    public static func transition(_ step: Step, _ chain: SimChain) -> (chain: SimChain, bytes: UInt64)? {
        let paths = chain.paths
        if !step.expectBefore.isEmpty && step.expectBefore != paths { return nil }
        let layers = chain.layers
        switch step.action {
        case .commit:
            guard let topPath = step.top, let basePath = step.base, let t = paths.firstIndex(of: topPath),
                let b = paths.firstIndex(of: basePath), t < b
            else { return nil }
            guard layers[b].isCommitTarget, layers[t..<b].allSatisfy(\.writable) else { return nil }
            // A non-active commit rewrites the backing reference in the header of the image above `top`.
            if t > 0 && !layers[t - 1].writable { return nil }
            let bytes = union(layers[t..<b]).byteCount
            let merged = merge(layers[t..<b], into: layers[b])
            var out = Array(layers[0..<t])
            out.append(merged)
            out.append(contentsOf: layers[(b + 1)...])
            return (SimChain(layers: out), bytes)
        case .pull:
            guard let topPath = step.top, paths.first == topPath else { return nil }
            var bIndex = layers.count
            if let basePath = step.base {
                guard let b = paths.firstIndex(of: basePath), b >= 2 else { return nil }
                bIndex = b
            }
            guard layers.count >= 2, bIndex >= 2, layers[0].isPullTarget else { return nil }
            let pulled = union(layers[1..<bIndex])
            let bytes = pulled.subtracting(layers[0].data).byteCount
            var active = layers[0]
            let below = merge(layers[1..<bIndex], into: empty())
            active.origins = overlay(active.origins, active.data, onto: below.origins)
            active.data = active.data.union(pulled)
            return (SimChain(layers: [active] + Array(layers[bIndex...])), bytes)
        case .copy:
            guard let topPath = step.top, paths.first == topPath, let destination = step.destination,
                !paths.contains(destination), layers[0].isCopySource
            else { return nil }
            var bIndex = layers.count
            if let basePath = step.base {
                guard paths.count >= 2, paths[1] == basePath else { return nil }
                bIndex = 1
            }
            var copy = merge(layers[0..<bIndex], into: empty())
            copy.path = destination
            copy.kind = .file
            copy.writable = true
            copy.inAllowedRoots = true
            return (SimChain(layers: [copy] + Array(layers[bIndex...])), copy.data.byteCount)
        case .rebase:
            guard let topPath = step.top, let t = paths.firstIndex(of: topPath), layers[t].writable,
                layers[t].inAllowedRoots
            else { return nil }
            if let basePath = step.base, t + 1 >= paths.count || paths[t + 1] != basePath { return nil }
            return (chain, 0)
        case .deleteImage:
            guard let topPath = step.top, !paths.contains(topPath) else { return nil }
            return (chain, 0)
        case .metadataDelete:
            return (chain, 0)
        }
    }

    private static func empty() -> SimLayer { SimLayer(path: "", data: ExtentSet()) }
}
