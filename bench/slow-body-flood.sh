#!/usr/bin/env bash
# The slow-body flood of issue 15 (item 1) against a fresh site: 2,000 connections from this
# machine (127.0.0.1), each sending the head of `POST /cap/v1/enroll` promising 1,000 bytes of
# body and one byte of it, then holding. At the given times after the flood is open it prints
# how many of them the site still holds (ESTABLISHED on the site's port, `ss`), the site's
# VmRSS and how long `/healthz` takes on a fresh connection (from the flooding address itself);
# then it sends SIGTERM while the flood is still held and says how long the site took to exit.
#
# Usage: bench/slow-body-flood.sh INVSITE [--samples 5,25,45,90] [--connections N] [--from ADDR] [-- CONFIG-ARGS...]
# INVSITE is the `invsite` binary to measure; CONFIG-ARGS go to `invsite config` before the
# start (e.g. `--max-unauthenticated-per-address 0`). --from makes the flood come from another
# loopback address (127.0.0.2), so `/healthz` is asked from a different address than the
# flood's. Needs python3, ss, and `ulimit -n` above N.
set -euo pipefail
BIN="$1"; shift
SAMPLES=5,25,45,90 N=2000 FROM=127.0.0.1
while [ $# -gt 0 ]; do
  case "$1" in
    --samples) SAMPLES="$2"; shift 2 ;;
    --connections) N="$2"; shift 2 ;;
    --from) FROM="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
D=$(mktemp -d /tmp/slow-body-flood.XXXX)
trap 'kill -KILL $PID 2>/dev/null || true; rm -rf "$D"' EXIT
"$BIN" init --data-dir "$D/s" --site-code S01 --listen 127.0.0.1:0 --db sqlite >/dev/null 2>&1
if [ $# -gt 0 ]; then "$BIN" config --data-dir "$D/s" "$@" >/dev/null; fi
RUST_LOG=warn "$BIN" serve --data-dir "$D/s" >"$D/out" 2>"$D/err" &
PID=$!
for _ in $(seq 100); do [ -s "$D/s/serve.addr" ] && break; sleep 0.1; done
PORT=$(sed 's/.*://' "$D/s/serve.addr")
echo "site pid $PID, port $PORT, config: ${*:-defaults}"
python3 - "$PORT" "$N" "$PID" "$SAMPLES" "$FROM" <<'PY'
import os, signal, socket, subprocess, sys, time, urllib.request
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
samples = [float(x) for x in sys.argv[4].split(",")]
source = (sys.argv[5], 0)
def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
def held():
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return sum(1 for l in out.splitlines() if l.strip())
def healthz():
    t = time.monotonic()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read()
        return f"{(time.monotonic() - t) * 1000:.0f} ms"
    except Exception as e:
        return f"failed ({type(e).__name__})"
print(f"before: site RSS {rss_mib():.1f} MiB, /healthz {healthz()}")
head = b"POST /cap/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
socks, failed = [], 0
for _ in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=source)
        s.sendall(head)
        socks.append(s)
    except OSError:
        failed += 1
start = time.monotonic()
print(f"opened {len(socks)} of {n} from {source[0]} ({failed} failed to connect or send)")
for at in samples:
    time.sleep(max(0, start + at - time.monotonic()))
    print(f"t={at:>4.0f} s: the site holds {held():>5}, site RSS {rss_mib():.1f} MiB, /healthz {healthz()}")
os.kill(pid, signal.SIGTERM)
t = time.monotonic()
while time.monotonic() - t < 60:
    try:
        with open(f"/proc/{pid}/status") as f:
            if "State:\tZ" in f.read():
                break
    except FileNotFoundError:
        break
    time.sleep(0.05)
else:
    print("SIGTERM with the flood held: still running after 60 s")
    sys.exit(0)
print(f"SIGTERM with the flood held: exited after {time.monotonic() - t:.1f} s")
PY
echo "site log: $(wc -l <"$D/err") lines"
grep -v INFO "$D/err" | cut -c1-240 | head -5 || true
