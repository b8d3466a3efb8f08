#!/usr/bin/env bash
# Stops the hub and demo app started by scripts/demo.sh.
cd "$(dirname "$0")/.."
DATA=${DEMO_DATA_DIR:-$PWD/demo-data}
for f in app hub; do
  if [ -s "$DATA/$f.pid" ]; then
    kill "$(cat "$DATA/$f.pid")" 2>/dev/null && echo "stopped $f"
    rm -f "$DATA/$f.pid"
  fi
done
