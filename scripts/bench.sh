#!/usr/bin/env bash
# Benchmarks of issue 7: builds release, generates 1M events with the producer, runs the
# scenarios with the floor (zcat) and the peer (DuckDB, from PyPI) on the same files, and prints
# seconds, ratios to zcat and peak RSS.   scripts/bench.sh [WORKDIR] [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/tidemark-bench}
events=${2:-1000000}
swift build -c release --product tidemark
python3 -c "import duckdb" 2>/dev/null || pip install --quiet "duckdb==2.0.1"  # the version measured in the README
python3 bench/run.py .build/release/tidemark "$work" --events "$events"
