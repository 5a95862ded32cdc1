#!/usr/bin/env python3
"""Summarise a bench/pgbench.sh run: TPS from pgbench's summary, latency
percentiles from its per-transaction logs (column 3, microseconds)."""
import glob, os, re, sys

out = sys.argv[1]
rows = {}
for d in sorted(glob.glob(os.path.join(out, "*-c*"))):
    tag = os.path.basename(d)
    name, mode, clients = tag.rsplit("-", 2)
    text = open(os.path.join(d, "summary.txt")).read()
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    lat = []
    for f in glob.glob(os.path.join(d, "tx*")):
        for line in open(f):
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]))
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
    rows[(name, mode, int(clients[1:]))] = {
        "tps": float(m.group(1)) if m else float("nan"),
        "avg": sum(lat) / len(lat) if lat else float("nan"),
        "p50": pct(0.50),
        "p99": pct(0.99),
        "failed": int(failed.group(1)) if failed else -1,
    }

print("| endpoint | protocol | clients | TPS | avg µs | p50 µs | p99 µs | failed |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for (name, mode, c), r in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
    print(f"| {name} | {mode} | {c} | {r['tps']:.0f} | {r['avg']:.0f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['failed']} |")
print()
print("| protocol | clients | Sluice / PgBouncer TPS | Sluice / direct TPS | Sluice p50 − direct p50 (µs) |")
print("| --- | ---: | ---: | ---: | ---: |")
for mode in ("simple", "extended"):
    for c in (1, 32):
        s, b, d = rows.get(("sluice", mode, c)), rows.get(("pgbouncer", mode, c)), rows.get(("direct", mode, c))
        if s and b and d:
            print(f"| {mode} | {c} | {s['tps']/b['tps']:.2f} | {s['tps']/d['tps']:.2f} | {s['p50']-d['p50']:.0f} |")
