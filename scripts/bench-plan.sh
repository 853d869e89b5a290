#!/usr/bin/env bash
# Benchmark: planning (docs/benchmarks.md, "plan").
#
#   bash scripts/bench-plan.sh [COUNT]       (default 10000 domains; RUNS=10 ROUNDS=3 WARMUP=2 MAX_LOAD=1.0 env
#                                             overrides)
#
# 1. Side by side, over COUNT generated live domain XML files (the same files as scripts/bench-xml.sh), in ROUNDS
#    hyperfine runs whose command order alternates (times pooled; per-round ratios printed too):
#      xmllint --noout FILES...                                   (baseline; one process, the list passed by xargs)
#      virt-chain plan --policies P --domain-xml DIR --format json (load policies, parse, match, plan, render)
#    Target: plan/xmllint ≤ 1.0.
# 2. virt-chain-bench plan-only --disks 20000: Planner.plan alone on an in-memory inventory of 20,000 disks
#    (synthetic sizes, the same policy mix), median of RUNS_PLAN_ONLY runs in one process. Target < 100 ms.
# Results go to .build/bench-results/plan-*.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${1:-10000}"
ROUNDS="${ROUNDS:-3}"
RUNS_PLAN_ONLY="${RUNS_PLAN_ONLY:-15}"

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
build_products bench-plan

work="$(mktemp -d /tmp/vcbp.XXXXXX)"
trap 'rm -rf "$work"' EXIT
dir="$work/x"
"$bench" gen-xml "$dir" --count "$COUNT" | tee "$results/plan-gen.txt"

# The policy mix of `virt-chain-bench plan-only` (benchPolicies() in Benchmarks/main.swift), as a policy file.
mkdir -p "$work/policies"
cat >"$work/policies/bench.json" <<'EOF'
{
  "version": 1,
  "policies": [
    { "name": "web", "match": { "domains": ["bench-*0", "bench-*1", "bench-*2", "bench-*3"] }, "maxDepth": 4,
      "protect": ["/var/lib/libvirt/images/golden/*"] },
    { "name": "db", "match": { "domains": ["bench-*4", "bench-*5"] }, "flatten": "keep-base",
      "protect": ["/var/lib/libvirt/images/golden/*"] },
    { "name": "batch", "match": { "domains": ["bench-*6", "bench-*7"] }, "maxDepth": 8,
      "protect": ["/var/lib/libvirt/images/golden/*"], "storage": { "activeDir": "/var/lib/libvirt/images/fast" } },
    { "name": "archive", "match": { "domains": ["bench-*8"] }, "flatten": "full", "retired": "delete",
      "protect": ["/var/lib/libvirt/images/golden/*"] },
    { "name": "lab", "match": { "domains": ["bench-*9"] }, "protect": ["/var/lib/libvirt/images/golden/*"] }
  ]
}
EOF
"$vc" validate "$work/policies"

xmllint_file_list "$dir" "$work/files.txt" "$COUNT"

# One plan first: its exit status (0 nothing to do, 3 some disks blocked are both results; 1 is an error) and size.
plan_cmd=("$vc" plan --policies "$work/policies" --domain-xml "$dir" --format json)
set +e
"${plan_cmd[@]}" >"$work/plan.json" 2>"$work/plan.err"
plan_rc=$?
set -e
if [ "$plan_rc" -ne 0 ] && [ "$plan_rc" -ne 3 ]; then
    echo "bench-plan: virt-chain plan failed (exit $plan_rc):" >&2
    head -20 "$work/plan.err" >&2
    exit 1
fi
summary=$(jq -r '"\(.steps | length) steps, \(.blocked | length) blocked, \(.fingerprints | length) fingerprints"' "$work/plan.json")
echo "plan: exit $plan_rc; $summary; $(wc -c <"$work/plan.json") bytes of JSON" | tee "$results/plan-once.txt"
jq -r '.steps | group_by(.action) | map("  \(.[0].action): \(length)") | .[]' "$work/plan.json" | tee -a "$results/plan-once.txt"
ignore=()
[ "$plan_rc" -eq 3 ] && ignore=(-i)   # exit 3 (blocked disks) is a result, not a failure

