#!/usr/bin/env bash
# Side-by-side load bench: webserv (uring, epoll) vs nginx, lighttpd and h2o, beside C floor
# probes (benches/load/floor/, compiled with cc), on this machine.
#
#   ci/bench.sh            5 s per run (BENCH_SECONDS=N to change), 10,000 idle connections
#   ci/bench.sh --rounds 3 every row three times, rows rotated; cells are the medians, and a
#                          table gives each cell's range (BENCH_ROUNDS=N works too)
#   ci/bench.sh --quick    1 s per run, 2,000 idle connections
#   ci/bench.sh --https    HTTPS rows instead: webserv and nginx with one ECDSA P-256
#                          certificate (needs the openssl CLI); writes latest-https.*
#
# Needs: cargo, python3, wrk (and cc for the floor rows); nginx, lighttpd and h2o are measured
# when installed (a missing one is skipped with a note). Debian: apt-get install wrk nginx lighttpd h2o
# Writes benches/load/results/latest.{md,svg,json} and latest-wrk.txt; prints the table.
# Everything runs on 127.0.0.1; every run is bounded and the script stops the servers it
# started (by pid) when it ends. See benches/load/README.md for what the numbers mean.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo python3 wrk; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench: $tool is not installed (Debian: apt-get install wrk nginx lighttpd)" >&2
        exit 1
    fi
done

echo "==> cargo build --release" >&2
cargo build --release >&2

# 10,000 idle connections need file descriptors on both ends; run.py raises the soft limit
# to the hard one (and further when root), and the servers inherit it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec python3 benches/load/run.py "$@"
