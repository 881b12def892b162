#!/usr/bin/env python3
"""Metadata failover time of a three-node cluster on this machine: the leader is killed with
SIGKILL, then a CreateQueue is tried through a survivor every 10 ms until one is taken; the
time from the kill to that answer is one sample. The killed node is started again and caught
up before the next round. Usage: failover.py SLUICED SLUICE_CLI ROUNDS OUT_DIR"""
import os, re, signal, socket, subprocess, sys, tempfile, time, urllib.request

sluiced, cli, rounds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

work = tempfile.mkdtemp(prefix="sluice-failover-")
cluster_ports = [free_port() for _ in range(3)]
client_ports = [free_port() for _ in range(3)]
http_ports = [free_port() for _ in range(3)]
peers = ",".join(f"{i+1}=127.0.0.1:{p}" for i, p in enumerate(cluster_ports))
procs = {}

def start(node):
    i = node - 1
    log = open(os.path.join(work, f"node-{node}.log"), "a")
    procs[node] = subprocess.Popen([sluiced, "--node-id", str(node), "--cluster-peers", peers, "--cores", "1",
        "--segment-bytes", "4194304", "--data-dir", os.path.join(work, f"node-{node}"),
        "--listen", f"127.0.0.1:{client_ports[i]}", "--http-listen", f"127.0.0.1:{http_ports[i]}", "--log", "warn"],
        stdout=subprocess.DEVNULL, stderr=log)

def leader_seen_by(node):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{http_ports[node-1]}/metrics", timeout=1).read().decode()
    except Exception:
        return None
    m = re.search(r'^sluice_cluster_leader\{node="%d"\} (\d+)' % node, text, re.M)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None

def agreed_leader(alive):
    deadline = time.time() + 30
    while time.time() < deadline:
        seen = {leader_seen_by(n) for n in alive}
        if len(seen) == 1 and next(iter(seen)) in alive:
            return next(iter(seen))
        time.sleep(0.05)
    raise SystemExit(f"no leader agreed among {alive}")

def create(node, name):
    r = subprocess.run([cli, "--endpoint", f"127.0.0.1:{client_ports[node-1]}", "queue", "create", name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0

for n in (1, 2, 3):
    start(n)
leader = agreed_leader([1, 2, 3])
while not create(leader, "warm-up"):
    time.sleep(0.05)
samples = []
for r in range(rounds):
    leader = agreed_leader([1, 2, 3])
    survivor = next(n for n in (1, 2, 3) if n != leader)
    killed_at = time.monotonic()
    procs[leader].send_signal(signal.SIGKILL); procs[leader].wait()
    while not create(survivor, f"after-kill-{r}"):
        time.sleep(0.01)
    samples.append(time.monotonic() - killed_at)
    start(leader)
    # caught up: the restarted node lists the queue made while it was away
    deadline = time.time() + 30
    while time.time() < deadline:
        out_ = subprocess.run([cli, "--endpoint", f"127.0.0.1:{client_ports[leader-1]}", "queue", "list"], capture_output=True, text=True).stdout
        if f"after-kill-{r}" in out_:
            break
        time.sleep(0.05)
for p in procs.values():
    p.send_signal(signal.SIGKILL); p.wait()
samples.sort()
def pct(q):
    return samples[min(len(samples) - 1, int(q * len(samples)))]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "failover-samples.txt"), "w") as f:
    f.write("\n".join(f"{s:.3f}" for s in samples) + "\n")
print(f"rounds={len(samples)} p50={pct(0.5):.3f}s p90={pct(0.9):.3f}s p99={pct(0.99):.3f}s max={samples[-1]:.3f}s min={samples[0]:.3f}s")
