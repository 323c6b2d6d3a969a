#!/usr/bin/env bash
# Pruning a year of history (issue 20, BENCHMARKS): N clients with H changes of history each,
# aged to a year ago, pruned by `invsite serve`'s lifecycle task (`--history-retention`) while
# the same clients keep sending deltas; the goal is no write held up by more than 100 ms. One
# `invsite serve` (release build) on SQLite or PostgreSQL and `invsync-loadgen`:
#   fill      enroll N agents, one full report each, then H rounds of deltas (history)
#   age       with the site stopped, every history row moved a year back (SQL on the database)
#   baseline  deltas for S seconds with nothing to prune (retention off: 400 days)
#   prune     the site restarted with --history-retention 30d: its task prunes at once, in
#             batches of 1,000 rows, while deltas go on for S seconds
# and prints the history rows before and after, how long the pruning took (from the site's
# log), and the delta throughput and latency (p99, max) without and with it: the max is the
# longest any report waited, which a write stall would show.
#
# Usage: bench/history-prune.sh [--db sqlite|postgres] [--agents N] [--packages P]
#          [--history-rounds H] [--seconds S] [--work DIR] [--keep] [--bin-dir DIR]
# Defaults: --agents 100000 --packages 100 --history-rounds 20 --seconds 30. Check it works at
# a small size first (--agents 200 --packages 20 --history-rounds 3 --seconds 3).
# --bin-dir DIR runs the binaries already built there (target/debug for such a check) instead of
# building release ones.
set -euo pipefail
cd "$(dirname "$0")/.."

DB=sqlite AGENTS=100000 PACKAGES=100 ROUNDS=20 SECONDS_EACH=30 WORK="" KEEP=0
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
while [ $# -gt 0 ]; do
  case "$1" in
    --db) DB="$2"; shift 2 ;;
    --agents) AGENTS="$2"; shift 2 ;;
    --packages) PACKAGES="$2"; shift 2 ;;
    --history-rounds) ROUNDS="$2"; shift 2 ;;
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "history-prune.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
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
SITE="$WORK/site" SERVER_PID="" PG_URL=""
cleanup() {
  stop_site
  if [ "$KEEP" = 0 ]; then
    if [ -f "$WORK/pg.db" ]; then
      psql "$PG_ADMIN_URL" -Atqc "DROP DATABASE IF EXISTS $(cat "$WORK/pg.db") WITH (FORCE)" >/dev/null || true
    fi
    rm -rf "$WORK"
  fi
}
stop_site() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=""
}
trap cleanup EXIT

DB_ARG=sqlite
if [ "$DB" = postgres ]; then
  PG_DB="invsync_bench_$(date +%s)_$$"
  psql "$PG_ADMIN_URL" -Atqc "CREATE DATABASE $PG_DB" >/dev/null
  echo "$PG_DB" > "$WORK/pg.db"
  PG_URL="${PG_ADMIN_URL%/*}/$PG_DB"
  DB_ARG="$PG_URL"
fi
"$BIN/invsite" init --data-dir "$SITE" --site-code B01 --listen 127.0.0.1:0 --db "$DB_ARG" >/dev/null

start_site() { # start_site LOGFILE
  RUST_LOG=info "$BIN/invsite" serve --data-dir "$SITE" --listen 127.0.0.1:0 > "$WORK/serve.out" 2> "$1" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do [ -s "$WORK/serve.out" ] && break; sleep 0.1; done
  URL="$(head -1 "$WORK/serve.out" | awk '{print $NF}')"
  case "$URL" in http://127.0.0.1:*) ;; *) echo "invsite serve did not start: $(cat "$1")" >&2; exit 1 ;; esac
}
sql() { # sql STATEMENT: one value
  if [ -n "$PG_URL" ]; then psql "$PG_URL" -Atqc "$1"; else sqlite3 "$SITE/site.db" "$1"; fi
}
lg() { # lg MODE ARGS...
  local mode="$1"; shift
  "$BIN/invsync-loadgen" "$mode" --site "$URL" --site-dir "$SITE" \
    --agents-file "$WORK/agents.txt" --concurrency 64 --json "$@"
}

start_site "$WORK/fill.log"
echo "== fill: $AGENTS agents, $ROUNDS rounds of deltas" >&2
lg enroll --agents "$AGENTS" --packages "$PACKAGES" > /dev/null
lg full --rounds 1 > /dev/null
lg delta --rounds "$ROUNDS" > /dev/null
echo "== baseline: deltas for ${SECONDS_EACH}s, nothing to prune" >&2
lg delta --duration "${SECONDS_EACH}s" --prebuild $((AGENTS * 2)) > "$WORK/baseline.json"
stop_site

echo "== age: history moved a year back" >&2
YEAR_MS=$((366 * 24 * 3600 * 1000))
sql "UPDATE history SET at = at - $YEAR_MS" > /dev/null
ROWS_BEFORE="$(sql "SELECT count(*) FROM history")"

"$BIN/invsite" config --data-dir "$SITE" --history-retention 30d > /dev/null
echo "== prune while deltas go on for ${SECONDS_EACH}s" >&2
start_site "$WORK/prune.log"
STARTED_MS="$(date +%s%3N)"
lg delta --duration "${SECONDS_EACH}s" --prebuild $((AGENTS * 2)) > "$WORK/during.json"
# The pruning may outlast the deltas at full size: wait for the task's last table.
for _ in $(seq 1 3600); do
  grep -q 'table="deleted_clients"\|table=deleted_clients' "$WORK/prune.log" && break
  [ "$(sql "SELECT count(*) FROM history WHERE at < $(( $(date +%s%3N) - 30 * 24 * 3600 * 1000 ))")" = 0 ] && break
  sleep 1
done
DONE_MS="$(date +%s%3N)"
stop_site
ROWS_AFTER="$(sql "SELECT count(*) FROM history")"
PRUNED_LINE="$(grep 'Pruned rows' "$WORK/prune.log" | grep 'history' | tail -1 || true)"

python3 - "$WORK" "$DB" "$AGENTS" "$ROWS_BEFORE" "$ROWS_AFTER" "$STARTED_MS" "$DONE_MS" "$PRUNED_LINE" <<'PY'
import json, sys
work, db, agents, before, after, started, done, line = sys.argv[1:9]
print(f"history ({db}, {int(agents):,} clients): {int(before):,} rows a year old, {int(after):,} left; "
      f"pruned within {(int(done) - int(started)) / 1000:.1f} s of the restart")
if line:
    print(f"site log: {line.strip()}")
print()
print(f"| deltas ({db}) | requests | errors | per second | p50 ms | p99 ms | max ms |")
print("|---|---:|---:|---:|---:|---:|---:|")
worst = 0.0
for label, name in [("nothing to prune", "baseline"), ("while pruning", "during")]:
    r = json.load(open(f"{work}/{name}.json"))
    lat = r.get("latency") or {}
    worst = max(worst, lat.get("max_ms", 0)) if name == "during" else worst
    print(f"| {label} | {r['requests']:,} | {r['errors']['total']} | {r['per_second']:,.0f} | "
          f"{lat.get('p50_ms', 0):.1f} | {lat.get('p99_ms', 0):.1f} | {lat.get('max_ms', 0):.1f} |")
print(f"\nlongest report while pruning: {worst:.1f} ms (goal: no stall over 100 ms)")
if int(after) >= int(before):
    print("nothing was pruned: the run is not valid")
    sys.exit(1)
PY
