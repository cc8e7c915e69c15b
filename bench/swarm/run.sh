#!/usr/bin/env bash
# Runs ../shared/tools/swarm-bench with kraken-rs (bench/swarm/kraken.json)
# beside the reference presets, on the same lab and the same blob.
#
#     bash bench/swarm/run.sh --hosts 20 --rate-mbit 50 --size-mib 200 --repeat 3
#     bash bench/swarm/run.sh --presets bittorrent --hosts 50 --rate-mbit 20 --size-mib 100
#
# --presets LIST picks the reference systems (default http,bittorrent; "none"
# runs kraken-rs alone); every other argument goes to swarm-bench as it is.
# Each invocation writes its JSON lines to bench/results/swarm-STAMP.jsonl and
# its per-second traces to bench/results/traces/STAMP.*, then plots the
# per-host completion times to bench/results/swarm-STAMP.svg (bench/swarm/plot.py).
# Needs root (network namespaces) and the packages of ../shared/tools/BENCH.md.
#
# Knobs of kraken.json for investigations (environment, all optional):
# KB_MAX_CONNECTIONS (scheduler max_connections, default 10), KB_EGRESS_LIMIT
# (egress_limit of every peer, e.g. 5700KiB), KB_SCHEDULER_EXTRA (raw TOML
# lines added to every [*.p2p.scheduler] table), KB_LOG_LEVEL (default warn;
# logs stay in the run directory with --keep), KB_ANNOUNCE_INTERVAL.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${KRAKEN_SHARED_TOOLS:-$root/../shared/tools}"
presets=http,bittorrent
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --presets)
        presets="$2"
        shift 2
        ;;
    *)
        args+=("$1")
        shift
        ;;
    esac
done

if [[ ! -x "$tools/swarm-bench" ]]; then
    echo "error: $tools/swarm-bench not found; set KRAKEN_SHARED_TOOLS" >&2
    exit 1
fi

# KRAKEN_BIN_DIR runs binaries built earlier (kept apart from target/, so
# that a build in between cannot change them mid-series) instead of building.
if [[ -n "${KRAKEN_BIN_DIR:-}" ]]; then
    export PATH="$KRAKEN_BIN_DIR:$PATH"
else
    cargo build --release --quiet -p kraken-bins \
        --bin kraken-origin --bin kraken-tracker --bin kraken-agent
    export PATH="$root/target/release:$PATH"
fi

mkdir -p "$root/bench/results/traces"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
preset_args=()
[[ "$presets" != none ]] && preset_args=(--preset "$presets")

"$tools/swarm-bench" --system-file "$root/bench/swarm/kraken.json" "${preset_args[@]}" \
    --json-out "$root/bench/results/swarm-$stamp.jsonl" \
    --trace "$root/bench/results/traces/$stamp" "${args[@]}" || status=$?
if [[ -s "$root/bench/results/swarm-$stamp.jsonl" ]]; then
    python3 "$root/bench/swarm/plot.py" "$root/bench/results/swarm-$stamp.jsonl" >&2 || true
fi
exit "${status:-0}"
