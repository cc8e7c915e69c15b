#!/usr/bin/env bash
# Measures metainfo generation next to OpenSSL's SHA-256, in one run, so the
# targets in BENCHMARKS.md can be checked side by side:
#   - piece hashing (one thread) within 10% of `openssl speed -evp sha256`;
#   - whole metainfo generation (two threads) at 1.2 GB/s or more.
#
# Usage, from anywhere in the repository:   bash bench/metainfo.sh
# Extra arguments go to criterion, e.g.:     bash bench/metainfo.sh of_bytes
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== machine"
echo "date:  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpus:  $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load:  $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
echo

openssl_out=$(mktemp)
criterion_out=$(mktemp)
trap 'rm -f "$openssl_out" "$criterion_out"' EXIT

echo "== openssl speed -evp sha256 -bytes 16384 -seconds 3"
if command -v openssl > /dev/null; then
    openssl speed -evp sha256 -bytes 16384 -seconds 3 2> /dev/null | tee "$openssl_out" | tail -n 3
else
    echo "openssl not found; skipping the reference figure"
fi
echo

echo "== cargo bench -p kraken-core --bench metainfo"
cargo bench -p kraken-core --bench metainfo -- "$@" 2>&1 | tee "$criterion_out"
echo

# openssl prints thousands of bytes per second on the last line.
echo "== summary (decimal units: 1 GB/s = 10^9 B/s)"
if [[ -s "$openssl_out" ]]; then
    awk '/^sha256/ { v = $NF; sub(/k$/, "", v); printf "openssl sha256 (16 KiB blocks): %.2f GB/s\n", v / 1e6 }' \
        "$openssl_out"
fi
# Criterion reports throughput in binary units (MiB/s, GiB/s); convert the
# middle estimate of each benchmark to GB/s.
awk '
    /^metainfo\// { name = $1 }
    /thrpt:/ && name != "" {
        gsub(/[\[\]]/, "")
        value = $4; unit = $5
        scale = (unit ~ /^GiB/) ? 2^30 : (unit ~ /^MiB/) ? 2^20 : (unit ~ /^KiB/) ? 2^10 : 1
        printf "%-30s  %.2f GB/s\n", name ":", value * scale / 1e9
        name = ""
    }
' "$criterion_out"
