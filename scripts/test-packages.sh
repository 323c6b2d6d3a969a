#!/usr/bin/env bash
# Tests the Debian packages on this machine, as root: builds them (scripts/package.sh, twice:
# revision 1 and 2), installs revision 1, checks the files dpkg lists, runs
# `systemd-analyze verify` on the installed units, creates a site in the packaged data
# directory and runs /usr/bin/invsite serve as the unit would (the default configuration,
# /etc/invsite/site.toml), enrolls the packaged agent there and runs it the way the unit does,
# installs a small package to check that the APT hook makes the site see it within seconds
# (printing the seconds, which BENCHMARKS.md records), upgrades both packages to revision 2,
# purges them and checks nothing of theirs is left.
#
# It refuses to run on a machine where either package, or its directories, already exist,
# and it puts the machine back as it found it however it ends (packages purged, processes
# stopped, systemd removed again if it installed it for systemd-analyze).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test-packages.sh installs packages: run it as root" >&2
  exit 1
fi
PROBE=invsync-hook-probe
for p in invsync-agent invsync-site "$PROBE"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed; then
    echo "$p is installed on this machine; this test installs and purges it, so it will not run here" >&2
    exit 1
  fi
done
for path in /etc/invsite /etc/invagent /etc/apt/apt.conf.d/80invagent /var/lib/invsite /var/lib/invagent /var/lib/private/invsite /var/lib/private/invagent; do
  if [ -e "$path" ]; then
    echo "$path exists on this machine; this test would delete it, so it will not run here" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
site_pid=""
agent_pid=""
installed_systemd=""
cleanup() {
  local rc=$?
  set +e
  [ -n "$site_pid" ] && kill "$site_pid" 2>/dev/null && wait "$site_pid" 2>/dev/null
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  dpkg --purge "$PROBE" invsync-agent invsync-site >/dev/null 2>&1
  if [ -n "$installed_systemd" ]; then
    apt-get remove -y -qq systemd >/dev/null 2>&1
  fi
  rm -rf "$work"
  if [ "$rc" != 0 ]; then echo "test-packages: FAILED" >&2; fi
  exit "$rc"
}
trap cleanup EXIT

