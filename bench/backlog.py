#!/usr/bin/env python3
"""Backlog larger than the memory budget (issue 3): fill a queue with many times
--memory-budget of messages, and measure, for a small budget and for one that holds
the whole backlog (in the same run, so the ratio is fair on a noisy machine):
resident memory after the fill, restart time after kill -9 and memory after it, and
the rate at which consumers drain the backlog (read back from disk with the small
budget, from memory with the large one).

Needs release builds:  cargo build --release -p sluice-daemon -p sluice-load-gen -p sluice-client
Run:                   python3 bench/backlog.py --out results/<date>-memory-budget

Everything listens on 127.0.0.1 and stops by itself. Data directories are made
under --work (default: a temporary directory in /var/tmp) and removed.
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from durable import ROOT, Daemon, binary, dir_bytes, keep_row, load, rss_kib, write_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="results directory to write")
    parser.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    parser.add_argument("--work", default=None, help="where data directories go (default: a temporary directory)")
    parser.add_argument("--size", type=int, default=1024, help="message body bytes")
    parser.add_argument("--backlog", type=int, default=1_000_000, help="messages queued before draining")
    parser.add_argument("--budgets", default="32M,4G", help="--memory-budget values to compare")
    parser.add_argument("--drain-seconds", type=int, default=5, help="seconds the consumers run")
    parser.add_argument("--consumers", type=int, default=16, help="consumer loops per load connection")
    args = parser.parse_args()

    sluiced, load_bin = binary("sluiced", args.target), binary("sluice-load", args.target)
    cli = os.path.join(args.target, "release", "sluice")
    os.makedirs(args.out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="sluice-bench-", dir="/var/tmp")
    results = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                           "memory_kib": int(open("/proc/meminfo").readline().split()[1])},
               "script": "python3 bench/backlog.py " + " ".join(sys.argv[1:]), "runs": []}

    for budget in args.budgets.split(","):
        data_dir = os.path.join(work, f"budget-{budget}")
        daemon = Daemon(sluiced, data_dir, ["--cores", "1", "--fsync", "always", "--memory-budget", budget])
        daemon.start()
        idle_rss = rss_kib(daemon.process.pid)
        out_dir = os.path.join(args.out, f"budget-{budget}")
        os.makedirs(out_dir, exist_ok=True)

        fill_dir = os.path.join(out_dir, "fill")
        os.makedirs(fill_dir, exist_ok=True)
        started = time.monotonic()
        fill_command, fill = load(load_bin, daemon.addr, fill_dir, args.size, 3600,
                                  ["--consumers", "0", "--producers", "16", "--send-limit", str(args.backlog)])
        fill_seconds = time.monotonic() - started
        filled_rss = rss_kib(daemon.process.pid)

        daemon.stop(kill=True)
        disk = dir_bytes(data_dir)
        restart_seconds = daemon.start()
        restarted_rss = rss_kib(daemon.process.pid)
        replay = daemon.replayed()
        attrs = subprocess.run([cli, "--endpoint", daemon.addr, "queue", "attrs", "bench"], capture_output=True, text=True)
        queued = re.search(r"ApproximateNumberOfMessages=(\d+)", attrs.stdout)

        drain_dir = os.path.join(out_dir, "drain")
        os.makedirs(drain_dir, exist_ok=True)
        drain_command, drain = load(load_bin, daemon.addr, drain_dir, args.size, args.drain_seconds,
                                    ["--producers", "0", "--consumers", str(args.consumers)])
        drained_rss = rss_kib(daemon.process.pid)
        daemon.stop()
        row = {"budget": budget, "size": args.size, "backlog": args.backlog, "backlog_bytes": args.backlog * args.size,
               "fill_command": " ".join(fill_command), "fill_seconds": fill_seconds, "sent": fill["sent"],
               "rss_kib_idle": idle_rss, "rss_kib_after_fill": filled_rss, "data_dir_bytes": disk,
               "restart_seconds": restart_seconds, "rss_kib_after_restart": restarted_rss, "replay": replay,
               "queued_after_restart": int(queued.group(1)) if queued else None,
               "drain_command": " ".join(drain_command), "drain_seconds": drain["seconds"],
               "received": drain["received"], "received_per_second": drain["received_per_second"],
               "receive_p50_us": drain["receive"]["p50_us"], "receive_p99_us": drain["receive"]["p99_us"],
               "rss_kib_after_drain": drained_rss}
        keep_row(results["runs"], row, daemon, out_dir, data_dir)

    write_results(args.out, results, work, args.work)


if __name__ == "__main__":
    main()
