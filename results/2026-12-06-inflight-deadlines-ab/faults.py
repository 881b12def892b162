import sys, collections
path = sys.argv[1]
samples = []; cur = None
for line in open(path):
    if not line.strip():
        if cur: samples.append(cur); cur = None
        continue
    if not line.startswith('\t') and not line.startswith(' '):
        parts = line.split(); cur = (parts[0], float(parts[2].rstrip(':')), [])
    else:
        f = line.split(None, 1)
        if cur and len(f) > 1: cur[2].append(f[1].strip())
if cur: samples.append(cur)
c = collections.Counter(); times = []
for comm, t, st in samples:
    if any('handle_mm_fault' in f or 'page_fault' in f for f in st):
        user = [f for f in st if not any(k in f for k in ('fault','page','folio','mm','asm_','irq','clear','alloc_','do_','_raw','__','vma','pmd','pte','exc_'))]
        c[" < ".join(user[:5])] += 1; times.append(t)
print("fault samples", len(times), "of", len(samples))
for k, n in c.most_common(15): print(n, k[:300])
