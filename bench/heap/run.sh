#!/usr/bin/env bash
# Heap-analysis benchmark: for each snapshot, wall time and peak RSS of
#   ours (perf-heap-analysis `heap-analyze analyze --json`), memlab, and DevTools' model
#   (heap-snapshot-toolkit), side by side, with memlab's time over ours; for a pair A:B also the
#   diff (ours, and DevTools' below DEVTOOLS_DIFF_MAX_MB); then optionally
#   --leak A,B,C   the leak hunt over those snapshots (`heap-analyze leak`, the hub's leak_hunt code)
#   --explore F    the heap explorer's index of F (`heap-analyze explore`, what the hub caches)
#
#   bench/heap/run.sh /work/heapbench/heap-300.heapsnapshot \
#     /work/heapbench/heap-1000.heapsnapshot:/work/heapbench/heap-1000b.heapsnapshot \
#     --leak /work/heapbench/heap-1000.heapsnapshot,/work/heapbench/heap-1000b.heapsnapshot,/work/heapbench/heap-1000c.heapsnapshot \
#     --explore /work/heapbench/heap-1000.heapsnapshot
#
# Env: HEAP_ANALYZE_BIN (default: release build in $CARGO_TARGET_DIR or the workspace target),
#      SKIP_MEMLAB=1, SKIP_DEVTOOLS=1, DEVTOOLS_MAX_MB (default 2000) and DEVTOOLS_DIFF_MAX_MB
#      (default 500: DevTools' diff is slow): largest file DevTools' model is run on,
#      PERF_HEAP_THREADS=1 (ours on one thread, to see what the second core brings),
#      RUNS (default 1): runs of every row; the row shows the median wall time (ratios are of
#      medians), the largest peak RSS and every run's time; LEAK_RUNS (default RUNS) and
#      LEAK_GOAL_S (default 15) for the leak hunt, which also prints how many runs met the goal.
# References come from bench/heap/node_modules:
#   (cd bench/heap && PUPPETEER_SKIP_DOWNLOAD=1 npm i --ignore-scripts)
# Make snapshots with gen-snapshot.mjs (see its header).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
if [[ -z "${HEAP_ANALYZE_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p perf-heap-analysis --bin heap-analyze -q) || exit 1
  HEAP_ANALYZE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/heap-analyze"
fi
NODE_MEM="--max-old-space-size=16384"
DEVTOOLS_MAX_MB="${DEVTOOLS_MAX_MB:-2000}"
DEVTOOLS_DIFF_MAX_MB="${DEVTOOLS_DIFF_MAX_MB:-500}"
TMP="$(mktemp)"
trap 'rm -f "$TMP"' EXIT
RUNS="${RUNS:-1}"
LEAK_RUNS="${LEAK_RUNS:-$RUNS}"
LEAK_GOAL_S="${LEAK_GOAL_S:-15}"
WALL=0
RSS=0
WALLS=()

mb() { du -m "$1" 2>/dev/null | cut -f1; }

# measure LABEL FILE-MB NOTE CMD...: runs CMD $RUNS times under /usr/bin/time -v, prints one
# row and leaves the median wall time (s) in WALL, the largest peak RSS (MB) in RSS and every
# run's time in the array WALLS. NOTE is a shell snippet printed after the row (evaluated once they are set).
measure() {
  local label="$1" size="$2" note="$3"; shift 3
  local status=ok run wall rss
  WALLS=() RSS=0
  for ((run = 0; run < RUNS; run++)); do
    if ! /usr/bin/time -v "$@" >/dev/null 2>"$TMP"; then status="FAILED($(grep -m1 -i error "$TMP" | cut -c1-60))"; fi
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$TMP" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$TMP")
    WALLS+=("$wall")
    ((rss > RSS)) && RSS=$rss
  done
  WALL=$(printf '%s\n' "${WALLS[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  local runs=""
  ((RUNS > 1)) && runs="runs: ${WALLS[*]}"
  printf '%9s  %-40s %8.2f s %8s MB  %-28s %s %s\n' "$size MB" "$label" "$WALL" "$RSS" "$(eval "$note")" "$status" "$runs"
}

rss_ratio() { awk -v r="$RSS" -v f="$1" 'BEGIN { printf "RSS %.2fx file", r / f }'; }
speedup() { awk -v t="$WALL" -v o="$1" 'BEGIN { printf "memlab/ours %.1fx", t / o }'; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%9s  %-40s %10s %11s  %s\n' "file" "tool" "wall" "peak RSS" "ratio"
LEAK="" EXPLORE=""
SPECS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --leak) LEAK="$2"; shift 2 ;;
    --explore) EXPLORE="$2"; shift 2 ;;
    *) SPECS+=("$1"); shift ;;
  esac
done
for spec in "${SPECS[@]}"; do
  a="${spec%%:*}"; b=""
  [[ "$spec" == *:* ]] && b="${spec#*:}"
  size=$(mb "$a")
  echo "## $(basename "$a")"
  measure "ours: analyze (summary+retained+paths)" "$size" 'rss_ratio $size' "$HEAP_ANALYZE_BIN" analyze "$a" --json --quiet
  ours=$WALL
  if [[ -n "$b" ]]; then
    measure "ours: diff A B ($(mb "$b") MB)" "$size" 'rss_ratio $size' "$HEAP_ANALYZE_BIN" diff "$a" "$b" --json --quiet
  fi
  if [[ -z "${SKIP_MEMLAB:-}" && -d "$HERE/node_modules/@memlab/core" ]]; then
    measure "memlab: parse+retained sizes" "$size" 'speedup $ours' node $NODE_MEM "$HERE/memlab-retained.cjs" "$a"
  fi
  if [[ -z "${SKIP_DEVTOOLS:-}" && "$size" -le "$DEVTOOLS_MAX_MB" && -d "$HERE/node_modules/heap-snapshot-toolkit" ]]; then
    measure "DevTools model: summary" "$size" 'echo' node $NODE_MEM "$HERE/devtools-summary.mjs" "$a"
    if [[ -n "$b" && "$size" -le "$DEVTOOLS_DIFF_MAX_MB" ]]; then
      measure "DevTools model: diff A B" "$size" 'echo' node $NODE_MEM "$HERE/devtools-summary.mjs" "$a" "$b"
    fi
  fi
done
if [[ -n "$LEAK" ]]; then
  IFS=',' read -r -a files <<<"$LEAK"
  total=0
  for f in "${files[@]}"; do total=$((total + $(mb "$f"))); done
  echo "## leak hunt over ${#files[@]} snapshots"
  RUNS=$LEAK_RUNS measure "ours: leak ${#files[@]} snapshots" "$total" 'rss_ratio $(mb ${files[-1]})' "$HEAP_ANALYZE_BIN" leak "${files[@]}" --json --quiet
  met=$(printf '%s\n' "${WALLS[@]}" | awk -v goal="$LEAK_GOAL_S" '$1 < goal { n++ } END { print n + 0 }')
  echo "   leak hunt under ${LEAK_GOAL_S} s in $met of $LEAK_RUNS runs"
fi
if [[ -n "$EXPLORE" ]]; then
  size=$(mb "$EXPLORE")
  echo "## heap explorer index"
  measure "ours: explore (Explorer::open)" "$size" 'rss_ratio $size' "$HEAP_ANALYZE_BIN" explore "$EXPLORE" --quiet
fi
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
