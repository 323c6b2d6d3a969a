#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each. Not part of CI (which only
# builds the targets, without a sanitizer; see .ci/run).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 600)
#
# Targets (fuzz/fuzz_targets/): the collectors' parsers (dpkg_status, apk_installed, cpuinfo,
# edid, mdstat, passwd, printers_conf, rpm_header, snap_state, flatpak_metainfo, pip_metadata,
# custom_facts), version_order (each package source's version order) and report_decode (the site's zstd + JSON decoding of a report, with the diff/apply/hash
# invariants of invsync-proto). Prints per target the executions and whether it crashed, and
# exits non-zero when any target crashed (or timed out on an input, or ran out of memory).
#
# Environment:
#   FUZZ_JOBS=2        targets run at the same time (default 1; the machines have 2 cores)
#   FUZZ_TARGETS="a b" a subset of the targets
#   FUZZ_SANITIZER=none  build without AddressSanitizer (see below)
#
# Toolchain: cargo-fuzz (`cargo install cargo-fuzz`) builds with `-Zsanitizer=address`, which
# only a nightly rustc accepts. The machines have stable Rust only, so this script sets
# RUSTC_BOOTSTRAP=1, which lets the stable compiler accept the -Z flags; the stable
# toolchain ships the AddressSanitizer runtime, so the default ASan build works:
#
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> -- -max_total_time=600
#
# `cargo fuzz run --sanitizer none <target>` passes no -Z flag and builds on plain stable
# without RUSTC_BOOTSTRAP (coverage-guided, panics and overflow checks still caught, no
# memory-error detection; only unsafe code would need ASan).
#
# The crate in fuzz/ is its own workspace (its Cargo.toml has a `[workspace]` table) and not
# a member of the root one. Its Cargo.lock is not kept: each run starts from the root
# Cargo.lock so the targets build against the dependency versions the project uses.
# Seeds are in fuzz/corpus/<target> (from tests/fixtures); what a run discovers goes to
# fuzz/work/<target> (ignored by git) and is reused by the next run; crashes go to
# fuzz/artifacts/<target>/. Reproduce one with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> artifacts/<target>/crash-…
# and minimise it with `cargo fuzz tmin <target> artifacts/<target>/crash-…`.
set -euo pipefail

seconds=${1:-600}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2
    exit 2
fi
jobs=${FUZZ_JOBS:-1}
read -r -a targets <<<"${FUZZ_TARGETS:-dpkg_status apk_installed cpuinfo edid mdstat passwd printers_conf rpm_header snap_state flatpak_metainfo pip_metadata custom_facts version_order report_decode}"
sanitizer=${FUZZ_SANITIZER:-address}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi

cp "$root/Cargo.lock" Cargo.lock
echo "Building the fuzz targets (sanitizer: $sanitizer)…"
cargo fuzz build --sanitizer "$sanitizer"

mkdir -p work
run_target() {
    local t=$1
    mkdir -p "work/$t" "artifacts/$t"
    # -timeout: an input that takes longer is reported (as a crash) instead of stalling
    # the run; -print_final_stats gives the execution count.
    set +e
    cargo fuzz run --sanitizer "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=60 -print_final_stats=1 \
        >"work/$t.log" 2>&1
    echo $? >"work/$t.rc"
    set -e
}

echo "Fuzzing ${targets[*]} for ${seconds} s each, $jobs at a time (logs in fuzz/work/)…"
start=$(date +%s)
for t in "${targets[@]}"; do
    rm -f "work/$t.rc"
    while (($(jobs -rp | wc -l) >= jobs)); do
        wait -n || true
    done
    echo "  $(date +%T) started $t"
    run_target "$t" &
done
wait

failed=0
printf '\n%-15s %14s %10s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
    log="work/$t.log"
    rc=$(cat "work/$t.rc" 2>/dev/null || echo "?")
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [[ -n $runs ]] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    [[ -n $runs ]] || runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [[ $rc == 0 ]]; then
        result="no crash"
    else
        failed=1
        kind=$(grep -o -m1 -E 'ERROR: (libFuzzer|AddressSanitizer): [a-z -]*[a-z]' "$log" || true)
        result="CRASH (exit $rc${kind:+, $kind})${artifact:+: $artifact}"
    fi
    printf '%-15s %14s %10s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "$result"
    if [[ $rc != 0 ]]; then
        grep -m1 -A3 "panicked at" "$log" | sed 's/^/    /' || true
    fi
done
echo "Wall time: $(($(date +%s) - start)) s"
exit $failed
