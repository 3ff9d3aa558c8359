#!/usr/bin/env bash
# QEMU 10 or newer for test/qemu.test.ts (its iommufd backend), from Debian's packages through the
# Linux lane's private apt configuration (bookworm-backports on bookworm). Does nothing when the
# machine's QEMU is new enough.
set -euo pipefail
source "$(dirname "$0")/linux-lane/common.sh"

qemu_major() {
	qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p'
}

ensure_qemu() {
	if [ "$(qemu_major)" != "" ] && [ "$(qemu_major)" -ge 10 ]; then return; fi
	apt_private_setup
	local target=()
	if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then target=(-t bookworm-backports); fi
	log "installing qemu-system-x86 ${target[*]}"
	DEBIAN_FRONTEND=noninteractive apt_private install -y -qq --no-install-recommends \
		"${target[@]}" qemu-system-x86 >&2
	[ "$(qemu_major)" -ge 10 ] || { log "need QEMU >= 10, have $(qemu-system-x86_64 --version | head -1)"; exit 1; }
}

ensure_qemu
