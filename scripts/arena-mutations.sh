#!/usr/bin/env bash
# make arena-mutations: single mutations of saved arenas (issue 17).
#
# For each seed arena (Fuzz/corpus/arena's that this layout reads, and states
# saved from corpus traces), COUNT
# copies with one mutation each: a bit flip, a byte set to 0x00 or 0xff, or a
# 4- or 8-byte boundary value (0, 1, 2^31-1, 2^31, 2^32-1, 2^63-1, 2^64-1)
# written at an aligned offset. Each is loaded with `rmap replay --load F
# --check` and a short trace that touches the loaded state (and then reads,
# writes, forks, mprotects, unmaps and ends each loaded process). Every
# mutant must be rejected with a message (status 2) or be usable (0); a crash
# (a signal), a hang (TIMEOUT seconds) or a state accepted at load that the
# checker then finds inconsistent (1) is a failure, kept in arena-failures/.
# Then, targeted, every 4-byte word of the first two records of every table
# set to each boundary value, to its value plus and minus one (a count off by
# one), and in the flag words each single bit flipped. Prints `N rejected,
# M usable, K crashed, H hung, I accepted inconsistent`.
#
#   scripts/arena-mutations.sh [COUNT per seed, default 1000] [SEED, default 1]
#   ARENA_MUTATIONS_TARGETED=0 skips the targeted pass (most of the time)
#   ARENA_MUTATIONS_ONLY=SUBSTRING runs only the seeds whose name has it
#   ARENA_MUTATIONS_WORDS=N mutates at most the first N words of a record in
#     the targeted pass (a page-table page has 1024; default: all)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
COUNT=${1:-1000}
SEED=${2:-1}
TIMEOUT=${ARENA_MUTATIONS_TIMEOUT:-20}
RMAP=${RMAP:-$ROOT/.build/debug/rmap}
OUT=$ROOT/arena-failures
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# What runs on the loaded state: a touch of every kind of object the seeds hold.
cat > "$WORK/touch.trace" <<'EOF'
proc Z
Z mmap 0x100000000000 4 rw anon-private
Z write 0x100000000000 4
Y = fork Z
Y write 0x100000000000
Z munmap 0x100000001000 2
ksm scan 2
Y exit
EOF

# touch_for SEED: the touch trace, then for each live process of the seed
# (its name table) a read, write, fork, mprotect, munmap of the whole trace
# window and exit, so every loaded object is used, counted down and freed.
touch_for() {
    local seed=$1 out=$WORK/touch-$(basename "$1").trace d toff rsize bump r off kind idx len name
    cp "$WORK/touch.trace" "$out"
    d=$(( TABLES_AT + 9 * DESC_SIZE ))  # RMAP_T_NAME
    toff=$(u "$d" 8 "$seed"); rsize=$(u $(( d + 8 )) 4 "$seed"); bump=$(u $(( d + 16 )) 4 "$seed")
    for ((r = 1; r < bump; r++)); do
        off=$(( toff + r * rsize ))
        kind=$(u "$off" 4 "$seed"); idx=$(u $(( off + 4 )) 4 "$seed"); len=$(u $(( off + 12 )) 4 "$seed")
        (( kind == 1 && idx != 0 && len >= 1 && len <= 64 )) || continue
        name=$(dd if="$seed" bs=1 skip=$(( off + 16 )) count="$len" status=none)
        [[ $name =~ ^[A-Za-z_][A-Za-z0-9_.-]*$ ]] || continue
        printf '%s read 0x100000000000 16\n%s write 0x100000000000 16\nC%s = fork %s\n%s mprotect 0x100000000000 16 r\n%s munmap 0x100000000000 25769803776\nC%s exit\n%s exit\n' \
            "$name" "$name" "$name" "$name" "$name" "$name" "$name" "$name" >> "$out"
    done
    echo "ksm scan 1" >> "$out"
    echo "$out"
}

u() { od -An -t"u$2" -j "$1" -N"$2" "$3" | tr -d ' '; }  # u OFFSET BYTES FILE: a little-endian integer
TABLES_AT=48; DESC_SIZE=32; NTABLES=12  # offsetof(rmap_arena_header, tables), sizeof(rmap_table_desc), RMAP_T_COUNT

