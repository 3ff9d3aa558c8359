#!/usr/bin/env bash
# Sweeps fail-nth over every injection point of every C conformance program (through the shim,
# with `iommufd-emu check -- PROGRAM`). Too slow for CI (tens of minutes on 2 cores); run it by
# hand after changing an unwinding path. Prints one summary line per program.
set -uo pipefail
cd "$(dirname "$0")/.."
make -s -C native
mkdir -p test/conformance/build
status=0
for src in test/conformance/*.c; do
  name=$(basename "$src" .c)
  bin=test/conformance/build/$name
  gcc -std=gnu11 -O1 -Wall -Wextra -Werror -I include -o "$bin" "$src" || { status=1; continue; }
  args=$(sed -n '1s#^// exec-args:##p' "test/conformance/$name.c")
  # shellcheck disable=SC2086
  out=$(node --import tsx src/cli/main.ts check --max-runs 3000 $args -- "$bin" 2>&1)
  echo "$out" | grep -E 'injection points' || echo "$name: $out" | tail -3
  echo "$out" | grep -q ', 0 violations' || status=1
done
exit $status
