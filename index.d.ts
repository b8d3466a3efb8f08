/** Options of {@link start}. Each falls back to an environment variable. */
export interface StartOptions {
  /** `host:port` of perf-hub's agent port (`PERF_AGENT_HUB`). */
  hub?: string
  /** Application name the hub knows (`PERF_AGENT_APP`). */
  app?: string
  /** The app's secret; proven to the hub by HMAC, never sent (`PERF_AGENT_SECRET`). */
  secret?: string
  /** Labels shown in the hub, merged over `PERF_AGENT_LABELS` (`k=v,k2=v2`). */
  labels?: Record<string, string | number | boolean>
  /** Where captures are spooled before upload (`PERF_AGENT_SPOOL_DIR`, default: OS temp dir). */
  spoolDir?: string
  /** Metrics sample period in ms, ≥ 1000 (`PERF_AGENT_METRICS_INTERVAL_MS`, default 5000). */
  metricsIntervalMs?: number
  /** `false` turns metrics off (`PERF_AGENT_METRICS=0`). */
  metrics?: boolean
  /**
   * `false` skips HTTP server/client latency tracking (`PERF_AGENT_METRICS_HTTP=0`): with a
   * subscriber, Node publishes a diagnostics_channel message per request, which costs a few %
   * of throughput on tiny handlers (see bench/metrics).
   */
  metricsHttp?: boolean
  /**
   * TLS to the hub (control link and uploads); never falls back to plaintext once set.
   * `true`: verify the hub against the system's root certificates (`PERF_AGENT_TLS=1`);
   * `{ ca }`: against this PEM CA file (`PERF_AGENT_TLS_CA`, implies TLS); `servername`: the
   * name the certificate must carry (`PERF_AGENT_TLS_SERVERNAME`, default: the host of `hub`).
   * `false` turns it off over the environment. An unreadable CA file shows in
   * `status().lastError` (it doesn't throw).
   */
  tls?: boolean | { ca?: string; servername?: string }
}

export interface AgentStatus {
  running: boolean
  connected: boolean
  processId?: string | null
  lastError?: string | null
  connects?: number
}

/**
 * Starts the agent for this process (idempotent; a no-op in worker threads). Throws only for
 * missing or invalid options — never because the hub is unreachable.
 * @returns true if this call started it
 */
export declare function start(options?: StartOptions): boolean

/** Says goodbye to the hub and stops the agent's thread. */
export declare function stop(): Promise<boolean>

/** Link state, for health checks and tests. */
export declare function status(): AgentStatus
