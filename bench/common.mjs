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
