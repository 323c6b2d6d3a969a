#!/usr/bin/env bash
# Deleting clients (issue 20, BENCHMARKS): how long `DELETE /api/v1/clients/{name}` takes for N
# clients, and whether the report throughput of the other clients holds meanwhile. One
# `invsite serve` (release build) on SQLite or PostgreSQL; `invsync-loadgen` enrolls two fleets
# (DL… to delete, LV… that keep reporting) and sends their first full reports; then:
#   baseline  the LV fleet's deltas alone for S seconds
#   delete    the DL fleet deleted through the admin API (C requests in flight), while the LV
#             fleet sends deltas for as long again
# and prints a Markdown table: the deletions per second and their latency, and the delta
# throughput and latency without and with the deletions, each phase with the CPU seconds the
# site, the load generator and the deleting client used (from /proc and /usr/bin/time), so that
# a lower delta rate can be told apart: the site's cost of the deletions, or the deleting
# client's and load generator's share of the same two cores.
#
# Usage: bench/client-delete.sh [--db sqlite|postgres] [--delete N] [--live M] [--packages P]
#          [--seconds S] [--concurrency C] [--work DIR] [--keep] [--bin-dir DIR]
# Defaults: --delete 10000 --live 2000 --packages 1500 --seconds 20 --concurrency 16. Check it
# works at a small size first (--delete 200 --live 50 --packages 50 --seconds 3).
# --bin-dir DIR runs the binaries already built there (target/debug for such a check) instead of
# building release ones.
set -euo pipefail
cd "$(dirname "$0")/.."

DB=sqlite DELETE_N=10000 LIVE=2000 PACKAGES=1500 SECONDS_EACH=20 CONCURRENCY=16 WORK="" KEEP=0
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
while [ $# -gt 0 ]; do
  case "$1" in
    --db) DB="$2"; shift 2 ;;
    --delete) DELETE_N="$2"; shift 2 ;;
    --live) LIVE="$2"; shift 2 ;;
    --packages) PACKAGES="$2"; shift 2 ;;
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "client-delete.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DB" in sqlite|postgres) ;; *) echo "--db must be sqlite or postgres" >&2; exit 2 ;; esac

if [ -n "${BIN_DIR:-}" ]; then
  BIN="$(cd "$BIN_DIR" && pwd)"   # prebuilt binaries (a debug build, to check the script is sound)
else
  cargo build --release -q -p invsync-cli -p invsync-loadgen
  BIN="$PWD/target/release"
fi
[ -n "$WORK" ] || WORK="$(mktemp -d /var/tmp/invsync-bench.XXXXXX)"
mkdir -p "$WORK"
SITE="$WORK/site" SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 0 ]; then
    if [ -f "$WORK/pg.db" ]; then
      psql "$PG_ADMIN_URL" -Atqc "DROP DATABASE IF EXISTS $(cat "$WORK/pg.db") WITH (FORCE)" >/dev/null || true
    fi
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

DB_ARG=sqlite
if [ "$DB" = postgres ]; then
  PG_DB="invsync_bench_$(date +%s)_$$"
  psql "$PG_ADMIN_URL" -Atqc "CREATE DATABASE $PG_DB" >/dev/null
  echo "$PG_DB" > "$WORK/pg.db"
  DB_ARG="${PG_ADMIN_URL%/*}/$PG_DB"
fi
"$BIN/invsite" init --data-dir "$SITE" --site-code B01 --listen 127.0.0.1:0 --db "$DB_ARG" >/dev/null
RUST_LOG=warn "$BIN/invsite" serve --data-dir "$SITE" --listen 127.0.0.1:0 > "$WORK/serve.out" 2> "$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/serve.out" ] && break; sleep 0.1; done
URL="$(head -1 "$WORK/serve.out" | awk '{print $NF}')"
case "$URL" in http://127.0.0.1:*) ;; *) echo "invsite serve did not start: $(cat "$WORK/serve.log")" >&2; exit 1 ;; esac

site_cpu() { # the site's user + system CPU seconds so far
  awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$SERVER_PID/stat"
}
lg() { # lg MODE FLEET ARGS...
  local mode="$1" fleet="$2"; shift 2
  "$BIN/invsync-loadgen" "$mode" --site "$URL" --site-dir "$SITE" \
    --agents-file "$WORK/$fleet.txt" --concurrency 64 --json "$@"
}
echo "== enroll and first full reports ($DELETE_N to delete, $LIVE live)" >&2
lg enroll del --agents "$DELETE_N" --prefix DL --packages "$PACKAGES" > /dev/null
lg enroll live --agents "$LIVE" --prefix LV --packages "$PACKAGES" > /dev/null
lg full del --rounds 1 > /dev/null
lg full live --rounds 1 > /dev/null

echo "== baseline: deltas alone for ${SECONDS_EACH}s" >&2
CPU0="$(site_cpu)"
/usr/bin/time -f "%U %S" -o "$WORK/baseline.lgcpu" \
  "$BIN/invsync-loadgen" delta --site "$URL" --site-dir "$SITE" --agents-file "$WORK/live.txt" \
  --concurrency 64 --json --duration "${SECONDS_EACH}s" --prebuild $((LIVE * 20)) > "$WORK/baseline.json"
CPU1="$(site_cpu)"

echo "== deleting $DELETE_N clients while deltas go on" >&2
# The load generator's progress lines (cumulative requests, about one a second), each with the
# time it was read: the deltas sent while the deletions ran are counted from them.
( /usr/bin/time -f "%U %S" -o "$WORK/during.lgcpu" \
    "$BIN/invsync-loadgen" delta --site "$URL" --site-dir "$SITE" --agents-file "$WORK/live.txt" \
    --concurrency 64 --json --duration "${SECONDS_EACH}s" --prebuild $((LIVE * 20)) \
    2>&1 > "$WORK/during.json" \
  | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done > "$WORK/during.log" ) &
