#!/usr/bin/env bash
# Benchmark: `virt-chain show` on a real libvirtd (docs/benchmarks.md, "show on a live host").
#
#   bash scripts/bench-show-live.sh [COUNT]   (default 50 guests; RUNS=10 WARMUP=2 MAX_LOAD=1.0 env overrides)
#
# Creates COUNT guests on qemu:///system (named vcbench-XXXXXX-gNN; half running, half shut off; chains 2–6 deep of
# small qcow2 overlays over raw bases, some bases shared by three guests) with `virt-chain-bench live-setup`,
# then compares in ONE hyperfine run:
#   virt-chain show --connect qemu:///system --format json DOMAINS...   (release build, the bench guests named)
#   a bash loop over the same guests: virsh dumpxml DOM + qemu-img info -U --backing-chain --output=json ACTIVE
# Targets: virt-chain show < 1 s, and ≥ 10× faster than the loop.
# Everything created is removed on exit (trap), by `virt-chain-bench live-teardown`, which removes exactly the
# domains and the directory recorded in the state file. Needs root (or libvirt access) and a running libvirtd.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${1:-50}"
URI=qemu:///system

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
build_products bench-show-live

prefix="vcbench-$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')-"   # unique per run
work="$(mktemp -d /tmp/vcbl.XXXXXX)"
state="$work/state.json"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -e "$state" ]; then
        "$bench" live-teardown --state "$state" ||
            { echo "bench-show-live: TEARDOWN FAILED; state kept in $state (run: $bench live-teardown --state $state)" >&2; exit 1; }
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bench" live-setup --count "$COUNT" --prefix "$prefix" --connect "$URI" --state "$state" >"$work/domains.txt"
mapfile -t domains <"$work/domains.txt"
[ "${#domains[@]}" -eq "$COUNT" ] || { echo "bench-show-live: setup made ${#domains[@]} guests" >&2; exit 1; }
echo "guests: ${#domains[@]} ($(virsh -c "$URI" list --name | grep -c "^$prefix") running)"

# The baseline: what an operator's script does per guest — the domain XML, then the image chain from qemu-img.
# The active image path is taken from the XML with a bash regex (no extra process).
cat >"$work/loop.sh" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
re="<source file='([^']*)'"
for dom in "$@"; do
    xml=$(virsh -c qemu:///system dumpxml "$dom")
    [[ $xml =~ $re ]] || { echo "no source file in $dom" >&2; exit 1; }
    qemu-img info -U --backing-chain --output=json "${BASH_REMATCH[1]}"
done
EOF

# Sanity: both sides see every guest and the same chain depths.
"$vc" show --connect "$URI" --format json "${domains[@]}" >"$work/show.json"
bash "$work/loop.sh" "${domains[@]}" >"$work/loop.out"
vc_layers=$(jq '[.domains[].disks[].chain | length] | add' "$work/show.json")
vc_domains=$(jq '.domains | length' "$work/show.json")
loop_layers=$(grep -c '"filename"' "$work/loop.out")
echo "virt-chain show: $vc_domains domains, $vc_layers layers; loop: $loop_layers layers"
[ "$vc_domains" -eq "$COUNT" ] && [ "$vc_layers" -eq "$loop_layers" ] ||
    { echo "bench-show-live: virt-chain and the loop disagree" >&2; exit 1; }

{
    machine_facts
    wait_for_low_load
} | tee "$results/show-live-machine.txt"

hyperfine -N --warmup "$WARMUP" --runs "$RUNS" \
    --export-json "$results/show-live.json" --export-markdown "$results/show-live.md" \
    -n "virt-chain show --format json ($COUNT guests)" "$vc show --connect $URI --format json ${domains[*]}" \
    -n "bash loop: virsh dumpxml + qemu-img info -U --backing-chain" "bash $work/loop.sh ${domains[*]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$results/show-live-machine.txt"

{
    echo
    echo "| command | mean ± σ (s) | median (s) | min (s) | max (s) |"
    echo "|---|---|---|---|---|"
    jq -r '.results[] | "| `\(.command)` | \(.mean*1000|round/1000) ± \(.stddev*1000|round/1000) | \(.median*1000|round/1000) | \(.min*1000|round/1000) | \(.max*1000|round/1000) |"' \
        "$results/show-live.json"
    mean=$(jq -r '.results[0].mean * 1000 | round / 1000' "$results/show-live.json")
    speedup=$(jq -r '(.results[1].mean / .results[0].mean) * 10 | round / 10' "$results/show-live.json")
    speedup_median=$(jq -r '(.results[1].median / .results[0].median) * 10 | round / 10' "$results/show-live.json")
    echo
    echo "virt-chain show mean $mean s (target < 1 s): $(awk -v m="$mean" 'BEGIN { print (m < 1.0 ? "MET" : "MISSED") }')"
    echo "loop/show speed-up ${speedup}× by mean, ${speedup_median}× by median (target ≥ 10×): $(awk -v s="$speedup" 'BEGIN { print (s >= 10 ? "MET" : "MISSED") }')"
} | tee "$results/show-live-summary.md"
