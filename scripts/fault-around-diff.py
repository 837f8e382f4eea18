#!/usr/bin/env python3
"""Which file pages the kernel and the model map differently in one recorded
process (docs/recording.md, "RSS at exits").

    rmap record --raw RAW --out T.trace -- CMD...
    scripts/fault-around-diff.py RAW.snapshots T.trace PID LINE PROC

PID: the process's pid (the trace's `# pN: exec ... (pid PID)` comment); LINE:
the trace line just before the statement of PID's last mmap or brk (the
recorder's last /proc snapshot of PID is taken at that call's entry); PROC: its
trace name (pN). The kernel's present pages come from that snapshot's
/proc/PID/pagemap present bits; the model's from `rmap replay --observe` of the
trace cut after LINE with an `observe` of the same file mappings appended.
Prints both counts and each page present on one side only (file, page index).
"""
import json, os, subprocess, sys

SHIFT = 0x100000000000  # the recorder's address move (the trace header says so)

def moved(a):
    return a + SHIFT if a < SHIFT else a - SHIFT

def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__)
    snap_path, trace_path, pid, line, proc = argv[0], argv[1], argv[2], int(argv[3]), argv[4]
    rmap = os.environ.get("RMAP", os.path.join(os.path.dirname(__file__), "..", ".build", "debug", "rmap"))
    blocks, cur = [], None
    for l in open(snap_path):
        if l.startswith("N "):
            cur = [] if l.split()[1] == pid else None
            if cur is not None:
                blocks.append(cur)
        elif cur is not None:
            cur.append(l.rstrip("\n"))
    if not blocks:
        sys.exit(f"no snapshot of pid {pid} in {snap_path}")
    files, present = [], set()
    for l in blocks[-1]:
        f = l.split()
        if l.startswith("M "):
            s, e = (int(x, 16) for x in f[1].split("-"))
            path = f[6] if len(f) > 6 else ""
            if path.startswith("/") and e <= 0x800000000000:
                files.append((s, e, path, int(f[3], 16) // 4096))
        elif l.startswith("P "):
            s, e = int(f[1], 16), int(f[2], 16)
            present.update(range(s, e, 4096))
    lines = open(trace_path).read().split("\n")[:line]
    obs = ", ".join(f"{proc} {hex(moved(s))} {(e - s) // 4096}" for s, e, _, _ in files)
    cut = trace_path + ".cut"
    with open(cut, "w") as f:
        f.write("\n".join(lines) + "\nobserve " + obs + "\n")
    out = subprocess.run([rmap, "replay", "--observe", cut], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"rmap replay failed: {out.stderr.strip()}")
    pages = json.loads(out.stdout.strip().split("\n")[-1])["observations"][-1][1]
    i = kernel = model = 0
    diffs = []
    for s, e, path, pgoff in files:
        for a in range(s, e, 4096):
            m, k = pages[i] != "-", a in present
            i += 1
            kernel += k
            model += m
            if k != m:
                diffs.append((os.path.basename(path), (a - s) // 4096 + pgoff, "model" if m else "kernel"))
    print(f"file pages present: kernel {kernel}, model {model}, model - kernel {model - kernel}")
    for d in diffs:
        print("  %s page %d: only the %s maps it" % d)

if __name__ == "__main__":
    main(sys.argv[1:])
