#!/usr/bin/env bash
# make mutants: mutation testing of the test suite (issue 18).
#
# Each Mutants/*.patch is one plausible one-line bug in the model (its first
# line says which). For each, on a copy of the working tree: apply it, build,
# run the whole test suite, then a bounded fuzz campaign with the checker after
# every statement. The mutant is killed when the suite fails (or hangs) or the
# fuzzer reports a violation; it survives when both pass. The working tree is
# never touched. Prints a line per mutant, then `N killed, M survived` and the
# survivors by name; exits 1 unless every mutant was killed.
#
#   scripts/mutants.sh [NAME-SUBSTRING]      (make mutants [MUTANTS_ONLY=...])
#   MUTANTS_FUZZ_OPS (default 30000), MUTANTS_TIMEOUT per step in s (600)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTANTS_WORK:-$ROOT/.build-mutants}
TREE=$WORK/tree
SCRATCH=$WORK/build
FUZZ_OPS=${MUTANTS_FUZZ_OPS:-30000}
STEP_TIMEOUT=${MUTANTS_TIMEOUT:-600}
ONLY=${1:-}
SWIFT=${SWIFT:-swift}

mkdir -p "$WORK"
rm -rf "$TREE"
mkdir -p "$TREE"
# The working tree as it is (tracked and untracked files git does not ignore).
(cd "$ROOT" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | (cd "$TREE" && tar -xf -)

build() { (cd "$TREE" && timeout "$STEP_TIMEOUT" "$SWIFT" build --build-tests --scratch-path "$SCRATCH" >"$WORK/build.log" 2>&1); }

echo "mutants: building the unmutated tree (the suite must pass there first)"
if ! build; then
    echo "mutants: the unmutated tree does not build; see $WORK/build.log"; exit 2
fi
if ! (cd "$TREE" && timeout "$STEP_TIMEOUT" "$SWIFT" test --skip-build --scratch-path "$SCRATCH" >"$WORK/test.log" 2>&1); then
    echo "mutants: the suite fails without a mutant; see $WORK/test.log"; exit 2
fi

killed=0; survived=0; broken=0; survivors=""
for patch in "$ROOT"/Mutants/*.patch; do
    name=$(basename "$patch" .patch)
    [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]] && continue
    what=$(sed -n '1s/^# //p' "$patch")
    files=$(sed -n 's|^+++ b/||p' "$patch")
    # Fresh copies of the files the patch touches, then the mutant.
    for f in $files; do cp "$ROOT/$f" "$TREE/$f"; done
    # Outside any repository (not the one above .build-mutants), git apply
    # patches the files below the current directory.
    if ! (cd "$TREE" && GIT_CEILING_DIRECTORIES="$WORK" git apply "$patch" 2>"$WORK/apply.log"); then
        echo "STALE     $name: the patch no longer applies ($(head -1 "$WORK/apply.log"))"
        broken=$((broken + 1)); continue
    fi
    verdict=""
    if ! build; then
        verdict="BROKEN    $name: does not build"
        broken=$((broken + 1))
    elif ! (cd "$TREE" && timeout "$STEP_TIMEOUT" "$SWIFT" test --skip-build --scratch-path "$SCRATCH" \
              >"$WORK/$name.test.log" 2>&1); then
        failed=$(grep -c '^✘ Test .* failed' "$WORK/$name.test.log")
        verdict="killed    $name: $failed failing tests ($what)"
        killed=$((killed + 1))
    elif ! timeout "$STEP_TIMEOUT" "$SCRATCH/debug/rmap" fuzz --seed 1 --ops "$FUZZ_OPS" --reuse split \
              >"$WORK/$name.fuzz.log" 2>&1; then
        verdict="killed    $name: by the fuzzer: $(grep -m1 -i 'violation' "$WORK/$name.fuzz.log" | cut -c1-120) ($what)"
        killed=$((killed + 1))
    else
        verdict="SURVIVED  $name: the suite and $FUZZ_OPS fuzz operations pass ($what)"
        survived=$((survived + 1)); survivors="$survivors $name"
    fi
    echo "$verdict"
    for f in $files; do cp "$ROOT/$f" "$TREE/$f"; done
done
if [ "$broken" -gt 0 ]; then echo "$killed killed, $survived survived, $broken not run"
else echo "$killed killed, $survived survived"; fi
[ -n "$survivors" ] && echo "survivors:$survivors"
[ "$survived" -eq 0 ] && [ "$broken" -eq 0 ]
