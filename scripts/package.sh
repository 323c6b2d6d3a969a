#!/usr/bin/env bash
# Builds the two Debian packages, invsync-agent and invsync-site, into target/debian/:
#
#   scripts/package.sh [REVISION]
#
# REVISION is the Debian revision (default 1): the packages are VERSION-REVISION, VERSION being
# the workspace's. The binaries are built with the `packaging` profile (release, stripped);
# the man pages and completions are generated from the clap definitions by the cli crate's
# `package_assets` example into target/assets/; cargo-deb (`cargo install cargo-deb --locked`)
# puts them together with the units, configuration files, APT hook and maintainer scripts of
# packaging/, as [package.metadata.deb] in crates/cli/Cargo.toml lists them.
set -euo pipefail
cd "$(dirname "$0")/.."

revision="${1:-1}"
if ! cargo deb --version >/dev/null 2>&1; then
  echo "cargo-deb is not installed: cargo install cargo-deb --locked" >&2
  exit 1
fi

cargo build --locked --profile packaging -p invsync-cli --bins

rm -rf target/assets
cargo run --locked --quiet -p invsync-cli --example package_assets -- target/assets
# Debian installs man pages gzip-compressed; -n keeps the build reproducible (no timestamp).
gzip -9nf target/assets/man/*.1

mkdir -p target/debian
for variant in agent site; do
  # --quiet: cargo-deb warns that every asset outside target/release/ "will not be built",
  # which is what is meant (package_assets made them above).
  cargo deb --quiet --locked -p invsync-cli --variant "$variant" --profile packaging --no-build --no-strip \
    --deb-revision "$revision" --output target/debian/
done
ls -l target/debian/*_*-"$revision"_*.deb
