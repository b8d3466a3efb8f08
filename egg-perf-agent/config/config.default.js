'use strict';

/**
 * egg-perf-agent default config. Every field falls back to the `PERF_AGENT_*` environment
 * variables of @corp/perf-agent when left undefined.
 */
module.exports = () => ({
  perfAgent: {
    /** Set to false to keep the plugin loaded but not start the agent. */
    enable: true,
    /** perf-hub agent address, `host:port` (env PERF_AGENT_HUB). */
    hub: undefined,
    /** App name registered in perf-hub (env PERF_AGENT_APP; defaults to the Egg app name). */
    app: undefined,
    /** App secret registered in perf-hub (env PERF_AGENT_SECRET). */
    secret: undefined,
    /** Extra labels; merged over env PERF_AGENT_LABELS. role / egg_app / worker_id are set by the plugin. */
    labels: {},
    /** Warn once if the process is still not connected to the hub after this many ms (0: never). */
    connectWarnMs: 10000,
  },
});
