// The glibc floor of what users get (ARCHITECTURE.md, "Supported platforms"): the addon needs
// nothing newer than GLIBC_2.17 (CentOS 7, Amazon Linux 2), perf-hub nothing newer than
// GLIBC_2.28 (RHEL 8). A build on Debian 12 without the cross toolchain needs GLIBC_2.34 and fails.
//
// Reads the version needs (.gnu.version_r) of the ELF files itself, so it needs no binutils;
// where objdump is installed it checks that `objdump -T` finds the same newest version. Where
// scripts/build.sh has unpacked its glibc 2.17 sysroot (.cache/napi-cross/), it also resolves the
// addon with glibc 2.17's own dynamic loader and runs perf-hub on glibc 2.17.
//
// Files: the addon at the root (what index.js loads and `npm pack` ships) and any
// npm/*/perf-agent.*.node; the hub at target/release/perf-hub if present (what `npm run build`
// leaves), else target/glibc2.17/x86_64-unknown-linux-gnu/debug/perf-hub (the cross-built
// debug hub of `npm run build:debug`), else target/debug/perf-hub. GLIBC_TEST_ADDON /
// GLIBC_TEST_HUB name other files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ADDON_MAX = '2.17';
const HUB_MAX = '2.28';
const TRIPLE = 'x86_64-unknown-linux-gnu';

const SHT_GNU_VERNEED = 0x6ffffffe;

/** The version needs of an ELF64 little-endian file: [{ file: 'libc.so.6', versions: ['GLIBC_2.2.5', …] }]. */
function versionNeeds(path) {
  const b = readFileSync(path);
  assert.equal(b.readUInt32BE(0), 0x7f454c46, `${path}: not an ELF file`);
  assert.equal(b[4], 2, `${path}: not ELF64`);
  assert.equal(b[5], 1, `${path}: not little-endian`);
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const section = (i) => {
    const o = shoff + i * shentsize;
    return {
      type: b.readUInt32LE(o + 4),
      offset: Number(b.readBigUInt64LE(o + 0x18)),
      link: b.readUInt32LE(o + 0x28),
      info: b.readUInt32LE(o + 0x2c),
    };
  };
  assert.ok(shnum > 0, `${path}: no section headers`);
  const needs = [];
  for (let i = 0; i < shnum; i++) {
    const vn = section(i);
    if (vn.type !== SHT_GNU_VERNEED) continue;
    const strtab = section(vn.link).offset;
    const str = (off) => b.toString('latin1', strtab + off, b.indexOf(0, strtab + off));
    let p = vn.offset;
    for (let n = 0; n < vn.info; n++) {
      // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32
      const cnt = b.readUInt16LE(p + 2);
      const entry = { file: str(b.readUInt32LE(p + 4)), versions: [] };
      let q = p + b.readUInt32LE(p + 8);
      for (let k = 0; k < cnt; k++) {
        // Elf64_Vernaux: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32
        entry.versions.push(str(b.readUInt32LE(q + 8)));
        q += b.readUInt32LE(q + 12);
      }
      needs.push(entry);
      p += b.readUInt32LE(p + 12);
    }
  }
  return needs;
}

const parse = (v) => v.split('.').map(Number);
function cmp(a, b) {
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d) return d;
  }
  return 0;
}
const newest = (versions) => versions.reduce((m, v) => (m === null || cmp(v, m) > 0 ? v : m), null);

/** Every GLIBC_* version the file needs: numbered ones ('2.17', …) and any other (GLIBC_PRIVATE). */
function glibcNeeds(path) {
  const all = versionNeeds(path).flatMap((n) => n.versions).filter((v) => v.startsWith('GLIBC_'));
  const numbered = all.filter((v) => /^GLIBC_\d+(\.\d+)*$/.test(v)).map((v) => v.slice(6));
  return { max: newest(numbered), other: all.filter((v) => !/^GLIBC_\d+(\.\d+)*$/.test(v)) };
}

/** The newest GLIBC_x.y `objdump -T` shows, or undefined without binutils. */
function objdumpMax(path) {
  const r = spawnSync('objdump', ['-T', path], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) return undefined;
  assert.equal(r.status, 0, r.stderr);
  return newest([...r.stdout.matchAll(/\bGLIBC_(\d+(?:\.\d+)*)\b/g)].map((m) => m[1]));
}

