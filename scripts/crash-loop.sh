#!/usr/bin/env bash
# Deep crash test: hundreds of rounds of SIGKILL at random moments and named fault points
# (mid-file, before-commit, after-commit, first-load-commit), then the end state is compared
# with an uninterrupted run and validated against the sent log and an archive replay.
#   scripts/crash-loop.sh [ROUNDS] [SEED]     (default 200 rounds, seed 1)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-200}
seed=${2:-1}
swift build --build-tests
TIDEMARK_CRASH_ROUNDS=$rounds TIDEMARK_CRASH_SEED=$seed swift test --skip-build --filter CrashTests