# try FILE NAME TOUCH: loads the mutant with --check and the seed's touch
# trace and counts the verdict; a crash, a hang, or a state accepted at load
# that the checker then finds inconsistent (status 1: the touch trace has no
# expectations) keeps the file in arena-failures/.
try() {
    timeout -s KILL "$TIMEOUT" "$RMAP" replay --check --load "$1" "$3" >/dev/null 2>"$WORK/err"
    local st=$?
    if [ $st -eq 137 ]; then
        hung=$((hung + 1)); cp "$1" "$OUT/hang-$2.arena"; echo "HANG   $2"
    elif [ $st -ge 128 ]; then
        crashed=$((crashed + 1)); cp "$1" "$OUT/crash-$2.arena"
        echo "CRASH  $2 (signal $((st - 128))): $(grep -m1 -E 'Fatal error|runtime failure|crashed' "$WORK/err" | cut -c1-160)"
    elif [ $st -eq 2 ]; then rejected=$((rejected + 1))
    elif [ $st -eq 1 ]; then
        inconsistent=$((inconsistent + 1)); cp "$1" "$OUT/inconsistent-$2.arena"
        echo "INCONS $2: $(grep -m1 -E 'invariant|violat' "$WORK/err" | cut -c1-160)"
    else usable=$((usable + 1)); fi
}

RANDOM=$SEED
rejected=0; usable=0; crashed=0; hung=0; inconsistent=0
values4=(0 1 2147483647 2147483648 4294967295)
values8=(0 1 9223372036854775807 18446744073709551615)

le() {  # le VALUE BYTES: VALUE as little-endian bytes, printf-escaped
    local v=$1 n=$2 s="" i
    for ((i = 0; i < n; i++)); do
        s+=$(printf '\\x%02x' $(( (v >> (8 * i)) & 0xff )))
        v=$(( v )) # keep bash's 64-bit arithmetic
    done
    printf '%s' "$s"
}

# Seeds: the FuzzArena seeds (seed3-hugetlb: a hugetlb pool, a private huge
# page shared by a fork, a shared one made read-only, on a small arena with
# room for the pool), and states saved (tiny arena) from corpus traces
# with swap entries, device entries, file pages, fork families and 64 KiB
# large folios shared by a fork (their folio fields overlay the tail pages),
# and KSM pages merged and then split by mprotect (stable rmap_items).
seeds=("$ROOT"/Fuzz/corpus/arena/seed*.arena)
for t in model/reclaim-swap model/device-memory kernel/45-contents kernel-large/13-mthp-fork-cow model/ksm-walk-split; do
    if "$RMAP" replay --tiny-arena --save "$WORK/$(basename $t).arena" "$ROOT/Tests/Corpus/$t.trace" >/dev/null 2>&1; then
        seeds+=("$WORK/$(basename $t).arena")
    fi
done

# ARENA_MUTATIONS_ONLY=SUBSTRING keeps the seeds whose file name has it.
if [ -n "${ARENA_MUTATIONS_ONLY:-}" ]; then
    kept=(); for s in "${seeds[@]}"; do case $(basename "$s") in *"$ARENA_MUTATIONS_ONLY"*) kept+=("$s");; esac; done
    seeds=("${kept[@]}")
fi

