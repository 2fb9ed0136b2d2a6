#!/usr/bin/env bash
# Every workload of BENCHMARKS.md, one after the other, each against the
# echo limit of the same run where it has one; prints each report's table and
# its targets. Run from the repository root:
#
#   bash tools/bench/run-all.sh            # 10 s per measured phase
#   DURATION=3s bash tools/bench/run-all.sh
set -euo pipefail
DURATION="${DURATION:-10s}"
cargo build --release -p portcullis -p portcullis_bench
B=target/release/portcullis-bench
run() {
    echo
    echo "\$ portcullis-bench $*"
    "$B" "$@"
}
run ping --compare-echo --connections 64 --in-flight 16 --duration "$DURATION" --warmup 1s
run ping --compare-echo --connections 64 --in-flight 1 --duration "$DURATION" --warmup 1s
run ping --compare-echo --connections 1 --in-flight 1 --duration "$DURATION" --warmup 1s
run ping --ws --connections 64 --in-flight 16 --duration "$DURATION" --warmup 1s
run save --connections 64 --in-flight 1 --duration "$DURATION" --warmup 1s
run hold --connections 10000 --compare-echo --duration "$DURATION" --metrics-every 2s
run hold --ws --connections 10000 --duration "$DURATION" --metrics-every 2s
run login --duration "$DURATION" --warmup 1s --metrics-every 2s