DELTAS=$!
# The deletions start once the deltas flow, not while the load generator builds its bodies.
until grep -q " requests, " "$WORK/during.log" 2>/dev/null; do sleep 0.1; done
CPU2="$(site_cpu)"
date +%s.%N > "$WORK/delete.start"
/usr/bin/time -f "%U %S" -o "$WORK/delete.cpu" python3 - "$URL" "$(cat "$SITE/admin.token")" "$DELETE_N" "$CONCURRENCY" > "$WORK/delete.json" <<'PY'
import concurrent.futures, json, sys, time, urllib.request
url, token, n, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def delete(i):
    req = urllib.request.Request(f"{url}/api/v1/clients/DL{i:05d}", method="DELETE",
                                 headers={"Authorization": f"Bearer {token}"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            ok = r.status == 200
    except Exception:
        ok = False
    return ok, time.perf_counter() - t
start = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(conc) as pool:
    results = list(pool.map(delete, range(1, n + 1)))
took = time.perf_counter() - start
lat = sorted(d for _, d in results)
pick = lambda p: lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1000
print(json.dumps({"deleted": sum(ok for ok, _ in results), "errors": sum(not ok for ok, _ in results),
                  "seconds": took, "per_second": n / took, "p50_ms": pick(50), "p99_ms": pick(99),
                  "max_ms": lat[-1] * 1000}))
PY
CPU3="$(site_cpu)"
date +%s.%N > "$WORK/delete.end"
wait "$DELTAS"
CPU4="$(site_cpu)"
printf '%s %s %s %s %s\n' "$CPU0" "$CPU1" "$CPU2" "$CPU3" "$CPU4" > "$WORK/site.cpu"
REMAINING="$("$BIN/invsite" clients --data-dir "$SITE" --json | python3 -c 'import json,sys; print(sum(c["name"].startswith("DL") for c in json.load(sys.stdin)))')"

python3 - "$WORK" "$DB" "$REMAINING" <<'PY'
import json, sys
work, db, remaining = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = json.load(open(f"{work}/delete.json"))
print(f"| deleting ({db}) | clients | errors | seconds | per second | p50 ms | p99 ms | max ms |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
print(f"| DELETE /api/v1/clients/{{name}} | {d['deleted']:,} | {d['errors']} | {d['seconds']:.1f} | "
      f"{d['per_second']:,.0f} | {d['p50_ms']:.1f} | {d['p99_ms']:.1f} | {d['max_ms']:.1f} |")
print()
print(f"| deltas of the other clients ({db}) | requests | errors | per second | p50 ms | p99 ms | max ms |")
print("|---|---:|---:|---:|---:|---:|---:|")
for label, name in [("alone", "baseline"), ("while deleting", "during")]:
    r = json.load(open(f"{work}/{name}.json"))
    lat = r.get("latency") or {}
    print(f"| {label} | {r['requests']:,} | {r['errors']['total']} | {r['per_second']:,.0f} | "
          f"{lat.get('p50_ms', 0):.1f} | {lat.get('p99_ms', 0):.1f} | {lat.get('max_ms', 0):.1f} |")
cpu = lambda name: sum(map(float, open(f"{work}/{name}").read().split()))
c0, c1, c2, c3, c4 = map(float, open(f"{work}/site.cpu").read().split())
base, during = json.load(open(f"{work}/baseline.json")), json.load(open(f"{work}/during.json"))
print()
print(f"| CPU seconds ({db}) | site | load generator | deleting client |")
print("|---|---:|---:|---:|")
print(f"| deltas alone ({base['requests']:,} deltas) | {c1 - c0:.1f} | {cpu('baseline.lgcpu'):.1f} | - |")
print(f"| while deleting ({d['deleted']:,} deletions, {during['requests']:,} deltas) | "
      f"{c4 - c2:.1f} (deleting: {c3 - c2:.1f}) | {cpu('during.lgcpu'):.1f} | {cpu('delete.cpu'):.1f} |")
# The deltas acknowledged while the deletions ran, from the progress lines around that window.
t0, t1 = (float(open(f"{work}/delete.{e}").read()) for e in ("start", "end"))
marks = []
for line in open(f"{work}/during.log"):
    parts = line.split()
    if " requests, " in line and len(parts) > 3 and parts[3].isdigit():
        marks.append((float(parts[0]), int(parts[3])))
inside = [m for m in marks if t0 <= m[0] <= t1]
before = [m for m in marks if m[0] < t0][-1:] or inside[:1]
window = before + inside
print()
if len(window) >= 2 and window[-1][0] > window[0][0]:
    rate = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
    sent = rate * (t1 - t0)
    print(f"while the {t1 - t0:.1f} s of deletions ran: deltas at {rate:,.0f}/s "
          f"({rate / base['per_second'] * 100:.0f} % of the rate alone)")
else:
    sent = during["requests"] * (t1 - t0) / max(during.get("seconds", t1 - t0), t1 - t0)
per_delta = (c1 - c0) / max(base["requests"], 1)
extra = (c3 - c2) - per_delta * sent
print(f"site CPU per delta alone: {per_delta * 1e6:.0f} µs; the site's CPU in the deletions' window "
      f"beyond the deltas': {extra:.1f} s, i.e. {extra / max(d['deleted'], 1) * 1e6:.0f} µs per deletion")
if remaining:
    print(f"\n{remaining} clients to delete are still listed: the run is not valid")
    sys.exit(1)
PY
