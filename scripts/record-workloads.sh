#!/usr/bin/env bash
# Re-records the real-workload corpus (Tests/Corpus/workloads/) with `rmap record`
# (`make workloads`; root and tracefs needed). Each workload runs in a scratch
# folder under /tmp so the repository is not touched; each trace is written
# gzip-compressed, its header naming the command and the machine.
# One workload: scripts/record-workloads.sh shell-loop
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rmap=${RMAP:-$repo/.build/debug/rmap}
out=$repo/Tests/Corpus/workloads
if [ "$(id -u)" != 0 ]; then echo "record-workloads: needs root (tracefs)" >&2; exit 77; fi
mkdir -p "$out"
scratch=$(mktemp -d /tmp/rmap-workloads.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
cc -O2 -pthread -o "$scratch/threads" "$repo/Tests/Workloads/threads/threads.c"

record() { # NAME LABEL -- CMD...
    local name=$1 label=$2; shift 3
    if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$name" ]; then return; fi
    echo "== $name: $label"
    "$rmap" record --label "$label" --out "$scratch/$name.trace" -- "$@"
    gzip -9n < "$scratch/$name.trace" > "$out/$name.trace.gz"
}
ONLY=${1:-}

record shell-loop "sh -c 'for i in \$(seq 100); do /bin/true; done'" -- \
    sh -c 'for i in $(seq 100); do /bin/true; done'

cp -r "$repo/Tests/Workloads/hello-make" "$scratch/hello-make"
record make-j2 "make -j2 (Tests/Workloads/hello-make)" -- make -s -j2 -C "$scratch/hello-make"

record python-import "python3 -c 'import json, re, collections, decimal, email.parser, argparse'" -- \
    /usr/bin/python3 -c 'import json, re, collections, decimal, email.parser, argparse'

mkdir -p "$scratch/tree/src"
cp "$repo"/Tests/Workloads/hello-make/*.c "$repo"/Tests/Workloads/hello-make/*.h "$scratch/tree/src/"
cp "$repo/Tests/Workloads/hello-make/Makefile" "$scratch/tree/"
record git-commit "git init, add, commit of a small tree (Tests/Workloads/hello-make)" -- \
    sh -c "cd '$scratch/tree' && git init -q && git add . && git -c user.name=rmap -c user.email=rmap@example.org commit -qm init"

record cc-O2 "cc -O2 -c count.c (Tests/Workloads/hello-make)" -- \
    cc -O2 -c -o "$scratch/count.o" "$repo/Tests/Workloads/hello-make/count.c"

record threads "threads (Tests/Workloads/threads/threads.c: 4 threads fault memory, one fork)" -- "$scratch/threads"
ls -l "$out"
