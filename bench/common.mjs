// Shared by the benchmarks: the repository root, the release perf-hub (PERF_HUB_BIN overrides
// it), the test helpers (real hub, real apps) and `--name value` options.
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
process.env.PERF_HUB_BIN ||= join(ROOT, 'target', 'release', 'perf-hub');
export const H = await import(join(ROOT, '__test__', 'helpers.mjs'));

/** The value after `--name` on the command line, or `dflt`. */
export function opt(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

/**
 * Runs `cleanup` (synchronous: kill children, remove temp dirs) when the bench exits for any
 * reason, including Ctrl-C, SIGTERM and SIGHUP, so a bench never leaves processes behind.
 */
export function onExitCleanup(cleanup, what = 'stopping children') {
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      console.error(`\n${sig}: ${what}`);
      cleanup();
      process.exit(130);
    });
  }
}
