#!/usr/bin/env bash
# Durability under load: one `invsite serve` on SQLite or PostgreSQL and `invsync-loadgen`
# driving it from 127.0.0.1. After enrolling N agents, each cycle sends one round of full
# reports (after a kill every agent's base is unknown), then deltas until the load generator's
# progress line shows K finished deltas, kills the site with SIGKILL in the middle of them and
# starts it again on the same data directory. After the last cycle `invsync-loadgen verify`
# checks that the site still holds every report it acknowledged, and the script prints one
# line per cycle and verify's counts; it exits 1 when a report was lost.
#
# Usage: bench/site-kill.sh [--db sqlite|postgres] [--agents N] [--packages P] [--cycles C]
#          [--kill-after K] [--concurrency C] [--bin DIR] [--work DIR] [--keep]
# --bin DIR takes invsite and invsync-loadgen from DIR instead of a release build (e.g.
# target/debug, to run it without building the release profile); --work and --keep as in
# site-throughput.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

DB=sqlite AGENTS=2000 PACKAGES=1500 CYCLES=3 KILL_AFTER=4000 CONCURRENCY=64 BIN="" WORK="" KEEP=0
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
while [ $# -gt 0 ]; do
  case "$1" in
    --db) DB="$2"; shift 2 ;;
    --agents) AGENTS="$2"; shift 2 ;;
    --packages) PACKAGES="$2"; shift 2 ;;
    --cycles) CYCLES="$2"; shift 2 ;;
    --kill-after) KILL_AFTER="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --bin) BIN="$(cd "$2" && pwd)"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "site-kill.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DB" in sqlite|postgres) ;; *) echo "--db must be sqlite or postgres" >&2; exit 2 ;; esac

if [ -z "$BIN" ]; then
  cargo build --release -q -p invsync-cli -p invsync-loadgen
  BIN="$PWD/target/release"
fi
if [ -z "$WORK" ]; then
  WORK="$(mktemp -d /var/tmp/invsync-kill.XXXXXX)"
fi
mkdir -p "$WORK"
SITE="$WORK/site"
AGENTS_FILE="$WORK/agents.txt"
SERVER_PID="" LG_PID=""
cleanup() {
  if [ -n "$LG_PID" ]; then kill "$LG_PID" 2>/dev/null || true; fi
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
  PG_DB="invsync_kill_$(date +%s)_$$"
  psql "$PG_ADMIN_URL" -Atqc "CREATE DATABASE $PG_DB" >/dev/null
  echo "$PG_DB" > "$WORK/pg.db"
  DB_ARG="${PG_ADMIN_URL%/*}/$PG_DB"
fi
"$BIN/invsite" init --data-dir "$SITE" --site-code K01 --listen 127.0.0.1:0 --db "$DB_ARG" >/dev/null 2>&1

start_site() {
  : > "$WORK/serve.out"
  RUST_LOG=warn "$BIN/invsite" serve --data-dir "$SITE" --listen 127.0.0.1:0 > "$WORK/serve.out" 2>> "$WORK/serve.log" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do [ -s "$WORK/serve.out" ] && break; sleep 0.1; done
  URL="$(head -1 "$WORK/serve.out" | awk '{print $NF}')"
  case "$URL" in http://127.0.0.1:*) ;; *) echo "invsite serve did not start: $(cat "$WORK/serve.log")" >&2; exit 1 ;; esac
}
lg() { # lg MODE ARGS...: the load generator against the running site
  local mode="$1"; shift
  "$BIN/invsync-loadgen" "$mode" --site "$URL" --site-dir "$SITE" --agents-file "$AGENTS_FILE" \
    --concurrency "$CONCURRENCY" "$@"
}
field() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }

start_site
lg enroll --agents "$AGENTS" --packages "$PACKAGES" --json > "$WORK/enroll.json" 2>/dev/null
for c in $(seq 1 "$CYCLES"); do
  lg full --json > "$WORK/full$c.json" 2>/dev/null
  # Deltas until killed: far longer than the wait below, which bounds itself at 10 minutes.
  lg delta --duration 1h --prebuild "$KILL_AFTER" --json > "$WORK/delta$c.json" 2> "$WORK/delta$c.err" &
  LG_PID=$!
  for _ in $(seq 1 3000); do
    n="$(grep -o 'delta: [0-9]* requests' "$WORK/delta$c.err" 2>/dev/null | tail -1 | awk '{print $2}' || true)"
    if [ -n "$n" ] && [ "$n" -ge "$KILL_AFTER" ]; then break; fi
    sleep 0.2
  done
  kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  wait "$LG_PID" || true; LG_PID=""
  echo "cycle $c: full reports $(field "$WORK/full$c.json" 'f"{ok} ok"'); deltas $(field "$WORK/delta$c.json" \
    '"%d acknowledged before the kill, %d failed (%d without an answer)" % (ok, errors["total"], errors["transport"])')"
  start_site
done
status=0
/usr/bin/time -f "%e s wall, %U s user, %M KB max RSS" -o "$WORK/verify.time" \
  "$BIN/invsync-loadgen" verify --site "$URL" --site-dir "$SITE" --agents-file "$AGENTS_FILE" \
  --concurrency "$CONCURRENCY" --json > "$WORK/verify.json" 2>/dev/null || status=$?
echo "verify ($DB, $AGENTS agents, $CYCLES kills): $(field "$WORK/verify.json" \
  'f"{acknowledged} acknowledged snapshots of {checked} agents: {held} held, {later} later, {lost} lost, {unchecked} not checked"'); $(cat "$WORK/verify.time")"
if [ "$status" != 0 ]; then
  field "$WORK/verify.json" '"\n".join(f"lost: {l}" for l in losses)' >&2
fi
exit "$status"
