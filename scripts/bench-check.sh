#!/usr/bin/env bash
# bench-check: the cost of `rmap replay --check` (the invariant checker after
# every statement) on forks of one process (issue 17 item 8). For each N the
# trace is: proc P, an mmap of 16 pages, a write to them, then C1..CN = fork P.
# Prints N, the wall-clock and user CPU seconds of `replay --check`, and the
# wall-clock seconds of `replay` alone (the CPU column is the steadier one on
# a machine shared with other jobs).
# Usage: scripts/bench-check.sh [RMAP] [N...]   (default: .build/release/rmap 500 1000 2000 10000)
set -euo pipefail
rmap=${1:-.build/release/rmap}
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(500 1000 2000 10000)
dir=$(mktemp -d /tmp/bench-check.XXXXXX)
trap 'rm -rf "$dir"' EXIT
TIMEFORMAT='%R %U'
printf '%8s %12s %12s %12s\n' forks check_s check_cpu_s replay_s
for n in "${counts[@]}"; do
  t="$dir/forks$n.trace"
  {
    echo "proc P"
    echo "P mmap 0x100000000000 16 rw anon-private => ok"
    echo "P write 0x100000000000 16 => ok"
    for ((i = 1; i <= n; i++)); do echo "C$i = fork P => ok"; done
  } > "$t"
  read -r c cu < <({ time "$rmap" replay --check "$t" > /dev/null; } 2>&1)
  read -r r _ < <({ time "$rmap" replay "$t" > /dev/null; } 2>&1)
  printf '%8d %12.2f %12.2f %12.2f\n' "$n" "$c" "$cu" "$r"
done
