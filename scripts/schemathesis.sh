#!/usr/bin/env bash
# Runs schemathesis against a temporary site's admin API, driven by the API's own OpenAPI
# document (GET /api/v1/openapi.json), and fails on any server error (5xx). `.ci/run` runs it
# with `PROFILE=dev` and 5 cases per operation; run it by hand with more.
#
#   scripts/schemathesis.sh [MAX_EXAMPLES]        (default 50 test cases per operation)
#
# What it does: installs schemathesis with pip when `st` is missing; builds the binaries; makes
# a site in a temporary directory with three agents enrolled from tests/fixtures/debian (one
# cycle each, and a resync request, so lists and client pages have something to show); serves
# it on 127.0.0.1:0; runs `st run` with the admin token and the `not_a_server_error` check;
# prints the result and exits with schemathesis' status. The site and its directory are
# removed at the end.
#
# Environment:
#   PROFILE=release   the cargo profile to build and run (`dev` builds faster; dependencies,
#                     SQLite above all, are optimised in both)
#   DB=sqlite         the site's database: `sqlite`, or an empty PostgreSQL database's URL
#                     (`postgres://USER@HOST:PORT/DBNAME`, as `invsite init --db` takes it)

set -euo pipefail

MAX_EXAMPLES="${1:-50}"
PROFILE="${PROFILE:-release}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if ! command -v st >/dev/null 2>&1; then
    echo "schemathesis is not installed; installing it with pip" >&2
    python3 -m pip install --quiet schemathesis
fi

cargo build --profile "$PROFILE" -p invsync-cli --bins
case "$PROFILE" in
    dev) BIN="$ROOT/target/debug" ;;
    *) BIN="$ROOT/target/$PROFILE" ;;
esac

WORK="$(mktemp -d)"
SERVER=""
cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

SITE="$WORK/site"
"$BIN/invsite" init --data-dir "$SITE" --site-code S01 --listen 127.0.0.1:0 --db "${DB:-sqlite}" >/dev/null
# The first line the server prints names the address it bound.
mkfifo "$WORK/out"
RUST_LOG=warn "$BIN/invsite" serve --data-dir "$SITE" >"$WORK/out" 2>"$WORK/serve.log" &
SERVER=$!
exec 3<"$WORK/out"
read -r FIRST <&3
URL="${FIRST##* }"
# Keep draining the server's stdout so it never blocks on a full pipe.
cat <&3 >/dev/null &
echo "site at $URL" >&2

SECRET="$("$BIN/invsite" enroll-secret --data-dir "$SITE")"
N=0
for NAME in web1 web2 db1; do
    cp -r tests/fixtures/debian "$WORK/root-$NAME"
    # Three machines, not one renamed twice: copies of one fixture share its machine id and
    # DMI serial, and a site takes a known machine's record over (--merge-duplicates).
    N=$((N + 1))
    printf '%032x\n' "$N" > "$WORK/root-$NAME/etc/machine-id"
    printf 'SCHEMA-%s\n' "$N" > "$WORK/root-$NAME/sys/class/dmi/id/product_serial"
    "$BIN/invagent" enroll --data-dir "$WORK/agent-$NAME" --site "$URL" --secret "$SECRET" \
        --name "$NAME" --root "$WORK/root-$NAME" >/dev/null
    "$BIN/invagent" cycle --data-dir "$WORK/agent-$NAME" --root "$WORK/root-$NAME" >/dev/null
done
"$BIN/invsync" sw web1 --data-dir "$SITE" >/dev/null

TOKEN="$("$BIN/invsite" admin-token --data-dir "$SITE")"
set +e
# From the temporary directory: schemathesis keeps its cache in the working directory.
(cd "$WORK" && st run "$URL/api/v1/openapi.json" \
    --url "$URL" \
    --header "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 10 \
    --no-color)
STATUS=$?
set -e
if grep -q "internal error\|A request failed inside the site" "$WORK/serve.log"; then
    echo "the site logged internal errors:" >&2
    grep "A request failed inside the site" "$WORK/serve.log" >&2 || true
fi
echo "schemathesis exited $STATUS"
exit "$STATUS"
