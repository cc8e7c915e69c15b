#!/usr/bin/env python3
"""Plots the per-host completion times of one bench/swarm/run.sh invocation as SVG.

    python3 bench/swarm/plot.py bench/results/swarm-20261204T170000Z.jsonl -o out.svg

For every system in the JSON lines, the run with the median `seconds` is drawn:
its hosts sorted by completion time (x: host rank, y: seconds since the
start barrier), with the ideal time (size / rate) as a dashed line. The gap
between a curve and its last dot is the time a fetch took after its bytes
had arrived (final verification, the rest of a stream).

Completion times come from the per-second trace swarm-bench wrote beside the
JSON lines (`traces/<stamp>.<system>.<HHMMSS>`): a host counts as done when
the bytes its bridge port sent it reach 99.5 % of what it received in the run,
interpolated between samples, so they are estimates to about a second. The JSON's first, median and last
times, which are exact, are marked on each curve.

Standard library only, so it runs wherever swarm-bench does.
"""

import argparse
import json
import os
import sys
from pathlib import Path

COLOURS = {"kraken-rs": "#1f6fb4", "bittorrent": "#e07b00", "http": "#7a7a7a"}
EXTRA_COLOURS = ["#2a9d3c", "#b8323c", "#7a4fb0"]


def load_runs(jsonl):
    runs = []
    with open(jsonl) as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    if not runs:
        raise SystemExit(f"{jsonl}: no runs")
    return runs


def traces_by_system(jsonl):
    """Trace files of the invocation, per system, in the order they ran."""
    stamp = Path(jsonl).stem.removeprefix("swarm-")
    folder = Path(jsonl).parent / "traces"
    found = {}
    for path in sorted(folder.glob(f"{stamp}*")):
        rest = path.name[len(stamp):].lstrip(".")
        system, _, hhmmss = rest.rpartition(".")
        if not system:  # one system, one run: no suffix
            system, hhmmss = None, ""
        found.setdefault(system, []).append((hhmmss, path))
    return {k: [p for _, p in sorted(v)] for k, v in found.items()}


def completion_times(trace, size_mib, hosts):
    """Estimated completion time of hosts 1..hosts from a trace, sorted."""
    with open(trace) as f:
        rows = [r for r in map(json.loads, f) if r.get("t") is not None]
    if not rows:
        return []
    # Done at 99.5 % of what the host received in the whole run: wire bytes
    # per payload byte depend on segment sizes, so a fixed factor misses. A
    # host that received under half the blob never finished.
    final = rows[-1]["down_mib"]
    done = {}
    prev_t, prev = 0.0, None
    for row in rows:
        t, down = row["t"], row["down_mib"]
        for i in range(1, min(hosts + 1, len(down))):
            target = 0.995 * final[i]
            if i in done or target < size_mib / 2 or down[i] < target:
                continue
            before = prev[i] if prev is not None and i < len(prev) else 0.0
            share = (target - before) / (down[i] - before) if down[i] > before else 1.0
            done[i] = prev_t + share * (t - prev_t)
        prev_t, prev = t, down
    return sorted(done.values())


