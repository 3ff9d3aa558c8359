#!/usr/bin/env bash
# Everything the lane needs from outside the checkout, fetched from Debian's archive by package
# name through a private apt configuration (common.sh): QEMU 10 or newer (bookworm-backports on
# bookworm: 7.2's edu aborts on a full 4 KiB DMA), a static busybox, and the guest kernel
# (build-kernel.sh). Prints KEY=VALUE lines for the lane: QEMU, BUSYBOX, KERNEL, SYSTEM_MAP.
set -euo pipefail
source "$(dirname "$0")/common.sh"

apt_private_setup

qemu_major() {
	qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p'
}
if [ "$(qemu_major)" = "" ] || [ "$(qemu_major)" -lt 10 ]; then
	target=()
	if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then target=(-t bookworm-backports); fi
	log "installing qemu-system-x86 ${target[*]}"
	DEBIAN_FRONTEND=noninteractive apt_private install -y -qq --no-install-recommends \
		"${target[@]}" qemu-system-x86 >&2
fi
[ "$(qemu_major)" -ge 10 ] || { log "need QEMU >= 10, have $(qemu-system-x86_64 --version | head -1)"; exit 1; }

busybox="$LANE_CACHE/busybox/bin/busybox"
if [ ! -x "$busybox" ]; then
	deb="$(apt_private_fetch busybox-static)"
	rm -rf "$LANE_CACHE/busybox" && mkdir -p "$LANE_CACHE/busybox"
	dpkg-deb -x "$deb" "$LANE_CACHE/busybox.tmp"
	mkdir -p "$LANE_CACHE/busybox/bin"
	cp "$LANE_CACHE/busybox.tmp/bin/busybox" "$busybox"
	rm -rf "$LANE_CACHE/busybox.tmp"
fi
command -v cpio >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cpio >&2

kernel="$("$LANE_DIR/build-kernel.sh")"
echo "QEMU=$(command -v qemu-system-x86_64)"
echo "BUSYBOX=$busybox"
echo "KERNEL=$kernel"
echo "IOMMUFD_TEXT=$(dirname "$kernel")/iommufd-text"
