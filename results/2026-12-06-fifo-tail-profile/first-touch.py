# What first touching memory costs on this machine: 256 MiB, one write per page, with
# transparent huge pages (MADV_HUGEPAGE, one write per 2 MiB) and without (one per 4 KiB).
import ctypes, mmap, time
libc = ctypes.CDLL(None)
MADV_HUGEPAGE = 14
def touch(mb, huge):
    m = mmap.mmap(-1, mb << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    if huge:
        libc.madvise(ctypes.c_void_p(addr), ctypes.c_size_t(mb << 20), MADV_HUGEPAGE)
    t = time.perf_counter()
    for off in range(0, mb << 20, (2 << 20) if huge else 4096):
        m[off] = 1
    return m, time.perf_counter() - t
for rnd in range(3):
    for huge in (True, False):
        m, dt = touch(256, huge)
        print(f"round {rnd} huge={huge}: 256 MiB first touch {dt*1000:.1f} ms ({dt*1e6/128:.0f} us per 2 MiB)")
        m.close()
