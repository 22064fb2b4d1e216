#!/usr/bin/env python3
"""Side-by-side benchmark: this project's etcd against Debian's etcd 3.4 (--enable-v2=true).

Both run as equal clusters on 127.0.0.1 (same flags, data under the same directory, fsync on
both, the same --snapshot-count), started fresh for every measurement, and measured with the
same etcd-bench runs, interleaved A B A B over --rounds rounds. Prints each figure's median for
both and the ratio ours/etcd, and what each server did (snapshots taken, CPU per write, RSS).

    cargo build --release
    scripts/bench-compare.py [--rounds 3] [--restart-keys 1000000]

Needs `etcd` 3.4 on PATH (apt-get install etcd-server).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, "target", "release", "etcd")
BENCH = os.path.join(ROOT, "target", "release", "etcd-bench")
REFERENCE = shutil.which("etcd") or "/usr/bin/etcd"
TICKS = os.sysconf("SC_CLK_TCK")


class Cluster:
    def __init__(self, kind, size, work, base_port, snapshot_count):
        self.kind, self.size, self.procs = kind, size, []
        self.dir = os.path.join(work, f"{kind}-{size}-{base_port}")
        self.clients = [f"http://127.0.0.1:{base_port + 10 * i}" for i in range(size)]
        self.peers = [f"http://127.0.0.1:{base_port + 10 * i + 1}" for i in range(size)]
        self.snapshot_count = snapshot_count

    def args(self, i):
        spec = ",".join(f"m{j}={p}" for j, p in enumerate(self.peers))
        common = [
            "--name", f"m{i}", "--data-dir", os.path.join(self.dir, f"m{i}"),
            "--listen-client-urls", self.clients[i], "--advertise-client-urls", self.clients[i],
            "--listen-peer-urls", self.peers[i], "--initial-advertise-peer-urls", self.peers[i],
            "--initial-cluster", spec, "--initial-cluster-state", "new",
            "--snapshot-count", str(self.snapshot_count),
        ]
        if self.kind == "ours":
            return [OURS] + common
        return [REFERENCE, "--enable-v2=true", "--log-level", "error"] + common

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        for i in range(self.size):
            log = open(os.path.join(self.dir, f"m{i}.log"), "w")
            self.procs.append(subprocess.Popen(self.args(i), stdout=log, stderr=log))
        self.wait_ready()

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.clients[0] + "/v2/members/leader", timeout=1) as r:
                    leader = json.load(r)
                if leader.get("clientURLs"):
                    # Every member answers, and a write commits.
                    for c in self.clients:
                        urllib.request.urlopen(c + "/health", timeout=1).read()
                    req = urllib.request.Request(
                        self.clients[0] + "/v2/keys/ready", data=b"value=1", method="PUT")
                    urllib.request.urlopen(req, timeout=2).read()
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} cluster of {self.size} did not start; see {self.dir}")

    def cpu_seconds(self):
        total = 0
        for p in self.procs:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / TICKS

    def rss_mib(self):
        sizes = []
        for p in self.procs:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def snapshots(self):
        count = 0
        for root, _, files in os.walk(self.dir):
            count += sum(1 for f in files if f.endswith(".snap"))
        return count

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []

    def wipe(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def bench(cluster, workload, clients, total, extra=()):
    cmd = [BENCH, "--endpoints", ",".join(cluster.clients), "--workload", workload,
           "--clients", str(clients), "--total", str(total), "--json", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise RuntimeError(f"etcd-bench failed: {out.stderr}")
    report = json.loads(out.stdout)
    if report.get("invalid"):
        raise RuntimeError(f"{cluster.kind}: invalid run: {report['invalid']}")
    return report


# (name, cluster size, workload, clients, requests, what to take from the report)
MEASUREMENTS = [
    ("1 member, 1 writer: put p50 ms", 1, "put", 1, 3000, "p50_ms"),
    ("1 member, 1 writer: put/s", 1, "put", 1, 3000, "throughput"),
    ("3 members, 64 writers: put/s", 3, "put", 64, 30000, "throughput"),
    ("3 members, 64 writers: put p99 ms", 3, "put", 64, 30000, "p99_ms"),
    ("3 members, 64 writers: server CPU µs per write", 3, "put", 64, 30000, "cpu_us_per_write"),
    ("3 members, 64 readers: get/s", 3, "get", 64, 100000, "throughput"),
    ("3 members, 64 readers: quorum get/s", 3, "qget", 64, 50000, "throughput"),
    ("3 members, 100 watchers x 1000 writes: events/s", 3, "watch", 100, 1000, "throughput"),
    ("3 members, 64 clients, 9 reads : 1 write: req/s", 3, "mixed", 64, 100000, "throughput"),
]


def measure(kind, size, workload, clients, total, work, port, snapshot_count):
    cluster = Cluster(kind, size, work, port, snapshot_count)
    try:
        cluster.start()
        cpu_before = cluster.cpu_seconds()
        report = bench(cluster, workload, clients, total)
        cpu = cluster.cpu_seconds() - cpu_before
        if report["acknowledged_writes"]:
            report["cpu_us_per_write"] = cpu * 1e6 / report["acknowledged_writes"]
        report["snapshots"] = cluster.snapshots()
        return report
    finally:
        cluster.stop()
        cluster.wipe()


def memory(kind, work, port, snapshot_count, keys=99000):
    """RSS per member of a 3-member cluster after `keys` writes of 256 bytes."""
    cluster = Cluster(kind, 3, work, port, snapshot_count)
    try:
        cluster.start()
        bench(cluster, "put", 64, keys)
        time.sleep(1)
        return max(cluster.rss_mib()), cluster.snapshots()
    finally:
        cluster.stop()
        cluster.wipe()


def restart(kind, work, port, snapshot_count, keys):
    """Seconds for a 1-member cluster holding `keys` keys to serve again after SIGTERM."""
    cluster = Cluster(kind, 1, work, port, snapshot_count)
    try:
        cluster.start()
        bench(cluster, "put", 64, keys, ("--value-size", "64"))
        cluster.stop()
        started = time.time()
        cluster.procs = []
        cluster.start()
        return time.time() - started
    finally:
        cluster.stop()
        cluster.wipe()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--snapshot-count", type=int, default=10000)
    ap.add_argument("--restart-keys", type=int, default=0,
                    help="also time a restart with this many keys (once per server)")
    ap.add_argument("--only", default="", help="run only measurements whose name contains this")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    results = {}  # name -> kind -> [values]
    notes = {}
    port = 20000
    try:
        for rnd in range(args.rounds):
            for name, size, workload, clients, total, field in MEASUREMENTS:
                if args.only and args.only not in name:
                    continue
                for kind in (("ours", "etcd") if rnd % 2 == 0 else ("etcd", "ours")):
                    port += 100
                    report = measure(kind, size, workload, clients, total, work, port,
                                     args.snapshot_count)
                    results.setdefault(name, {}).setdefault(kind, []).append(report.get(field, 0))
                    notes.setdefault(kind, {})[f"snapshots during {workload}/{size}"] = report["snapshots"]
                    print(f"round {rnd + 1} {kind:4} {name}: {report.get(field, 0):.3f}",
                          file=sys.stderr, flush=True)
            if not args.only or "memory" in args.only:
                name = "3 members: RSS MiB per member after 99,000 keys of 256 B"
                for kind in (("ours", "etcd") if rnd % 2 == 0 else ("etcd", "ours")):
                    port += 100
                    rss, snaps = memory(kind, work, port, args.snapshot_count)
                    results.setdefault(name, {}).setdefault(kind, []).append(rss)
                    notes.setdefault(kind, {})["snapshots during the memory run"] = snaps
                    print(f"round {rnd + 1} {kind:4} {name}: {rss:.1f}", file=sys.stderr, flush=True)
        if args.restart_keys:
            name = f"1 member: seconds to serve again after restart with {args.restart_keys:,} keys"
            for kind in ("ours", "etcd"):
                port += 100
                seconds = restart(kind, work, port, args.snapshot_count, args.restart_keys)
                results.setdefault(name, {}).setdefault(kind, []).append(seconds)
                print(f"{kind:4} {name}: {seconds:.2f}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"| measurement (median of {args.rounds}) | ours | etcd 3.4 | ours / etcd |")
    print("| --- | ---: | ---: | ---: |")
    for name, by_kind in results.items():
        ours = statistics.median(by_kind.get("ours", [0]))
        ref = statistics.median(by_kind.get("etcd", [0]))
        ratio = ours / ref if ref else float("nan")
        print(f"| {name} | {ours:,.2f} | {ref:,.2f} | {ratio:.2f} |")
    print()
    for kind, n in notes.items():
        print(f"{kind}: " + "; ".join(f"{k}: {v}" for k, v in n.items()))


if __name__ == "__main__":
    main()
