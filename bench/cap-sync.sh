#!/usr/bin/env bash
# `invsite cap-sync` import rates on this machine (release build), SQLite or PostgreSQL:
#   1. a site is made and N agents enrolled over HTTP (`invsync-loadgen enroll`), then the
#      server is stopped: cap-sync works on the database alone;
#   2. every agent drops a full sw report (1,500 packages) in the CAP directory
#      (`invsync-loadgen cap-files --kind full`), and `invsite cap-sync` imports them: timed;
#   3. every agent drops a sw delta (`--kind delta`), and cap-sync imports them: timed; then a
#      second round of deltas, timed (the steady state: every .cfg has its spare);
#   4. the server is started again with `--cap-dir` (`invsite serve --cap-dir`) and two more
#      rounds of deltas, each written to a staging directory on the same file system and then
#      renamed into Inventry.box at once, are imported by the server's runs: timed by the runs'
#      own time (`took_ms` of their log lines; the wall time from the renames also includes the
#      wait for the server's next look at the directory, up to a second), the first round with
#      the server's caches as it started them, the second warm; then `invsync-loadgen verify` checks that the site holds every report
#      the files carried.
# Also printed: the size of a no-change check-in `.inv` and of a no-change `.cfg`, as the
# real agent and site write them (`invagent cycle --cap-dir` twice against a fixture root).
#
# Usage: bench/cap-sync.sh [--db sqlite|postgres] [--agents N] [--full-agents N] [--work DIR] [--keep]
# --full-agents: how many of the agents write full reports in step 2 (default: all; the
# deltas of step 3 need every agent to have one, so fewer means step 3 uses those only).
set -euo pipefail
cd "$(dirname "$0")/.."

DB=sqlite AGENTS=10000 FULL_AGENTS="" WORK="" KEEP=0
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
while [ $# -gt 0 ]; do
  case "$1" in
    --db) DB="$2"; shift 2 ;;
    --agents) AGENTS="$2"; shift 2 ;;
    --full-agents) FULL_AGENTS="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "cap-sync.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
FULL_AGENTS="${FULL_AGENTS:-$AGENTS}"
case "$DB" in sqlite|postgres) ;; *) echo "--db must be sqlite or postgres" >&2; exit 2 ;; esac

cargo build --release -q -p invsync-cli -p invsync-loadgen
BIN="$PWD/target/release"
[ -n "$WORK" ] || WORK="$(mktemp -d /var/tmp/invsync-capbench.XXXXXX)"
mkdir -p "$WORK"
SITE="$WORK/site" CAP="$WORK/cap" AGENTS_FILE="$WORK/agents.txt"
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
serve() { # serve [ARGS...]: extra arguments for invsite serve
  RUST_LOG="${SERVE_LOG:-warn}" "$BIN/invsite" serve --data-dir "$SITE" --listen 127.0.0.1:0 "$@" > "$WORK/serve.out" 2> "$WORK/serve.log" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do [ -s "$WORK/serve.out" ] && break; sleep 0.1; done
  URL="$(head -1 "$WORK/serve.out" | awk '{print $NF}')"
  case "$URL" in http://127.0.0.1:*) ;; *) echo "invsite serve did not start: $(cat "$WORK/serve.log")" >&2; exit 1 ;; esac
}
stop() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""; }

DB_ARG=sqlite
if [ "$DB" = postgres ]; then
  PG_DB="invsync_capbench_$(date +%s)_$$"
  psql "$PG_ADMIN_URL" -Atqc "CREATE DATABASE $PG_DB" >/dev/null
  echo "$PG_DB" > "$WORK/pg.db"
  DB_ARG="${PG_ADMIN_URL%/*}/$PG_DB"
fi
"$BIN/invsite" init --data-dir "$SITE" --site-code B01 --listen 127.0.0.1:0 --db "$DB_ARG" >/dev/null
mkdir -p "$CAP"
serve
echo "== enroll $AGENTS agents" >&2
"$BIN/invsync-loadgen" enroll --site "$URL" --site-dir "$SITE" --agents-file "$AGENTS_FILE" --agents "$AGENTS" --json > /dev/null
stop

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
timed_sync() { # timed_sync LABEL FILES
  local label="$1" files="$2" start end out
  start="$(date +%s.%N)"
  out="$("$BIN/invsite" cap-sync "$CAP" --data-dir "$SITE" --json)"
  end="$(date +%s.%N)"
  printf '%s' "$out" | python3 -c '
import json, sys
r = json.load(sys.stdin)
label, files, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[4]) - float(sys.argv[3])
imported = sum(1 for f in r["imported"] if not f["duplicate"])
refused = len(r["refused"])
print(f"{label}\t{files}\t{imported}\t{refused}\t{seconds:.2f}\t{imported / seconds:.0f}")
' "$label" "$files" "$start" "$end" >> "$RESULTS"
}
echo "== $FULL_AGENTS full sw reports as files" >&2
"$BIN/invsync-loadgen" cap-files --agents-file "$AGENTS_FILE" --cap-dir "$CAP" --kind full --agents "$FULL_AGENTS" >&2
timed_sync "full sw reports (1,500 packages)" "$FULL_AGENTS"
echo "== $FULL_AGENTS sw deltas as files" >&2
"$BIN/invsync-loadgen" cap-files --agents-file "$AGENTS_FILE" --cap-dir "$CAP" --kind delta --agents "$FULL_AGENTS" >&2
timed_sync "sw deltas" "$FULL_AGENTS"
# A second round of deltas: the steady state of a CAP in use, where each client's .cfg has been
# replaced before and its spare is there to swap with (the first replacement creates it).
echo "== $FULL_AGENTS sw deltas as files, second round" >&2
"$BIN/invsync-loadgen" cap-files --agents-file "$AGENTS_FILE" --cap-dir "$CAP" --kind delta --agents "$FULL_AGENTS" >&2
timed_sync "sw deltas, second round" "$FULL_AGENTS"

