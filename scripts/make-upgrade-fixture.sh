#!/usr/bin/env bash
# Writes a site data directory made by this release into tests/fixtures/upgrade/<version>/, for
# the end-to-end test that opens every such fixture with the current code (crates/cli/tests/e2e/
# upgrade.rs): a database written by an earlier release must open, migrate and keep its data.
# Run it once per release whose schema changed, and commit the result.
#
#   scripts/make-upgrade-fixture.sh [VERSION]     (default: the workspace version)
#
# The site (S01, SQLite) holds two clients from tests/fixtures (debian and alpine), a change
# kept in history, a completed software resync, a pending hardware resync and a pending event.
# Beside the data directory, expected/ holds what `invsite show --json` and `invsite clients
# --json` printed for it, which the test compares with what the current code prints.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VERSION="${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}"
OUT="tests/fixtures/upgrade/$VERSION"
cargo build -q -p invsync-cli
BIN="$ROOT/target/debug"
WORK="$(mktemp -d)"
SITE_PID=
cleanup() { [ -n "$SITE_PID" ] && kill "$SITE_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# make_site DB OUT: a site on DB (sqlite or a PostgreSQL URL) with the fixture's history, its
# data directory's files copied to OUT/site and what show and clients print to OUT/expected.
make_site() {
  local db="$1" out="$2" work="$WORK/$(basename "$2")"
  mkdir -p "$work"
  "$BIN/invsite" init --data-dir "$work/site" --site-code S01 --name "Upgrade fixture" --listen 127.0.0.1:0 --db "$db" >/dev/null
  "$BIN/invsite" serve --data-dir "$work/site" > "$work/serve.out" &
  SITE_PID=$!
  for _ in $(seq 1 100); do [ -s "$work/serve.out" ] && break; sleep 0.1; done
  local url secret
  url="$(head -1 "$work/serve.out" | awk '{print $NF}')"
  secret="$("$BIN/invsite" enroll-secret --data-dir "$work/site")"
  for pair in WEB1:debian APK1:alpine; do
    local name="${pair%%:*}" fixture="${pair##*:}"
    cp -a "tests/fixtures/$fixture" "$work/root-$name"
    "$BIN/invagent" enroll --data-dir "$work/agent-$name" --site "$url" --secret "$secret" --name "$name" --root "$work/root-$name" >/dev/null
    "$BIN/invagent" cycle --data-dir "$work/agent-$name" --root "$work/root-$name" >/dev/null
  done
  # A change, kept in history, and a completed software resync.
  printf '\nPackage: upgrade-fixture\nStatus: install ok installed\nInstalled-Size: 12\nArchitecture: amd64\nVersion: 1.0-1\nDescription: fixture\n' \
    >> "$work/root-WEB1/var/lib/dpkg/status"
  "$BIN/invsync" sw WEB1 --data-dir "$work/site" >/dev/null
  "$BIN/invagent" cycle --data-dir "$work/agent-WEB1" --root "$work/root-WEB1" >/dev/null
  # Left pending: a hardware resync and an event.
  "$BIN/invsync" hw WEB1 --data-dir "$work/site" >/dev/null
  "$BIN/setevnt" APK1 cycle --data-dir "$work/site" >/dev/null
  kill -TERM "$SITE_PID"; wait "$SITE_PID" || true; SITE_PID=
  rm -rf "$out"
  mkdir -p "$out/site" "$out/expected"
  for f in config.json admin.token enroll.secret site.db; do
    [ -e "$work/site/$f" ] && cp "$work/site/$f" "$out/site/"
  done
  for name in WEB1 APK1; do
    "$BIN/invsite" show "$name" --data-dir "$work/site" --json > "$out/expected/$name.json"
  done
  "$BIN/invsite" clients --data-dir "$work/site" --json > "$out/expected/clients.json"
}

rm -rf "$OUT"
make_site sqlite "$OUT"
rm -f "$OUT/site/site.db-wal" "$OUT/site/site.db-shm"

# The same on PostgreSQL, when one is reachable: the database as a plain SQL dump, which the
# test loads into a fresh database (config.json's URL is replaced by the test's).
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if psql "$PG_ADMIN_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  PG_DB="invsync_fixture_$$"
  psql "$PG_ADMIN_URL" -Atqc "CREATE DATABASE $PG_DB" >/dev/null
  PG_URL="${PG_ADMIN_URL%/*}/$PG_DB"
  make_site "$PG_URL" "$OUT/postgres"
  pg_dump --no-owner --no-privileges --format=plain "$PG_URL" > "$OUT/postgres/dump.sql"
  psql "$PG_ADMIN_URL" -Atqc "DROP DATABASE $PG_DB WITH (FORCE)" >/dev/null
else
  echo "PostgreSQL is not reachable at $PG_ADMIN_URL: no PostgreSQL fixture" >&2
fi
echo "wrote $OUT ($(du -sh "$OUT" | cut -f1))"
