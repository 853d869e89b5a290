#!/usr/bin/env bash
# Shared helpers of the benchmark scripts (sourced, not run): common settings, machine facts, waiting for a quiet
# machine, release builds that retry when sources change during the build, and the xmllint file list.

# Settings every script takes from the environment, and where results go.
RUNS="${RUNS:-10}"
WARMUP="${WARMUP:-2}"
MAX_LOAD="${MAX_LOAD:-1.0}"
LOAD_WAIT="${LOAD_WAIT:-600}"
results=.build/bench-results
mkdir -p "$results"

machine_facts() {
    echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc:    $(nproc)"
    echo "cpu:      $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
    echo "swift:    $(swift --version 2>/dev/null | head -1)"
    echo "libvirt:  $(virsh -c qemu:///system version 2>/dev/null | grep -E 'Using library|Running hypervisor' | sed 's/^ *//' | paste -sd ';' || echo n/a)"
    echo "qemu-img: $(qemu-img --version 2>/dev/null | head -1)"
    echo "xmllint:  $(xmllint --version 2>&1 | head -1)"
    echo "hyperfine: $(hyperfine --version)"
    echo "kvm:      $([ -e /dev/kvm ] && echo yes || echo no)"
}

# Waits (up to LOAD_WAIT seconds) until the 1-minute load average is below MAX_LOAD; prints the load either way.
wait_for_low_load() {
    local waited=0
    while awk -v max="$MAX_LOAD" '{ exit !($1 >= max) }' /proc/loadavg && [ "$waited" -lt "$LOAD_WAIT" ]; do
        [ $((waited % 60)) -eq 0 ] && echo "bench: load $(cut -d' ' -f1-3 /proc/loadavg) ≥ $MAX_LOAD, waiting…" >&2
        sleep 5
        waited=$((waited + 5))
    done
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"
}

# Each product on its own; retried when a source file changed during the build (others editing the tree).
build() {
    local attempt log
    log="$(mktemp)"
    for attempt in 1 2 3 4 5; do
        if swift build -c release --product "$1" >"$log" 2>&1; then rm -f "$log"; return 0; fi
        grep -q 'modified during the build' "$log" || break
        echo "bench: sources changed during the build of $1, retrying ($attempt)" >&2
        sleep 20
    done
    cat "$log" >&2
    rm -f "$log"
    return 1
}

# Builds both release products and sets $bench and $vc to them. $1: the script's name, for the log.
build_products() {
    echo "$1: building release products" >&2
    build virt-chain-bench
    build virt-chain
    bench="$PWD/.build/release/virt-chain-bench"
    vc="$PWD/.build/release/virt-chain"
}

# Lists the COUNT files of DIR in $2 and sets $xsize: an xargs buffer large enough for ONE xmllint process over
# every file (the list is too long for one hyperfine argument, 128 KiB); fails if xargs would still split it.
# $1: DIR, $2: the list file, $3: COUNT.
xmllint_file_list() {
    ls "$1" | sed "s|^|$1/|" >"$2"
    xsize=$(( $(getconf ARG_MAX) - 65536 ))
    local invocations
    invocations=$(xargs -s "$xsize" -a "$2" sh -c 'echo $#' sh)
    [ "$invocations" = "$3" ] || { echo "bench: xargs would split the xmllint run ($invocations)" >&2; exit 1; }
}
