#!/usr/bin/env bash
# Debian packages the tests run as outside evidence, installed by name when their command is
# missing (tests skip a tool that is absent, so CI must have them all): gdb for
# test/debuggers.test.ts, lspci and driverctl for test/sysfs-tools.test.ts. Through the Linux lane's private apt configuration, so the system's
# sources are never changed.
set -euo pipefail
source "$(dirname "$0")/linux-lane/common.sh"

# command:package pairs.
TOOLS=(gdb:gdb lspci:pciutils driverctl:driverctl)

missing=()
for pair in "${TOOLS[@]}"; do
	command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
	apt_private_setup
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt_private install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
