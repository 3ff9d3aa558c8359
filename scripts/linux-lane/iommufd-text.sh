#!/usr/bin/env bash
# Prints "START END": the kernel text address range of iommufd's own code (drivers/iommu/iommufd),
# for the fault-injection stack filter (require-start/require-end) of the fail-nth variant.
# Args: the kernel build tree and its System.map. The range is the longest run of consecutive text
# symbols that all come from iommufd's objects; END is the address of the first symbol after it.
set -euo pipefail
build="$1" map="$2"
nm --defined-only "$build"/drivers/iommu/iommufd/*.o | awk '$2 ~ /^[tT]$/ { print $3 }' | sort -u >"$build/iommufd-text.names"
awk -v names="$build/iommufd-text.names" '
	BEGIN { while ((getline n < names) > 0) mine[n] = 1 }
	$2 ~ /^[tTwW]$/ {
		if ($3 in mine) {
			if (run == 0) first = $1
			run++
		} else {
			if (run > best) { best = run; start = first; end = $1 }
			run = 0
		}
	}
	END {
		if (best == 0) exit 1
		printf "0x%s 0x%s\n", start, end
	}' "$map"