for seed in "${seeds[@]}"; do
    # Only seeds this build reads (the others stop at the version check).
    "$RMAP" replay --load "$seed" "$WORK/touch.trace" >/dev/null 2>&1
    case $? in 0|1) ;; *) echo "skip $(basename "$seed"): not loadable as it is"; continue;; esac
    touch=$(touch_for "$seed")
    size=$(stat -c %s "$seed")
    # Mutate the part that holds data: the non-zero bytes' extent.
    for ((i = 0; i < COUNT; i++)); do
        f="$WORK/m.arena"
        cp "$seed" "$f"
        # Two in five in the header (its counters and table descriptors),
        # the rest anywhere in the file.
        if (( RANDOM % 5 < 2 )); then off=$(( RANDOM % 1024 )); else off=$(( (RANDOM * 32768 + RANDOM) % size )); fi
        kind=$(( RANDOM % 5 ))
        case $kind in
            0) b=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
               printf "$(printf '\\x%02x' $(( b ^ (1 << (RANDOM % 8)) )))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none;;
            1) printf '\x00' | dd of="$f" bs=1 seek="$off" conv=notrunc status=none;;
            2) printf '\xff' | dd of="$f" bs=1 seek="$off" conv=notrunc status=none;;
            3) off=$(( off & ~3 )); v=${values4[$(( RANDOM % ${#values4[@]} ))]}
               printf "$(le "$v" 4)" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none;;
            4) off=$(( off & ~7 )); v=${values8[$(( RANDOM % ${#values8[@]} ))]}
               printf "$(le "$v" 8)" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none;;
        esac
        try "$f" "$(basename "$seed" .arena)-$i-kind$kind-off$off" "$touch"
    done
done
# Targeted: every 4-byte word of the first two records of every table (the
# fields a random offset rarely hits: refcounts, counters, links, flags), and
# of the first large folio's three records, each set to each 4-byte boundary
# value, in each seed.
# The words whose bits are flags, per table (byte offsets in the record):
# page->flags, vma->vm_flags, the KSM rmap_item's address with its flag bits,
# mm->ksm_flags, the name's kind.
declare -A FLAG_WORDS=([0]="0 4" [4]="24 28" [10]="16" [3]="96" [9]="0")
for seed in "${seeds[@]}"; do
    [ "${ARENA_MUTATIONS_TARGETED:-1}" = 1 ] || break
    "$RMAP" replay --load "$seed" "$WORK/touch.trace" >/dev/null 2>&1
    case $? in 0|1) ;; *) continue;; esac
    touch=$(touch_for "$seed")
    for ((t = 0; t < NTABLES; t++)); do
        d=$(( TABLES_AT + t * DESC_SIZE ))
        toff=$(u "$d" 8 "$seed"); rsize=$(u $(( d + 8 )) 4 "$seed"); bump=$(u $(( d + 16 )) 4 "$seed")
        recs="1 2"
        if (( t == 0 )); then
            # The frame table: also the first large folio's head and the two
            # pages whose records hold its folio fields (_large_mapcount,
            # _entire_mapcount, _nr_pages_mapped, order, _mm_id slots, the
            # deferred-split links).
            for ((r = 1; r < bump; r++)); do
                # (a free record is poisoned after its link: 0x6b6b6b6b = 1802201963)
                if (( $(u $(( toff + r * rsize + 4 )) 4 "$seed") != 1802201963 )) &&
                   (( ($(u $(( toff + r * rsize )) 8 "$seed") >> 22) & 1 )); then recs="1 2 $r $((r + 1)) $((r + 2))"; break; fi
            done
        fi
        for r in $recs; do
            (( r < bump )) || continue
            for ((w = 0; w + 4 <= rsize && w < 4 * ${ARENA_MUTATIONS_WORDS:-1048576}; w += 4)); do
                off=$(( toff + r * rsize + w ))
                # The boundary values, the word's value one up and one down
                # (a count off by one), and in the flag words each single bit.
                cur=$(u "$off" 4 "$seed")
                vals=("${values4[@]}" $(( (cur + 1) & 0xffffffff )) $(( (cur - 1) & 0xffffffff )))
                case " ${FLAG_WORDS[$t]:-} " in *" $w "*) for ((b = 0; b < 32; b++)); do vals+=($(( cur ^ (1 << b) ))); done;; esac
                for v in $(printf '%s\n' "${vals[@]}" | sort -un); do
                    (( v != cur )) || continue
                    f="$WORK/m.arena"
                    cp "$seed" "$f"
                    printf "$(le "$v" 4)" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
                    try "$f" "$(basename "$seed" .arena)-table$t-rec$r-word$w-$v" "$touch"
                done
            done
        done
    done
done

echo "$rejected rejected, $usable usable, $crashed crashed, $hung hung, $inconsistent accepted inconsistent"
[ $crashed -eq 0 ] && [ $hung -eq 0 ] && [ $inconsistent -eq 0 ]
