#!/usr/bin/env bash
# How long the admin API's list queries take on an existing site (the console's pages make the
# same store calls): the client list by name, by last seen and by software update time, the
# request list, one package's clients (a common one with and without a version range, and a rare
# one), every package, and a package search. The first software query waits for the site's
# software index to be built, so none of the timed ones does. Starts `invsite serve` (release build) on the site's data directory,
# times each query RUNS times with curl and prints the median and the slowest as a Markdown
# table, then stops the server.
#
# Usage: bench/admin-queries.sh --site-dir DIR [--runs N] [--package NAME]
# DIR is a site's data directory, e.g. the one `bench/site-throughput.sh --work W --keep`
# leaves in W/site. Without --package, the package with the most clients is queried.
set -euo pipefail
cd "$(dirname "$0")/.."

SITE="" RUNS=5 PACKAGE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --site-dir) SITE="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --package) PACKAGE="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "admin-queries.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$SITE" ] && [ -f "$SITE/config.json" ] || { echo "--site-dir must name a site's data directory" >&2; exit 2; }

cargo build --release -q -p invsync-cli
BIN="$PWD/target/release"
OUT="$(mktemp)"
RUST_LOG=warn "$BIN/invsite" serve --data-dir "$SITE" --listen 127.0.0.1:0 > "$OUT" 2>/dev/null &
SERVER_PID=$!
trap 'kill -TERM $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true; rm -f "$OUT"' EXIT
for _ in $(seq 1 100); do [ -s "$OUT" ] && break; sleep 0.1; done
URL="$(head -1 "$OUT" | awk '{print $NF}')"
TOKEN="$("$BIN/invsite" admin-token --data-dir "$SITE" | tail -1)"
get() { curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "$URL$1"; }

CLIENTS="$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/api/v1/clients?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"
if [ -z "$PACKAGE" ]; then
  PACKAGE="$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/api/v1/software/packages?limit=1000" |
    python3 -c 'import json,sys; p=json.load(sys.stdin)["packages"]; print(max(p, key=lambda x: x["clients"])["name"])')"
fi
VERSION="$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/api/v1/software?name=$PACKAGE&limit=1" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["holders"][0]["version"])')"
# A package few clients have (the one with the fewest among the first thousand), for the
# other way of finding holders (looked up one by one instead of walking the clients by name).
RARE="$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/api/v1/software/packages?limit=1000" |
  python3 -c 'import json,sys; p=json.load(sys.stdin)["packages"]; print(min(p, key=lambda x: x["clients"])["name"])')"
RANGE="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(">=" + sys.argv[1]))' "$VERSION")"

echo "site: $CLIENTS clients; package: $PACKAGE (range >=$VERSION); rare package: $RARE"
echo
echo "| query | median s | slowest s |"
echo "|---|---:|---:|"
for q in \
  "/api/v1/clients?limit=100" \
  "/api/v1/clients?limit=100&offset=$((CLIENTS / 2))" \
  "/api/v1/clients?sort=last_seen&desc=true&limit=100" \
  "/api/v1/clients?sort=sw_updated&desc=true&limit=100" \
  "/api/v1/clients?search=00042&limit=100" \
  "/api/v1/requests?limit=100" \
  "/api/v1/software?name=$PACKAGE&limit=100" \
  "/api/v1/software?name=$PACKAGE&version=$RANGE&limit=100" \
  "/api/v1/software?name=$PACKAGE&format=csv" \
  "/api/v1/software?name=$RARE&limit=100" \
  "/api/v1/software/packages?limit=100" \
  "/api/v1/software/packages?search=lib&limit=100"; do
  times="$(for _ in $(seq 1 "$RUNS"); do get "$q"; done | sort -n)"
  median="$(printf '%s\n' "$times" | sed -n "$(( (RUNS + 1) / 2 ))p")"
  slowest="$(printf '%s\n' "$times" | tail -1)"
  printf '| `%s` | %.3f | %.3f |\n' "$q" "$median" "$slowest"
done
