# Shared settings of the Linux lane's scripts (sourced, not run).
# Everything fetched or built lives outside the checkout, under LANE_CACHE.

LANE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$LANE_DIR/../.." && pwd)"
LANE_CACHE="${LANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iommufd-emu/linux-lane}"
KERNEL_PACKAGE="${KERNEL_PACKAGE:-linux-source-7.3}"
APT_DIR="$LANE_CACHE/apt"

log() { printf '[linux-lane] %s\n' "$*" >&2; }

# A private apt configuration: its own sources list, lists and archive cache, so fetching by
# package name never touches the system's sources. Debian's signing keys are the system's.
apt_private() {
	apt-get \
		-o Dir::Etc::sourcelist="$APT_DIR/sources.list" \
		-o Dir::Etc::sourceparts=- \
		-o Dir::State::Lists="$APT_DIR/lists" \
		-o Dir::Cache="$APT_DIR" \
		-o Dir::Cache::archives="$APT_DIR/archives" \
		-o APT::Sandbox::User=root \
		"$@"
}

apt_private_setup() {
	mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial"
	cat >"$APT_DIR/sources.list" <<SOURCES
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
SOURCES
	# Refresh the lists at most once a day.
	if [ -z "$(find "$APT_DIR/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null)" ]; then
		log "apt update (private lists in $APT_DIR)"
		apt_private update -qq >&2
	fi
}

# Prints the path of the .deb of package $1 (version $2 if given), downloading it if needed.
apt_private_fetch() {
	local pkg="$1" ver="${2:-}" spec="$1" deb
	[ -n "$ver" ] && spec="$pkg=$ver"
	[ -n "$ver" ] || ver="$(apt_candidate "$pkg")"
	deb="$(ls "$APT_DIR/archives/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -1)"
	if [ -z "$deb" ]; then
		log "fetch $spec"
		(cd "$APT_DIR/archives" && apt_private download -qq "$spec" >&2)
		deb="$(ls "$APT_DIR/archives/${pkg}_${ver//:/%3a}_"*.deb | head -1)"
	fi
	printf '%s\n' "$deb"
}

apt_candidate() {
	apt-cache \
		-o Dir::Etc::sourcelist="$APT_DIR/sources.list" \
		-o Dir::Etc::sourceparts=- \
		-o Dir::State::Lists="$APT_DIR/lists" \
		-o Dir::Cache="$APT_DIR" \
		policy "$1" | awk '/Candidate:/ { print $2 }'
}
