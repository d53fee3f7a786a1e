#!/usr/bin/env bash
# Fuzzes the line parser with libFuzzer (swiftc -sanitize=fuzzer), differentially against
# Foundation's JSONSerialization (see ParserDifferential). Crashes are written to
# Tests/TidemarkCoreTests/Fixtures/fuzz/, which `swift test` replays on every run: commit them.
#   scripts/fuzz-parser.sh [SECONDS]     (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
out=.build-fuzz
mkdir -p "$out" Fuzz/corpus-work Tests/TidemarkCoreTests/Fixtures/fuzz
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name TidemarkFuzz \
  Sources/TidemarkCore/Decode/Timestamp.swift \
  Sources/TidemarkCore/Decode/Delivery.swift \
  Sources/TidemarkCore/Decode/EventLineParser.swift \
  Sources/TidemarkCore/Decode/ParserDifferential.swift \
  Sources/TidemarkCore/Support/StableHash.swift \
  Sources/TidemarkCore/Support/ExactText.swift \
  Fuzz/ParserFuzzTarget.swift \
  -o "$out/parser-fuzz"
cp -n Fuzz/corpus/* Fuzz/corpus-work/ 2>/dev/null || true
# The Swift runtime's own crash handler and ASan's do not mix; let libFuzzer report.
SWIFT_BACKTRACE=enable=no "$out/parser-fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
  -dict=Fuzz/json.dict -artifact_prefix=Tests/TidemarkCoreTests/Fixtures/fuzz/ Fuzz/corpus-work
