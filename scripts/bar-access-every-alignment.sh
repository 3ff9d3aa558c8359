#!/usr/bin/env bash
# test/conformance/bar_access.c at every alignment mod 64 of every size 1-256 (about a minute;
# npm test runs one alignment per size), built for this CPU's widest vectors, through the shim.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
gcc -std=gnu11 -O2 -march=native -Wall -Wextra -Werror -DALIGN_RUNS=64 -I include \
	-o "$out/bar_access" test/conformance/bar_access.c
CONFORMANCE_TIMEOUT=600 node --import tsx src/cli/main.ts exec -- "$out/bar_access" | tee "$out/tap"
! grep -q '^not ok' "$out/tap"
