#!/usr/bin/env bash
# Benchmark: parsing live domain XML dumps (docs/benchmarks.md, "XML parsing").
#
#   bash scripts/bench-xml.sh [COUNT]        (default 10000 domains; RUNS=10 WARMUP=2 MAX_LOAD=1.0 env overrides)
#
# Generates COUNT live domain XML files (two disks each, chains 1–16 deep, ~50 MB for 10,000) into a temporary
# directory and compares, in ONE hyperfine run:
#   xmllint            xmllint --noout FILES...                          (the baseline: well-formedness check only;
#                                                                         one process, the list passed by xargs)
#   parse              virt-chain-bench parse DIR                         (parse + model + reference index)
#   show               virt-chain show --domain-xml DIR --format json     (end to end, output discarded; extra info)
# Targets: parse/xmllint ≤ 1.0; peak RSS of the parse ≤ 300 MB.
# Results (hyperfine JSON + markdown, summary) go to .build/bench-results/xml-*.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${1:-10000}"

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
build_products bench-xml

work="$(mktemp -d /tmp/vcbx.XXXXXX)"
trap 'rm -rf "$work"' EXIT
dir="$work/x"   # short path: the xmllint command line lists every file
"$bench" gen-xml "$dir" --count "$COUNT" | tee "$results/xml-gen.txt"
du -sh --apparent-size "$dir" | sed 's/^/size on disk (apparent): /'

# Sanity: both accept every file (hyperfine would hide failures of a command that exits 0 on bad input).
xmllint --noout "$dir"/*.xml
"$bench" parse "$dir" | tee "$results/xml-parse-once.txt"
grep -q ' 0 errors ' "$results/xml-parse-once.txt" || { echo "bench-xml: parse reported errors" >&2; exit 1; }

# The file list is too long for one hyperfine argument (128 KiB per argument), so xmllint gets it through xargs,
# with a buffer large enough for ONE xmllint process over every file (checked here).
xmllint_file_list "$dir" "$work/files.txt" "$COUNT"

{
    machine_facts
    wait_for_low_load
} | tee "$results/xml-machine.txt"

hyperfine -N --warmup "$WARMUP" --runs "$RUNS" \
    --export-json "$results/xml.json" --export-markdown "$results/xml.md" \
    -n "xmllint --noout FILES ($COUNT files)" "xargs -s $xsize -a $work/files.txt xmllint --noout" \
    -n "virt-chain-bench parse DIR" "$bench parse $dir" \
    -n "virt-chain show --domain-xml DIR --format json" "$vc show --domain-xml $dir --format json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$results/xml-machine.txt"

# Peak RSS of the parse (kernel's accounting via GNU time; the bench also prints getrusage's figure).
rss_kb() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
parse_rss=$(rss_kb "$bench" parse "$dir")
show_rss=$(rss_kb "$vc" show --domain-xml "$dir" --format json)
xmllint_rss=$(rss_kb xargs -s "$xsize" -a "$work/files.txt" xmllint --noout)

{
    echo
    echo "| command | mean ± σ (s) | median (s) | ratio to xmllint (mean) | ratio (median) |"
    echo "|---|---|---|---|---|"
    jq -r '.results[0] as $b | .results[] |
        "| `\(.command)` | \(.mean*1000|round/1000) ± \(.stddev*1000|round/1000) | \(.median*1000|round/1000) | \((.mean/$b.mean)*100|round/100) | \((.median/$b.median)*100|round/100) |"' \
        "$results/xml.json"
    echo
    echo "peak RSS: virt-chain-bench parse $((parse_rss / 1024)) MiB (target ≤ 300 MB); virt-chain show $((show_rss / 1024)) MiB; xmllint $((xmllint_rss / 1024)) MiB"
    ratio=$(jq -r '(.results[1].mean / .results[0].mean) * 100 | round / 100' "$results/xml.json")
    echo "parse/xmllint ratio $ratio (target ≤ 1.0): $(awk -v r="$ratio" 'BEGIN { print (r <= 1.0 ? "MET" : "MISSED") }')"
    echo "peak RSS $((parse_rss / 1024)) MiB (target ≤ 300): $([ "$parse_rss" -le $((300 * 1024)) ] && echo MET || echo MISSED)"
} | tee "$results/xml-summary.md"
