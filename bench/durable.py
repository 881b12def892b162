#!/usr/bin/env python3
"""Durable-queue benchmark (issue 3): send throughput with --fsync always, the
fdatasyncs per second it took, the same workload with --fsync never in the same
run (the ratio is the price of durability on this disk), and restart time with
large backlogs.

Needs release builds:  cargo build --release -p sluice-daemon -p sluice-load-gen
Run:                   python3 bench/durable.py --out results/<date>-durable-queues

Everything listens on 127.0.0.1 and stops by itself. Data directories are made
under --work (default: a temporary directory on the same disk as /tmp) and removed.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary(name, target):
    path = os.path.join(target, "release", name)
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: cargo build --release -p sluice-daemon -p sluice-load-gen")
    return path


class Daemon:
    """sluiced on a data directory; `start` returns the seconds until it listened."""

    def __init__(self, sluiced, data_dir, flags):
        self.sluiced, self.data_dir, self.flags = sluiced, data_dir, flags
        self.process = None
        self.log_path = os.path.join(data_dir + ".log")

    def start(self):
        self.mark = len(open(self.log_path).read().splitlines()) if os.path.exists(self.log_path) else 0
        self.log = open(self.log_path, "a")
        started = time.monotonic()
        self.process = subprocess.Popen(
            [self.sluiced, "--listen", "127.0.0.1:0", "--http-listen", "off", "--data-dir", self.data_dir, "--log", "info"] + self.flags,
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.process.stdout.readline()
        elapsed = time.monotonic() - started
        match = re.match(r"sluiced listening on (\S+)", line)
        if not match:
            sys.exit(f"sluiced did not start: {line!r}; see {self.log_path}")
        self.addr = match.group(1)
        return elapsed

    def stop(self, kill=False):
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(timeout=120)
        self.log.close()

    def log_statistics(self):
        """Sums the per-shard 'log statistics since start' lines of the last stop."""
        totals = {"appends": 0, "flushes": 0, "fdatasyncs": 0}
        for line in open(self.log_path).read().splitlines()[self.mark:]:
            plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
            if "log statistics since start" in plain:
                values = dict(re.findall(r"(\w+)=(\d+)", plain))
                for key in totals:
                    totals[key] += int(values.get(key, 0))
        return totals

    def replayed(self):
        """Per-shard (records, messages, ms) of the last replay."""
        out = []
        for line in open(self.log_path).read().splitlines()[self.mark:]:
            plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
            if "log replayed" in plain:
                values = dict(re.findall(r"(\w+)=(\d+)", plain))
                out.append({k: int(values.get(k, 0)) for k in ("shard", "records", "messages", "ms")})
        return out


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def dir_bytes(path):
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(base, name))
    return total


def load(load_bin, addr, out_dir, size, duration, extra):
    command = [load_bin, "--endpoint", addr, "--queue", "bench", "--message-size", str(size), "--batch", "10",
               "--duration", str(duration), "--out", out_dir] + extra
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 600)
    if result.returncode != 0:
        sys.exit(f"sluice-load failed: {result.stderr}")
    with open(os.path.join(out_dir, "stdout.txt"), "w") as f:
        f.write(result.stdout)
    summary = json.load(open(os.path.join(out_dir, "summary.json")))
    return command, summary


def keep_row(rows, row, daemon, out_dir, data_dir):
    """Records one measured row, keeps the daemon's log beside it, removes its data."""
    rows.append(row)
    print(json.dumps(row), flush=True)
    shutil.copy(daemon.log_path, os.path.join(out_dir, "sluiced.log"))
    shutil.rmtree(data_dir, ignore_errors=True)


