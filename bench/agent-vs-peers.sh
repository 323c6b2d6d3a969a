#!/usr/bin/env bash
# bench/agent-vs-peers.sh: invagent against Debian's inventory agents, on this machine.
#
# What it measures: a full local hardware + software inventory, without any server, by
#   - FusionInventory (Debian package fusioninventory-agent):
#       fusioninventory-agent --local DIR    (all default categories: the full inventory)
#   - OCS Inventory NG (Debian package ocsinventory-agent):
#       ocsinventory-agent --local=DIR
#   - invagent (this repository, release build):
#       invagent inventory hw --root / --json  and  invagent inventory sw --root / --json,
#       output to /dev/null. invagent has no single command for both classes, so each run
#       is the two processes one after the other: wall and CPU are their sums, peak RSS the
#       larger of the two.
# For each run: wall time, CPU time (user + system) and peak RSS (maximum resident set
# size). Like GNU time, these come from wait4(2) on the started process, so CPU time
# includes every subprocess it waited for (dmidecode, lspci, dpkg-query...) and peak RSS
# is that of the largest single process of the tree (not a sum).
#
# How: a 30-line C helper (compiled with cc into a temporary directory) forks, execs and
# wait4()s the command and prints exit status, wall time (CLOCK_MONOTONIC) and the
# rusage to microsecond resolution. GNU /usr/bin/time -f '%e %U %S %M' gives the same
# figures but prints times to 10 ms, too coarse for invagent's few milliseconds, so it
# is used only when there is no C compiler (the output then says so). Runs are
# interleaved (round 1: each tool once, round 2: each tool once...) so that other load
# on the machine spreads over all tools alike. Round 0 is a warm-up whose figures are
# discarded. Every run is checked: exit status 0, and for the peers an XML inventory of
# at least 20 KB holding a <HARDWARE> section and at least 90 % as many <SOFTWARES>
# entries as dpkg has installed packages; invagent's warm-up output is checked the same
# way (item counts), so a tool that fails quickly is never reported as fast. A baseline
# row, /bin/true started the same way, shows the floor of the method.
#
# Setup: installs fusioninventory-agent and ocsinventory-agent with apt-get
# (--no-install-recommends, DEBIAN_FRONTEND=noninteractive) if they are missing, plus
# dmidecode and hdparm: both peers list them in Recommends and call them during a full
# inventory, so a default installation has them. A peer that cannot be installed (no
# network, not root, no such package) is reported with the reason and the others are
# still measured. Builds target/release/invagent (cargo build --release -p invsync-cli
# --bin invagent) if it is missing.
#
# Usage: bench/agent-vs-peers.sh [--runs N] [--markdown | --json] [--no-install]
#                                [--invagent PATH]
# Progress goes to stderr, the result to stdout.

set -euo pipefail

RUNS=7
FORMAT=text
INSTALL=1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INVAGENT=$REPO/target/release/invagent

usage() {
    sed -n '/^# Usage:/,/^# Progress/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    cat <<'EOF'

  --runs N         measured runs per tool, after one discarded warm-up run (default 7)
  --markdown       print the result as a markdown table (for BENCHMARKS.md)
  --json           print the result as JSON, with every run's figures
  --no-install     do not apt-get install missing peers (measure what is there)
  --invagent PATH  the invagent binary to measure (default target/release/invagent,
                   built if missing)
EOF
}

die() {
    printf 'agent-vs-peers: %s\n' "$*" >&2
    exit 2
}

log() {
    printf '%s\n' "$*" >&2
}

