#!/usr/bin/env python3
"""Prints the Markdown table of one swarm-bench JSON-lines file, a row per system.

    python3 bench/swarm/table.py bench/results/swarm-STAMP.jsonl

Rows follow the systems' first appearance; every column lists the runs in
order, and the median is of the line-rate fractions. Standard library only.
"""

import json
import statistics
import sys

COLUMNS = (
    "system",
    "runs",
    "last host, s",
    "line-rate fraction (each run)",
    "median",
    "median host, s",
    "first host, s",
    "seed copies",
    "lab CPU %",
    "peak CPU %",
)


def joined(runs, key, digits=None):
    values = (r.get(key) for r in runs)
    return ", ".join("?" if v is None else f"{v:.{digits}f}" if digits else f"{v}" for v in values)


def main(path):
    systems = {}
    shape = None
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            run = json.loads(line)
            systems.setdefault(run["system"], []).append(run)
            shape = shape or run
    if shape is None:
        sys.exit(f"{path}: no runs")
    print(
        f"{shape['hosts']} hosts × {shape['rate_mbit']} Mbit/s, {shape['size_mib']} MiB "
        f"(`{path.rsplit('/', 1)[-1]}`):"
    )
    print()
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for system, runs in systems.items():
        done = [r for r in runs if r.get("verified")]
        fractions = [r["line_rate_fraction"] for r in done]
        median = f"**{statistics.median(fractions):.3f}**" if fractions else "—"
        cells = (
            system,
            f"{len(done)}/{len(runs)}",
            joined(runs, "seconds", 1),
            joined(runs, "line_rate_fraction", 3),
            median,
            joined(runs, "median_seconds"),
            joined(runs, "first_seconds"),
            joined(runs, "seed_upload_copies"),
            joined(runs, "lab_cpu_pct"),
            joined(runs, "cpu_peak_pct"),
        )
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip())
    main(sys.argv[1])