fail() { echo "test-packages: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "Building the packages (revisions 1 and 2)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
deb() { echo "$work/$1_${version}-$2_${arch}.deb"; }
# cargo-deb replaces an older build of a package in target/debian/, so each is kept aside.
for rev in 1 2; do
  scripts/package.sh "$rev"
  cp target/debian/invsync-agent_"${version}-${rev}"_*.deb target/debian/invsync-site_"${version}-${rev}"_*.deb "$work/"
done
for rev in 1 2; do
  for p in invsync-agent invsync-site; do
    [ -f "$(deb "$p" "$rev")" ] || fail "no $(deb "$p" "$rev")"
  done
done

step "Installing revision 1"
dpkg -i "$(deb invsync-agent 1)" "$(deb invsync-site 1)"

step "Checking the installed files"
expect_files() {
  local pkg="$1"; shift
  local listed
  listed="$(dpkg -L "$pkg")"
  for f in "$@"; do
    grep -qx "$f" <<<"$listed" || fail "$pkg does not list $f"
    [ -e "$f" ] || fail "$pkg lists $f but it is not there"
  done
}
expect_files invsync-agent /usr/bin/invagent /usr/lib/systemd/system/invagent.service \
  /etc/invagent/agent.toml /etc/apt/apt.conf.d/80invagent \
  /usr/share/man/man1/invagent.1.gz /usr/share/man/man1/invagent-run.1.gz \
  /usr/share/bash-completion/completions/invagent /usr/share/zsh/vendor-completions/_invagent \
  /usr/share/fish/vendor_completions.d/invagent.fish
expect_files invsync-site /usr/bin/invsite /usr/bin/invsync /usr/bin/setevnt \
  /usr/lib/systemd/system/invsite.service /etc/invsite/site.toml \
  /usr/share/man/man1/invsite.1.gz /usr/share/man/man1/invsite-serve.1.gz \
  /usr/share/man/man1/invsync.1.gz /usr/share/man/man1/setevnt.1.gz \
  /usr/share/bash-completion/completions/invsite /usr/share/bash-completion/completions/invsync \
  /usr/share/bash-completion/completions/setevnt /usr/share/zsh/vendor-completions/_invsite \
  /usr/share/fish/vendor_completions.d/setevnt.fish
dpkg-query -W -f='${Conffiles}\n' invsync-agent | grep -q '/etc/invagent/agent.toml' || fail "agent.toml is not a conffile"
dpkg-query -W -f='${Conffiles}\n' invsync-agent | grep -q '/etc/apt/apt.conf.d/80invagent' || fail "the APT hook is not a conffile"
dpkg-query -W -f='${Conffiles}\n' invsync-site | grep -q '/etc/invsite/site.toml' || fail "site.toml is not a conffile"
for b in invagent invsite invsync setevnt; do
  "/usr/bin/$b" --version >/dev/null || fail "/usr/bin/$b --version failed"
  if readelf -S "/usr/bin/$b" | grep -q '\.symtab\|\.debug_'; then fail "/usr/bin/$b is not stripped"; fi
done
# The maintainer scripts made nothing: no site, no enrollment, no data directory.
for path in /var/lib/invsite /var/lib/invagent; do
  [ -e "$path" ] && fail "installing created $path"
done

step "systemd-analyze verify on the installed units"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get install -y -qq systemd >/dev/null
  installed_systemd=yes
fi
systemd-analyze verify /usr/lib/systemd/system/invagent.service /usr/lib/systemd/system/invsite.service

step "Starting /usr/bin/invsite serve with /etc/invsite/site.toml"
grep -qx 'data_dir = "/var/lib/invsite"' /etc/invsite/site.toml || fail "site.toml does not set data_dir"
/usr/bin/invsite init --data-dir /var/lib/invsite --site-code PKG --listen 127.0.0.1:0 >/dev/null
# As the unit runs it: no flags, the configuration file (or the same default) gives the data
# directory. Its first line on stdout names the address.
env -u INVSITE_DIR /usr/bin/invsite serve >"$work/site.out" 2>"$work/site.log" &
site_pid=$!
for _ in $(seq 1 600); do grep -q 'serving on' "$work/site.out" && break; sleep 0.1; done
grep -q 'serving on' "$work/site.out" || fail "invsite serve did not start: $(cat "$work/site.log")"
url="$(sed -n 's/.* serving on //p' "$work/site.out" | head -1)"
health="$(curl -fsS --max-time 10 "$url/healthz" 2>/dev/null || true)"
[ -n "$health" ] || fail "$url/healthz did not answer"
echo "site at $url: /healthz said $health"

step "The APT hook: dpkg -i of a small package to the site showing it"
env -u INVAGENT_DIR /usr/bin/invagent enroll --data-dir /var/lib/invagent --site "$url" \
  --secret "$(/usr/bin/invsite enroll-secret --data-dir /var/lib/invsite)" --name PKGTEST >/dev/null
/usr/bin/invagent run --data-dir /var/lib/invagent --interval 1h 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 1 600); do [ -S /var/lib/invagent/agent.sock ] && break; sleep 0.1; done
[ -S /var/lib/invagent/agent.sock ] || fail "the agent opened no trigger socket: $(cat "$work/agent.log")"
make_probe() {
  mkdir -p "$work/probe-$1/DEBIAN"
  printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: invsync tests <invsync@localhost>\nDescription: probe package for the invsync APT hook test\n' \
    "$PROBE" "$1" >"$work/probe-$1/DEBIAN/control"
  dpkg-deb --build --root-owner-group "$work/probe-$1" "$work/probe-$1.deb" >/dev/null
}
# Whether the site holds the probe package at this version for PKGTEST.
site_shows() {
  /usr/bin/invsite show PKGTEST --data-dir /var/lib/invsite --json 2>/dev/null | tr -d ' \n' \
    | grep -q "\"dpkg/$PROBE/all\":{[^}]*\"version\":\"$1\""
}
# dpkg -i alone does not run apt's hooks; this is what apt runs after dpkg, from the
# configuration file the package installed.
run_hook() {
  local cmd
  cmd="$(sed -n 's/^DPkg::Post-Invoke { "\(.*\)"; };$/\1/p' /etc/apt/apt.conf.d/80invagent)"
  [ -n "$cmd" ] || fail "no DPkg::Post-Invoke line in 80invagent"
  sh -c "$cmd"
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
for v in 1.0 1.1; do
  make_probe "$v"
  site_shows "$v" && fail "the site shows $PROBE $v before it is installed"
  start=$(date +%s.%N)
  dpkg -i "$work/probe-$v.deb" >/dev/null
  run_hook
  for _ in $(seq 1 600); do site_shows "$v" && break; sleep 0.1; done
  site_shows "$v" || fail "the site does not show $PROBE $v after the hook: $(cat "$work/agent.log")"
  end=$(date +%s.%N)
  echo "APT hook: dpkg -i of $PROBE $v to the site showing it: $(elapsed "$start" "$end") s"
done
# Through apt itself too, when it can install a local file (apt 1.1+), which runs the hook.
if command -v apt-get >/dev/null 2>&1; then
  make_probe 1.2
  start=$(date +%s.%N)
  apt-get install -y -qq "$work/probe-1.2.deb" >/dev/null 2>&1 || fail "apt-get install of the probe failed"
  for _ in $(seq 1 600); do site_shows 1.2 && break; sleep 0.1; done
  site_shows 1.2 || fail "the site does not show $PROBE 1.2 after apt-get install"
  end=$(date +%s.%N)
  echo "APT hook: apt-get install of $PROBE 1.2 to the site showing it: $(elapsed "$start" "$end") s"
fi
dpkg --purge "$PROBE" >/dev/null
# A missing agent never fails apt: the hook with the agent stopped.
kill "$agent_pid"; wait "$agent_pid" || fail "invagent run did not stop cleanly on SIGTERM"
agent_pid=""
run_hook || fail "the hook failed with no agent running"

kill "$site_pid"; wait "$site_pid" || fail "invsite serve did not stop cleanly on SIGTERM"
site_pid=""

step "Upgrading to revision 2"
echo "# kept across the upgrade" >>/etc/invsite/site.toml
dpkg -i "$(deb invsync-agent 2)" "$(deb invsync-site 2)"
for p in invsync-agent invsync-site; do
  [ "$(dpkg-query -W -f='${Version}' "$p")" = "${version}-2" ] || fail "$p is not at ${version}-2"
done
grep -q "kept across the upgrade" /etc/invsite/site.toml || fail "the upgrade replaced the edited site.toml"
/usr/bin/invsite clients --data-dir /var/lib/invsite | grep -q PKGTEST || fail "the upgraded site lost its client"

step "Purging both"
# Enabled as an administrator would (systemctl works on the unit files without a running
# systemd), so that purging has enablement links to remove.
systemctl enable invagent.service invsite.service
[ -L /etc/systemd/system/multi-user.target.wants/invsite.service ] || fail "systemctl enable made no link"
dpkg --purge invsync-agent invsync-site
left=""
for path in /usr/bin/invagent /usr/bin/invsite /usr/bin/invsync /usr/bin/setevnt \
  /usr/lib/systemd/system/invagent.service /usr/lib/systemd/system/invsite.service \
  /etc/invagent /etc/invsite /etc/apt/apt.conf.d/80invagent \
  /var/lib/invagent /var/lib/invsite /var/lib/private/invagent /var/lib/private/invsite \
  /usr/share/man/man1/invsite.1.gz /usr/share/bash-completion/completions/invsite; do
  [ -e "$path" ] || [ -L "$path" ] && left="$left $path"
done
units="$(find /etc/systemd/system /usr/lib/systemd/system -name 'inv*.service' 2>/dev/null || true)"
[ -z "$left$units" ] || fail "left after purge:$left $units"
echo "test-packages: OK"
