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

"$BIN/invsite" init --data-dir "$WORK/site" --site-code S01 --name "Upgrade fixture" --listen 127.0.0.1:0 >/dev/null
"$BIN/invsite" serve --data-dir "$WORK/site" > "$WORK/serve.out" &
SITE_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/serve.out" ] && break; sleep 0.1; done
URL="$(head -1 "$WORK/serve.out" | awk '{print $NF}')"
SECRET="$("$BIN/invsite" enroll-secret --data-dir "$WORK/site")"
for pair in WEB1:debian APK1:alpine; do
  name="${pair%%:*}"; fixture="${pair##*:}"
  cp -a "tests/fixtures/$fixture" "$WORK/root-$name"
  "$BIN/invagent" enroll --data-dir "$WORK/agent-$name" --site "$URL" --secret "$SECRET" --name "$name" --root "$WORK/root-$name" >/dev/null
  "$BIN/invagent" cycle --data-dir "$WORK/agent-$name" --root "$WORK/root-$name" >/dev/null
done
# A change, kept in history, and a completed software resync.
printf '\nPackage: upgrade-fixture\nStatus: install ok installed\nInstalled-Size: 12\nArchitecture: amd64\nVersion: 1.0-1\nDescription: fixture\n' \
  >> "$WORK/root-WEB1/var/lib/dpkg/status"
"$BIN/invsync" sw WEB1 --data-dir "$WORK/site" >/dev/null
"$BIN/invagent" cycle --data-dir "$WORK/agent-WEB1" --root "$WORK/root-WEB1" >/dev/null
# Left pending: a hardware resync and an event.
"$BIN/invsync" hw WEB1 --data-dir "$WORK/site" >/dev/null
"$BIN/setevnt" APK1 cycle --data-dir "$WORK/site" >/dev/null
kill -TERM "$SITE_PID"; wait "$SITE_PID" || true; SITE_PID=

rm -rf "$OUT"
mkdir -p "$OUT/site" "$OUT/expected"
cp "$WORK/site/config.json" "$WORK/site/admin.token" "$WORK/site/enroll.secret" "$WORK/site/site.db" "$OUT/site/"
for name in WEB1 APK1; do
  "$BIN/invsite" show "$name" --data-dir "$OUT/site" --json > "$OUT/expected/$name.json"
done
"$BIN/invsite" clients --data-dir "$OUT/site" --json > "$OUT/expected/clients.json"
rm -f "$OUT/site/site.db-wal" "$OUT/site/site.db-shm"
echo "wrote $OUT ($(du -sh "$OUT" | cut -f1))"
