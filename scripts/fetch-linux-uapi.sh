#!/usr/bin/env bash
# Fetches the kernel's own uAPI headers as Debian ships them (linux-libc-dev 7.x, which carries the
# no-IOMMU series) and unpacks them into build/linux-uapi, for test/linux-uapi-oracle.test.ts.
#
# Nothing is installed and the system's apt sources are left alone: apt runs with a private
# sources list, lists, cache and archive directory under build/apt, `apt-get download` fetches the
# .deb and `dpkg -x` unpacks it. trixie-backports first (the 7.3 baseline), then sid.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=build/linux-uapi
APTDIR=$PWD/build/apt
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -f "$OUT/usr/include/linux/iommufd.h" ] && grep -q IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA "$OUT/usr/include/linux/iommufd.h"; then
	echo "fetch-linux-uapi: $OUT already holds $(cat "$OUT/VERSION" 2>/dev/null || echo 'the headers')"
	exit 0
fi

mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/etc"
# Signed by Debian's archive keys when the machine has them, else accepted unsigned (the files
# are only compared against, never installed).
if [ -r "$KEYRING" ]; then trust="signed-by=$KEYRING"; else trust="trusted=yes"; fi
cat >"$APTDIR/etc/sources.list" <<LIST
deb [$trust] $MIRROR trixie-backports main
deb [$trust] $MIRROR sid main
LIST

apt_private=(
	-o "Dir::Etc::sourcelist=$APTDIR/etc/sources.list"
	-o "Dir::Etc::sourceparts=-"
	-o "Dir::State::Lists=$APTDIR/lists"
	-o "Dir::Cache=$APTDIR/cache"
	-o "Dir::Cache::archives=$APTDIR/cache/archives"
	-o "APT::Get::List-Cleanup=0"
	-o "Acquire::Languages=none"
	-o "APT::Architecture=amd64"
	-o "APT::Architectures=amd64"
	-o "APT::Sandbox::User=root"
)

apt-get "${apt_private[@]}" -qq update

# The newest 7.x: from trixie-backports if it has one, else from sid.
pick() {
	apt-cache "${apt_private[@]}" madison linux-libc-dev |
		awk -F'|' -v suite="$1" '$3 ~ suite { gsub(/ /, "", $2); print $2 }' |
		grep -E '^7\.' | sort -V | tail -1
}
version=$(pick 'trixie-backports')
[ -n "$version" ] || version=$(pick 'sid|unstable')
if [ -z "$version" ]; then
	echo "fetch-linux-uapi: no linux-libc-dev 7.x in trixie-backports or sid" >&2
	exit 1
fi

rm -rf "$OUT" "$APTDIR/deb"
mkdir -p "$APTDIR/deb" "$OUT"
(cd "$APTDIR/deb" && apt-get "${apt_private[@]}" -qq download "linux-libc-dev=$version")
dpkg -x "$APTDIR"/deb/linux-libc-dev_*.deb "$OUT"
echo "linux-libc-dev $version" >"$OUT/VERSION"
echo "fetch-linux-uapi: unpacked linux-libc-dev $version into $OUT"
