#!/usr/bin/env bash
# Heap-analysis benchmark: for each snapshot, wall time and peak RSS of
#   ours (perf-heap-analysis `heap-analyze analyze --json`), memlab, and DevTools' model
#   (heap-snapshot-toolkit), side by side; for a pair A:B also the diff (ours and DevTools').
#
#   bench/heap/run.sh /tmp/heap-300.heapsnapshot:/tmp/heap-300b.heapsnapshot /tmp/heap-1000.heapsnapshot
#
# Env: HEAP_ANALYZE_BIN (default: release build in $CARGO_TARGET_DIR or crates/heap-analysis/target),
#      SKIP_MEMLAB=1, SKIP_DEVTOOLS=1, SKIP_DEVTOOLS_DIFF=1 (DevTools' diff is slow).
# References come from bench/heap/node_modules:
#   (cd bench/heap && PUPPETEER_SKIP_DOWNLOAD=1 npm i --ignore-scripts)
# Make snapshots with gen-snapshot.mjs (see its header).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
if [[ -z "${HEAP_ANALYZE_BIN:-}" ]]; then
  (cd "$ROOT/crates/heap-analysis" && cargo build --release --bin heap-analyze -q) || exit 1
  HEAP_ANALYZE_BIN="${CARGO_TARGET_DIR:-$ROOT/crates/heap-analysis/target}/release/heap-analyze"
fi
NODE_MEM="--max-old-space-size=16384"
TMP="$(mktemp)"
trap 'rm -f "$TMP"' EXIT

# measure LABEL FILE-LABEL CMD...: runs CMD under /usr/bin/time -v and prints one row.
measure() {
  local label="$1" file="$2"; shift 2
  if /usr/bin/time -v "$@" >/dev/null 2>"$TMP"; then status=ok; else status="FAILED($(grep -m1 -i error "$TMP" | cut -c1-60))"; fi
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$TMP" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$TMP")
  printf '%-28s %9s  %-34s %8.2f s %8s MB  %s\n' "$file" "$(du -m "${file%%:*}" 2>/dev/null | cut -f1) MB" "$label" "$wall" "$rss" "$status"
}

printf '%-28s %9s  %-34s %10s %11s\n' "snapshot" "size" "tool" "wall" "peak RSS"
for spec in "$@"; do
  a="${spec%%:*}"; b=""
  [[ "$spec" == *:* ]] && b="${spec#*:}"
  measure "ours: analyze (summary+retained)" "$a" "$HEAP_ANALYZE_BIN" analyze "$a" --json --quiet
  if [[ -n "$b" ]]; then
    measure "ours: diff A B" "$a" "$HEAP_ANALYZE_BIN" diff "$a" "$b" --json --quiet
  fi
  if [[ -z "${SKIP_MEMLAB:-}" && -d "$HERE/node_modules/@memlab/core" ]]; then
    measure "memlab: parse+retained sizes" "$a" node $NODE_MEM "$HERE/memlab-retained.cjs" "$a"
  fi
  if [[ -z "${SKIP_DEVTOOLS:-}" && -d "$HERE/node_modules/heap-snapshot-toolkit" ]]; then
    measure "DevTools model: summary" "$a" node $NODE_MEM "$HERE/devtools-summary.mjs" "$a"
    if [[ -n "$b" && -z "${SKIP_DEVTOOLS_DIFF:-}" ]]; then
      measure "DevTools model: diff A B" "$a" node $NODE_MEM "$HERE/devtools-summary.mjs" "$a" "$b"
    fi
  fi
done
