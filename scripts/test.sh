#!/usr/bin/env bash
# All tests: Rust unit/integration tests, then the Node suites against real perf-hub and real
# Node processes. Installs what it needs (npm packages) and builds the debug addon + hub.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x node_modules/.bin/napi ] || [ ! -d node_modules/@memlab/core ]; then
  # memlab (a reference analyser for the heap tests) depends on puppeteer, whose install script
  # would download a browser: skip it.
  PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund
fi
if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
  echo "console tests need Chromium: apt-get install -y chromium (or set CHROMIUM_BIN)" >&2
  exit 1
fi
if [ ! -d egg-perf-agent/node_modules/egg ]; then
  npm --prefix egg-perf-agent ci --no-audit --no-fund
fi
npm run build:debug
cargo test --workspace
node --test __test__/agent.test.mjs __test__/lifecycle.test.mjs __test__/profiles.test.mjs __test__/metrics.test.mjs __test__/metrics-collector.test.mjs __test__/register.test.mjs __test__/analysis-api.test.mjs __test__/heap-analysis.test.mjs __test__/console.test.mjs
npm --prefix egg-perf-agent test
