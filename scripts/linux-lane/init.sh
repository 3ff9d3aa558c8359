#!/bin/busybox sh
# /init of the Linux lane's guest (see docs/linux-lane.md). Binds the edus to vfio-pci, runs the
# variant's conformance programs one after another and prints their output on the second serial
# port (ttyS1) between marker lines the lane parses:
#
#   @@lane begin <program>
#   ...the program's TAP output...
#   @@lane end <program> exit=<status>
#   @@lane done
#
# The first serial port (ttyS0) is the console: kernel messages and this script's own notes.
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug

variant=
for arg in $(cat /proc/cmdline); do
	case "$arg" in lane.variant=*) variant="${arg#lane.variant=}" ;; esac
done
# shellcheck disable=SC1090 # written by the lane: PROGRAMS, BIND, NOIOMMU_MODE, FAIL_NTH
. "/lane/variants/$variant"
out=/dev/ttyS1
note() { echo "lane: $*" >/dev/console; }

param=/sys/module/vfio/parameters/enable_unsafe_noiommu_mode

# Binds each device in $BIND to vfio-pci unless it has a driver already; the order gives the
# cdev numbers (vfio0, vfio1, then noiommu-vfio2).
bind_all() {
	for bdf in $BIND; do
		dev=/sys/bus/pci/devices/$bdf
		[ -e "$dev" ] || { note "no device $bdf"; continue; }
		echo vfio-pci >"$dev/driver_override"
		[ -e "$dev/driver" ] || echo "$bdf" >/sys/bus/pci/drivers_probe 2>/dev/null
	done
}

# Puts back what a program may have changed (noiommu_switch_runtime switches the mode and
# unbinds), so every program starts from the variant's boot state.
restore() {
	if [ "$NOIOMMU_MODE" = 1 ]; then echo Y >$param; else echo N >$param; fi
	bind_all
}

# fail-nth: fail GFP_KERNEL allocations too (as the kernel's own iommufd fail-nth selftest does),
# no splat per injected failure, and only where iommufd's code is on the stack (elsewhere the
# injection fails ACPI and PCI allocations and can oops the guest).
arm_fail_nth() {
	read -r start end </lane/iommufd-text
	echo N >/sys/kernel/debug/failslab/ignore-gfp-wait
	echo N >/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait
	echo N >/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem
	for attr in failslab fail_page_alloc fail_usercopy fail_iommufd; do
		d=/sys/kernel/debug/$attr
		[ -d "$d" ] || { note "no $d"; continue; }
		echo 0 >"$d/verbose"
		echo "$start" >"$d/require-start"
		echo "$end" >"$d/require-end"
		echo 32 >"$d/stacktrace-depth"
	done
}

note "variant $variant: $PROGRAMS"
bind_all
ls /dev/vfio/devices >/dev/console 2>&1
[ "$FAIL_NTH" = 1 ] && arm_fail_nth
for p in $PROGRAMS; do
	echo "@@lane begin $p" >$out
	(cd /tmp && exec "/lane/bin/$p") >$out 2>&1 </dev/null
	echo "@@lane end $p exit=$?" >$out
	restore
done
echo "@@lane done" >$out
sync
poweroff -f
# Without ACPI power-off a reset ends QEMU too (-no-reboot).
reboot -f
