#!/usr/bin/env bash
# Runs the whole test suite: `cargo test --workspace`, after setting up what the tests need on a
# Debian machine with a Rust toolchain (rustup):
#   - dpkg-query and lspci (pciutils, removed again if this run installed it), for the
#     collector tests that compare with the real machine;
#   - headless Chromium and chromedriver, for the web console's browser test
#     (scripts/install-browser.sh; apt-get, with sudo when not root);
#   - PostgreSQL when one is reachable (PG_ADMIN_URL, default the local server with trust auth;
#     a local cluster that is installed but stopped is started): a fresh database for this run,
#     named in INVSYNC_TEST_POSTGRES, so the PostgreSQL halves of the store and end-to-end tests
#     run too, and dropped at the end with the databases the tests made next to it. Without one
#     they are listed as ignored, with the reason; with CI=true that fails the run.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p invsync-store`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed; this project needs a Rust toolchain: https://rustup.rs" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

command -v dpkg-query >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dpkg; }

# lspci (pciutils), the oracle the pci/ collector is compared with on this machine; removed
# again at the end when this run installed it.
PCI_NEW=""
if ! command -v lspci >/dev/null 2>&1; then
  # Exactly the packages this run adds, so that only those are purged at the end.
  for p in pciutils libpci3 pci.ids; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || PCI_NEW="$PCI_NEW $p"
  done
  if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends pciutils; } >/dev/null 2>&1; then
    echo "could not install pciutils: the pci/ live test compares with /sys alone" >&2
  fi
fi
remove_pciutils() {
  if [ -n "$PCI_NEW" ]; then
    # shellcheck disable=SC2086
    $SUDO apt-get purge -y -qq $PCI_NEW >/dev/null 2>&1 || true
  fi
}

PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_up() { command -v psql >/dev/null 2>&1 && psql "$PG_ADMIN_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; }
if ! pg_up && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in /etc/postgresql/*; do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start 2>/dev/null || true
  done
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if [ -n "${INVSYNC_TEST_POSTGRES:-}" ]; then
  echo "PostgreSQL tests use INVSYNC_TEST_POSTGRES as given"
elif pg_up; then
  PG_DB="invsync_test_$(date +%s)_$$"
  psql "$PG_ADMIN_URL" -Atqc "CREATE DATABASE $PG_DB" >/dev/null
  # Dropped however the run ends, with the per-site databases the tests made next to it
  # (named ${PG_DB}_…); WITH (FORCE) ends a connection a killed test left open.
  drop_test_databases() {
    local db
    for db in $(psql "$PG_ADMIN_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE '${PG_DB}%'"); do
      psql "$PG_ADMIN_URL" -Atqc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
    done
  }
  trap 'drop_test_databases; remove_pciutils' EXIT
  export INVSYNC_TEST_POSTGRES="${PG_ADMIN_URL%/*}/$PG_DB"
  echo "PostgreSQL tests use the fresh database $PG_DB"
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL is not reachable at $PG_ADMIN_URL; CI runs the store suite on both backends" >&2
  exit 1
else
  echo "PostgreSQL is not reachable at $PG_ADMIN_URL: its tests will be listed as ignored" >&2
fi

# Whichever way the run ends (the PostgreSQL branch above replaces this with both clean-ups).
trap -p EXIT | grep -q drop_test_databases || trap remove_pciutils EXIT

scripts/install-browser.sh

cargo --version
cargo test --workspace "$@"