def write_results(out, results, work, keep_work):
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="results directory to write")
    parser.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    parser.add_argument("--work", default=None, help="where data directories go (default: a temporary directory)")
    parser.add_argument("--sizes", default="100,1024", help="message sizes for the throughput runs")
    parser.add_argument("--duration", type=int, default=20, help="seconds per throughput run")
    parser.add_argument("--backlogs", default="1000000,10000000", help="queued messages for the restart runs")
    parser.add_argument("--cores", default="1", help="sluiced --cores for every run")
    parser.add_argument("--producers", type=int, default=16,
                        help="producer (and consumer) loops per load connection: sends in flight feed group commit")
    args = parser.parse_args()

    sluiced, load_bin = binary("sluiced", args.target), binary("sluice-load", args.target)
    os.makedirs(args.out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="sluice-bench-", dir="/var/tmp")
    results = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                           "memory_kib": int(open("/proc/meminfo").readline().split()[1])},
               "script": "python3 bench/durable.py " + " ".join(sys.argv[1:]), "throughput": [], "restart": []}

    # Throughput: the same closed-loop send/receive/delete workload, fsync always vs never.
    for size in [int(s) for s in args.sizes.split(",")]:
        for fsync in ("always", "never"):
            data_dir = os.path.join(work, f"tp-{size}-{fsync}")
            daemon = Daemon(sluiced, data_dir, ["--cores", args.cores, "--fsync", fsync])
            daemon.start()
            out_dir = os.path.join(args.out, f"throughput-{size}B-fsync-{fsync}")
            os.makedirs(out_dir, exist_ok=True)
            command, summary = load(load_bin, daemon.addr, out_dir, size, args.duration,
                                    ["--producers", str(args.producers), "--consumers", str(args.producers)])
            daemon.stop()
            stats = daemon.log_statistics()
            row = {"size": size, "fsync": fsync, "load_command": " ".join(command),
                   "daemon_flags": daemon.flags, "sent_per_second": summary["sent_per_second"],
                   "received_per_second": summary["received_per_second"], "send_p50_us": summary["send"]["p50_us"],
                   "send_p99_us": summary["send"]["p99_us"], "send_p999_us": summary["send"]["p999_us"],
                   "fdatasyncs": stats["fdatasyncs"], "flushes": stats["flushes"], "appends": stats["appends"],
                   "fdatasyncs_per_second": stats["fdatasyncs"] / summary["seconds"]}
            keep_row(results["throughput"], row, daemon, out_dir, data_dir)

    # Restart: fill a queue (producers only), kill -9, and time the restart to listening.
    for backlog in [int(b) for b in args.backlogs.split(",")]:
        data_dir = os.path.join(work, f"restart-{backlog}")
        daemon = Daemon(sluiced, data_dir, ["--cores", args.cores, "--fsync", "always"])
        daemon.start()
        out_dir = os.path.join(args.out, f"restart-{backlog}")
        os.makedirs(out_dir, exist_ok=True)
        fill_started = time.monotonic()
        command, summary = load(load_bin, daemon.addr, out_dir, 100, 3600,
                                ["--consumers", "0", "--producers", "16", "--send-limit", str(backlog)])
        fill_seconds = time.monotonic() - fill_started
        daemon.stop(kill=True)
        size = dir_bytes(data_dir)
        seconds = daemon.start()
        rss = rss_kib(daemon.process.pid)
        attrs = subprocess.run([os.path.join(args.target, "release", "sluice"), "--endpoint", daemon.addr, "queue", "attrs", "bench"],
                               capture_output=True, text=True)
        queued = re.search(r"ApproximateNumberOfMessages=(\d+)", attrs.stdout)
        daemon.stop()
        row = {"backlog": backlog, "fill_command": " ".join(command), "fill_seconds": fill_seconds,
               "sent": summary["sent"], "queued_after_restart": int(queued.group(1)) if queued else None,
               "data_dir_bytes": size, "restart_seconds": seconds, "rss_kib_after_restart": rss,
               "replay": daemon.replayed()}
        keep_row(results["restart"], row, daemon, out_dir, data_dir)

    write_results(args.out, results, work, args.work)


if __name__ == "__main__":
    main()
