#!/usr/bin/env bash
# The main job, end to end: build (release), start perf-hub on local storage, attach a demo app
# through `node -r @corp/perf-agent/register`, block the app's event loop, and take a heap
# snapshot and a CPU profile of it while it is blocked. Prints where to see the results.
# Hub and app keep running afterwards; `npm run demo:stop` stops them.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DEMO_DATA_DIR:-$PWD/demo-data}
AGENT_PORT=${DEMO_AGENT_PORT:-7070}
HTTP_PORT=${DEMO_HTTP_PORT:-7080}
APP_PORT=${DEMO_APP_PORT:-3000}

[ -x node_modules/.bin/napi ] || PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund
echo "==> building the addon and perf-hub (release)"
npm run build >/dev/null

bash scripts/demo-stop.sh >/dev/null 2>&1 || true
mkdir -p "$DATA"
TOKEN_FILE="$DATA/operator-token"
[ -s "$TOKEN_FILE" ] || (umask 077; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$TOKEN_FILE")
SECRET_FILE="$DATA/app-secret"
[ -s "$SECRET_FILE" ] || (umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$SECRET_FILE")
TOKEN=$(cat "$TOKEN_FILE")
SECRET=$(cat "$SECRET_FILE")

echo "==> starting perf-hub (agents 127.0.0.1:$AGENT_PORT, http 127.0.0.1:$HTTP_PORT, data $DATA)"
# Token and app secret through the environment: flags (--token, --app) show in `ps`.
PERF_HUB_TOKEN="$TOKEN" PERF_HUB_APPS="demo:$SECRET" nohup target/release/perf-hub serve --data-dir "$DATA" \
  --agent-addr "127.0.0.1:$AGENT_PORT" --http-addr "127.0.0.1:$HTTP_PORT" > "$DATA/hub.log" 2>&1 &
echo $! > "$DATA/hub.pid"

echo "==> starting the demo app with node -r @corp/perf-agent/register"
PERF_AGENT_HUB="127.0.0.1:$AGENT_PORT" PERF_AGENT_APP=demo PERF_AGENT_SECRET="$SECRET" \
  PERF_AGENT_LABELS="role=demo,env=local" PORT="$APP_PORT" \
  nohup node --perf-basic-prof-only-functions -r @corp/perf-agent/register examples/demo-app.js > "$DATA/app.log" 2>&1 &
echo $! > "$DATA/app.pid"

node scripts/demo-client.mjs --hub "http://127.0.0.1:$HTTP_PORT" --token "$TOKEN" \
  --app-url "http://127.0.0.1:$APP_PORT" --app-pid "$(cat "$DATA/app.pid")" --data-dir "$DATA"