while (($#)); do
    case $1 in
        --runs) (($# >= 2)) || die "--runs needs a number"; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --markdown) FORMAT=markdown; shift ;;
        --json) FORMAT=json; shift ;;
        --no-install) INSTALL=0; shift ;;
        --invagent) (($# >= 2)) || die "--invagent needs a path"; INVAGENT=$2; shift 2 ;;
        --invagent=*) INVAGENT=${1#--invagent=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive whole number, not '$RUNS'"

WORK=$(mktemp -d /tmp/agent-vs-peers.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------------
# Notes collected along the way, printed with the result.
NOTES=()
note() {
    NOTES+=("$*")
    log "note: $*"
}

# ---------------------------------------------------------------------------------------
# The measuring helper.

METHOD=
setup_measure() {
    if command -v cc > /dev/null 2>&1; then
        cat > "$WORK/runstat.c" <<'EOF'
/* runstat RESULT-FILE COMMAND [ARG...]: run COMMAND, write to RESULT-FILE
 * "exit-status wall-s user-s sys-s maxrss-KB" (wait4 rusage, as GNU time reports it). */
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: runstat RESULT-FILE COMMAND [ARG...]\n");
        return 2;
    }
    FILE *out = fopen(argv[1], "we");
    if (!out) { perror(argv[1]); return 2; }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 2; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    fprintf(out, "%d %.6f %ld.%06ld %ld.%06ld %ld\n", code, wall,
            (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
            (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec, ru.ru_maxrss);
    return fclose(out) == 0 ? 0 : 2;
}
EOF
        if cc -O2 -o "$WORK/runstat" "$WORK/runstat.c" 2> "$WORK/runstat.err"; then
            METHOD=runstat
            return
        fi
        log "$(cat "$WORK/runstat.err")"
    fi
    if [[ ! -x /usr/bin/time ]] && ((INSTALL)); then
        apt_install time || true
    fi
    [[ -x /usr/bin/time ]] || die "neither a C compiler nor GNU time (/usr/bin/time) is available"
    METHOD=gnu-time
    note "no C compiler: measured with GNU /usr/bin/time, whose times have 10 ms resolution"
}

# measure RESULT-FILE STDOUT-FILE STDERR-FILE COMMAND [ARG...]
# Writes "exit-status wall-s user-s sys-s maxrss-KB" to RESULT-FILE.
measure() {
    local res=$1 out=$2 err=$3
    shift 3
    if [[ $METHOD == runstat ]]; then
        "$WORK/runstat" "$res" "$@" > "$out" 2> "$err"
    else
        /usr/bin/time -f '%x %e %U %S %M' -o "$res" "$@" > "$out" 2> "$err" || true
    fi
}

# ---------------------------------------------------------------------------------------
# Installation.

APT_UPDATED=0
# apt_install PACKAGE...: install what is missing; on failure log why and return 1.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f '${Status}' "$pkg" 2> /dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if ((EUID != 0)); then
        note "cannot install ${missing[*]}: not root"
        return 1
    fi
    if ! command -v apt-get > /dev/null 2>&1; then
        note "cannot install ${missing[*]}: no apt-get"
        return 1
    fi
    log "installing ${missing[*]}"
    local candidate
    for pkg in "${missing[@]}"; do
        candidate=$(apt-cache policy "$pkg" 2> /dev/null | awk '/Candidate:/ {print $2}' || true)
        if [[ -z $candidate || $candidate == "(none)" ]] && ((!APT_UPDATED)); then
            log "no candidate for $pkg; running apt-get update"
            apt-get update -q > "$WORK/apt-update.log" 2>&1 || true
            APT_UPDATED=1
        fi
    done
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" > "$WORK/apt.log" 2>&1; then
        note "apt-get install ${missing[*]} failed: $(grep -E '^(E|W):' "$WORK/apt.log" | head -3 | tr '\n' ' ')"
        return 1
    fi
}

installed() {
    dpkg-query -W -f '${Status}' "$1" 2> /dev/null | grep -q 'install ok installed'
}

pkg_version() {
    dpkg-query -W -f '${Version}' "$1" 2> /dev/null || echo '?'
}

# ---------------------------------------------------------------------------------------
# The tools. Each has a run function (one measured run, figures appended to its file) and
# is dropped with a reason if a run fails or its output does not look like a full
# inventory.

TOOLS=()             # active tools, in run order
declare -A VERSION   # tool -> version string
declare -A DROPPED   # tool -> why it was not measured
declare -A LABEL     # tool -> name in the table
DPKG_COUNT=$(dpkg-query -W -f '${db:Status-Abbrev}\n' 2> /dev/null | grep -c '^ii' || true)
MIN_SW=$((DPKG_COUNT * 9 / 10))

declare -A OUT_DESC  # tool -> what its (last checked) output held
WHY=                 # why the last check failed

# check_xml TOOL DIR: one XML inventory file, >= 20 KB, <HARDWARE>, enough <SOFTWARES>.
check_xml() {
    local tool=$1 dir=$2 files=() f n size sw
    for f in "$dir"/*; do
        [[ -e $f ]] && files+=("$f")
    done
    n=${#files[@]}
    if ((n != 1)) || [[ ! -f ${files[0]} ]]; then
        WHY="expected one inventory file in its --local directory, found $n"
        return 1
    fi
    size=$(stat -c %s "${files[0]}")
    sw=$(grep -c '<SOFTWARES>' "${files[0]}" || true)
    if ((size < 20000)); then
        WHY="inventory file is only $size bytes"
        return 1
    fi
    if ! grep -q '<HARDWARE>' "${files[0]}"; then
        WHY="inventory file has no <HARDWARE> section"
        return 1
    fi
    if ((sw < MIN_SW)); then
        WHY="inventory lists $sw software entries, dpkg has $DPKG_COUNT packages"
        return 1
    fi
    OUT_DESC[$tool]="$size B XML, $sw software entries"
}

# run_fusion / run_ocs ROUND: one run writing its XML into a fresh directory.
run_fusion() {
    local round=$1 dir=$WORK/fusion.$1
    mkdir -p "$dir"
    measure "$WORK/res" "$WORK/fusion.out" "$WORK/fusion.err" fusioninventory-agent --local "$dir"
    finish_peer fusion "$round" "$dir"
}

run_ocs() {
    local round=$1 dir=$WORK/ocs.$1
    mkdir -p "$dir"
    measure "$WORK/res" "$WORK/ocs.out" "$WORK/ocs.err" ocsinventory-agent --local="$dir"
    finish_peer ocs "$round" "$dir"
}

# finish_peer TOOL ROUND DIR: check the run, record "wall cpu rss" for measured rounds.
finish_peer() {
    local tool=$1 round=$2 dir=$3 rc wall user sys rss
    read -r rc wall user sys rss < "$WORK/res"
    if ((rc != 0)); then
        drop "$tool" "exit status $rc in round $round: $(tail -n 3 "$WORK/$tool.err" | tr '\n' ' ')"
        return
    fi
    if ! check_xml "$tool" "$dir"; then
        drop "$tool" "round $round: $WHY"
        return
    fi
    # The warm-up's inventory is kept for the count of what each tool collects.
    ((round == 0)) && cp "$dir"/* "$WORK/$tool.xml"
    rm -rf "$dir"
    record "$tool" "$round" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.6f", u + s}')" "$rss"
}

run_invagent() {
    local round=$1 class rc wall user sys rss out
    local total_wall=0 total_cpu=0 max_rss=0
    for class in hw sw; do
        # The warm-up keeps the output to check it; measured runs print to /dev/null.
        out=/dev/null
        ((round == 0)) && out=$WORK/invagent.$class.json
        measure "$WORK/res" "$out" "$WORK/invagent.err" \
            "$INVAGENT" inventory "$class" --root / --json
        read -r rc wall user sys rss < "$WORK/res"
        if ((rc != 0)); then
            drop invagent "invagent inventory $class: exit status $rc in round $round: $(tail -n 3 "$WORK/invagent.err" | tr '\n' ' ')"
            return
        fi
        record "invagent-$class" "$round" "$wall" \
            "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.6f", u + s}')" "$rss"
        total_wall=$(awk -v a="$total_wall" -v b="$wall" 'BEGIN {printf "%.6f", a + b}')
        total_cpu=$(awk -v a="$total_cpu" -v u="$user" -v s="$sys" 'BEGIN {printf "%.6f", a + u + s}')
        ((rss > max_rss)) && max_rss=$rss
    done
    if ((round == 0)) && ! check_invagent; then
        drop invagent "$WHY"
        return
    fi
    record invagent "$round" "$total_wall" "$total_cpu" "$max_rss"
}

# invagent's JSON: { "class", "hash", "items": { key: { attr: value } }, "warnings" }.
# Items are counted as the keys two levels deep; checked against dpkg like the peers.
check_invagent() {
    local hw sw size
    hw=$(json_item_count "$WORK/invagent.hw.json")
    sw=$(json_item_count "$WORK/invagent.sw.json")
    size=$(($(stat -c %s "$WORK/invagent.hw.json") + $(stat -c %s "$WORK/invagent.sw.json")))
    if ((hw < 1)); then
        WHY="invagent inventory hw reported no items"
        return 1
    fi
    if ((sw < MIN_SW)); then
        WHY="invagent inventory sw reported $sw items, dpkg has $DPKG_COUNT packages"
        return 1
    fi
    OUT_DESC[invagent]="$size B JSON, $hw hw items, $sw sw items"
}

json_item_count() {
    if command -v jq > /dev/null 2>&1; then
        jq '.items | length' "$1"
    else
        # serde_json's pretty printer: items' keys are the lines '    "key": {'.
        grep -c '^    "[^"]*": {' "$1" || true
    fi
}

run_true() {
    local round=$1 rc wall user sys rss
    measure "$WORK/res" /dev/null /dev/null true
    read -r rc wall user sys rss < "$WORK/res"
    record baseline "$round" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.6f", u + s}')" "$rss"
}

# record NAME ROUND WALL-S CPU-S RSS-KB (round 0, the warm-up, is not kept)
record() {
    (($2 > 0)) || return 0
    printf '%s %s %s\n' "$3" "$4" "$5" >> "$WORK/runs.$1"
}

drop() {
    DROPPED[$1]=$2
    note "$1 not measured: $2"
    local t kept=()
    for t in "${TOOLS[@]}"; do
        [[ $t == "$1" ]] || kept+=("$t")
    done
    TOOLS=("${kept[@]}")
}

# ---------------------------------------------------------------------------------------
# Setup.

setup_measure

if ((INSTALL)); then
    # Recommended by both peers and called by their hardware modules.
    apt_install dmidecode hdparm || true
    for pkg in fusioninventory-agent ocsinventory-agent; do
        installed "$pkg" || apt_install "$pkg" || true
    done
fi
# Install state changes the package count the checks compare against.
DPKG_COUNT=$(dpkg-query -W -f '${db:Status-Abbrev}\n' 2> /dev/null | grep -c '^ii' || true)
MIN_SW=$((DPKG_COUNT * 9 / 10))

LABEL[fusion]="FusionInventory (fusioninventory-agent --local)"
LABEL[ocs]="OCS Inventory (ocsinventory-agent --local)"
LABEL[invagent]="invagent inventory hw + sw"
LABEL[invagent-hw]="  of which invagent inventory hw"
LABEL[invagent-sw]="  of which invagent inventory sw"
LABEL[baseline]="baseline: /bin/true"

for pair in fusion:fusioninventory-agent ocs:ocsinventory-agent; do
    tool=${pair%%:*}
    pkg=${pair#*:}
    if installed "$pkg" && command -v "$pkg" > /dev/null 2>&1; then
        TOOLS+=("$tool")
        VERSION[$tool]="$pkg $(pkg_version "$pkg")"
    else
        DROPPED[$tool]="package $pkg is not installed"
        note "$tool not measured: package $pkg is not installed"
    fi
done

if [[ ! -x $INVAGENT && $INVAGENT == "$REPO/target/release/invagent" ]]; then
    log "building $INVAGENT"
    if ! (cd "$REPO" && cargo build --release -p invsync-cli --bin invagent >&2); then
        note "cargo build of invagent failed"
    fi
fi
if [[ -x $INVAGENT ]]; then
    TOOLS+=(invagent)
    if [[ $INVAGENT == "$REPO/target/release/invagent" ]]; then
        built_from=$(git -C "$REPO" rev-parse --short HEAD 2> /dev/null || echo '?')
        if [[ -n $(git -C "$REPO" status --porcelain -- crates Cargo.toml Cargo.lock 2> /dev/null) ]]; then
            built_from+=" + uncommitted changes"
        fi
    else
        built_from=$INVAGENT
    fi
    VERSION[invagent]="$("$INVAGENT" --version 2> /dev/null | head -n 1 || echo invagent) ($built_from)"
else
    DROPPED[invagent]="no binary at $INVAGENT"
    note "invagent not measured: no binary at $INVAGENT"
fi
VERSION[invagent-hw]=
VERSION[invagent-sw]=
VERSION[baseline]="coreutils $(pkg_version coreutils)"

have_tool() {
    local t
    for t in "${TOOLS[@]}"; do
        [[ $t == "$1" ]] && return 0
    done
    return 1
}

tool_present() {
    if command -v "$1" > /dev/null 2>&1; then echo yes; else echo no; fi
}

# ---------------------------------------------------------------------------------------
# Machine and runs.

DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
NPROC=$(nproc)
KERNEL=$(uname -r)
OS="Debian $(cat /etc/debian_version 2> /dev/null || echo '?')"
MEM=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
COLLECTORS="dmidecode $(tool_present dmidecode), lshw $(tool_present lshw), hdparm $(tool_present hdparm), lspci $(tool_present lspci), lsusb $(tool_present lsusb)"
if [[ ! -d /sys/firmware/dmi ]]; then
    note "no /sys/firmware/dmi on this machine (a VM without SMBIOS): dmidecode finds no table and no tool reports BIOS or system"
fi

log "measuring ${TOOLS[*]} baseline: 1 warm-up + $RUNS runs each, interleaved"
for ((round = 0; round <= RUNS; round++)); do
    if ((round == 0)); then log "round 0 (warm-up)"; else log "round $round/$RUNS"; fi
    for tool in "${TOOLS[@]}"; do
        "run_$tool" "$round"
    done
    run_true "$round"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------
# Statistics and output.

# stats FILE COLUMN -> "median min max" (column 1 wall s, 2 CPU s, 3 RSS KB)
stats() {
    awk -v c="$2" '{print $c}' "$1" | sort -g | awk '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.6f %.6f %.6f\n", m, v[1], v[NR]
        }'
}

# Formatting: times in ms (one decimal below 100 ms), RSS in MiB.
fmt_ms() {
    awk -v s="$1" 'BEGIN { ms = s * 1000; if (ms < 100) printf "%.1f", ms; else printf "%.0f", ms }'
}
fmt_mib() {
    awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}
fmt_time_cell() {
    local med min max
    read -r med min max <<< "$1"
    printf '%s ms (%s–%s)' "$(fmt_ms "$med")" "$(fmt_ms "$min")" "$(fmt_ms "$max")"
}
fmt_rss_cell() {
    local med min max
    read -r med min max <<< "$1"
    printf '%s MiB (%s–%s)' "$(fmt_mib "$med")" "$(fmt_mib "$min")" "$(fmt_mib "$max")"
}

ROWS=()
for tool in fusion ocs invagent invagent-hw invagent-sw baseline; do
    case $tool in
        invagent-*) have_tool invagent || continue ;;
        baseline) ;;
        *) have_tool "$tool" || continue ;;
    esac
    [[ -s $WORK/runs.$tool ]] && ROWS+=("$tool")
done

goal_line() {
    have_tool invagent || return 0
    local wall rss
    wall=$(stats "$WORK/runs.invagent" 1 | cut -d' ' -f1)
    rss=$(stats "$WORK/runs.invagent" 3 | cut -d' ' -f3)
    awk -v w="$wall" -v r="$rss" 'BEGIN {
        printf "invagent hw + sw against the goal (<= 20 ms wall, <= 10 MB peak RSS): median wall %.1f ms (%s), largest peak RSS %.1f MiB (%s)\n",
            w * 1000, (w <= 0.020 ? "within" : "OVER"), r / 1024, (r <= 10 * 1000 * 1000 / 1024 ? "within" : "OVER")
    }'
}

method_text() {
    if [[ $METHOD == runstat ]]; then
        echo "fork/exec/wait4 helper (CLOCK_MONOTONIC wall, rusage user+sys CPU and ru_maxrss)"
    else
        echo "GNU /usr/bin/time -f '%e %U %S %M' (10 ms resolution)"
    fi
}

print_text() {
    printf 'Agent vs peers: full local hw + sw inventory, %d measured runs per tool after 1 discarded warm-up, interleaved\n' "$RUNS"
    printf 'date:       %s\n' "$DATE"
    printf 'machine:    %s CPUs (nproc), %s, %s RAM, kernel %s, %s\n' "$NPROC" "$CPU_MODEL" "$MEM" "$KERNEL" "$OS"
    printf 'packages:   %s installed (dpkg)\n' "$DPKG_COUNT"
    printf 'collectors: %s\n' "$COLLECTORS"
    printf 'load avg:   %s at start, %s at end\n' "$LOAD_START" "$LOAD_END"
    printf 'method:     %s\n\n' "$(method_text)"
    local tool w1=4 w2=7
    for tool in "${ROWS[@]}"; do
        ((${#LABEL[$tool]} > w1)) && w1=${#LABEL[$tool]}
        ((${#VERSION[$tool]} > w2)) && w2=${#VERSION[$tool]}
    done
    printf '%-*s  %-*s  %-26s  %-26s  %s\n' "$w1" tool "$w2" version \
        "wall median (min–max)" "CPU median (min–max)" "peak RSS median (min–max)"
    for tool in "${ROWS[@]}"; do
        printf '%-*s  %-*s  %-26s  %-26s  %s\n' "$w1" "${LABEL[$tool]}" "$w2" "${VERSION[$tool]}" \
            "$(fmt_time_cell "$(stats "$WORK/runs.$tool" 1)")" \
            "$(fmt_time_cell "$(stats "$WORK/runs.$tool" 2)")" \
            "$(fmt_rss_cell "$(stats "$WORK/runs.$tool" 3)")"
    done
    echo
    for tool in fusion ocs invagent; do
        [[ -n ${OUT_DESC[$tool]:-} ]] && printf 'output of %s (checked): %s\n' "$tool" "${OUT_DESC[$tool]}"
    done
    goal_line
    local n
    for n in "${NOTES[@]}"; do
        printf 'note: %s\n' "$n"
    done
}

print_markdown() {
    printf '| tool | version | wall, median (min–max) | CPU user+sys, median (min–max) | peak RSS, median (min–max) |\n'
    printf '| --- | --- | ---: | ---: | ---: |\n'
    local tool label
    for tool in "${ROWS[@]}"; do
        label=${LABEL[$tool]}
        case $tool in
            invagent) label="**invagent** \`inventory hw\` + \`inventory sw\`" ;;
            invagent-hw) label="… of which \`invagent inventory hw\`" ;;
            invagent-sw) label="… of which \`invagent inventory sw\`" ;;
            fusion) label="FusionInventory \`fusioninventory-agent --local\`" ;;
            ocs) label="OCS Inventory \`ocsinventory-agent --local\`" ;;
            baseline) label="baseline: \`/bin/true\`" ;;
        esac
        printf '| %s | %s | %s | %s | %s |\n' "$label" "${VERSION[$tool]}" \
            "$(fmt_time_cell "$(stats "$WORK/runs.$tool" 1)")" \
            "$(fmt_time_cell "$(stats "$WORK/runs.$tool" 2)")" \
            "$(fmt_rss_cell "$(stats "$WORK/runs.$tool" 3)")"
    done
    echo
    printf -- '- date: %s; %d runs per tool after 1 discarded warm-up, interleaved\n' "$DATE" "$RUNS"
    printf -- '- machine: %s CPUs (nproc), %s, %s RAM, kernel %s, %s; %s packages installed\n' \
        "$NPROC" "$CPU_MODEL" "$MEM" "$KERNEL" "$OS" "$DPKG_COUNT"
    printf -- '- collectors present: %s\n' "$COLLECTORS"
    printf -- '- load average: %s at start, %s at end\n' "$LOAD_START" "$LOAD_END"
    printf -- '- method: %s\n' "$(method_text)"
    for tool in fusion ocs invagent; do
        [[ -n ${OUT_DESC[$tool]:-} ]] && printf -- '- output of %s (checked): %s\n' "$tool" "${OUT_DESC[$tool]}"
    done
    printf -- '- %s\n' "$(goal_line)"
    local n
    for n in "${NOTES[@]}"; do
        printf -- '- note: %s\n' "$n"
    done
}

json_str() {
    # JSON string literal for simple text (escapes backslash and double quote).
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}

print_json() {
    local tool first=1 n
    printf '{\n  "date": %s,\n  "runs": %d,\n  "method": %s,\n' "$(json_str "$DATE")" "$RUNS" "$(json_str "$METHOD")"
    printf '  "machine": {"nproc": %d, "cpu": %s, "memory": %s, "kernel": %s, "os": %s, "dpkg_packages": %d, "collectors": %s, "load_start": %s, "load_end": %s},\n' \
        "$NPROC" "$(json_str "$CPU_MODEL")" "$(json_str "$MEM")" "$(json_str "$KERNEL")" "$(json_str "$OS")" \
        "$DPKG_COUNT" "$(json_str "$COLLECTORS")" "$(json_str "$LOAD_START")" "$(json_str "$LOAD_END")"
    printf '  "tools": [\n'
    for tool in "${ROWS[@]}"; do
        ((first)) || printf ',\n'
        first=0
        printf '    {"tool": %s, "version": %s, "output": %s,\n' "$(json_str "$tool")" \
            "$(json_str "${VERSION[$tool]}")" "$(json_str "${OUT_DESC[$tool]:-}")"
        awk '
            { w[NR] = $1; c[NR] = $2; r[NR] = $3 }
            END {
                printf "     \"runs\": ["
                for (i = 1; i <= NR; i++)
                    printf "%s{\"wall_s\": %s, \"cpu_s\": %s, \"max_rss_kb\": %s}", (i > 1 ? ", " : ""), w[i], c[i], r[i]
                printf "],\n"
            }' "$WORK/runs.$tool"
        local wall cpu rss
        wall=$(stats "$WORK/runs.$tool" 1)
        cpu=$(stats "$WORK/runs.$tool" 2)
        rss=$(stats "$WORK/runs.$tool" 3)
        printf '     "wall_s": %s, "cpu_s": %s, "max_rss_kb": %s}' \
            "$(awk '{printf "{\"median\": %s, \"min\": %s, \"max\": %s}", $1, $2, $3}' <<< "$wall")" \
            "$(awk '{printf "{\"median\": %s, \"min\": %s, \"max\": %s}", $1, $2, $3}' <<< "$cpu")" \
            "$(awk '{printf "{\"median\": %s, \"min\": %s, \"max\": %s}", $1, $2, $3}' <<< "$rss")"
    done
    printf '\n  ],\n  "not_measured": {'
    first=1
    for tool in "${!DROPPED[@]}"; do
        ((first)) || printf ', '
        first=0
        printf '%s: %s' "$(json_str "$tool")" "$(json_str "${DROPPED[$tool]}")"
    done
    printf '},\n  "notes": ['
    first=1
    for n in "${NOTES[@]}"; do
        ((first)) || printf ', '
        first=0
        json_str "$n"
    done
    printf ']\n}\n'
}

# What each tool collects, from the warm-up's output: per kind of thing, how many entries the
# peers' XML holds (the sections under <CONTENT>) and how many items invagent's JSON holds
# (hw item keys by their kind, the part before the first '/'; sw items by source). Kinds one
# tool has and the others do not are listed too, so the comparison hides nothing.
collected_table() {
    local fmt=$1
    python3 - "$fmt" "$WORK" <<'PY'
import json, os, sys, collections
import xml.etree.ElementTree as ET
fmt, work = sys.argv[1], sys.argv[2]
def xml_counts(path):
    if not os.path.exists(path):
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    content = root.find('CONTENT')
    if content is None:
        return None
    return collections.Counter(child.tag for child in content)
def inv_counts():
    out = collections.Counter()
    for cls in ('hw', 'sw'):
        p = os.path.join(work, f'invagent.{cls}.json')
        if not os.path.exists(p):
            return None
        items = json.load(open(p))['items']
        for key in items:
            out[(cls, key.split('/')[0])] += 1
    return out
fusion, ocs, inv = xml_counts(f'{work}/fusion.xml'), xml_counts(f'{work}/ocs.xml'), inv_counts()
# kind: (XML sections of the peers, invagent hw kinds, sw)
kinds = [
    ('BIOS / system / OS', ['BIOS', 'HARDWARE', 'OPERATINGSYSTEM'], ['system', 'bios', 'os', 'board', 'chassis'], False),
    ('CPUs', ['CPUS'], ['cpu'], False),
    ('memory (total, modules)', ['MEMORIES'], ['memory', 'dimm'], False),
    ('disks', ['STORAGES'], ['disk'], False),
    ('filesystems', ['DRIVES'], ['fs'], False),
    ('RAID and volumes', ['LOGICAL_VOLUMES', 'PHYSICAL_VOLUMES', 'VOLUME_GROUPS'], ['raid', 'lvm', 'dm'], False),
    ('network interfaces', ['NETWORKS'], ['nic', 'net'], False),
    ('PCI devices / controllers', ['CONTROLLERS'], ['pci'], False),
    ('graphics', ['VIDEOS'], ['gpu'], False),
    ('USB devices', ['USBDEVICES'], ['usb'], False),
    ('monitors', ['MONITORS'], ['monitor'], False),
    ('batteries', ['BATTERIES'], ['battery'], False),
    ('printers', ['PRINTERS'], ['printer'], False),
    ('virtualization', ['VIRTUALMACHINES'], ['virt'], False),
    ('local users', ['LOCAL_USERS', 'USERS'], ['user'], False),
    ('local groups', ['LOCAL_GROUPS'], [], False),
    ('services', ['SERVICES'], ['service'], False),
    ('kernel modules', ['MODULES'], ['kmod'], False),
    ('custom facts', [], ['custom'], False),
    ('software packages', ['SOFTWARES'], [], True),
]
def peer(c, tags):
    if c is None:
        return 'not measured'
    return str(sum(c[t] for t in tags)) if tags else '—'
def mine(kinds_, sw):
    if inv is None:
        return 'not measured'
    if sw:
        return str(sum(n for (cls, _), n in inv.items() if cls == 'sw'))
    return str(sum(inv[('hw', k)] for k in kinds_)) if kinds_ else '—'
rows = [(label, peer(fusion, tags), peer(ocs, tags), mine(ks, sw)) for label, tags, ks, sw in kinds]
known_tags = {t for _, tags, _, _ in kinds for t in tags}
known_kinds = {k for _, _, ks, _ in kinds for k in ks}
def others(c):
    if c is None:
        return ''
    return ', '.join(f'{t} {n}' for t, n in sorted(c.items()) if t not in known_tags)
inv_other = '' if inv is None else ', '.join(f'{k} {n}' for (cls, k), n in sorted(inv.items()) if cls == 'hw' and k not in known_kinds)
sw_sources = '' if inv is None else ', '.join(f'{k} {n}' for (cls, k), n in sorted(inv.items()) if cls == 'sw')
rows.append(('other sections / kinds', others(fusion) or '—', others(ocs) or '—', inv_other or '—'))
if fmt == 'markdown':
    print('| what (warm-up run) | FusionInventory | OCS Inventory | invagent |')
    print('| --- | ---: | ---: | ---: |')
    for r in rows:
        print('| ' + ' | '.join(r) + ' |')
    if sw_sources:
        print(f'\ninvagent software items by source: {sw_sources}')
else:
    w = max(len(r[0]) for r in rows)
    print(f'{"what (warm-up run)":<{w}}  {"FusionInventory":>15}  {"OCS Inventory":>13}  {"invagent":>8}')
    for r in rows[:-1]:
        print(f'{r[0]:<{w}}  {r[1]:>15}  {r[2]:>13}  {r[3]:>8}')
    print(f'other sections of FusionInventory: {rows[-1][1]}')
    print(f'other sections of OCS Inventory: {rows[-1][2]}')
    print(f'other kinds of invagent: {rows[-1][3]}')
    if sw_sources:
        print(f'invagent software items by source: {sw_sources}')
PY
}

case $FORMAT in
    text) print_text; echo; collected_table text ;;
    markdown) print_markdown; echo; collected_table markdown ;;
    json) print_json ;;
esac
