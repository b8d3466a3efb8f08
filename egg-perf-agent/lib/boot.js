'use strict';
/**
 * Shared boot hook of the worker (app.js) and the agent process (agent.js): starts
 * @corp/perf-agent with the Egg role, worker id and app name as labels, and stops it in
 * beforeClose. Never throws: a misconfiguration is a warning in the Egg logger.
 */
const cluster = require('node:cluster');
const { isMainThread } = require('node:worker_threads');

const TAG = '[egg-perf-agent]';

function loadAgent() {
  return require('@corp/perf-agent');
}

/** The perf-agent options for this Egg process (exported for tests and docs). */
function resolveOptions(app, role, env = process.env) {
  const cfg = (app.config && app.config.perfAgent) || {};
  const labels = {};
  for (const [k, v] of Object.entries(cfg.labels || {})) {
    if (v !== undefined && v !== null) labels[k] = String(v);
  }
  labels.role = role;
  labels.egg_app = String(app.name || '');
  if (role === 'worker') {
    labels.worker_id = String(cluster.worker ? cluster.worker.id : process.pid);
  }
  return {
    hub: cfg.hub || env.PERF_AGENT_HUB || undefined,
    app: cfg.app || env.PERF_AGENT_APP || app.name || undefined,
    secret: cfg.secret || env.PERF_AGENT_SECRET || undefined,
    labels,
    // `true | { ca, servername }` (docs/tls.md); unset, @corp/perf-agent reads PERF_AGENT_TLS_CA / PERF_AGENT_TLS.
    tls: cfg.tls,
  };
}

function bootHook(role) {
  return class PerfAgentBootHook {
    constructor(app) {
      this.app = app;
      this.started = false;
      this.warnTimer = null;
    }

    configDidLoad() {
      const { app } = this;
      const logger = app.coreLogger || app.logger || console;
      const cfg = app.config.perfAgent || {};
      if (cfg.enable === false) {
        logger.info('%s disabled by config.perfAgent.enable = false (%s, pid %s)', TAG, role, process.pid);
        return;
      }
      if (!isMainThread) {
        logger.warn('%s not started in the %s: it runs in a worker thread (Egg startMode "worker_threads"); perf-agent needs startMode "process"', TAG, role);
        return;
      }
      let options;
      try {
        options = resolveOptions(app, role);
        if (!options.hub || !options.secret) {
          const missing = [!options.hub && 'hub (config.perfAgent.hub / PERF_AGENT_HUB)', !options.secret && 'secret (config.perfAgent.secret / PERF_AGENT_SECRET)'].filter(Boolean);
          logger.warn('%s not started in the %s (pid %s): missing %s', TAG, role, process.pid, missing.join(' and '));
          return;
        }
        const agent = loadAgent();
        this.started = agent.start(options);
        if (this.started) {
          logger.info('%s started in the %s (pid %s): hub %s, app %s, labels %j', TAG, role, process.pid, options.hub, options.app, options.labels);
        } else {
          // Same process already runs it (e.g. `-r @corp/perf-agent/register`, or egg-mock's
          // single-process app where agent and worker share one process): first start wins.
          logger.info('%s already running in this process (pid %s): the first start keeps its options, this %s\'s config.perfAgent is not applied', TAG, process.pid, role);
        }
        const warnMs = Number(cfg.connectWarnMs ?? 10000);
        if (this.started && warnMs > 0) {
          this.warnTimer = setTimeout(() => {
            this.warnTimer = null;
            let s;
            try { s = agent.status(); } catch { return; }
            if (s.running && !s.connected) {
              logger.warn('%s the %s (pid %s) is not connected to perf-hub %s after %s ms: %s (it keeps retrying)',
                TAG, role, process.pid, options.hub, warnMs, s.lastError || 'no answer');
            }
          }, warnMs);
          this.warnTimer.unref();
        }
      } catch (err) {
        this.started = false;
        logger.warn('%s not started in the %s (pid %s): %s', TAG, role, process.pid, String(err && err.message ? err.message : err).replace(/^perf-agent: /, ''));
      }
    }

    async beforeClose() {
      if (this.warnTimer) {
        clearTimeout(this.warnTimer);
        this.warnTimer = null;
      }
      if (!this.started) return;
      this.started = false;
      try {
        await loadAgent().stop();
      } catch (err) {
        const logger = this.app.coreLogger || this.app.logger || console;
        logger.warn('%s stop failed in the %s: %s', TAG, role, err && err.message);
      }
    }
  };
}

module.exports = { bootHook, resolveOptions, TAG };
