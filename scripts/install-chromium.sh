#!/usr/bin/env bash
# Debian's chromium for test/inspector-browser.test.ts, which playwright-core drives: the
# distribution's browser, never one downloaded by playwright. Does nothing when it is installed.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then exit 0; fi
SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo); fi
echo "install-chromium: apt-get install chromium" >&2
"${SUDO[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >&2
[ -x /usr/bin/chromium ] || { echo "install-chromium: /usr/bin/chromium is still missing" >&2; exit 1; }