def median_run(runs):
    ok = [r for r in runs if r.get("verified")]
    if not ok:
        return None
    ok.sort(key=lambda r: r["seconds"])
    return ok[(len(ok) - 1) // 2]


def svg(series, ideal, title, path, hosts):
    width, height = 820, 440
    left, right, top, bottom = 64, 230, 48, 52
    pw, ph = width - left - right, height - top - bottom
    # A system far slower than the best (the central server) would flatten
    # the others: it stays in the legend with its time, off the scale.
    best = min(s["run"]["seconds"] for s in series)
    shown = [s for s in series if s["run"]["seconds"] <= 3 * best]
    ymax = max([ideal] + [max(s["times"] + [s["run"]["seconds"]]) for s in shown]) * 1.08
    sx = lambda rank: left + pw * (rank - 1) / max(hosts - 1, 1)  # noqa: E731
    sy = lambda sec: top + ph * (1 - sec / ymax)  # noqa: E731

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{title}</text>',
        f'<text x="{left}" y="34" font-size="11" fill="#555">lines: bytes in, per host '
        f'(trace, about 1 s); dots: first, median and last fetch done (exact); '
        f'legend: line-rate fraction</text>',
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>',
    ]
    for k in range(6):
        sec = ymax * k / 5
        y = sy(sec)
        out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
                   f'stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{sec:.0f}</text>')
    for rank in sorted({1, (hosts + 1) // 2, hosts}):
        out.append(f'<text x="{sx(rank):.1f}" y="{top + ph + 18}" text-anchor="middle">'
                   f'{rank}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 12}" text-anchor="middle">'
               f'hosts, by completion time</text>')
    out.append(f'<text x="16" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + ph / 2})">seconds since start</text>')
    out.append(f'<line x1="{left}" y1="{sy(ideal):.1f}" x2="{left + pw}" y2="{sy(ideal):.1f}" '
               f'stroke="black" stroke-dasharray="5,4"/>')

    legend_y = top + 8
    out.append(f'<line x1="{left + pw + 14}" y1="{legend_y}" x2="{left + pw + 38}" '
               f'y2="{legend_y}" stroke="black" stroke-dasharray="5,4"/>')
    out.append(f'<text x="{left + pw + 44}" y="{legend_y + 4}">ideal {ideal:.1f} s</text>')
    for n, s in enumerate(series):
        colour = s["colour"]
        times = s["times"]
        run = s["run"]
        fraction = run.get("line_rate_fraction")
        label = f'{s["name"]} {fraction:.2f}' if fraction is not None else s["name"]
        y = legend_y + 22 * (n + 1)
        if s not in shown:
            out.append(f'<text x="{left + pw + 14}" y="{y + 4}" fill="{colour}">{label}: last '
                       f'{run["seconds"]:.0f} s, off scale</text>')
            continue
        if times:
            points = " ".join(f"{sx(i + 1):.1f},{sy(t):.1f}" for i, t in enumerate(times))
            out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                       f'stroke-width="2"/>')
        exact = [(1, run["first_seconds"]), ((hosts + 1) // 2, run["median_seconds"]),
                 (hosts, run["seconds"])]
        for rank, sec in exact:
            if sec is not None:
                out.append(f'<circle cx="{sx(rank):.1f}" cy="{sy(sec):.1f}" r="3.5" '
                           f'fill="{colour}"/>')
        out.append(f'<line x1="{left + pw + 14}" y1="{y}" x2="{left + pw + 38}" y2="{y}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 44}" y="{y + 4}">{label}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jsonl", help="the JSON lines of one run.sh invocation")
    p.add_argument("-o", "--output", help="SVG to write [beside the JSON lines]")
    a = p.parse_args(argv)

    runs = load_runs(a.jsonl)
    traces = traces_by_system(a.jsonl)
    shapes = {(r["hosts"], r["size_mib"], r["rate_mbit"]) for r in runs}
    if len(shapes) != 1:
        raise SystemExit(f"{a.jsonl}: runs of several lab shapes: {sorted(shapes)}")
    hosts, size_mib, rate = shapes.pop()

    series = []
    names = list(dict.fromkeys(r["system"] for r in runs))
    for n, name in enumerate(names):
        mine = [r for r in runs if r["system"] == name]
        run = median_run(mine)
        if run is None:
            print(f"{name}: no verified run, left out", file=sys.stderr)
            continue
        files = traces.get(name) or (traces.get(None) if len(names) == 1 else None) or []
        times = []
        index = mine.index(run)
        if index < len(files):
            times = completion_times(files[index], size_mib, hosts)
        else:
            print(f"{name}: no trace for the median run; exact points only", file=sys.stderr)
        colour = COLOURS.get(name, EXTRA_COLOURS[n % len(EXTRA_COLOURS)])
        series.append({"name": name, "run": run, "times": times, "colour": colour})
    if not series:
        raise SystemExit(f"{a.jsonl}: no verified run")

    ideal = series[0]["run"]["ideal_seconds"]
    title = f"{hosts} hosts at {rate} Mbit/s, {size_mib} MiB: when each host was done"
    output = a.output or os.path.splitext(a.jsonl)[0] + ".svg"
    svg(series, ideal, title, output, hosts)
    print(output)


if __name__ == "__main__":
    main(sys.argv[1:])
