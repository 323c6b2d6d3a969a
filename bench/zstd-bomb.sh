#!/usr/bin/env bash
# The site's memory for zstd bombs sent to `POST /cap/v1/report`: 4 GiB of zeros compressed to
# about 134 KB, sent with a made-up client key and with a good one (an enrolled client's), once
# and N times at once. Each case starts a fresh `invsite serve` with the default limits
# (max_decoded_bytes 64 MiB), enrolls one client with curl, and prints the answers and the
# server's resident memory: VmRSS before the bombs, the peak (VmHWM), and VmRSS a second after
# the last answer (what the allocator kept), in MiB.
#
# Two bombs: `stream` has no content size in its frame header (`head -c 4G /dev/zero | zstd`),
# so the site learns its size only by decoding; `sized` declares its 4 GiB (`zstd FILE`).
#
# Usage: bench/zstd-bomb.sh [--invsite PATH] [--concurrent N]
# Without --invsite, the debug build's `target/debug/invsite` (built here first); dependencies
# are optimised even there (the workspace's dev profile), and the figures are buffer sizes, which
# do not depend on optimisation.
set -euo pipefail
cd "$(dirname "$0")/.."

INVSITE="" N=12
while [ $# -gt 0 ]; do
  case "$1" in
    --invsite) INVSITE="$2"; shift 2 ;;
    --concurrent) N="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "zstd-bomb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$INVSITE" ]; then
  cargo build -q -p invsync-cli --bin invsite
  INVSITE="$PWD/target/debug/invsite"
fi

WORK="$(mktemp -d)"
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

head -c 4G /dev/zero | zstd -q -3 -c > "$WORK/stream.zst"
truncate -s 4G "$WORK/zeros"
zstd -q -3 -c "$WORK/zeros" > "$WORK/sized.zst"
rm "$WORK/zeros"

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# One case: a fresh site, one enrolled client, then `count` bombs at once with `key`.
run_case() {
  local bomb="$1" key="$2" count="$3" dir="$WORK/site-$1-$2-$3"
  "$INVSITE" init --data-dir "$dir" --site-code S01 --listen 127.0.0.1:0 >/dev/null 2>&1
  "$INVSITE" serve --data-dir "$dir" > "$dir.out" 2>/dev/null &
  SERVER=$!
  local url=""
  for _ in $(seq 100); do
    url="$(head -n1 "$dir.out" 2>/dev/null | awk '{ print $NF }')"
    [ -n "$url" ] && break
    sleep 0.1
  done
  local secret token
  secret="$("$INVSITE" enroll-secret --data-dir "$dir")"
  token="$(curl -sf "$url/cap/v1/enroll" -H 'Content-Type: application/json' \
    -d "{\"secret\":\"$secret\",\"name\":\"bomber\",\"machine_id\":\"0123456789abcdef0123456789abcdef\"}" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
  if [ "$key" = bad ]; then
    # The enrolled client's id with a made-up key.
    token="${token%%.*}.$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  fi
  local before
  before="$(field "$SERVER" VmRSS)"
  local pids=() i
  for i in $(seq "$count"); do
    curl -s -o /dev/null -w '%{http_code}\n' "$url/cap/v1/report" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/json' -H 'Content-Encoding: zstd' \
      --data-binary "@$WORK/$bomb.zst" > "$dir.status.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  sleep 1
  local statuses
  statuses="$(cat "$dir".status.* | sort | uniq -c | awk '{ printf "%s x%s ", $2, $1 }')"
  printf '| %s | %s | %s | %s| %s | %s | %s |\n' "$bomb" "$key" "$count" "$statuses" \
    "$(mib "$before")" "$(mib "$(field "$SERVER" VmHWM)")" "$(mib "$(field "$SERVER" VmRSS)")"
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
}

echo "bombs: stream $(stat -c %s "$WORK/stream.zst") B, sized $(stat -c %s "$WORK/sized.zst") B; invsite: $INVSITE"
echo
echo "| bomb | key | at once | answers | VmRSS before (MiB) | peak VmHWM (MiB) | VmRSS 1 s after (MiB) |"
echo "| --- | --- | ---: | --- | ---: | ---: | ---: |"
for bomb in stream sized; do
  for key in bad good; do
    run_case "$bomb" "$key" 1
    run_case "$bomb" "$key" "$N"
  done
done
