#!/usr/bin/env bash
# The deep versions of the fault-injection suites (issue 8), too long for `swift test`:
#   - 200 crash rounds (SIGKILL at random moments and named fault points), compared with an
#     uninterrupted run and validated against the sent log and an archive replay;
#   - the hostile-input suite with a real multi-gigabyte gzip bomb (TIDEMARK_DEEP=1);
#   - the parser fuzzer for a few minutes.
#   scripts/deep-tests.sh [CRASH_ROUNDS] [FUZZ_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-200}
fuzz=${2:-300}
scripts/crash-loop.sh "$rounds"
TIDEMARK_DEEP=1 swift test --skip-build --filter HostileInputTests
scripts/fuzz-parser.sh "$fuzz"
