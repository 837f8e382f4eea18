#!/usr/bin/env python3
"""Markdown rows for docs/recording.md from `rmap workload-study` output.
Usage: workload-table.py STUDY.txt TRACE...   (the traces as given to workload-study)"""
import re, sys

study, traces = open(sys.argv[1]).read(), sys.argv[2:]
blocks = {b.split('\n')[0].strip(): b for b in study.split('== ')[1:]}

def n(x): return f"{int(x):,}"
def rate(x): x = int(x); return f"{x/1e6:.1f} M" if x >= 1e6 else f"{x/1e6:.2f} M"
def r(x): x = float(x); return f"{x:.0f}" if x >= 10 else f"{x:.1f}"

print("| workload | statements | processes | faults | skipped | statements/s | pages/s | peak: procs, PTEs, frames "
      "| anon_vma bytes (per mapping) | PV bytes (per mapping) | walk ns/frame anon_vma / PV / scan "
      "| visits/frame anon_vma / PV | exit us anon_vma / +PV | fork us anon_vma / +PV | RSS exits equal "
      "| file model - kernel (of kernel) | anon model - kernel (of kernel) |")
print("|" + "---|" * 17)
for path in traces:
    name = path.split('/')[-1].replace('.trace', '')
    t, b = open(path).read(), blocks[path]
    st, sk = re.search(r'# recorded (\d+) statements, (\d+) skipped', t).groups()
    pr, fa = re.search(r'; (\d+) processes, (\d+) faults', t).groups()
    sps, pps = re.search(r'(\d+) statements/s, (\d+) accessed pages/s', b).groups()
    pk = re.search(r'peak \(line \d+\): (\d+) processes, (\d+) PTEs mapping (\d+) frames', b).groups()
    av = re.search(r'anon_vma (\d+) B \(([\d.]+) B per mapping\); PV lists (\d+) B \(([\d.]+) B', b).groups()
    w = {d: re.search(rf'walk {d}: ([\d.]+) ns per frame, ([\d.]+) visits', b).groups() for d in ('anon_vma', 'pv', 'scan')}
    fx = re.search(r'fork: (\d+) x ([\d.]+) us \(anon_vma\), ([\d.]+) us \(\+PV lists\); exit: (\d+) x ([\d.]+) us, ([\d.]+) us', b).groups()
    rss = re.search(r'rss at exits: (\d+) of (\d+) equal; summed over exits, model - kernel: file (-?\d+) of (\d+) pages, anon (-?\d+) of (\d+) pages', b).groups()
    fork = f"{r(fx[1])} / {r(fx[2])} ({fx[0]})" if int(fx[0]) else "none"
    print(f"| {name} | {n(st)} | {pr} | {n(fa)} | {sk} | {rate(sps)} | {rate(pps)} | {pk[0]}, {n(pk[1])}, {n(pk[2])} "
          f"| {n(av[0])} ({av[1]}) | {n(av[2])} ({float(av[3]):g}) | {r(w['anon_vma'][0])} / {r(w['pv'][0])} / {n(round(float(w['scan'][0])))} "
          f"| {w['anon_vma'][1]} / {w['pv'][1]} | {r(fx[4])} / {r(fx[5])} | {fork} | {rss[0]} of {rss[1]} "
          f"| {int(rss[2]):+d} ({n(rss[3])}) | {int(rss[4]):+d} ({n(rss[5])}) |")