# The same through a running server's runs (invsite serve --cap-dir): the files of a round are
# renamed into Inventry.box at once, and the round lasts until the server's log lines count
# them all imported.
move_in() { # move_in FROM: every .inv of FROM renamed into the CAP's Inventry.box
  python3 -c 'import os, sys
src, dst = sys.argv[1], sys.argv[2]
for f in os.listdir(src):
    if f.endswith(".inv"):
        os.rename(os.path.join(src, f), os.path.join(dst, f))' "$1" "$CAP/Inventry.box"
}
by_server() { # what the server's runs that found files did so far: "IMPORTED REFUSED MS"
  grep -o 'Synchronized the CAP directory. imported=[0-9]* refused=[0-9]* written=[0-9]* took_ms=[0-9]*' "$WORK/serve.log" \
    | sed 's/.*imported=\([0-9]*\) refused=\([0-9]*\) written=[0-9]* took_ms=\([0-9]*\)/\1 \2 \3/' \
    | awk '$1 + $2 > 0 {i += $1; r += $2; t += $3} END {print i + 0, r + 0, t + 0}'
}
SERVE_LOG=warn,invsync_site::offline::sync=info serve --cap-dir "$CAP"
for round in "first (server just started)" "second (warm)"; do
  echo "== $FULL_AGENTS sw deltas through invsite serve --cap-dir, $round" >&2
  rm -rf "$WORK/stage" && mkdir -p "$WORK/stage"
  "$BIN/invsync-loadgen" cap-files --agents-file "$AGENTS_FILE" --cap-dir "$WORK/stage" --kind delta --agents "$FULL_AGENTS" >&2
  read -r i0 r0 t0 <<< "$(by_server)"
  start="$(date +%s.%N)"
  move_in "$WORK/stage/Inventry.box"
  while read -r i1 r1 t1 <<< "$(by_server)"; [ $((i1 + r1 - i0 - r0)) -lt "$FULL_AGENTS" ]; do sleep 0.05; done
  end="$(date +%s.%N)"
  python3 -c 'import sys
label, n, i, r, ms, s, e = sys.argv[1], *map(int, sys.argv[2:6]), *map(float, sys.argv[6:8])
print(f"serve --cap-dir, sw deltas, {label} (wall from the renames: {e - s:.2f} s)"
      f"\t{n}\t{i}\t{r}\t{ms / 1000:.2f}\t{i / max(ms / 1000, 0.001):.0f}")' \
    "$round" "$FULL_AGENTS" $((i1 - i0)) $((r1 - r0)) $((t1 - t0)) "$start" "$end" >> "$RESULTS"
done
echo "== verify" >&2
"$BIN/invsync-loadgen" verify --site "$URL" --site-dir "$SITE" --agents-file "$AGENTS_FILE" --json > "$WORK/verify.json" \
  || { echo "verify found reports the site does not hold:" >&2; cat "$WORK/verify.json" >&2; exit 1; }
stop

# The bytes of a no-change check-in and a no-change .cfg, from the real agent and site.
ROOT="$WORK/root" AGENT="$WORK/agent" SMALL="$WORK/small-cap"
mkdir -p "$ROOT/etc" "$SMALL"
printf 'capbench\n' > "$ROOT/etc/hostname"
printf '0123456789abcdef0123456789abcdef\n' > "$ROOT/etc/machine-id"
"$BIN/invsite" offline-enroll CAPBENCH --data-dir "$SITE" --out "$WORK/enroll.json" >/dev/null
"$BIN/invagent" enroll --data-dir "$AGENT" --from-file "$WORK/enroll.json" --root "$ROOT" >/dev/null
"$BIN/invagent" cycle --data-dir "$AGENT" --root "$ROOT" --cap-dir "$SMALL" >/dev/null
"$BIN/invsite" cap-sync "$SMALL" --data-dir "$SITE" >/dev/null
"$BIN/invagent" cycle --data-dir "$AGENT" --root "$ROOT" --cap-dir "$SMALL" >/dev/null
"$BIN/invsite" cap-sync "$SMALL" --data-dir "$SITE" >/dev/null
"$BIN/invagent" cycle --data-dir "$AGENT" --root "$ROOT" --cap-dir "$SMALL" >/dev/null
CHECKIN_BYTES="$(stat -c %s "$SMALL"/Inventry.box/CAPBENCH-*.inv | head -1)"
CFG_BYTES="$(stat -c %s "$SMALL"/Clidata.box/CAPBENCH.cfg)"

echo "| cap-sync ($DB) | files | imported | refused | seconds | imported per second |"
echo "|---|---:|---:|---:|---:|---:|"
while IFS=$'\t' read -r label files imported refused seconds rate; do
  echo "| $label | $files | $imported | $refused | $seconds | $rate |"
done < "$RESULTS"
echo
echo "no-change check-in .inv: $CHECKIN_BYTES bytes; no-change .cfg: $CFG_BYTES bytes"
