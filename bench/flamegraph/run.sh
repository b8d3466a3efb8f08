#!/usr/bin/env bash
# Flame graph benchmark: fold + render large `perf script` captures with perf-flamegraph.
#
#   bash bench/flamegraph/run.sh            # sizes 25(base) 100 200 400 MB
#   SIZES_MB="100 400" SECONDS_REC=10 FREQ=999 BENCH_DIR=/tmp/fg-bench bash bench/flamegraph/run.sh
#   BENCH_MT=1 ...                           # also time the `multithreaded` feature build
#   DISTINCT=1 ...                           # also inputs where every copy has its own stacks
#   CAPTURE=1 ...                            # also time a live helper capture (perf-capture)
#
# Steps: build the release CLI; record a busy node process (node --perf-basic-prof,
# bench/flamegraph/busy.js) with `perf record -g -F FREQ -e cpu-clock` for SECONDS_REC s;
# `perf script` it (default fields, as a user would hand it to us); concatenate copies up to
# each size; time `perf-flamegraph render FILE -o FILE.svg` (fold + render) with /usr/bin/time.
# Needs root (or a permissive perf_event_paranoid), perf and node.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BENCH_DIR="${BENCH_DIR:-/tmp/perf-flamegraph-bench}"
SIZES_MB="${SIZES_MB-100 200 400}"
SECONDS_REC="${SECONDS_REC:-10}"
FREQ="${FREQ:-999}"
TARGET="${CARGO_TARGET_DIR:-/work/target-flame}"
MANIFEST="$ROOT/crates/flamegraph/Cargo.toml"

mkdir -p "$BENCH_DIR"
# node --perf-basic-prof drops isolate-*-v8.log files into its working directory.
cd "$BENCH_DIR"
echo "== building release CLI"
CARGO_TARGET_DIR="$TARGET" cargo build --release --quiet --manifest-path "$MANIFEST" --bin perf-flamegraph
BIN="$TARGET/release/perf-flamegraph"
BIN_MT=""
if [[ "${BENCH_MT:-0}" == 1 ]]; then
  CARGO_TARGET_DIR="$TARGET-mt" cargo build --release --quiet --manifest-path "$MANIFEST" \
    --bin perf-flamegraph --features multithreaded
  BIN_MT="$TARGET-mt/release/perf-flamegraph"
fi

BASE="$BENCH_DIR/base.perf.txt"
if [[ ! -s "$BASE" ]]; then
  echo "== recording node busy.js for ${SECONDS_REC}s at ${FREQ} Hz"
  node --perf-basic-prof "$ROOT/bench/flamegraph/busy.js" $((SECONDS_REC + 3)) &
  NODE_PID=$!
  sleep 1
  perf record -q -g -F "$FREQ" -e cpu-clock -p "$NODE_PID" -o "$BENCH_DIR/perf.data" -- sleep "$SECONDS_REC"
  wait "$NODE_PID" || true
  start=$(date +%s.%N)
  perf script -i "$BENCH_DIR/perf.data" > "$BASE" 2>/dev/null
  end=$(date +%s.%N)
  mb=$(awk -v b="$(stat -c %s "$BASE")" 'BEGIN{printf "%.1f", b/1048576}')
  echo "perf script itself: ${mb} MB in $(awk -v s="$start" -v e="$end" 'BEGIN{printf "%.2f", e-s}') s"
  rm -f "$BENCH_DIR/perf.data" "/tmp/perf-$NODE_PID.map"
fi

make_size() { # $1 = target MB, $2 = same|distinct; concatenates copies of base
  local out="$BENCH_DIR/in-$2-$1MB.perf.txt"
  if [[ ! -s "$out" ]]; then
    local want=$(( $1 * 1048576 )) have=0 base_size k=0
    base_size=$(stat -c %s "$BASE")
    : > "$out"
    while (( have < want )); do
      if [[ "$2" == same ]]; then cat "$BASE" >> "$out"
      # distinct: rename node's frames per copy, so copy k has stacks no other copy has
      else sed "s/ (\/usr\/bin\/node)\$/_c$k (\/usr\/bin\/node)/" "$BASE" >> "$out"; fi
      have=$(( have + base_size )); k=$(( k + 1 ))
    done
  fi
  echo "$out"
}

run_one() { # $1 = label, $2 = binary, $3 = input; one result line
  local stats="$BENCH_DIR/time.txt"
  /usr/bin/time -f "%e %M" -o "$stats" "$2" render "$3" -o "$3.svg" > "$BENCH_DIR/render.out"
  local secs rss bytes
  read -r secs rss < "$stats"
  bytes=$(stat -c %s "$3")
  awk -v l="$1" -v b="$bytes" -v s="$secs" -v r="$rss" -v svg="$(stat -c %s "$3.svg")" \
    -v st="$(grep -o '[0-9]* stacks' "$BENCH_DIR/render.out" | cut -d' ' -f1)" \
    'BEGIN{printf "%-24s %10.1f %8s %9.2f %9.1f %12.1f %10.0f\n", l, b/1048576, st, s, (b/1048576)/(s>0?s:0.01), r/1024, svg/1024}'
}

VARIANTS="same"
[[ "${DISTINCT:-0}" == 1 ]] && VARIANTS="same distinct"
printf "%-24s %10s %8s %9s %9s %12s %10s\n" "build/input" "input_MB" "stacks" "time_s" "MB/s" "max_RSS_MB" "svg_KB"
run_one "single/base" "$BIN" "$BASE"
if [[ -n "$BIN_MT" ]]; then run_one "multithreaded/base" "$BIN_MT" "$BASE"; fi
for variant in $VARIANTS; do
  for size in $SIZES_MB; do
    f="$(make_size "$size" "$variant")"
    run_one "single/$variant" "$BIN" "$f"
    if [[ -n "$BIN_MT" ]]; then run_one "multithreaded/$variant" "$BIN_MT" "$f"; fi
  done
done
echo "(last run: $(cat "$BENCH_DIR/render.out"))"

if [[ "${CAPTURE:-0}" == 1 ]]; then
  echo "== live capture: perf-flamegraph perf-capture, ${SECONDS_REC}s at ${FREQ} Hz of busy.js"
  node --perf-basic-prof "$ROOT/bench/flamegraph/busy.js" $((SECONDS_REC + 8)) &
  NODE_PID=$!
  sleep 1
  /usr/bin/time -f "%e %M" -o "$BENCH_DIR/time.txt" "$BIN" perf-capture --pid "$NODE_PID" \
    --seconds "$SECONDS_REC" --frequency "$FREQ" --out-dir "$BENCH_DIR/capture" > /dev/null
  read -r secs rss < "$BENCH_DIR/time.txt"
  kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true
  rm -f "/tmp/perf-$NODE_PID.map"
  samples=$(grep -o '"samples": [0-9]*' "$BENCH_DIR/capture/result.json" | grep -o '[0-9]*$')
  awk -v s="$secs" -v r="$rss" -v n="$samples" -v w="$SECONDS_REC" \
    'BEGIN{printf "helper wall %.2f s for a %d s capture (%.2f s after recording), %d samples, max RSS %.1f MB (largest of helper and its perf children)\n", s, w, s-w, n, r/1024}'
fi
