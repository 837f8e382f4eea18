#!/usr/bin/env python3
"""Page-cache residency of files, for the RSS comparison of recorded workloads
(docs/recording.md): mincore(2) over a PROT_READ, MAP_SHARED mapping that is
never touched, so nothing is faulted, read ahead or marked.

    scripts/page-cache-residency.py FILE...
prints, per file, the resident pages and the indexes of those that are not.
"""
import ctypes, mmap, os, sys

libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

def main(paths):
    if not paths:
        sys.exit("usage: page-cache-residency.py FILE...")
    total_res = total = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            print(f"{path}: {e.strerror}", file=sys.stderr)
            continue
        try:
            size = os.fstat(fd).st_size
            pages = (size + 4095) // 4096
            if pages == 0:
                continue
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                print(f"{path}: mmap failed", file=sys.stderr)
                continue
            vec = ctypes.create_string_buffer(pages)
            ok = libc.mincore(addr, size, vec) == 0
            libc.munmap(addr, size)
            if not ok:
                print(f"{path}: mincore failed", file=sys.stderr)
                continue
        finally:
            os.close(fd)
        missing = [i for i, b in enumerate(vec.raw) if not b & 1]
        total_res += pages - len(missing)
        total += pages
        extra = f"  not resident: {missing[:64]}{' ...' if len(missing) > 64 else ''}" if missing else ""
        print(f"{pages - len(missing):7d} of {pages:7d} resident  {path}{extra}")
    print(f"{total_res:7d} of {total:7d} resident  (all)")

if __name__ == "__main__":
    main(sys.argv[1:])
