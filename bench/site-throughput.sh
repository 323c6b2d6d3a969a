#!/usr/bin/env bash
# Site throughput over real HTTP on this machine: one `invsite serve` (release build) on SQLite
# or PostgreSQL, and `invsync-loadgen` driving it from 127.0.0.1 in four phases:
#   enroll   N agents (not a throughput goal; its rate is printed too)
#   full     one round of first full sw reports (1,500 packages each by default), then a second
#            round: the full reports a resync asks for, the inventory unchanged
#   delta    R rounds of deltas (a few packages changed per cycle)
#   checkin  no-change check-ins for a fixed time
# and prints one line per phase (requests, errors, per second, latency p50/p90/p99) as a
# Markdown table with the site's CPU time per request (from /proc), then the database's size
# per client. Both processes share the machine's
# cores, as they would on a 2-core site server with a local load; the load generator builds its
# request bodies before each timed phase.
#
# Usage: bench/site-throughput.sh [--db sqlite|postgres] [--agents N] [--packages P]
#          [--delta-rounds R] [--checkin-seconds S] [--concurrency C] [--work DIR] [--keep]
#          [--skip-enroll] [--skip-full] [--no-resync-full] [--verify]
# --work DIR keeps the site and agents file there (default: a fresh directory, removed at the
# end unless --keep); with --skip-enroll and --skip-full an existing DIR is measured again (the
# 250,000-client run enrolls once, then measures deltas and check-ins at that size);
# --no-resync-full leaves out the second round of full reports; --verify ends with
# `invsync-loadgen verify` (every acknowledged report still held; about 200 KB of JSON per
# agent from the admin API) and fails if any is lost.
set -euo pipefail
cd "$(dirname "$0")/.."

DB=sqlite AGENTS=10000 PACKAGES=1500 DELTA_ROUNDS=3 CHECKIN_SECONDS=20 CONCURRENCY=64
WORK="" KEEP=0 SKIP_ENROLL=0 SKIP_FULL=0 RESYNC_FULL=1 VERIFY=0
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
while [ $# -gt 0 ]; do
  case "$1" in
    --db) DB="$2"; shift 2 ;;
    --agents) AGENTS="$2"; shift 2 ;;
    --packages) PACKAGES="$2"; shift 2 ;;
    --delta-rounds) DELTA_ROUNDS="$2"; shift 2 ;;
    --checkin-seconds) CHECKIN_SECONDS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --skip-enroll) SKIP_ENROLL=1; shift ;;
    --skip-full) SKIP_FULL=1; shift ;;
    --no-resync-full) RESYNC_FULL=0; shift ;;
    --verify) VERIFY=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "site-throughput.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DB" in sqlite|postgres) ;; *) echo "--db must be sqlite or postgres" >&2; exit 2 ;; esac

cargo build --release -q -p invsync-cli -p invsync-loadgen
BIN="$PWD/target/release"

if [ -z "$WORK" ]; then
  WORK="$(mktemp -d /var/tmp/invsync-bench.XXXXXX)"
fi
mkdir -p "$WORK"
SITE="$WORK/site"
AGENTS_FILE="$WORK/agents.txt"
SERVER_PID=""
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

if [ ! -f "$SITE/config.json" ]; then
  DB_ARG=sqlite
  if [ "$DB" = postgres ]; then
    PG_DB="invsync_bench_$(date +%s)_$$"
    psql "$PG_ADMIN_URL" -Atqc "CREATE DATABASE $PG_DB" >/dev/null
    echo "$PG_DB" > "$WORK/pg.db"
    DB_ARG="${PG_ADMIN_URL%/*}/$PG_DB"
  fi
  "$BIN/invsite" init --data-dir "$SITE" --site-code B01 --listen 127.0.0.1:0 --db "$DB_ARG" >/dev/null
fi
RUST_LOG=warn "$BIN/invsite" serve --data-dir "$SITE" --listen 127.0.0.1:0 > "$WORK/serve.out" 2> "$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/serve.out" ] && break; sleep 0.1; done
URL="$(head -1 "$WORK/serve.out" | awk '{print $NF}')"
case "$URL" in http://127.0.0.1:*) ;; *) echo "invsite serve did not start: $(cat "$WORK/serve.log")" >&2; exit 1 ;; esac

LG=("$BIN/invsync-loadgen")
COMMON=(--site "$URL" --site-dir "$SITE" --agents-file "$AGENTS_FILE" --concurrency "$CONCURRENCY" --json)
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
# The site's CPU time (user + system, in clock ticks) from /proc: with the load generator on the
# same cores, CPU per request says what the site would do on cores of its own.
site_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
TICKS_PER_SECOND="$(getconf CLK_TCK)"
phase() { # phase LABEL MODE ARGS...
  local label="$1"; shift
  echo "== $label" >&2
  local out before after
  before="$(site_ticks)"
  out="$("${LG[@]}" "$@" "${COMMON[@]}")" || { echo "$out"; echo "phase $label failed" >&2; exit 1; }
  after="$(site_ticks)"
  printf '%s\t%s\n' "$label" "$(printf '%s' "$out" | python3 -c 'import json, sys
r = json.load(sys.stdin)
r["site_cpu_seconds"] = (int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3])
print(json.dumps(r))' "$before" "$after" "$TICKS_PER_SECOND")" >> "$RESULTS"
}

if [ "$SKIP_ENROLL" = 0 ]; then
  phase enroll enroll --agents "$AGENTS" --packages "$PACKAGES"
fi
if [ "$SKIP_FULL" = 0 ]; then
  phase "full (first)" full --rounds 1
  if [ "$RESYNC_FULL" = 1 ]; then
    phase "full (resync, unchanged)" full --rounds 1
  fi
fi
phase delta delta --rounds "$DELTA_ROUNDS"
phase checkin checkin --duration "${CHECKIN_SECONDS}s"
if [ "$VERIFY" = 1 ]; then
  echo "== verify" >&2
  "${LG[@]}" verify --site "$URL" --site-dir "$SITE" --agents-file "$AGENTS_FILE" --concurrency "$CONCURRENCY" >&2
fi

SIZE_BYTES=0
if [ -f "$WORK/pg.db" ]; then
  SIZE_BYTES="$(psql "$PG_ADMIN_URL" -Atqc "SELECT pg_database_size('$(cat "$WORK/pg.db")')")"
else
  kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""   # checkpoints the WAL
  SIZE_BYTES="$(du -cb "$SITE"/site.db* | tail -1 | cut -f1)"
fi

python3 - "$RESULTS" "$DB" "$SIZE_BYTES" <<'PY'
import json, sys
path, db, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(f"| phase ({db}) | agents | requests | errors | per second | p50 ms | p90 ms | p99 ms | site CPU µs per request |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
agents = 0
for line in open(path):
    label, raw = line.rstrip("\n").split("\t", 1)
    r = json.loads(raw)
    agents = max(agents, r.get("agents") or 0)
    lat = r.get("latency") or {}
    f = lambda k: f"{lat[k]:.1f}" if k in lat and lat[k] is not None else "–"
    cpu = r.get("site_cpu_seconds")
    per = f"{cpu * 1e6 / r['requests']:,.0f}" if cpu is not None and r["requests"] else "–"
    print(f"| {label} | {r.get('agents')} | {r['requests']:,} | {r['errors']['total']} | "
          f"{r['per_second']:,.0f} | {f('p50_ms')} | {f('p90_ms')} | {f('p99_ms')} | {per} |")
if agents:
    print(f"\ndatabase: {size:,} bytes for {agents:,} clients = {size / agents / 1024:.1f} KB per client")
PY