function assertFloor(path, max) {
  const rel = relative(ROOT, path) || path;
  const { max: got, other } = glibcNeeds(path);
  assert.deepEqual(other, [], `${rel} needs ${other.join(', ')} (not in any other glibc)`);
  const od = objdumpMax(path);
  if (od !== undefined) assert.equal(got, od, `${rel}: .gnu.version_r says GLIBC_${got}, objdump -T says GLIBC_${od}`);
  assert.ok(got !== null, `${rel} needs no GLIBC_* version at all: not a glibc build?`);
  assert.ok(
    cmp(got, max) <= 0,
    `${rel} needs GLIBC_${got}, newer than GLIBC_${max}: build it with \`npm run build\` / \`npm run build:debug\` (scripts/build.sh), not a plain cargo/napi build`,
  );
  return got;
}

const addons = () => {
  if (process.env.GLIBC_TEST_ADDON) return [process.env.GLIBC_TEST_ADDON];
  const files = [join(ROOT, 'perf-agent.linux-x64-gnu.node')];
  const npm = join(ROOT, 'npm');
  if (existsSync(npm)) {
    for (const dir of readdirSync(npm)) {
      if (!dir.startsWith('linux-') || !dir.endsWith('-gnu')) continue;
      for (const f of readdirSync(join(npm, dir))) if (f.endsWith('.node')) files.push(join(npm, dir, f));
    }
  }
  return files;
};

const hubs = () => {
  if (process.env.GLIBC_TEST_HUB) return process.env.GLIBC_TEST_HUB;
  const candidates = [
    join(ROOT, 'target', 'release', 'perf-hub'),
    join(ROOT, 'target', 'glibc2.17', TRIPLE, 'debug', 'perf-hub'),
    join(ROOT, 'target', 'debug', 'perf-hub'),
  ];
  return candidates.find((f) => existsSync(f)) ?? candidates[0];
};

/** The glibc 2.17 sysroot scripts/build.sh unpacked, if any. */
function sysroot() {
  const base = join(ROOT, '.cache', 'napi-cross');
  if (!existsSync(base)) return null;
  for (const version of readdirSync(base)) {
    const dir = join(base, version, TRIPLE, TRIPLE, 'sysroot');
    if (existsSync(join(dir, 'lib64', 'ld-linux-x86-64.so.2'))) return dir;
  }
  return null;
}

function loader(dir, args) {
  const r = spawnSync(join(dir, 'lib64', 'ld-linux-x86-64.so.2'),
    ['--library-path', `${join(dir, 'lib64')}:${join(dir, 'usr', 'lib64')}`, ...args], { encoding: 'utf8' });
  assert.ifError(r.error);
  return r;
}

test('the ELF reader finds what the linker recorded', () => {
  // node itself: a glibc build of a known shape, so a broken reader can't pass everything.
  const needs = versionNeeds(process.execPath);
  const libc = needs.find((n) => n.file === 'libc.so.6');
  assert.ok(libc, `no libc.so.6 in ${JSON.stringify(needs)}`);
  assert.ok(libc.versions.includes('GLIBC_2.2.5'), libc.versions.join(' '));
  const od = objdumpMax(process.execPath);
  if (od !== undefined) assert.equal(glibcNeeds(process.execPath).max, od);
});

test(`the addon needs nothing newer than GLIBC_${ADDON_MAX}`, () => {
  for (const f of addons()) {
    assert.ok(existsSync(f), `${f} missing: run npm run build (or build:debug)`);
    assertFloor(f, ADDON_MAX);
  }
});

test(`perf-hub needs nothing newer than GLIBC_${HUB_MAX}`, () => {
  const hub = hubs();
  assert.ok(existsSync(hub), `${hub} missing: run npm run build (or build:debug)`);
  assertFloor(hub, HUB_MAX);
});

test('the addon resolves with glibc 2.17\'s own loader and libraries', (t) => {
  const dir = sysroot();
  if (!dir) return t.skip('no glibc 2.17 sysroot in .cache/napi-cross (run scripts/build.sh)');
  for (const f of addons()) {
    const r = loader(dir, ['--list', f]);
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 0, out);
    assert.doesNotMatch(out, /not found/, out);
    // Every library comes from the 2.17 sysroot, none from the host.
    for (const [, lib, path] of out.matchAll(/^\s*(\S+) => (\S+)/gm)) {
      assert.ok(path.startsWith(dir), `${lib} resolved to ${path}, outside ${dir}`);
    }
  }
});

test('perf-hub runs on glibc 2.17', (t) => {
  const dir = sysroot();
  if (!dir) return t.skip('no glibc 2.17 sysroot in .cache/napi-cross (run scripts/build.sh)');
  const hub = hubs();
  const { max } = glibcNeeds(hub);
  if (max !== null && cmp(max, '2.17') > 0) return t.skip(`${relative(ROOT, hub)} needs GLIBC_${max} (allowed up to ${HUB_MAX})`);
  const r = loader(dir, [hub, '--version']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^perf-hub \d+\.\d+\.\d+/);
});
