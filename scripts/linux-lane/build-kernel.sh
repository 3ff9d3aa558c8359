#!/usr/bin/env bash
# Builds the lane's guest kernel from Debian's linux-source package, tinyconfig plus the fragment
# kernel.config, everything built in. Prints the path of the bzImage. The image is cached under
# LANE_CACHE/kernel/<key>/, the key hashing the source package's version and the fragment, so a
# second run costs nothing; the build tree is kept so a changed fragment rebuilds incrementally.
# Beside the image: System.map, the config, and iommufd-text (iommufd-text.sh).
set -euo pipefail
source "$(dirname "$0")/common.sh"

apt_private_setup
version="$(apt_candidate "$KERNEL_PACKAGE")"
[ -n "$version" ] && [ "$version" != "(none)" ] || { log "no candidate for $KERNEL_PACKAGE"; exit 1; }
key="$(printf '%s %s\n' "$KERNEL_PACKAGE" "$version" | cat - "$LANE_DIR/kernel.config" | sha256sum | cut -c1-16)"
out="$LANE_CACHE/kernel/$key"
if [ -s "$out/bzImage" ] && [ -s "$out/iommufd-text" ]; then
	log "kernel cached: $KERNEL_PACKAGE $version ($key)"
	printf '%s\n' "$out/bzImage"
	exit 0
fi

for tool in gcc make flex bison bc; do
	command -v "$tool" >/dev/null || missing="${missing:-} $tool"
done
[ -e /usr/include/libelf.h ] || missing="${missing:-} libelf-dev"
[ -e /usr/include/openssl/ssl.h ] || missing="${missing:-} libssl-dev"
if [ -n "${missing:-}" ]; then
	log "installing build tools:$missing"
	apt-get update -qq >&2
	# shellcheck disable=SC2086 # a list of package names (each tool's package has its name)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
fi

src="$LANE_CACHE/src/$KERNEL_PACKAGE-$version"
if [ ! -e "$src/Makefile" ]; then
	deb="$(apt_private_fetch "$KERNEL_PACKAGE" "$version")"
	log "unpacking $(basename "$deb")"
	rm -rf "$src.tmp" && mkdir -p "$src.tmp"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$src.tmp" --wildcards './usr/src/*.tar.xz'
	tar -xJf "$src.tmp"/usr/src/*.tar.xz -C "$src.tmp"
	rm -rf "$src" && mv "$src.tmp/$KERNEL_PACKAGE" "$src" && rm -rf "$src.tmp"
fi

build="$LANE_CACHE/build/$KERNEL_PACKAGE-$version"
mkdir -p "$build"
log "configuring in $build"
make -s -C "$src" O="$build" tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$LANE_DIR/kernel.config" >/dev/null
make -s -C "$src" O="$build" olddefconfig >&2
# Every option the fragment asks for must have survived olddefconfig (a dependency it lacks
# silently drops it otherwise).
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qx "$line" "$build/.config" || { log "fragment option not in .config: $line"; bad=1; } ;;
	"# CONFIG_"*" is not set")
		opt="${line#\# }"; opt="${opt%% *}"
		! grep -q "^$opt=" "$build/.config" || { log "fragment option set anyway: $opt"; bad=1; } ;;
	esac
done <"$LANE_DIR/kernel.config"
[ "$bad" = 0 ] || exit 1

jobs="${LANE_JOBS:-$(nproc)}"
log "building bzImage (make -j$jobs; about 13 minutes cold on 2 idle cores)"
started=$SECONDS
nice -n "${LANE_NICE:-10}" make -s -C "$src" O="$build" -j"$jobs" bzImage >"$build/build.log" 2>&1 || {
	tail -40 "$build/build.log" >&2
	exit 1
}
log "kernel built in $((SECONDS - started)) s"
mkdir -p "$out"
"$LANE_DIR/iommufd-text.sh" "$build" "$build/System.map" >"$out/iommufd-text"
cp "$build/arch/x86/boot/bzImage" "$out/bzImage.tmp"
cp "$build/System.map" "$out/System.map"
cp "$build/.config" "$out/config"
mv "$out/bzImage.tmp" "$out/bzImage"
printf '%s\n' "$out/bzImage"