{
    machine_facts
    wait_for_low_load
} | tee "$results/plan-machine.txt"

# ROUNDS hyperfine runs, the order of the two commands alternating: hyperfine times all runs of one command, then
# all of the other, so a machine whose speed drifts (a shared host) would favour whichever went first; alternating
# and pooling every round's times cancels that. Per-round ratios are printed too.
xmllint_name="xmllint --noout FILES ($COUNT files)"
plan_name="virt-chain plan --policies P --domain-xml DIR --format json"
for round in $(seq 1 "$ROUNDS"); do
    x=(-n "$xmllint_name" "xargs -s $xsize -a $work/files.txt xmllint --noout")
    p=(-n "$plan_name" "${plan_cmd[*]}")
    if [ $((round % 2)) -eq 1 ]; then order=("${x[@]}" "${p[@]}"); else order=("${p[@]}" "${x[@]}"); fi
    echo "round $round of $ROUNDS" >&2
    hyperfine -N "${ignore[@]}" --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$results/plan-round$round.json" "${order[@]}"
done
# Pooled: every run of every round, per command (xmllint first).
jq -s --arg x "$xmllint_name" --arg p "$plan_name" '
    def stats: (add / length) as $m | sort as $s
        | {mean: $m, median: $s[(length / 2) | floor], min: $s[0], max: $s[-1],
           stddev: ((map(. - $m | . * .) | add) / length | sqrt), runs: length};
    [.[].results[]] as $all
    | {results: [($x, $p) as $c | {command: $c} + ([$all[] | select(.command == $c) | .times[]] | stats)]}
' "$results"/plan-round*.json >"$results/plan.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$results/plan-machine.txt"
for round in $(seq 1 "$ROUNDS"); do
    jq -r --arg x "$xmllint_name" --arg round "$round" '
        (.results[] | select(.command == $x) | .mean) as $b
        | "round \($round): plan/xmllint \((.results[] | select(.command != $x) | .mean / $b) * 100 | round / 100)"
    ' "$results/plan-round$round.json"
done | tee "$results/plan-rounds.txt"

wait_for_low_load >/dev/null
"$bench" plan-only --disks 20000 --runs "$RUNS_PLAN_ONLY" | tee "$results/plan-only.txt"
plan_rss=$(/usr/bin/time -f '%M' "${plan_cmd[@]}" 2>&1 >/dev/null | tail -1)

{
    echo
    echo "All $ROUNDS rounds pooled ($((ROUNDS * RUNS)) runs per command):"
    echo
    echo "| command | mean ± σ (s) | median (s) | min … max (s) | ratio to xmllint (mean) | ratio (median) |"
    echo "|---|---|---|---|---|---|"
    jq -r '.results[0] as $b | .results[] |
        "| `\(.command)` | \(.mean*1000|round/1000) ± \(.stddev*1000|round/1000) | \(.median*1000|round/1000) | \(.min*1000|round/1000) … \(.max*1000|round/1000) | \((.mean/$b.mean)*100|round/100) | \((.median/$b.median)*100|round/100) |"' \
        "$results/plan.json"
    echo
    cat "$results/plan-rounds.txt"
    echo
    echo "peak RSS of virt-chain plan: $((plan_rss / 1024)) MiB"
    ratio=$(jq -r '(.results[1].mean / .results[0].mean) * 100 | round / 100' "$results/plan.json")
    echo "plan/xmllint ratio $ratio (target ≤ 1.0): $(awk -v r="$ratio" 'BEGIN { print (r <= 1.0 ? "MET" : "MISSED") }')"
    median=$(awk '/^plan-only-median-ms/ { print $2 }' "$results/plan-only.txt")
    echo "plan-only median $median ms for 20,000 disks (target < 100 ms): $(awk -v m="$median" 'BEGIN { print (m < 100 ? "MET" : "MISSED") }')"
} | tee "$results/plan-summary.md"
