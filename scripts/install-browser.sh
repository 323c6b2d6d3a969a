#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian's `chromium` and `chromium-driver`) for
# the web console's browser test (crates/cli/tests/e2e/console_browser.rs), unless
# /usr/bin/chromedriver is already there. `.ci/run` calls it before `cargo test`.
set -euo pipefail
if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
